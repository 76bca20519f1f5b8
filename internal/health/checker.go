package health

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// HistoryLen is how many recent results Status keeps per registry.
const HistoryLen = 20

// PanicOff, as Config.PanicThreshold, turns panic mode off: health then
// counts in routing however many registries are down.
const PanicOff = -1.0

// Target is one registry to check.
type Target struct {
	Name string
	// URL is the registry's base URL as configured,
	// scheme://host[:port][/repository/prefix]; probes go to
	// scheme://host[:port] + Settings.Path.
	URL string
	// Settings: zero fields take DefaultSettings()'s.
	Settings Settings
}

// Config is what New needs.
type Config struct {
	Targets []Target

	// PanicThreshold: when fewer than this share of the probed
	// registries (Disabled ones left out) are up, Status reports Panic
	// and routing should ignore health, because so many registries
	// failing at once is more likely a fault on this side (egress, DNS,
	// proxy, CA bundle) than theirs. 0 takes DefaultPanicThreshold;
	// PanicOff turns it off; at most 1.
	PanicThreshold float64

	// Version goes into the User-Agent: reghost-healthcheck/<Version>.
	Version string

	// RootCAs verify registries' certificates; nil: the system's.
	RootCAs *x509.CertPool

	// Proxy chooses a proxy per probe; nil: http.ProxyFromEnvironment
	// (HTTPS_PROXY, HTTP_PROXY, NO_PROXY), as the registry's clients
	// would likely be configured.
	Proxy func(*http.Request) (*url.URL, error)

	Logger     *slog.Logger          // nil: discard
	Registerer prometheus.Registerer // nil: no metrics registered

	// OnChange is called after a registry goes up or down, or the panic
	// state changes; the caller then reads Status or Down. Calls come
	// from one goroutine that Run owns, one at a time, and several
	// changes in quick succession may be reported by one call. Probes
	// do not wait for it, but a slow OnChange delays the next call.
	OnChange func()

	// minInterval lowers MinInterval, and resolver replaces the
	// system's, for the package's tests.
	minInterval time.Duration
	resolver    *net.Resolver
}

// Checker probes registries and keeps their state. Its methods are safe
// for concurrent use.
type Checker struct {
	log       *slog.Logger
	m         *metrics
	threshold float64 // < 0: no panic mode
	onChange  func()
	targets   []*target
	changed   chan struct{} // wakes the OnChange goroutine; holds at most one
	running   atomic.Bool
	view      atomic.Pointer[view]

	mu         sync.Mutex // guards the fields below and every target's state
	panic      bool
	panicSince time.Time
}

// view is the state routing needs, rebuilt whole at each change so that
// Down is one atomic load.
type view struct {
	down  map[string]bool
	panic bool
}

// target is one registry and its state; the state is guarded by
// Checker.mu and written only by the registry's own probe loop.
type target struct {
	name     string
	settings Settings
	prober   *prober // nil when disabled

	up, confirmed       bool
	since               time.Time
	successes, failures int // in a row, counted only while they disagree with up
	transitions         int
	last, lastFailure   Result
	history             [HistoryLen]Result
	n                   int // results recorded, ever
}

// New validates cfg and prepares a checker; nothing is probed until Run.
func New(cfg Config) (*Checker, error) {
	floor := MinInterval
	if cfg.minInterval > 0 {
		floor = cfg.minInterval
	}
	th := cfg.PanicThreshold
	switch {
	case math.IsNaN(th) || th > 1:
		return nil, fmt.Errorf("health: panic_threshold: must be a share between 0 and 1, got %v", th)
	case th == 0:
		th = DefaultPanicThreshold
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	c := &Checker{
		log:       log,
		m:         m,
		threshold: th,
		onChange:  cfg.OnChange,
		changed:   make(chan struct{}, 1),
	}
	now := time.Now()
	seen := make(map[string]bool, len(cfg.Targets))
	for i, t := range cfg.Targets {
		if t.Name == "" {
			return nil, fmt.Errorf("health: target %d: no name", i)
		}
		if seen[t.Name] {
			return nil, fmt.Errorf("health: registry %s: listed twice", t.Name)
		}
		seen[t.Name] = true
		s := t.Settings.WithDefaults(DefaultSettings())
		if err := s.validate(floor); err != nil {
			return nil, fmt.Errorf("health: registry %s: %w", t.Name, err)
		}
		p, err := newProber(t, s, &cfg)
		if err != nil {
			return nil, fmt.Errorf("health: %w", err)
		}
		if s.Disabled {
			p = nil
		}
		c.targets = append(c.targets, &target{name: t.Name, settings: s, prober: p, up: true, since: now})
		m.target(t.Name, true)
	}
	m.setPanic(false)
	c.view.Store(&view{down: map[string]bool{}})
	return c, nil
}

// Run probes every enabled registry until ctx is done, then returns once
// every goroutine it started has stopped. It may be called once.
func (c *Checker) Run(ctx context.Context) {
	if !c.running.CompareAndSwap(false, true) {
		panic("health: Checker.Run called twice")
	}
	var wg sync.WaitGroup
	if c.onChange != nil {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-c.changed:
					c.onChange()
				}
			}
		})
	}
	for _, t := range c.targets {
		if t.prober != nil {
			wg.Go(func() { c.loop(ctx, t) })
		}
	}
	wg.Wait()
	for _, t := range c.targets {
		if t.prober != nil {
			t.prober.transport.CloseIdleConnections()
		}
	}
}

// loop probes one registry, one probe at a time: the first at once, so
// that a healthy registry is confirmed within a round trip of start.
func (c *Checker) loop(ctx context.Context, t *target) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		o := t.prober.probe(ctx)
		if ctx.Err() != nil {
			return // cut short by shutdown: says nothing about the registry
		}
		timer.Reset(c.record(t, o))
	}
}

// change is what a result changed, for the log.
type change struct {
	registry, to string
	result       Result
	panic        *bool // the new panic state, when it changed
	up, probed   int
}

// record applies one probe's outcome and returns how long to wait for
// the next probe.
func (c *Checker) record(t *target, o outcome) time.Duration {
	c.m.duration.WithLabelValues(t.name).Observe(o.Latency.Seconds())
	if !o.OK {
		c.m.errors.WithLabelValues(t.name, o.Class).Inc()
	}

	c.mu.Lock()
	t.history[t.n%HistoryLen] = o.Result
	t.n++
	t.last = o.Result
	var ch change
	switch {
	case o.Class == ClassThrottled:
		// Throttled is no answer about the registry's health: the counts
		// in progress go on after it as if it had not happened.
	case o.OK:
		t.failures = 0
		if t.up {
			if !t.confirmed {
				c.log.Debug("registry confirmed up", "registry", t.name, "latency", o.Latency, "addr", o.Addr)
			}
			t.confirmed = true
			break
		}
		t.successes++
		if t.successes >= t.settings.Rise {
			c.transition(t, true, o.Result, &ch)
		}
	default:
		t.lastFailure = o.Result
		t.successes = 0
		if !t.up {
			break
		}
		t.failures++
		if t.failures >= t.settings.Fall {
			c.transition(t, false, o.Result, &ch)
		}
	}
	fast := t.successes > 0 || t.failures > 0
	if ch.registry != "" {
		// Under the lock, so that the log tells the changes of several
		// registries (and of panic) in the order they were made, and a
		// change seen in Status has been logged.
		c.logChange(t, ch)
	}
	c.mu.Unlock()

	if ch.registry != "" {
		select {
		case c.changed <- struct{}{}:
		default: // a call is already due; it will read this change too
		}
	}

	s := t.settings
	switch {
	case o.Class == ClassThrottled:
		// Being throttled is a request to probe less: never faster than
		// the interval, and not before the registry asked.
		return max(jitter(s.Interval), o.retryAfter)
	case fast:
		return jitter(s.FastInterval)
	default:
		return jitter(s.Interval)
	}
}

// transition changes t's state, the metrics and the panic state, and
// fills ch for logging. c.mu is held.
func (c *Checker) transition(t *target, up bool, r Result, ch *change) {
	t.up, t.confirmed, t.since = up, true, r.At
	t.successes, t.failures = 0, 0
	t.transitions++
	to := "down"
	if up {
		to = "up"
	}
	c.m.setUp(t.name, up)
	c.m.transitions.WithLabelValues(t.name, to).Inc()
	*ch = change{registry: t.name, to: to, result: r}

	upN, probed := c.counts()
	inPanic := c.threshold > 0 && probed > 0 && float64(upN) < c.threshold*float64(probed)
	if inPanic != c.panic {
		c.panic, c.panicSince = inPanic, r.At
		c.m.setPanic(inPanic)
		ch.panic, ch.up, ch.probed = &inPanic, upN, probed
	}
	down := make(map[string]bool)
	for _, t := range c.targets {
		if !t.up {
			down[t.name] = true
		}
	}
	c.view.Store(&view{down: down, panic: c.panic})
}

// counts returns how many probed registries are up, and how many are
// probed. c.mu is held.
func (c *Checker) counts() (up, probed int) {
	for _, t := range c.targets {
		if t.prober == nil {
			continue
		}
		probed++
		if t.up {
			up++
		}
	}
	return up, probed
}

func (c *Checker) logChange(t *target, ch change) {
	s := t.settings
	if ch.to == "down" {
		c.log.Warn("registry down", "registry", ch.registry, "from", "up", "to", "down",
			"reason", fmt.Sprintf("%d failed probes in a row, the last: %s", s.Fall, ch.result.Err),
			"class", ch.result.Class, "addr", ch.result.Addr)
	} else {
		c.log.Info("registry up", "registry", ch.registry, "from", "down", "to", "up",
			"reason", fmt.Sprintf("%d successful probes in a row", s.Rise),
			"latency", ch.result.Latency, "addr", ch.result.Addr)
	}
	switch {
	case ch.panic == nil:
	case *ch.panic:
		c.log.Warn("health panic: routing ignores registry health", "up", ch.up, "probed", ch.probed,
			"threshold", c.threshold,
			"reason", fmt.Sprintf("only %d of %d probed registries are up, below the panic threshold: the fault is more likely on this side (egress, DNS, proxy, CA bundle)", ch.up, ch.probed))
	default:
		c.log.Info("health panic over: routing uses registry health again", "up", ch.up, "probed", ch.probed,
			"threshold", c.threshold)
	}
}

// jitter spreads d by ±10%, so that replicas started together, or
// registries that failed together, are not probed in lockstep.
func jitter(d time.Duration) time.Duration {
	return d + time.Duration((rand.Float64()*0.2-0.1)*float64(d))
}

// Down returns the registries that are down and whether health is in
// panic (and so should be ignored). Both come from one consistent view,
// at the cost of an atomic load; the map is shared and must not be
// modified.
func (c *Checker) Down() (down map[string]bool, inPanic bool) {
	v := c.view.Load()
	return v.down, v.panic
}

// Result is one probe's result.
type Result struct {
	At      time.Time
	OK      bool
	Status  int // the HTTP status; 0 when there was no answer
	Latency time.Duration
	Class   string         // "" when OK; ClassThrottled for a 429, which is neither OK nor a failure
	Err     string         // why it failed, for people
	Addr    netip.AddrPort // the address connected to, or last tried (a proxy's, through one); zero if none
}

// Status is a copy of every registry's state.
type Status struct {
	// Panic: fewer than the threshold's share of probed registries are
	// up, so routing should ignore health. PanicSince is when Panic last
	// changed (zero if never).
	Panic      bool
	PanicSince time.Time
	// Up of Probed registries are up; disabled ones are in neither.
	Up, Probed int
	Registries []RegistryStatus // in the order of Config.Targets
}

// RegistryStatus is one registry's state.
type RegistryStatus struct {
	Name string
	// Probed is false when health checks are disabled: the registry then
	// is always Up and never Confirmed.
	Probed bool
	Up     bool
	// Since is when Up last changed, or when the checker was made.
	Since time.Time
	// Confirmed: a probe has agreed with Up. At start every registry is
	// up unconfirmed; the first success confirms it.
	Confirmed   bool
	Transitions int // changes of Up since start

	LastProbe   time.Time      // zero before the first result
	LastLatency time.Duration  // the last probe's
	LastAddr    netip.AddrPort // the last probe's
	// The last failure (kept after recovery, to see what happened):
	LastError   string
	ErrorClass  string
	LastErrorAt time.Time

	Results []Result // the last HistoryLen results, oldest first
}

// Status returns a copy of the state of every registry and of the panic.
func (c *Checker) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := Status{Panic: c.panic, PanicSince: c.panicSince}
	s.Up, s.Probed = c.counts()
	s.Registries = make([]RegistryStatus, len(c.targets))
	for i, t := range c.targets {
		r := RegistryStatus{
			Name:        t.name,
			Probed:      t.prober != nil,
			Up:          t.up,
			Since:       t.since,
			Confirmed:   t.confirmed,
			Transitions: t.transitions,
			LastProbe:   t.last.At,
			LastLatency: t.last.Latency,
			LastAddr:    t.last.Addr,
			LastError:   t.lastFailure.Err,
			ErrorClass:  t.lastFailure.Class,
			LastErrorAt: t.lastFailure.At,
		}
		n := min(t.n, HistoryLen)
		r.Results = make([]Result, n)
		for j := range n {
			r.Results[j] = t.history[(t.n-n+j)%HistoryLen]
		}
		s.Registries[i] = r
	}
	return s
}
