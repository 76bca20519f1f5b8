package health

import (
	"context"
	"encoding/json"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
)

// TestStateMachine drives one registry's state with results alone, no
// network: what each result does to up, confirmed, and the pace of the
// next probe.
func TestStateMachine(t *testing.T) {
	t.Parallel()
	type step struct {
		result string // S success, F failure, T throttled
		up     bool
		conf   bool
		fast   bool // the next probe comes at FastInterval
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"first success confirms", []step{{"S", true, true, false}}},
		{"failures from the start take fall", []step{
			{"F", true, false, true}, {"F", true, false, true}, {"F", false, true, false},
		}},
		{"one failure changes nothing", []step{
			{"S", true, true, false}, {"F", true, true, true}, {"S", true, true, false},
			{"F", true, true, true}, {"F", true, true, true}, {"S", true, true, false},
		}},
		{"rise successes bring it back", []step{
			{"F", true, false, true}, {"F", true, false, true}, {"F", false, true, false},
			{"S", false, true, true}, {"F", false, true, false}, {"S", false, true, true}, {"S", true, true, false},
		}},
		// Throttled also slows the next probe to the interval: the
		// registry asked for fewer.
		{"throttled neither counts nor breaks a run", []step{
			{"S", true, true, false}, {"F", true, true, true}, {"T", true, true, false},
			{"F", true, true, true}, {"T", true, true, false}, {"F", false, true, false},
			{"T", false, true, false}, {"S", false, true, true}, {"T", false, true, false}, {"S", true, true, false},
		}},
		{"throttled first confirms nothing", []step{{"T", true, false, false}, {"T", true, false, false}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := fast()
			s.Interval = time.Hour
			s.FastInterval = time.Minute
			c, err := New(Config{Targets: []Target{{Name: "a", URL: "http://registry.invalid", Settings: s}}, minInterval: time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			tg := c.targets[0]
			for i, st := range tt.steps {
				var o outcome
				switch st.result {
				case "S":
					o.OK = true
				case "F":
					o.Class = ClassStatus
				case "T":
					o.Class = ClassThrottled
				}
				o.At = time.Now()
				delay := c.record(tg, o)
				r := c.Status().Registries[0]
				if r.Up != st.up || r.Confirmed != st.conf || (delay < 2*time.Minute) != st.fast {
					t.Fatalf("after step %d (%s): up %v confirmed %v next in %v; want up %v confirmed %v fast %v",
						i+1, st.result, r.Up, r.Confirmed, delay, st.up, st.conf, st.fast)
				}
			}
		})
	}
}

// TestPanicThreshold: panic when fewer than the threshold's share of the
// probed registries are up; disabled registries count in neither share.
func TestPanicThreshold(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		threshold float64
		probed    int
		down      int
		disabled  int
		want      bool
	}{
		{"default, half up", 0, 4, 2, 0, false},
		{"default, one of four up", 0, 4, 3, 0, true},
		{"default, the only one down", 0, 1, 1, 0, true},
		{"default, disabled ones do not count", 0, 2, 1, 5, false},
		{"default, disabled ones do not count either way", 0, 3, 2, 5, true},
		{"0.25, one of four up", 0.25, 4, 3, 0, false},
		{"1, one of four down", 1, 4, 1, 0, true},
		{"off, all down", PanicOff, 3, 3, 0, false},
		{"nothing probed", 0, 0, 0, 3, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := Config{PanicThreshold: tt.threshold, minInterval: time.Millisecond}
			for i := range tt.probed + tt.disabled {
				s := fast()
				s.Disabled = i >= tt.probed
				cfg.Targets = append(cfg.Targets, Target{Name: string(rune('a' + i)), URL: "http://registry.invalid", Settings: s})
			}
			c, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			for _, tg := range c.targets[:tt.down] {
				for range tg.settings.Fall {
					c.record(tg, outcome{Result: Result{At: time.Now(), Class: ClassConnect}})
				}
			}
			s := c.Status()
			down, inPanic := c.Down()
			if s.Panic != tt.want || inPanic != tt.want || len(down) != tt.down || s.Up != tt.probed-tt.down || s.Probed != tt.probed {
				t.Fatalf("panic %v (Down: %v), down %v, up %d/%d; want panic %v, %d down of %d",
					s.Panic, inPanic, down, s.Up, s.Probed, tt.want, tt.down, tt.probed)
			}
		})
	}
}

// TestPanicBehindDeadProxy: most registries fail because the way to
// them is broken (a proxy that is not there), so health must not count:
// Status, Down, the log, the metric and OnChange all say panic, and the
// failures say proxy. When the proxy is back, so is everything.
func TestPanicBehindDeadProxy(t *testing.T) {
	t.Parallel()
	fakes := map[string]*fake{}
	var targets []Target
	for _, name := range []string{"direct", "b", "c", "d", "disabled"} {
		f := newFake(t)
		fakes[name] = f
		s := fast()
		s.Disabled = name == "disabled"
		targets = append(targets, Target{Name: name, URL: f.srv.URL, Settings: s})
	}
	deadProxy := &url.URL{Scheme: "http", Host: closedAddr(t)}
	var broken atomic.Bool
	broken.Store(true)
	directHost := strings.TrimPrefix(fakes["direct"].srv.URL, "http://")

	var logs lockedBuffer
	promReg := prometheus.NewRegistry()
	changes := make(chan struct{}, 100)
	c := start(t, Config{
		Targets: targets,
		Proxy: func(r *http.Request) (*url.URL, error) {
			if broken.Load() && r.URL.Host != directHost {
				return deadProxy, nil
			}
			return nil, nil
		},
		Logger:     slogJSON(&logs),
		Registerer: promReg,
		OnChange: func() {
			select {
			case changes <- struct{}{}:
			default:
			}
		},
	})

	st := waitFor(t, c, "in panic", func(s Status) bool { return s.Panic })
	if st.Up != 1 || st.Probed != 4 || st.PanicSince.IsZero() {
		t.Errorf("panic with %d of %d up since %v; want 1 of 4 and a time", st.Up, st.Probed, st.PanicSince)
	}
	for _, name := range []string{"b", "c", "d"} {
		if r := reg(t, st, name); r.Up || r.ErrorClass != ClassProxy || !strings.Contains(r.LastError, "proxy "+deadProxy.String()) {
			t.Errorf("%s: want down with class proxy naming the proxy:\n%s", name, dump(st))
		}
	}
	if r := reg(t, st, "disabled"); !r.Up || r.Probed || r.Confirmed || len(r.Results) != 0 || len(fakes["disabled"].log()) != 0 {
		t.Errorf("a disabled registry was probed or is not up:\n%s", dump(st))
	}
	down, inPanic := c.Down()
	if !inPanic || len(down) != 3 || !down["b"] || !down["c"] || !down["d"] {
		t.Errorf("Down() = %v, %v; want b, c, d and panic", down, inPanic)
	}
	if got := testutil.ToFloat64(c.m.panic); got != 1 {
		t.Errorf("reghost_health_panic = %v, want 1", got)
	}
	select {
	case <-changes:
	case <-time.After(waitTimeout):
		t.Fatal("OnChange was not called")
	}

	broken.Store(false)
	st = waitFor(t, c, "out of panic, all up", func(s Status) bool { return !s.Panic && s.Up == 4 })
	if down, inPanic := c.Down(); inPanic || len(down) != 0 {
		t.Errorf("Down() = %v, %v after recovery; want none, no panic", down, inPanic)
	}
	if got := testutil.ToFloat64(c.m.panic); got != 0 {
		t.Errorf("reghost_health_panic = %v after recovery, want 0", got)
	}
	lines := logs.records(t)
	if n := count(lines, "health panic: routing ignores registry health"); n != 1 {
		t.Errorf("entering panic logged %d times, want once:\n%s", n, logs.String())
	}
	if n := count(lines, "health panic over: routing uses registry health again"); n != 1 {
		t.Errorf("leaving panic logged %d times, want once:\n%s", n, logs.String())
	}
}

// TestTransitionsLoggedAndCounted: each change is logged once, with
// registry, from, to and reason, and counted; errors are counted by
// class; no label carries an address.
func TestTransitionsLoggedAndCounted(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	f.then(status(200), status(500), status(500), status(500), status(200))
	var logs lockedBuffer
	promReg := prometheus.NewRegistry()
	c := start(t, Config{
		Targets:        []Target{{Name: "a", URL: f.srv.URL, Settings: fast()}},
		Logger:         slogJSON(&logs),
		Registerer:     promReg,
		PanicThreshold: PanicOff,
	})
	waitFor(t, c, "down and up", func(s Status) bool { return reg(t, s, "a").Transitions == 2 })
	// A change that Status shows has been logged.
	lines := logs.records(t)
	want := map[string]map[string]any{
		"registry down": {"level": "WARN", "registry": "a", "from": "up", "to": "down", "class": "status"},
		"registry up":   {"level": "INFO", "registry": "a", "from": "down", "to": "up"},
	}
	for msg, fields := range want {
		if n := count(lines, msg); n != 1 {
			t.Errorf("%q logged %d times, want once:\n%s", msg, n, logs.String())
			continue
		}
		for _, l := range lines {
			if l["msg"] != msg {
				continue
			}
			for k, v := range fields {
				if l[k] != v {
					t.Errorf("%q: %s = %v, want %v", msg, k, l[k], v)
				}
			}
			if r, _ := l["reason"].(string); r == "" {
				t.Errorf("%q has no reason", msg)
			}
		}
	}
	for _, l := range lines {
		if l["msg"] == "registry down" && !strings.Contains(l["reason"].(string), "500") {
			t.Errorf("the down reason does not say what failed: %v", l["reason"])
		}
	}

	for _, m := range []struct {
		c    prometheus.Collector
		want float64
	}{
		{c.m.up.WithLabelValues("a"), 1},
		{c.m.transitions.WithLabelValues("a", "down"), 1},
		{c.m.transitions.WithLabelValues("a", "up"), 1},
		{c.m.errors.WithLabelValues("a", "status"), 3},
		{c.m.panic, 0},
	} {
		if got := testutil.ToFloat64(m.c); got != m.want {
			t.Errorf("%v = %v, want %v", m.c, got, m.want)
		}
	}
	if n, err := testutil.GatherAndCount(promReg, "reghost_registry_probe_duration_seconds"); err != nil || n != 1 {
		t.Errorf("probe duration series: %d (%v), want 1", n, err)
	}
	families, err := promReg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range families {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if strings.Contains(l.GetValue(), "127.0.0.1") {
					t.Errorf("%s has an address as a label: %s=%s", mf.GetName(), l.GetName(), l.GetValue())
				}
			}
		}
	}

	// A checker built again on the same registerer (a config reload)
	// takes the collectors over instead of failing.
	if _, err := New(Config{Targets: []Target{{Name: "a", URL: f.srv.URL}}, Registerer: promReg}); err != nil {
		t.Errorf("a second checker on the same registerer: %v", err)
	}
}

// TestRunStopsCleanly: cancelling Run's context stops it, even with a
// probe in flight, whose result is dropped rather than counted as a
// failure, and leaves no goroutine behind.
func TestRunStopsCleanly(t *testing.T) {
	// Not parallel: goleak compares with the goroutines there were
	// before, which other tests' would muddle.
	before := goleak.IgnoreCurrent()

	healthy := newFakeNoCleanup()
	stuck := newFakeNoCleanup()
	stuck.always(hang)
	slow := fast()
	slow.Interval, slow.Timeout = 5*time.Second, 5*time.Second

	c, err := New(Config{
		Targets: []Target{
			{Name: "healthy", URL: healthy.srv.URL, Settings: fast()},
			{Name: "stuck", URL: stuck.srv.URL, Settings: slow},
			{Name: "behind dead proxy", URL: "https://registry.invalid", Settings: fast()},
		},
		Proxy: func(r *http.Request) (*url.URL, error) {
			if r.URL.Host == "registry.invalid" {
				return &url.URL{Scheme: "http", Host: closedAddr(t)}, nil
			}
			return nil, nil
		},
		OnChange:    func() {},
		minInterval: time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(ctx)
	}()
	waitFor(t, c, "probing", func(s Status) bool {
		return len(reg(t, s, "healthy").Results) >= 2 && len(stuck.log()) == 1 && !reg(t, s, "behind dead proxy").Up
	})
	cancel()
	select {
	case <-done:
	case <-time.After(waitTimeout):
		t.Fatalf("Run did not return within %v of its context being cancelled", waitTimeout)
	}
	if r := reg(t, c.Status(), "stuck"); len(r.Results) != 0 || !r.Up {
		t.Errorf("the probe cut short by shutdown was counted:\n%s", dump(c.Status()))
	}
	healthy.srv.Close()
	stuck.srv.Close()
	goleak.VerifyNone(t, before)

	defer func() {
		if recover() == nil {
			t.Error("a second Run did not panic")
		}
	}()
	c.Run(ctx)
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	ok := Target{Name: "a", URL: "https://registry.example/k8s/images"}
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no name", Config{Targets: []Target{{URL: ok.URL}}}, "health: target 0: no name"},
		{"twice", Config{Targets: []Target{ok, ok}}, "health: registry a: listed twice"},
		{"scheme", Config{Targets: []Target{{Name: "a", URL: "ftp://registry.example"}}}, `health: registry a: url: must be http:// or https:// with a host, got "ftp://registry.example"`},
		{"no host", Config{Targets: []Target{{Name: "a", URL: "https:///v2/"}}}, `health: registry a: url: must be http:// or https:// with a host, got "https:///v2/"`},
		{"credentials", Config{Targets: []Target{{Name: "a", URL: "https://u:p@registry.example"}}}, "health: registry a: url: must not carry credentials"},
		{"settings", Config{Targets: []Target{{Name: "a", URL: ok.URL, Settings: Settings{Fall: -1, Timeout: time.Minute}}}},
			"health: registry a: timeout: must not be longer than interval (10s), got 1m0s\nfall: must be at least 1, got -1"},
		{"threshold above 1", Config{PanicThreshold: 1.5}, "health: panic_threshold: must be a share between 0 and 1, got 1.5"},
		{"threshold NaN", Config{PanicThreshold: math.NaN()}, "health: panic_threshold: must be a share between 0 and 1, got NaN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := New(tt.cfg)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("New: %v\nwant: %s", err, tt.want)
			}
		})
	}
	if _, err := New(Config{Targets: []Target{ok}}); err != nil {
		t.Errorf("New with defaults: %v", err)
	}
}

// newFakeNoCleanup is a healthy fake that the test closes itself.
func newFakeNoCleanup() *fake {
	f := &fake{def: status(http.StatusOK)}
	f.srv = httptest.NewServer(f)
	return f
}

// lockedBuffer collects log output written from the checker's
// goroutines while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func (b *lockedBuffer) records(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.Lines(b.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func count(records []map[string]any, msg string) int {
	n := 0
	for _, r := range records {
		if r["msg"] == msg {
			n++
		}
	}
	return n
}

func slogJSON(b *lockedBuffer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
