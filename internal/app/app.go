// Package app wires reghost's components from a config: GeoIP, cloud
// ranges, the override store, the decision engine and both listeners. It
// owns every goroutine it starts and stops them all when Serve returns.
package app

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/reghost/reghost/internal/cloud"
	"github.com/reghost/reghost/internal/config"
	"github.com/reghost/reghost/internal/connwatch"
	"github.com/reghost/reghost/internal/geo"
	"github.com/reghost/reghost/internal/httpapi"
	"github.com/reghost/reghost/internal/policy"
	"github.com/reghost/reghost/internal/store"
)

// Options are the things a config file does not say.
type Options struct {
	Logger *slog.Logger // nil: discard
	// Getenv reads REGHOST_ADMIN_TOKEN; nil: os.Getenv.
	Getenv func(string) string
	// AccessLog receives one JSON line per request on either listener;
	// nil: none. It should take whole writes at a time and be safe for
	// concurrent use.
	AccessLog io.Writer
	// ShutdownTimeout bounds the wait for in-flight requests; 0: 10s.
	ShutdownTimeout time.Duration
	// CloudPollInterval is how often cloud range files are checked for
	// changes; 0: 30s.
	CloudPollInterval time.Duration
	// SlowClientTimeout is how long a public client may take to send a
	// request's header, and reghost to answer it; 0: 10s.
	SlowClientTimeout time.Duration
}

// App is a configured reghost server.
type App struct {
	cfg     *config.Config
	opts    Options
	log     *slog.Logger
	metrics *httpapi.Metrics
	engine  *policy.Engine
	geo     *geo.DB
	store   store.Store
	token   string

	cloudMu   sync.Mutex
	cloudSets []cloud.DataSet
	cloudErr  error
	cloudSeen map[string]fileStamp // file -> what it was when last loaded

	// applyMu serialises applying overrides, so that a list read earlier
	// never replaces one read later; applied is the store version the
	// engine has (valid once haveApplied).
	applyMu     sync.Mutex
	applied     uint64
	haveApplied bool

	accessLog *httpapi.AccessLog // nil: none

	public, admin     *http.Server
	publicLn, adminLn net.Listener
	publicWatch       *connwatch.Watch // the public listener's slow-client limits
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
	if opts.ShutdownTimeout == 0 {
		opts.ShutdownTimeout = 10 * time.Second
	}
	if opts.CloudPollInterval == 0 {
		opts.CloudPollInterval = 30 * time.Second
	}
	a := &App{cfg: cfg, opts: opts, log: opts.Logger, metrics: httpapi.NewMetrics(), cloudSeen: map[string]fileStamp{}}
	ok := false
	defer func() {
		if !ok {
			a.close()
		}
	}()

	var err error
	a.geo, err = geo.Open(geo.Config{ASN: cfg.GeoIP.ASN, Country: cfg.GeoIP.Country, Logger: a.log})
	if err != nil {
		return nil, err
	}
	a.metrics.WatchDataSets(a.dataSetTimes)
	a.engine, err = policy.New(policy.Config{
		Registries: cfg.Registries,
		Rules:      cfg.Rules,
		Sources:    policy.Sources{ASN: a.geo, Country: a.geo},
	})
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if err := a.loadCloud(true); err != nil {
		return nil, err
	}
	a.store, err = openStore(cfg, a.log)
	if err != nil {
		return nil, err
	}
	if err := a.applyOverrides(context.Background()); err != nil {
		return nil, err
	}
	a.token, err = a.adminToken()
	if err != nil {
		return nil, err
	}
	if opts.AccessLog != nil {
		a.accessLog = httpapi.NewAccessLog(opts.AccessLog)
	}

	pub, err := httpapi.NewPublic(httpapi.PublicConfig{
		Engine:         a.engine,
		ClientIP:       httpapi.ClientIPConfig{Header: cfg.ClientIP.Header, TrustedProxies: cfg.ClientIP.TrustedProxies, XFFTrustedHops: cfg.ClientIP.XFFTrustedHops},
		RedirectStatus: cfg.RedirectStatus,
		Ready:          a.readiness,
		Logger:         a.log,
		Metrics:        a.metrics,
		AccessLog:      a.accessLog,
	})
	if err != nil {
		return nil, err
	}
	adm, err := httpapi.NewAdmin(httpapi.AdminConfig{
		Engine:    a.engine,
		Store:     a.store,
		Token:     a.token,
		Apply:     a.applyOverrides,
		DataSets:  a.dataSets,
		Logger:    a.log,
		Metrics:   a.metrics,
		AccessLog: a.accessLog,
	})
	if err != nil {
		return nil, err
	}
	a.public = newServer(pub, a.log)
	// A public response is a few hundred bytes written at once, which
	// the socket buffer takes whatever the client does, so a write
	// deadline protects nothing there and costs a timer per request
	// (a tenth of reghost's throughput under load). The admin listener
	// keeps it: profiles and lists are large.
	a.public.WriteTimeout = 0
	// Slow clients are cut off by connwatch rather than by read deadlines,
	// which net/http moves twice a request (3% of the CPU a request under
	// load). Nothing on the public listener reads a request body, so the
	// whole request gets the header's limit.
	a.publicWatch = connwatch.New(connwatch.Config{
		Header:  cmp.Or(opts.SlowClientTimeout, a.public.ReadHeaderTimeout),
		Request: cmp.Or(opts.SlowClientTimeout, a.public.ReadHeaderTimeout),
		Idle:    a.public.IdleTimeout,
		Logger:  a.log,
	})
	a.public.ReadHeaderTimeout, a.public.ReadTimeout, a.public.IdleTimeout = 0, 0, 0
	a.public.ConnState = a.publicWatch.ConnState
	a.public.ConnContext = httpapi.ConnContext
	a.admin = newServer(adm, a.log)
	ok = true
	return a, nil
}

func newServer(h *echo.Echo, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

func openStore(cfg *config.Config, log *slog.Logger) (store.Store, error) {
	if cfg.Store != "" {
		// Not the URL itself: it may hold a password.
		scheme, _, _ := strings.Cut(cfg.Store, "://")
		return nil, fmt.Errorf("store: %s stores are not built in yet; only the embedded store (store: \"\") is", scheme)
	}
	path := filepath.Join(cfg.DataDir, "overrides.json")
	s, err := store.OpenFile(path, log)
	if err != nil {
		return nil, err // it says "store: …" already
	}
	return s, nil
}

// adminToken is, in order: the token file, REGHOST_ADMIN_TOKEN, the
// token generated on an earlier start, or one generated now and written
// to data_dir/admin-token (mode 0600). Its path is logged, never the
// token.
func (a *App) adminToken() (string, error) {
	if f := a.cfg.Admin.TokenFile; f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", fmt.Errorf("admin.token_file: %w", err)
		}
		t := strings.TrimSpace(string(b))
		if err := checkToken(t); err != nil {
			return "", fmt.Errorf("admin.token_file: %s: %w", f, err)
		}
		return t, nil
	}
	if t := strings.TrimSpace(a.opts.Getenv("REGHOST_ADMIN_TOKEN")); t != "" {
		if err := checkToken(t); err != nil {
			return "", fmt.Errorf("REGHOST_ADMIN_TOKEN: %w", err)
		}
		return t, nil
	}
	path := filepath.Join(a.cfg.DataDir, "admin-token")
	if abs, err := filepath.Abs(path); err == nil {
		path = abs // logged: where to find it, wherever the reader stands
	}
	t, err := readGeneratedToken(path)
	if err == nil {
		a.log.Info("no admin token configured; using the one generated before", "file", path)
		return t, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		a.log.Warn("no admin token configured, and the one generated before is unusable; generating another", "file", path, "err", err)
	}
	var b [24]byte
	_, _ = rand.Read(b[:])
	t = hex.EncodeToString(b[:])
	if err := os.MkdirAll(a.cfg.DataDir, 0o750); err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	if err := writeTokenFile(path, t); err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	a.log.Warn("no admin token configured; generated one", "file", path)
	return t, nil
}

// checkToken refuses a token too short to be secret, or one with a
// control character (a newline inside a token file, say), which no
// Authorization header can carry: every admin call would then fail.
// The token itself is never in the error.
func checkToken(t string) error {
	if len(t) < 16 {
		return errors.New("token shorter than 16 characters")
	}
	for i := 0; i < len(t); i++ {
		if (t[i] < ' ' && t[i] != '\t') || t[i] == 0x7f {
			return fmt.Errorf("token has a control character at byte %d, which no Authorization header can carry", i)
		}
	}
	return nil
}

// readGeneratedToken reads a token written by writeTokenFile on an
// earlier start, so that restarts keep it. A file others can read, or
// anything but a regular file, is refused: its token may not be secret.
func readGeneratedToken(path string) (string, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("not a regular file (%s)", fi.Mode().Type())
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("readable by others (mode %v)", fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	t := strings.TrimSpace(string(b))
	if err := checkToken(t); err != nil {
		return "", err
	}
	return t, nil
}

// writeTokenFile writes t to a new file, readable by the owner only, and
// renames it to path: whatever was at path (a file of another mode, a
// symbolic link) is replaced, never written through.
func writeTokenFile(path, t string) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".admin-token-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // after a successful rename, nothing
	if _, err := f.WriteString(t + "\n"); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// applyOverrides rebuilds the engine's overrides from the store, unless
// the engine already has the store's version. When the store cannot be
// read the engine keeps its last snapshot.
func (a *App) applyOverrides(ctx context.Context) error {
	a.applyMu.Lock()
	defer a.applyMu.Unlock()
	ovs, version, err := a.store.List(ctx)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if a.haveApplied && version == a.applied {
		return nil
	}
	if err := a.engine.SetOverrides(ovs); err != nil {
		a.log.Warn("some overrides do not apply", "version", version, "err", err)
	}
	a.applied, a.haveApplied = version, true
	a.log.Debug("overrides applied", "version", version, "count", len(ovs))
	return nil
}

// hasApplied reports whether the engine has store version v or later.
func (a *App) hasApplied(v uint64) bool {
	a.applyMu.Lock()
	defer a.applyMu.Unlock()
	return a.haveApplied && a.applied >= v
}

// fileStamp is what a file was when it was loaded: a replacement that
// keeps the old modification time (cp -p, rsync -t) seldom keeps the size
// too.
type fileStamp struct {
	mod  time.Time
	size int64
}

// loadCloud (re)loads the cloud range files when any has changed. A file
// missing at start leaves its provider without ranges. After that, a
// file that is bad, unreadable or gone keeps the last good table serving,
// every provider's, until it is fixed; the error is logged once and
// reported by the data sets. At start a bad file is an error.
func (a *App) loadCloud(start bool) error {
	files := map[string]string{}
	stamps := map[string]fileStamp{}
	changed := false
	a.cloudMu.Lock()
	defer a.cloudMu.Unlock()
	for _, provider := range slices.Sorted(maps.Keys(a.cfg.CloudRanges)) {
		file := a.cfg.CloudRanges[provider]
		st, err := os.Stat(file)
		_, loaded := a.cloudSeen[file]
		switch {
		case errors.Is(err, fs.ErrNotExist) && !loaded:
			if start {
				a.log.Warn("cloud ranges missing; rules for this provider are inactive", "provider", provider, "file", file)
			}
			continue
		case errors.Is(err, fs.ErrNotExist):
			return a.cloudFailed(start, fmt.Errorf("cloud_ranges.%s: %s is gone; the ranges loaded from it keep serving until it is back", provider, file))
		case err != nil:
			return a.cloudFailed(start, fmt.Errorf("cloud_ranges.%s: %w", provider, err))
		}
		files[provider] = file
		stamps[file] = fileStamp{st.ModTime(), st.Size()}
		if seen, had := a.cloudSeen[file]; !had || !seen.mod.Equal(st.ModTime()) || seen.size != st.Size() {
			changed = true
		}
	}
	if !changed && !start {
		// Every file is as last loaded: whatever went wrong since (a file
		// moved away and back, a bad copy replaced by the good one) is over.
		if a.cloudErr != nil {
			a.log.Info("cloud ranges files are back as they were loaded", "was", a.cloudErr)
			a.cloudErr = nil
		}
		return nil
	}
	table, sets, err := cloud.Load(files)
	if err != nil {
		return a.cloudFailed(start, err)
	}
	a.cloudErr = nil
	a.cloudSets = sets
	// The stamps from before loading: a file changed since is loaded again.
	a.cloudSeen = stamps
	a.engine.SetSources(func(src *policy.Sources) {
		if table.Len() == 0 {
			src.Cloud = nil
		} else {
			src.Cloud = table
		}
	})
	if !start {
		a.log.Info("cloud ranges reloaded", "prefixes", table.Len())
	}
	return nil
}

// cloudFailed records why the cloud ranges were not (re)loaded, and logs
// it unless it is what the last poll already logged.
func (a *App) cloudFailed(start bool, err error) error {
	if start {
		return err
	}
	if a.cloudErr == nil || a.cloudErr.Error() != err.Error() {
		a.log.Error("cloud ranges not reloaded; the last good ones keep serving", "err", err)
	}
	a.cloudErr = err
	return err
}

// dataSets is the admin API's /api/v1/datasets.
func (a *App) dataSets() any {
	a.cloudMu.Lock()
	defer a.cloudMu.Unlock()
	out := struct {
		GeoIP     []geo.DataSet   `json:"geoip"`
		Cloud     []cloud.DataSet `json:"cloud"`
		CloudErr  string          `json:"cloud_error,omitempty"`
		Providers []string        `json:"cloud_configured"`
	}{GeoIP: orEmpty(a.geo.DataSets()), Cloud: orEmpty(a.cloudSets),
		Providers: orEmpty(slices.Sorted(maps.Keys(a.cfg.CloudRanges)))}
	if a.cloudErr != nil {
		out.CloudErr = a.cloudErr.Error()
	}
	return out
}

// orEmpty is s, or an empty slice for nil: [] in JSON, not null.
func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
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
	a.cloudMu.Lock()
	defer a.cloudMu.Unlock()
	for _, s := range a.cloudSets {
		out = append(out, httpapi.DataSetTimes{Name: "cloud/" + s.Provider, Built: s.ModTime, Loaded: s.LoadedAt})
	}
	return out
}

// Readiness is the /readyz report. The status is "degraded" when the
// store or a configured data set is not serving; the answer stays 200
// because decisions still work, through the fallback if need be.
type Readiness struct {
	Status string          `json:"status"`
	Config bool            `json:"config"`
	Store  string          `json:"store"`
	GeoIP  map[string]bool `json:"geoip"`
	Cloud  map[string]bool `json:"cloud"`
}

func (a *App) readiness(ctx context.Context) any {
	r := Readiness{Status: "ok", Config: true, Store: "ok", GeoIP: map[string]bool{}, Cloud: map[string]bool{}}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if _, err := a.store.Version(ctx); err != nil {
		r.Store, r.Status = "unreachable: "+err.Error(), "degraded"
	}
	for _, d := range a.geo.DataSets() {
		if d.File == "" {
			continue
		}
		r.GeoIP[d.Kind] = d.Loaded
		if !d.Loaded {
			r.Status = "degraded"
		}
	}
	a.cloudMu.Lock()
	for p := range a.cfg.CloudRanges {
		r.Cloud[p] = false
	}
	for _, s := range a.cloudSets {
		r.Cloud[s.Provider] = true
	}
	a.cloudMu.Unlock()
	for _, ok := range r.Cloud {
		if !ok {
			r.Status = "degraded"
		}
	}
	return r
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
func (a *App) AdminToken() string { return a.token }

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
	}{{a.public, a.publicWatch.Listener(a.publicLn)}, {a.admin, a.adminLn}} {
		wg.Go(func() {
			if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		})
	}
	wg.Go(func() {
		if err := a.geo.Run(ctx); err != nil && ctx.Err() == nil {
			a.log.Error("geoip watcher stopped", "err", err)
		}
	})
	wg.Go(func() { a.publicWatch.Run(ctx) })
	wg.Go(func() { a.watchStore(ctx) })
	wg.Go(func() { a.pollCloud(ctx) })
	if a.accessLog != nil {
		wg.Go(func() { a.flushAccessLog(ctx) })
	}
	a.log.Info("reghost serving", "listen", a.PublicAddr(), "admin_listen", a.AdminAddr(),
		"registries", len(a.cfg.Registries), "rules", len(a.cfg.Rules))

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		a.log.Error("listener failed; shutting down", "err", err)
	}
	cancel()
	sctx, scancel := context.WithTimeout(context.Background(), a.opts.ShutdownTimeout)
	defer scancel()
	for _, s := range []*http.Server{a.public, a.admin} {
		if serr := s.Shutdown(sctx); serr != nil {
			err = errors.Join(err, fmt.Errorf("shutdown: %w", serr))
		}
	}
	wg.Wait()
	if a.accessLog != nil {
		if ferr := a.accessLog.Flush(); ferr != nil {
			err = errors.Join(err, fmt.Errorf("access log: %w", ferr))
		}
	}
	a.log.Info("reghost stopped")
	return err
}

// watchStore applies overrides on every change notification. Changes
// coalesce, so one apply covers any number of writes.
func (a *App) watchStore(ctx context.Context) {
	changes := a.store.Changes(ctx)
	// A write between the start-up apply and this subscription sent no
	// notification here: catch up once (a no-op when nothing changed).
	if err := a.applyOverrides(ctx); err != nil && ctx.Err() == nil {
		a.log.Warn("overrides not reloaded; the last snapshot keeps serving", "err", err)
	}
	for v := range changes {
		if a.hasApplied(v) {
			continue // the admin API applied its own write already
		}
		if err := a.applyOverrides(ctx); err != nil && ctx.Err() == nil {
			a.log.Warn("overrides not reloaded; the last snapshot keeps serving", "err", err)
		}
	}
}

// flushAccessLog writes buffered access-log lines every 100 ms, so that
// a quiet server's log is never more than that behind.
func (a *App) flushAccessLog(ctx context.Context) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := a.accessLog.Flush(); err != nil {
				a.log.Warn("access log", "err", err)
			}
		}
	}
}

func (a *App) pollCloud(ctx context.Context) {
	t := time.NewTicker(a.opts.CloudPollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = a.loadCloud(false)
		}
	}
}

func (a *App) close() {
	if a.store != nil {
		a.store.Close()
	}
	if a.geo != nil {
		a.geo.Close()
	}
}
