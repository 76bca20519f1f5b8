// Package app wires reghost's components from a config: GeoIP, cloud
// ranges, the override store and its service, the decision engine and
// both listeners. It owns every goroutine it starts and stops them all
// when Serve returns.
package app

import (
	"cmp"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/reghost/reghost/internal/cloud"
	"github.com/reghost/reghost/internal/config"
	"github.com/reghost/reghost/internal/geo"
	"github.com/reghost/reghost/internal/httpapi"
	"github.com/reghost/reghost/internal/overrides"
	"github.com/reghost/reghost/internal/policy"
	"github.com/reghost/reghost/internal/rules"
	"github.com/reghost/reghost/internal/store"
	"github.com/reghost/reghost/internal/traffic"
	"github.com/reghost/reghost/web"
)

// Options are the things a config file does not say. Zero values take
// the defaults.
type Options struct {
	Logger *slog.Logger // nil: discard
	// Getenv reads REGHOST_ADMIN_TOKEN; nil: os.Getenv.
	Getenv func(string) string
	// AccessLog gets one line per request on either listener; nil: none.
	AccessLog slog.Handler
	// ShutdownTimeout bounds the wait for in-flight requests; 10s.
	ShutdownTimeout time.Duration
	// CloudPollInterval is how often cloud range files are checked for
	// changes; 30s.
	CloudPollInterval time.Duration
	// The public listener's limits on slow clients: to send a request's
	// header (10s), to take its answer (10s), and to wait idle between
	// requests (120s).
	HeaderTimeout, WriteTimeout, IdleTimeout time.Duration
	// StoreCheckInterval is how often the embedded store checks its file
	// is still there; 10s.
	StoreCheckInterval time.Duration
	// HealthRootCAs verify registries' certificates in health checks; nil:
	// the system's. HealthProxy is their proxy; nil: from the
	// environment (HTTPS_PROXY and friends).
	HealthRootCAs *x509.CertPool
	HealthProxy   func(*http.Request) (*url.URL, error)
	// With a Redis store, how long a start waits for the data sets in
	// Redis before it serves without them (20s: within a liveness probe
	// of three failures 10s apart), and how often Redis is looked at
	// besides its messages (30s); see datasync.go.
	DataSyncTimeout, DataSyncPoll time.Duration
}

// App is a configured reghost server.
type App struct {
	cfg       *config.Config
	opts      Options
	log       *slog.Logger
	metrics   *httpapi.Metrics
	engine    *policy.Engine
	geo       *geo.DB
	cloud     *cloud.Set
	store     store.Store
	overrides *overrides.Service
	prober    *prober
	regions   *regionWarner
	tokens    map[string]string // admin tokens by name
	traffic   *traffic.Recorder
	dataSync  *dataSync // nil without a Redis store

	public, admin               *http.Server
	publicHandler, adminHandler atomic.Pointer[http.Handler]
	publicLn, adminLn           net.Listener
	tlsRun                      []func(context.Context) // keep the listeners' certificates current (tls.go)

	reloadMu sync.Mutex // serialises Reload; guards cfg and token after New
}

// New opens everything the config names. Bad config or a bad data file
// fails here, with the file and the problem; missing data files only
// leave their rules inactive.
func New(cfg *config.Config, opts Options) (*App, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Getenv == nil {
		opts.Getenv = os.Getenv
	}
	a := &App{cfg: cfg, opts: opts, log: opts.Logger, metrics: httpapi.NewMetrics(), regions: newRegionWarner(opts.Logger)}
	for _, w := range cfg.Warnings() {
		a.log.Warn("config: " + w)
	}
	ok := false
	defer func() {
		if !ok {
			a.close()
		}
	}()

	if err := a.openDataSync(cfg); err != nil {
		return nil, err
	}
	var err error
	a.geo, err = geo.Open(geo.Config{ASN: cfg.GeoIP.ASN, Country: cfg.GeoIP.Country, Logger: a.log})
	if err != nil {
		return nil, err
	}
	a.engine, err = policy.New(policy.Config{
		Registries: cfg.Registries,
		Rules:      cfg.Rules,
		Sources:    policy.Sources{ASN: a.geo, Country: a.geo},
	})
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	a.traffic = traffic.New(traffic.Config{Registries: registryNames(cfg)})
	a.prober = &prober{a: a}
	if a.prober.checker, err = a.prober.newChecker(cfg); err != nil {
		return nil, fmt.Errorf("health: %w", err)
	}
	a.cloud, err = cloud.Open(cloud.Config{Files: cfg.CloudRanges, Poll: opts.CloudPollInterval, Logger: a.log,
		OnChange: func(t *cloud.Table) {
			a.engine.SetSources(func(src *policy.Sources) {
				src.Cloud = nil // no table: cloud facts are not looked up
				if t.Len() > 0 {
					src.Cloud = t
				}
			})
			var applied []rules.Override
			if a.overrides != nil {
				applied = a.overrides.Applied()
			}
			a.regions.tableChanged(t, cfg.Rules, applied)
		}})
	if err != nil {
		return nil, err
	}
	a.metrics.WatchDataSets(a.dataSetTimes)
	if a.store, err = openStore(cfg, opts, a.log, a.metrics.Registry()); err != nil {
		return nil, err
	}
	var seen func(store.Version)
	if r, ok := a.store.(*store.Redis); ok {
		seen = r.Saw
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	if a.overrides, err = overrides.New(context.Background(), overrides.Config{Store: a.store, Engine: a.engine,
		Logger: a.log, Written: a.regions.override, Snapshot: snapshotFile(cfg), Seen: seen}); err != nil {
		return nil, err
	}
	for _, o := range a.overrides.Applied() {
		a.regions.override(o)
	}
	if err := a.snapshotMetrics(); err != nil {
		return nil, err
	}
	if a.tokens, err = adminTokens(cfg, opts.Getenv, a.log); err != nil {
		return nil, err
	}
	if err := a.newServers(); err != nil {
		return nil, err
	}
	if err := a.setupTLS(); err != nil {
		return nil, err
	}
	ok = true
	return a, nil
}

// newServers builds both listeners' servers. net/http's own limits guard
// against slow clients: a header that trickles in, an answer that is not
// read, a connection left idle. Their handlers are swapped whole when a
// config is reloaded.
func (a *App) newServers() error {
	pub, adm, err := a.handlers(a.cfg, a.tokens)
	if err != nil {
		return err
	}
	a.publicHandler.Store(&pub)
	a.adminHandler.Store(&adm)
	errorLog := slog.NewLogLogger(a.log.Handler(), slog.LevelWarn)
	header := cmp.Or(a.opts.HeaderTimeout, 10*time.Second)
	a.public = &http.Server{
		Handler:           current(&a.publicHandler),
		ReadHeaderTimeout: header,
		ReadTimeout:       header, // public requests have no body
		WriteTimeout:      cmp.Or(a.opts.WriteTimeout, 10*time.Second),
		IdleTimeout:       cmp.Or(a.opts.IdleTimeout, 120*time.Second),
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          errorLog,
	}
	// The admin listener's answers may be large or slow on purpose: a
	// CPU profile takes 30 s by default.
	a.admin = &http.Server{
		Handler:           current(&a.adminHandler),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      90 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          errorLog,
	}
	return nil
}

// handlers builds both listeners' handlers from cfg.
func (a *App) handlers(cfg *config.Config, tokens map[string]string) (pub, adm http.Handler, err error) {
	pub, err = httpapi.NewPublic(httpapi.PublicConfig{
		Engine:         a.engine,
		ClientIP:       httpapi.ClientIPConfig{Header: cfg.ClientIP.Header, TrustedProxies: cfg.ClientIP.TrustedProxies, XFFTrustedHops: cfg.ClientIP.XFFTrustedHops},
		RedirectStatus: cfg.RedirectStatus,
		Ready:          func(context.Context) any { return a.readiness() },
		Logger:         a.log,
		Metrics:        a.metrics,
		AccessLog:      a.opts.AccessLog,
		Traffic:        a.traffic,
	})
	if err != nil {
		return nil, nil, err
	}
	page, err := a.newWeb(cfg, tokens)
	if err != nil {
		return nil, nil, err
	}
	adm, err = httpapi.NewAdmin(httpapi.AdminConfig{
		Engine:    a.engine,
		Overrides: a.overrides,
		Tokens:    tokens,
		DataSets:  a.dataSets,
		Health:    a.prober.registry,
		Logger:    a.log,
		Metrics:   a.metrics,
		AccessLog: a.opts.AccessLog,
		Web:       page,
	})
	if err != nil {
		return nil, nil, err
	}
	return pub, adm, nil
}

// current serves with the handler h holds at each request.
func current(h *atomic.Pointer[http.Handler]) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*h.Load()).ServeHTTP(w, r) })
}

// newWeb builds the admin page for cfg, or nil when the store keeps no
// sessions.
func (a *App) newWeb(cfg *config.Config, tokens map[string]string) (http.Handler, error) {
	sessions, ok := a.store.(web.Sessions)
	if !ok {
		a.log.Warn("the admin page is off: this store keeps no sign-in sessions")
		return nil, nil
	}
	return web.New(web.Config{
		Overrides:      a.overrides,
		Engine:         a.engine,
		Sessions:       sessions,
		Tokens:         tokens,
		DataSets:       func() web.DataSets { return web.DataSets{GeoIP: a.geo.DataSets(), Cloud: a.cloud.DataSets()} },
		Health:         a.prober.registryHealth,
		Traffic:        a.traffic,
		Logger:         a.log,
		TLS:            a.cfg.Admin.TLS.On(), // restart-only: a.cfg's is the one serving
		TrustedOrigins: cfg.Admin.TrustedOrigins,
	})
}

func registryNames(cfg *config.Config) []string {
	names := make([]string, len(cfg.Registries))
	for i, r := range cfg.Registries {
		names[i] = r.Name
	}
	return names
}

func openStore(cfg *config.Config, opts Options, log *slog.Logger, reg prometheus.Registerer) (store.Store, error) {
	if cfg.Store == "" {
		b, err := store.OpenBolt(cfg.DataDir, store.BoltOptions{Logger: log, CheckInterval: opts.StoreCheckInterval})
		if err != nil {
			return nil, err // it says "store: …"; and no typed nil in the interface
		}
		return b, nil
	}
	redis.SetLogger(store.RedisLogger(log))
	ro, err := redisOptions(cfg, opts.Getenv)
	if err != nil {
		return nil, err
	}
	ro.Logger, ro.Registerer = log, reg
	rs, err := store.OpenRedis(context.Background(), ro)
	if err != nil {
		return nil, err
	}
	return rs, nil
}

// snapshotFile keeps, with a shared store, the set last applied (see
// overrides.Config.Snapshot); the embedded store is on local disk itself.
func snapshotFile(cfg *config.Config) string {
	if cfg.Store == "" {
		return ""
	}
	return filepath.Join(cfg.DataDir, "store-snapshot.json")
}

// dataSetTimes is what the data set gauges report: every loaded GeoIP
// database and cloud ranges file.
func (a *App) dataSetTimes() []httpapi.DataSetTimes {
	var out []httpapi.DataSetTimes
	for _, d := range a.geo.DataSets() {
		if d.Loaded {
			out = append(out, httpapi.DataSetTimes{Name: "geoip/" + d.Kind, Built: d.BuildTime, Loaded: d.LoadedAt})
		}
	}
	for _, d := range a.cloud.DataSets() {
		if d.Loaded {
			out = append(out, httpapi.DataSetTimes{Name: "cloud/" + d.Provider, Built: d.ModTime, Loaded: d.LoadedAt})
		}
	}
	return out
}

// Listen opens both listeners, so that a caller (a test) knows the
// addresses before Serve.
func (a *App) Listen() error {
	var err error
	if a.publicLn, err = net.Listen("tcp", a.cfg.Listen); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if a.adminLn, err = net.Listen("tcp", a.cfg.AdminListen); err != nil {
		a.publicLn.Close()
		return fmt.Errorf("admin_listen: %w", err)
	}
	return nil
}

// PublicAddr and AdminAddr are the listeners' addresses after Listen.
func (a *App) PublicAddr() string { return a.publicLn.Addr().String() }
func (a *App) AdminAddr() string  { return a.adminLn.Addr().String() }

// AdminToken is the token the admin API wants.
func (a *App) AdminToken() string {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	return a.tokens["admin"]
}

// Serve serves until ctx is done, then stops taking connections, lets
// in-flight requests finish (up to the shutdown timeout) and closes
// everything.
func (a *App) Serve(ctx context.Context) error {
	defer a.close() // the store's lock and the databases, also when listening fails
	if a.publicLn == nil {
		if err := a.Listen(); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var wg sync.WaitGroup
	errc := make(chan error, 2)
	for _, s := range []struct {
		srv *http.Server
		ln  net.Listener
	}{{a.public, a.publicLn}, {a.admin, a.adminLn}} {
		wg.Go(func() {
			if err := serveOn(s.srv, s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		})
	}
	wg.Go(func() {
		if err := a.geo.Run(ctx); err != nil && ctx.Err() == nil {
			a.log.Error("geoip watcher stopped", "err", err)
		}
	})
	wg.Go(func() { a.cloud.Run(ctx) })
	wg.Go(func() { a.runDataSync(ctx) })
	wg.Go(func() { a.prober.run(ctx) })
	wg.Go(func() { a.overrides.Run(ctx) })
	wg.Go(func() { a.traffic.Run(ctx) })
	for _, run := range a.tlsRun {
		wg.Go(func() { run(ctx) })
	}
	a.log.Info("reghost serving", "listen", a.PublicAddr(), "admin_listen", a.AdminAddr(),
		"tls", a.cfg.TLS.On(), "admin_tls", a.cfg.Admin.TLS.On(),
		"registries", len(a.cfg.Registries), "rules", len(a.cfg.Rules))

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		a.log.Error("listener failed; shutting down", "err", err)
	}
	cancel()
	sctx, scancel := context.WithTimeout(context.Background(), cmp.Or(a.opts.ShutdownTimeout, 10*time.Second))
	defer scancel()
	for _, s := range []*http.Server{a.public, a.admin} {
		if serr := s.Shutdown(sctx); serr != nil {
			err = errors.Join(err, fmt.Errorf("shutdown: %w", serr))
		}
	}
	wg.Wait()
	a.log.Info("reghost stopped")
	return err
}

func (a *App) close() {
	a.closeDataSync()
	if a.store != nil {
		a.store.Close()
	}
	if a.geo != nil {
		a.geo.Close()
	}
}
