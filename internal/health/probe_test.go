package health

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestHealthyAnswers: a registry's API root answers 200, or 401 with a
// Basic or Bearer challenge, and either is up, confirmed by the first
// probe.
func TestHealthyAnswers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		answer http.HandlerFunc
		expect []int
	}{
		{"200", status(200), nil},
		{"401 Bearer", challenge(401, `Bearer realm="https://auth.example/token",service="registry.example"`), nil},
		{"401 Basic", challenge(401, `Basic realm="Registry Realm"`), nil},
		{"401 bearer in lower case", challenge(401, `bearer realm="x"`), nil},
		{"401 Bearer after another challenge", challenge(401, `Negotiate, Bearer realm="x"`), nil},
		{"bucket 403 expected", status(403), []int{403, 404}},
		{"bucket 404 expected", status(404), []int{403, 404}},
		{"302 expected", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/elsewhere", http.StatusFound) }, []int{302}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t)
			f.always(tt.answer)
			s := fast()
			s.Expect = tt.expect
			c := start(t, Config{Targets: []Target{{Name: "a", URL: f.srv.URL, Settings: s}}})
			st := waitFor(t, c, "three probes", func(s Status) bool { return len(reg(t, s, "a").Results) >= 3 })
			r := reg(t, st, "a")
			if !r.Up || !r.Confirmed || r.Transitions != 0 || r.LastError != "" {
				t.Fatalf("not a healthy registry:\n%s", dump(st))
			}
			for _, req := range f.log() {
				if req.path != "/v2/" {
					t.Errorf("probe requested %q; redirects must not be followed", req.path)
				}
			}
		})
	}
}

// TestFirstProbe: the first success confirms at once (rise is for
// coming back, not for starting), and the probe is the one the issue
// describes: the API root without the repository prefix, a
// User-Agent, the address recorded.
func TestFirstProbe(t *testing.T) {
	t.Parallel()
	for _, network := range []string{"127.0.0.1", "[::1]"} {
		t.Run(network, func(t *testing.T) {
			t.Parallel()
			ln, err := net.Listen("tcp", network+":0")
			if err != nil {
				t.Skipf("cannot listen on %s: %v", network, err)
			}
			f := &fake{def: status(200)}
			f.srv = httptest.NewUnstartedServer(f)
			f.srv.Listener.Close()
			f.srv.Listener = ln
			f.srv.Start()
			t.Cleanup(f.srv.Close)

			s := fast()
			s.Rise = 5
			// Long enough that a second probe cannot come before the
			// test has looked: the confirmation must be the first's.
			s.Interval, s.Timeout = 5*time.Second, time.Second
			before := time.Now()
			c := start(t, Config{
				Version: "1.2.3",
				Targets: []Target{{Name: "a", URL: f.srv.URL + "/k8s-artifacts-prod/images", Settings: s}},
			})
			st := waitFor(t, c, "confirmed", func(s Status) bool { return reg(t, s, "a").Confirmed })
			r := reg(t, st, "a")
			if len(r.Results) != 1 || !r.Results[0].OK || !r.Up {
				t.Fatalf("not confirmed up by the first probe alone:\n%s", dump(st))
			}
			if r.Since.Before(before) || r.Since.After(time.Now()) {
				t.Errorf("Since %v is not the checker's start", r.Since)
			}
			want := netip.MustParseAddrPort(ln.Addr().String())
			if r.LastAddr != want || r.Results[0].Addr != want {
				t.Errorf("LastAddr %v, result's %v; want %v", r.LastAddr, r.Results[0].Addr, want)
			}
			if r.LastLatency <= 0 || r.LastProbe.IsZero() {
				t.Errorf("LastLatency %v, LastProbe %v: not filled", r.LastLatency, r.LastProbe)
			}
			reqs := f.log()
			if len(reqs) != 1 || reqs[0].path != "/v2/" || reqs[0].ua != "reghost-healthcheck/1.2.3" {
				t.Fatalf("requests %+v; want one GET /v2/ with User-Agent reghost-healthcheck/1.2.3", reqs)
			}
		})
	}
}

// TestProbePath: a configured path, with a query, replaces /v2/.
func TestProbePath(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	s := fast()
	s.Path = "/health?deep=1"
	c := start(t, Config{Targets: []Target{{Name: "a", URL: f.srv.URL + "/prefix", Settings: s}}})
	waitFor(t, c, "confirmed", func(s Status) bool { return reg(t, s, "a").Confirmed })
	if reqs := f.log(); reqs[0].path != "/health?deep=1" {
		t.Fatalf("probe requested %q, want /health?deep=1", reqs[0].path)
	}
}

// TestRedirectNotFollowed: a 3xx is judged by Expect, and the place it
// points to is never asked.
func TestRedirectNotFollowed(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	f.always(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
		}
	})
	c := start(t, Config{Targets: []Target{{Name: "a", URL: f.srv.URL, Settings: fast()}}})
	st := waitFor(t, c, "down", func(s Status) bool { return !reg(t, s, "a").Up })
	if r := reg(t, st, "a"); r.ErrorClass != ClassStatus || r.Results[0].Status != http.StatusTemporaryRedirect {
		t.Fatalf("a 307 should fail with class status:\n%s", dump(st))
	}
	for _, req := range f.log() {
		if req.path != "/v2/" {
			t.Fatalf("the redirect was followed to %s", req.path)
		}
	}
}

// TestBodyBounded: a probe reads a few KB and hangs up, so a path that
// answers with something large (or endless) still passes quickly.
func TestBodyBounded(t *testing.T) {
	t.Parallel()
	var written atomic.Int64
	f := newFake(t)
	f.always(func(w http.ResponseWriter, r *http.Request) {
		chunk := make([]byte, 16<<10)
		for range 4 {
			n, err := w.Write(chunk)
			written.Add(int64(n))
			if err != nil {
				return
			}
		}
		http.NewResponseController(w).Flush()
		// A probe that read to the end would wait here until its timeout.
		<-r.Context().Done()
	})
	c := start(t, Config{Targets: []Target{{Name: "a", URL: f.srv.URL, Settings: fast()}}})
	st := waitFor(t, c, "three probes", func(s Status) bool { return len(reg(t, s, "a").Results) >= 3 })
	for _, res := range reg(t, st, "a").Results {
		if !res.OK {
			t.Fatalf("a probe read past its bound and failed:\n%s", dump(st))
		}
	}
	if written.Load() <= maxBody {
		t.Fatalf("the fake wrote only %d bytes; the test proves nothing", written.Load())
	}
}

// TestTLSTrust: a registry's certificate is verified against RootCAs.
func TestTLSTrust(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		trusted bool
		wantUp  bool
	}{
		{"httptest's CA trusted", true, true},
		{"system roots only", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewUnstartedServer(status(200))
			quiet(srv)
			srv.StartTLS()
			t.Cleanup(srv.Close)
			cfg := Config{Targets: []Target{{Name: "a", URL: srv.URL, Settings: fast()}}}
			if tt.trusted {
				cfg.RootCAs = pool(srv)
			}
			c := start(t, cfg)
			st := waitFor(t, c, "settled", func(s Status) bool {
				r := reg(t, s, "a")
				return r.Confirmed && r.Up == tt.wantUp
			})
			r := reg(t, st, "a")
			if !tt.wantUp && (r.ErrorClass != ClassTLS || !strings.Contains(r.LastError, "certificate signed by unknown authority")) {
				t.Errorf("an untrusted certificate should fail as %q saying so; got %q: %s", ClassTLS, r.ErrorClass, r.LastError)
			}
		})
	}
}

// TestPlainHTTPOnTLSPort: speaking TLS to a plain HTTP server is a TLS
// failure, not a certificate one.
func TestPlainHTTPOnTLSPort(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	c := start(t, Config{Targets: []Target{{Name: "a", URL: strings.Replace(f.srv.URL, "http:", "https:", 1), Settings: fast()}}})
	st := waitFor(t, c, "down", func(s Status) bool { return !reg(t, s, "a").Up })
	if r := reg(t, st, "a"); r.ErrorClass != ClassTLS || strings.Contains(r.LastError, "bad certificate") {
		t.Fatalf("want class tls, not about a certificate:\n%s", dump(st))
	}
}

// TestProxyErrors: a probe that never reached the registry because of
// the proxy says so, however the proxy failed.
func TestProxyErrors(t *testing.T) {
	t.Parallel()
	registry := httptest.NewTLSServer(status(200))
	t.Cleanup(registry.Close)
	plain := newFake(t)

	refusing := httptest.NewServer(status(http.StatusForbidden))
	t.Cleanup(refusing.Close)
	silent := httptest.NewServer(http.HandlerFunc(hang))
	t.Cleanup(silent.Close)
	wantsAuth := httptest.NewServer(status(http.StatusProxyAuthRequired))
	t.Cleanup(wantsAuth.Close)

	fixed := func(raw string) func(*http.Request) (*url.URL, error) {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		return http.ProxyURL(u)
	}
	tests := []struct {
		name   string
		target string
		proxy  func(*http.Request) (*url.URL, error)
		reason string
	}{
		{"dead proxy, https registry", registry.URL, fixed("http://" + closedAddr(t)), "connection refused"},
		{"dead proxy, http registry", plain.srv.URL, fixed("http://" + closedAddr(t)), "connection refused"},
		{"CONNECT refused", registry.URL, fixed(refusing.URL), "CONNECT answered 403 Forbidden"},
		{"CONNECT never answered", registry.URL, fixed(silent.URL), "no tunnel to the registry"},
		{"proxy wants credentials", plain.srv.URL, fixed(wantsAuth.URL), "407"},
		{"proxy setting unusable", registry.URL, func(*http.Request) (*url.URL, error) {
			return nil, &net.ParseError{Type: "proxy URL", Text: "::bad"}
		}, "invalid proxy URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := start(t, Config{
				Targets: []Target{{Name: "a", URL: tt.target, Settings: fast()}},
				RootCAs: pool(registry),
				Proxy:   tt.proxy,
			})
			st := waitFor(t, c, "down", func(s Status) bool { return !reg(t, s, "a").Up })
			if r := reg(t, st, "a"); r.ErrorClass != ClassProxy || !strings.Contains(r.LastError, tt.reason) {
				t.Fatalf("want class proxy, reason containing %q:\n%s", tt.reason, dump(st))
			}
		})
	}
}

// TestDNSFailure: a name that cannot be resolved fails as dns. The
// resolver here is one whose server is unreachable, as on a host whose
// DNS is down: no query leaves the machine.
func TestDNSFailure(t *testing.T) {
	t.Parallel()
	dead := closedAddr(t)
	c := start(t, Config{
		Targets: []Target{{Name: "a", URL: "https://registry.reghost.test", Settings: fast()}},
		// Direct, whatever proxy the environment that runs the tests has.
		Proxy: func(*http.Request) (*url.URL, error) { return nil, nil },
		resolver: &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", dead)
		}},
	})
	st := waitFor(t, c, "down", func(s Status) bool { return !reg(t, s, "a").Up })
	if r := reg(t, st, "a"); r.ErrorClass != ClassDNS || !strings.Contains(r.LastError, "registry.reghost.test") {
		t.Fatalf("want class dns naming the host:\n%s", dump(st))
	}
}

func TestRegistryChallenge(t *testing.T) {
	t.Parallel()
	tests := []struct {
		values []string
		want   bool
	}{
		{nil, false},
		{[]string{""}, false},
		{[]string{`Bearer realm="https://auth.docker.io/token",service="registry.docker.io"`}, true},
		{[]string{`Basic realm="Registry"`}, true},
		{[]string{`BASIC`}, true},
		{[]string{`Negotiate`}, false},
		{[]string{`Negotiate`, `Bearer realm="x"`}, true},
		{[]string{`Digest realm="Bearer", nonce="x"`}, false},
		{[]string{`Digest realm="x", Basic realm="y"`}, true},
		{[]string{`Bearerish realm="x"`}, false},
	}
	for _, tt := range tests {
		if got := registryChallenge(tt.values); got != tt.want {
			t.Errorf("registryChallenge(%q) = %v, want %v", tt.values, got, tt.want)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		value string
		want  time.Duration
	}{
		{"", 0},
		{"0", 0},
		{"30", 30 * time.Second},
		{" 30 ", 30 * time.Second},
		{"-5", 0},
		{"1.5", 0},
		{"soon", 0},
		{"86400", maxRetryAfter},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{now.Add(24 * time.Hour).Format(http.TimeFormat), maxRetryAfter},
		{"Fri, 01 May 2026 12:01:00 GMT", time.Minute},
		{"Friday, 01-May-26 12:01:00 GMT", time.Minute}, // RFC 850, which HTTP dates may still be
	}
	for _, tt := range tests {
		if got := retryAfter(tt.value, now); got != tt.want {
			t.Errorf("retryAfter(%q) = %v, want %v", tt.value, got, tt.want)
		}
	}
}

// TestProxyFromEnvironment: with no Proxy in the config, probes go
// through the proxy that HTTP_PROXY names, as a registry's other
// clients on the host would. net/http reads the environment once per
// process, so the checker runs in a child process with its own.
func TestProxyFromEnvironment(t *testing.T) {
	const child = "REGHOST_HEALTH_TEST_CHILD"
	if os.Getenv(child) == "env-proxy" {
		dead := closedAddr(t)
		c := start(t, Config{
			Targets: []Target{{Name: "a", URL: "http://registry.reghost.test/prefix", Settings: fast()}},
			// Should the proxy be bypassed, the name is looked up where
			// no server listens, not on the network.
			resolver: &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "tcp", dead)
			}},
		})
		st := waitFor(t, c, "confirmed up through the proxy", func(s Status) bool { return reg(t, s, "a").Confirmed })
		if r := reg(t, st, "a"); !r.Up || r.LastAddr.String() != os.Getenv("REGHOST_HEALTH_TEST_PROXY_ADDR") {
			t.Fatalf("want up through the proxy at %s:\n%s", os.Getenv("REGHOST_HEALTH_TEST_PROXY_ADDR"), dump(st))
		}
		return
	}
	t.Parallel()
	var asked atomic.Value
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Store(r.Method + " " + r.URL.String())
	}))
	t.Cleanup(proxy.Close)
	cmd := exec.Command(os.Args[0], "-test.run=^TestProxyFromEnvironment$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), child+"=env-proxy",
		"REGHOST_HEALTH_TEST_PROXY_ADDR="+proxy.Listener.Addr().String(),
		"HTTP_PROXY="+proxy.URL, "http_proxy="+proxy.URL, "NO_PROXY=", "no_proxy=", "REQUEST_METHOD=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the checker in a child process: %v\n%s", err, out)
	}
	if got, want := asked.Load(), "GET http://registry.reghost.test/v2/"; got != want {
		t.Fatalf("the proxy was asked %v, want %q", got, want)
	}
}
