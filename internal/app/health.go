package app

import (
	"context"
	"sync"
	"time"

	"github.com/reghost/reghost/internal/config"
	"github.com/reghost/reghost/internal/health"
	"github.com/reghost/reghost/internal/httpapi"
	"github.com/reghost/reghost/internal/policy"
	"github.com/reghost/reghost/web"
)

// prober runs the health checker of the registries the config names,
// and hands what it finds to the engine, which compiles it into its next
// snapshot. A config reload that changes the registries or their probes
// replaces the checker.
type prober struct {
	a *App

	mu      sync.Mutex
	checker *health.Checker
	stop    context.CancelFunc // the running checker's; nil when not running
	done    chan struct{}
	serving context.Context // Serve's, once it runs; new checkers run under it
}

// newChecker builds a checker for cfg's registries.
func (p *prober) newChecker(cfg *config.Config) (*health.Checker, error) {
	var c *health.Checker
	c, err := health.New(health.Config{
		Targets:        cfg.HealthTargets(),
		PanicThreshold: cfg.PanicThreshold(),
		Version:        buildVersion(),
		RootCAs:        p.a.opts.HealthRootCAs,
		Proxy:          p.a.opts.HealthProxy,
		Logger:         p.a.log,
		Registerer:     p.a.metrics.Registry(),
		OnChange: func() {
			down, panic := c.Down()
			p.a.engine.SetHealth(policy.Health{Down: down, Panic: panic})
		},
	})
	return c, err
}

// set makes c the checker, stopping the one before; c runs at once if
// the server is serving.
func (p *prober) set(c *health.Checker) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stop != nil {
		p.stop()
		<-p.done
		p.stop = nil
	}
	p.checker = c
	// What the old checker found does not hold for the new registries:
	// every registry counts as up until probed.
	p.a.engine.SetHealth(policy.Health{})
	if p.serving != nil {
		p.start()
	}
}

// run starts the checker under ctx and stops it when ctx ends.
func (p *prober) run(ctx context.Context) {
	p.mu.Lock()
	p.serving = ctx
	p.start()
	p.mu.Unlock()
	<-ctx.Done()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stop != nil {
		p.stop()
		<-p.done
		p.stop = nil
	}
}

// start runs the checker. Callers hold mu.
func (p *prober) start() {
	ctx, cancel := context.WithCancel(p.serving)
	done := make(chan struct{})
	c := p.checker
	go func() {
		defer close(done)
		c.Run(ctx)
	}()
	p.stop, p.done = cancel, done
}

func (p *prober) status() health.Status {
	p.mu.Lock()
	c := p.checker
	p.mu.Unlock()
	return c.Status()
}

// registry is what the checker says of one registry, as the admin API
// shows it; nil when it is not probed.
func (p *prober) registry(name string) any {
	for _, r := range p.status().Registries {
		if r.Name == name && r.Probed {
			return registryHealthView(r)
		}
	}
	return nil
}

// registryHealth is what the checker says of one registry, for the admin
// page.
func (p *prober) registryHealth(name string) (web.RegistryHealth, bool) {
	for _, r := range p.status().Registries {
		if r.Name != name {
			continue
		}
		h := web.RegistryHealth{Probed: r.Probed, Up: r.Up, Since: r.Since, LastProbe: r.LastProbe, Latency: r.LastLatency,
			LastError: r.LastError, ErrorClass: r.ErrorClass, LastErrorAt: r.LastErrorAt}
		for _, res := range r.Results {
			h.Results = append(h.Results, web.ProbeResult{At: res.At, OK: res.OK, Latency: res.Latency, Class: res.Class})
		}
		return h, true
	}
	return web.RegistryHealth{}, false
}

// healthView is a registry's health checks in the admin API.
type healthView struct {
	Up          bool          `json:"up"`
	Since       time.Time     `json:"since,omitzero"`
	Confirmed   bool          `json:"confirmed"`
	LastProbe   time.Time     `json:"last_probe,omitzero"`
	LatencyMS   float64       `json:"latency_ms"`
	Address     string        `json:"address,omitempty"`
	LastError   string        `json:"last_error,omitempty"`
	ErrorClass  string        `json:"error_class,omitempty"`
	LastErrorAt time.Time     `json:"last_error_at,omitzero"`
	Transitions int           `json:"transitions"`
	Results     []resultsView `json:"results"`
}

type resultsView struct {
	At        time.Time `json:"at"`
	OK        bool      `json:"ok"`
	Status    int       `json:"status,omitempty"`
	LatencyMS float64   `json:"latency_ms"`
	Class     string    `json:"class,omitempty"`
	Error     string    `json:"error,omitempty"`
}

func registryHealthView(r health.RegistryStatus) healthView {
	v := healthView{Up: r.Up, Since: r.Since, Confirmed: r.Confirmed, LastProbe: r.LastProbe,
		LatencyMS: ms(r.LastLatency), LastError: r.LastError, ErrorClass: r.ErrorClass, LastErrorAt: r.LastErrorAt,
		Transitions: r.Transitions, Results: []resultsView{}}
	if r.LastAddr.IsValid() {
		v.Address = r.LastAddr.String()
	}
	for _, res := range r.Results {
		v.Results = append(v.Results, resultsView{At: res.At, OK: res.OK, Status: res.Status, LatencyMS: ms(res.Latency), Class: res.Class, Error: res.Err})
	}
	return v
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// buildVersion is the server's version, for the probes' User-Agent.
func buildVersion() string {
	v, _ := httpapi.BuildVersion()
	return v
}
