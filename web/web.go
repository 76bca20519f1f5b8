// Package web is the admin page: server-rendered HTML on the admin
// listener under /admin/, for operators changing routing during an
// incident. It shows and changes overrides (with a preview of what a
// change would move before it is saved), registry health and drains,
// explains decisions, and shows data set age, this replica's recent
// traffic and the audit trail.
//
// Everything it needs is in Config, as small interfaces declared here
// and met by the server's own types: *overrides.Service (every change
// goes through it, as the API's do), *policy.Engine, *store.Bolt (for
// sessions) and *traffic.Recorder.
//
// Security: sign-in takes an admin token and starts a session kept in
// the store, so signing out on one replica ends it on all of them; the
// token's name is who made each change. The session cookie is HttpOnly,
// SameSite=Strict, Secure over TLS, and good on /admin only: the JSON
// API keeps taking bearer tokens alone. Every state change passes
// net/http's CrossOriginProtection; every answer carries a strict
// Content-Security-Policy (no inline script or style, no eval) and
// Cache-Control: no-store. Templates, styles and the one small script
// are embedded: the page needs no network beyond the admin listener.
package web

import (
	"cmp"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"time"

	"golang.org/x/time/rate"

	"github.com/reghost/reghost/internal/cloud"
	"github.com/reghost/reghost/internal/geo"
	"github.com/reghost/reghost/internal/policy"
	"github.com/reghost/reghost/internal/rules"
	"github.com/reghost/reghost/internal/store"
	"github.com/reghost/reghost/internal/traffic"
)

// Prefix is where the page is served; the admin listener routes
// everything under it here.
const Prefix = "/admin"

// Overrides is the one path every change takes; *overrides.Service.
type Overrides interface {
	List(ctx context.Context) ([]rules.Override, store.Version, error)
	Get(ctx context.Context, id string) (rules.Override, error)
	Create(ctx context.Context, who string, o rules.Override) (rules.Override, store.Version, error)
	Put(ctx context.Context, who string, o rules.Override) (rules.Override, bool, store.Version, error)
	Delete(ctx context.Context, who, id string) (store.Version, error)
	Drain(ctx context.Context, who, registry, note string) (store.Version, error)
	Undrain(ctx context.Context, who, registry string) (store.Version, error)
	Drains() []store.Drain
	Audit(ctx context.Context, n int) ([]store.AuditEntry, error)
}

// Engine decides, and previews decisions under a candidate change;
// *policy.Engine.
type Engine interface {
	Explain(addr netip.Addr, path, rawQuery string) (policy.Decision, error)
	Registries() (regs []policy.RegistryState, panic bool)
	ValidateOverride(rules.Override) error
	Preview(ovs []rules.Override, addrs []netip.Addr) ([]policy.Move, error)
}

// Sessions keeps signed-in sessions where every replica sees them;
// *store.Bolt (and the Redis store).
type Sessions interface {
	CreateSession(ctx context.Context, key string, s store.Session) error
	Session(ctx context.Context, key string) (store.Session, error)
	TouchSession(ctx context.Context, key string, idleUntil time.Time) (store.Session, error)
	DeleteSession(ctx context.Context, key string) error
}

// Traffic is this replica's recent decisions; *traffic.Recorder.
type Traffic interface {
	Snapshot(now time.Time) traffic.Snapshot
	Sample(now time.Time) []netip.Addr
}

// DataSets are the GeoIP databases and cloud range files, as
// /api/v1/datasets reports them.
type DataSets struct {
	GeoIP []geo.DataSet
	Cloud []cloud.DataSet
}

// RegistryHealth is what health checks say of one registry.
type RegistryHealth struct {
	// Probed is false when checks are off for the registry.
	Probed bool
	Up     bool
	// Since is when Up last changed.
	Since     time.Time
	LastProbe time.Time
	Latency   time.Duration // the last probe's
	// The last failure, kept after recovery.
	LastError   string
	ErrorClass  string // dns, connect, timeout, tls, proxy, status, challenge, protocol
	LastErrorAt time.Time
	// Results are the recent probes, oldest first.
	Results []ProbeResult
}

// ProbeResult is one health probe's outcome.
type ProbeResult struct {
	At      time.Time
	OK      bool
	Latency time.Duration
	Class   string // why it failed; "" when OK
}

// Config is what New needs. Overrides, Engine, Sessions and Tokens are
// required.
type Config struct {
	Overrides Overrides
	Engine    Engine
	Sessions  Sessions
	// Tokens are the admin tokens by name, as the API takes them: signing
	// in takes one, and its name is who makes each change.
	Tokens map[string]string
	// DataSets reports the loaded data; nil: none.
	DataSets func() DataSets
	// Health reports a registry's health checks; nil, or false from it:
	// none for that registry.
	Health func(registry string) (RegistryHealth, bool)
	// Traffic is this replica's recent decisions; nil: none recorded.
	Traffic Traffic
	Logger  *slog.Logger // nil: discard

	// TLS: the admin listener serves HTTPS, so cookies are Secure and
	// answers carry Strict-Transport-Security.
	TLS bool
	// TrustedOrigins may post changes besides the page's own origin
	// ("https://admin.example.com"), for proxies that rewrite Host.
	TrustedOrigins []string

	// SessionIdle ends a session not used for this long; 30 minutes.
	SessionIdle time.Duration
	// SessionMax ends a session this long after sign-in, however much it
	// is used; 12 hours.
	SessionMax time.Duration
	// SignInRate and SignInBurst limit sign-in attempts from one address
	// (per second, and at once); 10 a minute, 5 at once. All addresses
	// together get ten times as many.
	SignInRate  rate.Limit
	SignInBurst int
	// StaleAfter is the age past which a data set is shown as stale;
	// 14 days.
	StaleAfter time.Duration
	// Now is the clock; nil: time.Now.
	Now func() time.Time
}

// handler serves the page.
type handler struct {
	cfg     Config
	log     *slog.Logger
	now     func() time.Time
	tokens  []namedToken
	pages   map[string]*template.Template
	static  fs.FS
	limiter *limiter
	mux     *http.ServeMux
}

type namedToken struct {
	name  string
	token []byte
}

//go:embed templates static
var files embed.FS

// New returns the page's handler, for everything under Prefix.
func New(cfg Config) (http.Handler, error) {
	switch {
	case cfg.Overrides == nil:
		return nil, errors.New("web: no overrides service")
	case cfg.Engine == nil:
		return nil, errors.New("web: no engine")
	case cfg.Sessions == nil:
		return nil, errors.New("web: no session store: the admin page keeps its sessions in the store")
	case len(cfg.Tokens) == 0:
		return nil, errors.New("web: no admin token to sign in with")
	}
	h := &handler{cfg: cfg, log: cfg.Logger, now: cfg.Now}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.now == nil {
		h.now = time.Now
	}
	h.cfg.SessionIdle = cmp.Or(cfg.SessionIdle, 30*time.Minute)
	h.cfg.SessionMax = cmp.Or(cfg.SessionMax, 12*time.Hour)
	h.cfg.SignInRate = cmp.Or(cfg.SignInRate, rate.Every(6*time.Second))
	h.cfg.SignInBurst = cmp.Or(cfg.SignInBurst, 5)
	h.cfg.StaleAfter = cmp.Or(cfg.StaleAfter, 14*24*time.Hour)
	if h.cfg.SessionIdle > h.cfg.SessionMax {
		return nil, fmt.Errorf("web: session idle timeout %v is longer than the session's maximum %v", h.cfg.SessionIdle, h.cfg.SessionMax)
	}
	for _, name := range slices.Sorted(maps.Keys(cfg.Tokens)) {
		if len(cfg.Tokens[name]) < 16 {
			return nil, fmt.Errorf("web: admin token %q: shorter than 16 characters", name)
		}
		h.tokens = append(h.tokens, namedToken{name, []byte(cfg.Tokens[name])})
	}
	var err error
	if h.pages, err = parsePages(); err != nil {
		return nil, err
	}
	if h.static, err = fs.Sub(files, "static"); err != nil {
		return nil, err
	}
	h.limiter = newLimiter(h.cfg.SignInRate, h.cfg.SignInBurst)
	cop := http.NewCrossOriginProtection()
	for _, o := range cfg.TrustedOrigins {
		if err := cop.AddTrustedOrigin(o); err != nil {
			return nil, fmt.Errorf("web: trusted origin: %w", err)
		}
	}
	cop.SetDenyHandler(http.HandlerFunc(h.crossOrigin))
	h.routes()
	return h.headers(cop.Handler(h.mux)), nil
}
