package app

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reghost/reghost/internal/config"
)

// fakeRegistry answers the API root, or 500 while failing.
type fakeRegistry struct {
	*httptest.Server
	failing atomic.Bool
}

func newFakeRegistry(t *testing.T) *fakeRegistry {
	t.Helper()
	r := &fakeRegistry{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if r.failing.Load() {
			http.Error(w, "failing on purpose", http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(r.Close)
	return r
}

// probeConfig is a server whose registries are regs by name (the first
// the default), probed every 100 ms, down after 2 failures, back after 2
// successes.
func probeApp(t *testing.T, regs map[string]*fakeRegistry, order []string, rules string, opts Options) *App {
	t.Helper()
	var b strings.Builder
	for i, name := range order {
		fmt.Fprintf(&b, "  - {name: %s, url: %q, default: %v}\n", name, regs[name].URL, i == 0)
	}
	cfg, err := config.Parse(fmt.Appendf(nil, `
listen: "127.0.0.1:0"
admin_listen: "127.0.0.1:0"
data_dir: %s
registries:
%srules:
%shealth_defaults: {interval: 100ms, fast_interval: 100ms, timeout: 100ms, rise: 2, fall: 2}
`, t.TempDir(), b.String(), rules), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if opts.Getenv == nil {
		opts.Getenv = func(string) string { return "" }
	}
	a, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Listen(); err != nil {
		t.Fatal(err)
	}
	serve(t, a)
	return a
}

// route asks all three public doors where ip goes: GET / (the host),
// /decide, and direct mode (the Location's host); they must agree.
func route(t *testing.T, a *App, ip string) string {
	t.Helper()
	host, direct := routes(t, a, ip)
	if direct != host {
		t.Fatalf("%s: GET / says %s, direct mode redirects to %s", ip, host, direct)
	}
	return host
}

// routes returns the host GET / and /decide name for ip, and the host
// direct mode redirects it to. They are two requests, so while health
// changes they may differ.
func routes(t *testing.T, a *App, ip string) (host, direct string) {
	t.Helper()
	host = hostFor(t, a, ip)
	req, _ := http.NewRequest("GET", "http://"+a.PublicAddr()+"/v2/pause/manifests/3.9", nil)
	req.Header.Set("X-Real-IP", ip)
	resp, err := noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatalf("%s: direct mode redirects to %q: %v", ip, resp.Header.Get("Location"), err)
	}
	return host, loc.Host
}

var noFollow = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// waitRoute waits up to limit for ip to go to want's host.
func waitRoute(t *testing.T, a *App, what, ip string, want *fakeRegistry, limit time.Duration) time.Duration {
	t.Helper()
	host := strings.TrimPrefix(want.URL, "http://")
	start := time.Now()
	for {
		got, direct := routes(t, a, ip)
		if got == host && direct == host {
			break
		}
		if time.Since(start) > limit {
			t.Fatalf("%s: %s still goes to %s (direct mode %s) after %v, want %s", what, ip, got, direct, limit, host)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// A registry that fails its probes stops receiving clients within
// fall × fast_interval plus a timeout, and gets them back once it
// recovers: on GET /, /decide and in direct mode alike.
func TestHealthMovesTraffic(t *testing.T) {
	t.Parallel()
	regs := map[string]*fakeRegistry{"dflt": newFakeRegistry(t), "a": newFakeRegistry(t), "b": newFakeRegistry(t)}
	a := probeApp(t, regs, []string{"dflt", "a", "b"}, "  - {match: {cidr: 198.51.100.0/24}, registries: [a, b]}\n", Options{})
	const ip = "198.51.100.7"
	waitRoute(t, a, "at start", ip, regs["a"], 2*time.Second)
	regs["a"].failing.Store(true)
	// fall (2) × fast_interval (100 ms) + a timeout (100 ms), and a
	// probe interval for the first failure to be seen.
	failedAt := time.Now()
	took := waitRoute(t, a, "a failing", ip, regs["b"], 2*time.Second)
	t.Logf("clients left a failing registry after %v", took.Round(time.Millisecond))

	// What an operator reads: the admin API's registry and /readyz.
	h := registryHealth(t, a, "a")
	if h.Up || !h.Since.After(failedAt) || !strings.Contains(h.LastError, "500") || h.ErrorClass != "status" ||
		!h.LastErrorAt.After(failedAt) || len(h.Results) == 0 || h.Results[len(h.Results)-1].OK || h.Transitions != 1 {
		t.Errorf("GET /api/v1/registries, a failing since %v: %+v", failedAt, h)
	}
	var ready Readiness
	getJSON(t, "http://"+a.PublicAddr()+"/readyz", "", &ready)
	if ready.Registries != (registriesReady{Up: 2, Probed: 3}) {
		t.Errorf("/readyz registries with a down: %+v, want 2 up of 3", ready.Registries)
	}

	regs["a"].failing.Store(false)
	took = waitRoute(t, a, "a recovered", ip, regs["a"], 2*time.Second)
	t.Logf("clients came back %v after it recovered", took.Round(time.Millisecond))
	if h := registryHealth(t, a, "a"); !h.Up || h.Transitions != 2 || !h.Results[len(h.Results)-1].OK {
		t.Errorf("GET /api/v1/registries, a recovered: %+v", h)
	}
}

// registryHealth is the health of the registry named name, as
// GET /api/v1/registries answers it.
func registryHealth(t *testing.T, a *App, name string) healthView {
	t.Helper()
	var out struct {
		Registries []struct {
			Name   string
			Health *healthView
		}
	}
	getJSON(t, "http://"+a.AdminAddr()+"/api/v1/registries", a.AdminToken(), &out)
	for _, r := range out.Registries {
		if r.Name == name && r.Health != nil {
			return *r.Health
		}
	}
	t.Fatalf("GET /api/v1/registries has no health for %s", name)
	return healthView{}
}

// getJSON decodes the JSON answer of a GET, with a bearer token unless
// it is empty.
func getJSON(t *testing.T, url, token string, v any) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

// Every listed registry down while most probed registries are up: the
// default. The default down too: still the default, and the reason says
// everything was down.
func TestHealthAllListedDown(t *testing.T) {
	t.Parallel()
	regs := map[string]*fakeRegistry{}
	names := []string{"dflt", "a", "b", "c", "d", "e", "f"}
	for _, n := range names {
		regs[n] = newFakeRegistry(t)
	}
	a := probeApp(t, regs, names, "  - {match: {cidr: 198.51.100.0/24}, registries: [a, b]}\n", Options{})
	regs["a"].failing.Store(true)
	regs["b"].failing.Store(true)
	waitRoute(t, a, "a and b down", "198.51.100.7", regs["dflt"], 3*time.Second)
	if d := explain(t, a, "198.51.100.7"); d.Reason != "fallback:unhealthy" {
		t.Errorf("a and b down: reason %q, want fallback:unhealthy", d.Reason)
	}
	regs["dflt"].failing.Store(true)
	deadline := time.Now().Add(3 * time.Second)
	for d := explain(t, a, "198.51.100.7"); d.Reason != "fallback:all-down"; d = explain(t, a, "198.51.100.7") {
		if time.Now().After(deadline) {
			t.Fatalf("the default down too: %+v", d)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := route(t, a, "198.51.100.7"); got != strings.TrimPrefix(regs["dflt"].URL, "http://") {
		t.Errorf("everything listed and the default down: %s, want the default anyway", got)
	}
}

type explained struct {
	Reason string
	Trail  []struct{ Match, Registry, Outcome string }
}

func explain(t *testing.T, a *App, ip string) explained {
	t.Helper()
	var d explained
	getJSON(t, "http://"+a.AdminAddr()+"/api/v1/explain?ip="+ip, a.AdminToken(), &d)
	return d
}

// Most registries failing because reghost's own way out is broken (here
// a proxy that is dead): health is ignored for routing, /readyz and the
// explain trail say why, and the proxy errors are named as such.
func TestHealthPanic(t *testing.T) {
	t.Parallel()
	regs := map[string]*fakeRegistry{"dflt": newFakeRegistry(t), "a": newFakeRegistry(t), "b": newFakeRegistry(t)}
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL, _ := url.Parse(dead.URL)
	dead.Close()
	a := probeApp(t, regs, []string{"dflt", "a", "b"}, "  - {match: {cidr: 198.51.100.0/24}, registries: [a, b]}\n",
		Options{HealthProxy: http.ProxyURL(deadURL)})
	deadline := time.Now().Add(5 * time.Second)
	for r := a.readiness(); !r.Registries.Panic; r = a.readiness() {
		if time.Now().After(deadline) {
			t.Fatalf("no panic with every probe failing through a dead proxy: %+v", r)
		}
		time.Sleep(20 * time.Millisecond)
	}
	d := explain(t, a, "198.51.100.7")
	if d.Reason != "cidr:198.51.100.0/24" || len(d.Trail) == 0 || d.Trail[0].Match != "health" || !strings.HasPrefix(d.Trail[0].Outcome, "ignored") {
		t.Errorf("in panic: %+v, want the rule to decide and the trail to say health is ignored", d)
	}
	if got := route(t, a, "198.51.100.7"); got != strings.TrimPrefix(regs["a"].URL, "http://") {
		t.Errorf("in panic: %s, want a", got)
	}
	if r := a.readiness(); r.Status != "degraded" || !strings.Contains(strings.Join(r.Problems, " "), "health is ignored") {
		t.Errorf("/readyz in panic: %+v", r)
	}
	if h, _ := a.prober.registry("a").(healthView); h.ErrorClass != "proxy" {
		t.Errorf("registry a's error class %q, want proxy", h.ErrorClass)
	}
}

// BenchmarkDecideWhileProbing: decisions with 50 registries probed every
// 200 ms, against the same decisions with the probes off. The probes
// build the next snapshot in the background, so a decision costs the
// same (compare the two ns/op).
func BenchmarkDecideWhileProbing(b *testing.B) {
	for _, probing := range []bool{false, true} {
		b.Run(fmt.Sprintf("probing=%v", probing), func(b *testing.B) {
			var regs strings.Builder
			var rules strings.Builder
			for i := range 50 {
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) }))
				b.Cleanup(srv.Close)
				fmt.Fprintf(&regs, "  - {name: r%d, url: %q, default: %v}\n", i, srv.URL, i == 0)
				if i > 0 {
					fmt.Fprintf(&rules, "  - {match: {cidr: 10.%d.0.0/16}, registries: [r%d, r0]}\n", i, i)
				}
			}
			enabled := "true"
			if !probing {
				enabled = "false"
			}
			cfg, err := config.Parse(fmt.Appendf(nil, `
listen: "127.0.0.1:0"
admin_listen: "127.0.0.1:0"
data_dir: %s
registries:
%srules:
%shealth_defaults: {enabled: %s, interval: 200ms, fast_interval: 200ms, timeout: 150ms}
`, b.TempDir(), regs.String(), rules.String(), enabled), "bench.yaml")
			if err != nil {
				b.Fatal(err)
			}
			a, err := New(cfg, Options{Getenv: func(string) string { return "" }})
			if err != nil {
				b.Fatal(err)
			}
			stop := serve(b, a)
			defer stop()
			time.Sleep(500 * time.Millisecond) // a couple of rounds of probes under way
			addrs := make([]netip.Addr, 1024)
			for i := range addrs {
				addrs[i] = netip.AddrFrom4([4]byte{10, byte(i % 50), byte(i >> 4), byte(i)})
			}
			for i := 0; b.Loop(); i++ {
				if _, err := a.engine.Decide(addrs[i%len(addrs)], "/v2/pause/manifests/3.9", ""); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
