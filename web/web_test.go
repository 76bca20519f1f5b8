package web

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/reghost/reghost/internal/overrides"
	"github.com/reghost/reghost/internal/policy"
	"github.com/reghost/reghost/internal/rules"
	"github.com/reghost/reghost/internal/store"
)

// The handler tests run the page on the real engine, overrides service
// and embedded store; only the clock is the test's.

const testToken = "test-admin-token-0123456789"

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

type env struct {
	cfg    Config
	h      http.Handler
	clock  *clock
	store  *store.Bolt
	svc    *overrides.Service
	engine *policy.Engine
}

func newEnv(t *testing.T, edit func(*Config)) *env {
	t.Helper()
	st, err := store.OpenBolt(t.TempDir(), store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	eng, err := policy.New(policy.Config{Registries: []rules.Registry{
		{Name: "k8s", URL: "https://k8s.example", Default: true},
		{Name: "hub", URL: "https://hub.example"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := overrides.New(context.Background(), overrides.Config{Store: st, Engine: eng})
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: time.Now()}
	cfg := Config{Overrides: svc, Engine: eng, Sessions: st, Tokens: map[string]string{"alice": testToken}, Now: c.now}
	if edit != nil {
		edit(&cfg)
	}
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &env{cfg: cfg, h: h, clock: c, store: st, svc: svc, engine: eng}
}

// do serves one request from 192.0.2.1 to the page.
func (e *env) do(method, target string, form url.Values, cookie *http.Cookie, header ...string) *http.Response {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req := httptest.NewRequest(method, "http://admin.example"+target, body)
	req.RemoteAddr = "192.0.2.1:4321"
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if cookie != nil {
		req.AddCookie(cookie)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	return rec.Result()
}

// signIn signs in and returns the session cookie.
func (e *env) signIn(t *testing.T) *http.Cookie {
	t.Helper()
	resp := e.do("POST", "/admin/sign-in", url.Values{"token": {testToken}}, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in: %d", resp.StatusCode)
	}
	for _, c := range resp.Cookies() {
		if c.Name == cookieName {
			return c
		}
	}
	t.Fatal("sign-in set no session cookie")
	return nil
}

func bodyOf(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Every answer, whatever wrote it, carries the CSP and no-store; HSTS
// only over TLS.
func TestHeadersOnEveryResponse(t *testing.T) {
	t.Parallel()
	for _, tls := range []bool{false, true} {
		e := newEnv(t, func(c *Config) { c.TLS = tls })
		cookie := e.signIn(t)
		tests := []struct {
			name, method, target string
			form                 url.Values
			cookie               *http.Cookie
			header               []string
			code                 int
		}{
			{"sign-in page", "GET", "/admin/sign-in", nil, nil, nil, 200},
			{"stylesheet", "GET", "/admin/static/app.css", nil, nil, nil, 200},
			{"script", "GET", "/admin/static/app.js", nil, nil, nil, 200},
			{"signed out", "GET", "/admin/overrides", nil, nil, nil, 303},
			{"overrides", "GET", "/admin/overrides", nil, cookie, nil, 200},
			{"registries", "GET", "/admin/registries", nil, cookie, nil, 200},
			{"explain", "GET", "/admin/explain?ip=192.0.2.9", nil, cookie, nil, 200},
			{"data", "GET", "/admin/data", nil, cookie, nil, 200},
			{"traffic", "GET", "/admin/traffic", nil, cookie, nil, 200},
			{"audit", "GET", "/admin/audit", nil, cookie, nil, 200},
			{"new override", "GET", "/admin/overrides/new", nil, cookie, nil, 200},
			{"no such page", "GET", "/admin/nothing", nil, cookie, nil, 404},
			{"no such override", "GET", "/admin/overrides/nope/edit", nil, cookie, nil, 404},
			{"wrong method", "DELETE", "/admin/overrides", nil, cookie, nil, 405},
			{"cross-origin", "POST", "/admin/overrides/new", url.Values{}, cookie, []string{"Sec-Fetch-Site", "cross-site"}, 403},
			{"wrong token", "POST", "/admin/sign-in", url.Values{"token": {"x"}}, nil, nil, 401},
		}
		for _, tt := range tests {
			resp := e.do(tt.method, tt.target, tt.form, tt.cookie, tt.header...)
			if resp.StatusCode != tt.code {
				t.Errorf("tls=%v %s: %d, want %d", tls, tt.name, resp.StatusCode, tt.code)
			}
			h := resp.Header
			if got := h.Get("Content-Security-Policy"); got != csp {
				t.Errorf("tls=%v %s: CSP %q", tls, tt.name, got)
			}
			if got := h.Get("Cache-Control"); got != "no-store" {
				t.Errorf("tls=%v %s: Cache-Control %q", tls, tt.name, got)
			}
			if got := h.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("tls=%v %s: X-Content-Type-Options %q", tls, tt.name, got)
			}
			if got := h.Get("Strict-Transport-Security"); (got != "") != tls {
				t.Errorf("tls=%v %s: Strict-Transport-Security %q", tls, tt.name, got)
			}
		}
	}
}

func TestSignInCookie(t *testing.T) {
	t.Parallel()
	for _, tls := range []bool{false, true} {
		e := newEnv(t, func(c *Config) { c.TLS = tls })
		c := e.signIn(t)
		if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/admin" || c.Secure != tls || len(c.Value) < 40 {
			t.Errorf("tls=%v: cookie %+v", tls, c)
		}
		if c.MaxAge != int((12 * time.Hour).Seconds()) {
			t.Errorf("tls=%v: Max-Age %d, want the session's 12 hours", tls, c.MaxAge)
		}
		// What the store keeps is not the cookie.
		if _, err := e.store.Session(context.Background(), c.Value); err == nil {
			t.Error("the store keeps the session under the cookie's value")
		}
	}
}

// Sign-in starts a session under a new ID and ends the one the browser
// came with: an ID planted before sign-in is worth nothing after.
func TestSignInMakesANewSession(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	old := e.signIn(t)
	resp := e.do("POST", "/admin/sign-in", url.Values{"token": {testToken}}, old)
	var fresh *http.Cookie
	for _, c := range resp.Cookies() {
		fresh = c
	}
	if fresh == nil || fresh.Value == old.Value {
		t.Fatalf("signing in again kept the session ID: %+v", fresh)
	}
	if resp := e.do("GET", "/admin/overrides", nil, old); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("the old session still works: %d", resp.StatusCode)
	}
	if resp := e.do("GET", "/admin/overrides", nil, fresh); resp.StatusCode != http.StatusOK {
		t.Errorf("the new session: %d", resp.StatusCode)
	}
}

func TestWrongTokenRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	for _, tok := range []string{"", "wrong", testToken + "x", strings.ToUpper(testToken)} {
		resp := e.do("POST", "/admin/sign-in", url.Values{"token": {tok}}, nil)
		if resp.StatusCode != http.StatusUnauthorized || len(resp.Cookies()) != 0 {
			t.Errorf("token %q: %d, cookies %v", tok, resp.StatusCode, resp.Cookies())
		}
		if !strings.Contains(bodyOf(t, resp), "not an admin token") {
			t.Errorf("token %q: the page does not say why", tok)
		}
	}
}

func TestSignedOutIsSentToSignIn(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	resp := e.do("GET", "/admin/audit?x=1", nil, nil)
	if loc := resp.Header.Get("Location"); resp.StatusCode != 303 || loc != "/admin/sign-in?next="+url.QueryEscape("/admin/audit?x=1") {
		t.Fatalf("%d to %q", resp.StatusCode, loc)
	}
	resp = e.do("POST", "/admin/sign-in", url.Values{"token": {testToken}, "next": {"/admin/audit?x=1"}}, nil)
	if loc := resp.Header.Get("Location"); loc != "/admin/audit?x=1" {
		t.Errorf("after sign-in, to %q, want back to the audit page", loc)
	}
	// A cookie the store does not know is no session.
	resp = e.do("GET", "/admin/overrides", nil, &http.Cookie{Name: cookieName, Value: "made-up"})
	if resp.StatusCode != http.StatusSeeOther {
		t.Errorf("a made-up cookie: %d", resp.StatusCode)
	}
}

func TestSafeNext(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"":                          "/admin/overrides",
		"/admin/audit":              "/admin/audit",
		"/admin/explain?ip=1.2.3.4": "/admin/explain?ip=1.2.3.4",
		"//evil.example/admin/":     "/admin/overrides",
		"https://evil.example":      "/admin/overrides",
		"/admin/\\evil":             "/admin/overrides",
		"/admin/sign-in":            "/admin/overrides",
		"/api/v1/overrides":         "/admin/overrides",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSessionIdleExpiry(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.SessionIdle = 10 * time.Minute; c.SessionMax = time.Hour })
	c := e.signIn(t)
	// Used every 9 minutes, it lives on: each use moves the idle end.
	for range 3 {
		e.clock.add(9 * time.Minute)
		if resp := e.do("GET", "/admin/overrides", nil, c); resp.StatusCode != 200 {
			t.Fatalf("used within the idle time: %d", resp.StatusCode)
		}
	}
	e.clock.add(10*time.Minute + time.Second)
	if resp := e.do("GET", "/admin/overrides", nil, c); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("idle longer than allowed: %d, want a redirect to sign in", resp.StatusCode)
	}
}

func TestSessionAbsoluteExpiry(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.SessionIdle = 10 * time.Minute; c.SessionMax = 30 * time.Minute })
	c := e.signIn(t)
	for i := range 6 {
		e.clock.add(5 * time.Minute)
		want := 200
		if i == 5 { // 30 minutes after sign-in, however busy
			want = http.StatusSeeOther
		}
		if resp := e.do("GET", "/admin/overrides", nil, c); resp.StatusCode != want {
			t.Fatalf("%d minutes after sign-in: %d, want %d", 5*(i+1), resp.StatusCode, want)
		}
	}
}

// A token taken out of the config ends its sessions.
func TestRemovedTokenEndsSessions(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	c := e.signIn(t)
	cfg := e.cfg
	cfg.Tokens = map[string]string{"bob": "bob-token-0123456789abcdef"}
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.h = h
	if resp := e.do("GET", "/admin/overrides", nil, c); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("alice's session after her token was removed: %d", resp.StatusCode)
	}
}

func TestSignOut(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	c := e.signIn(t)
	resp := e.do("POST", "/admin/sign-out", url.Values{}, c)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/admin/sign-in?out=1" {
		t.Fatalf("sign-out: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if cs := resp.Cookies(); len(cs) != 1 || cs[0].MaxAge >= 0 || cs[0].Value != "" {
		t.Errorf("sign-out left the cookie: %+v", cs)
	}
	// Gone from the store: every replica sees it ended.
	if _, err := e.store.Session(context.Background(), sessionKey(c.Value)); err == nil {
		t.Error("the session is still in the store")
	}
	if resp := e.do("GET", "/admin/overrides", nil, c); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("the cookie after sign-out: %d", resp.StatusCode)
	}
}

func TestSignInRateLimited(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.SignInRate = rate.Every(10 * time.Second); c.SignInBurst = 3 })
	for i := range 3 {
		if resp := e.do("POST", "/admin/sign-in", url.Values{"token": {"guess"}}, nil); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d", i+1, resp.StatusCode)
		}
	}
	resp := e.do("POST", "/admin/sign-in", url.Values{"token": {testToken}}, nil)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || len(resp.Cookies()) != 0 {
		t.Fatalf("fourth attempt, even with the right token: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	e.clock.add(10 * time.Second)
	if resp := e.do("POST", "/admin/sign-in", url.Values{"token": {testToken}}, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("after waiting: %d", resp.StatusCode)
	}
}

// Another address has its own allowance, up to the overall limit.
func TestSignInRateLimitPerAddress(t *testing.T) {
	t.Parallel()
	l := newLimiter(rate.Every(time.Minute), 2)
	now := time.Now()
	for _, addr := range []string{"a", "a"} {
		if !l.allow(addr, now) {
			t.Fatalf("%s refused within its burst", addr)
		}
	}
	if l.allow("a", now) {
		t.Error("a allowed past its burst")
	}
	if !l.allow("b", now) {
		t.Error("b refused for a's attempts")
	}
	for i := range 30 {
		l.allow(string(rune('c'+i)), now)
	}
	if l.allow("zz", now) {
		t.Error("the overall limit let a new address in after 30 addresses' attempts")
	}
}

func TestCrossOriginRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.TrustedOrigins = []string{"https://admin.example.net"} })
	c := e.signIn(t)
	form := url.Values{"kind": {"cidr"}, "value": {"192.0.2.0/24"}, "registries": {"hub"}, "action": {"save"}}
	tests := []struct {
		name   string
		header []string
		code   int
	}{
		{"another site", []string{"Sec-Fetch-Site", "cross-site"}, 403},
		{"same site, another origin (another port)", []string{"Sec-Fetch-Site", "same-site"}, 403},
		{"Origin of another host", []string{"Origin", "http://evil.example"}, 403},
		{"a trusted origin", []string{"Origin", "https://admin.example.net", "Sec-Fetch-Site", "cross-site"}, 303},
		{"same origin", []string{"Sec-Fetch-Site", "same-origin"}, 303},
	}
	for _, tt := range tests {
		resp := e.do("POST", "/admin/overrides/new", form, c, tt.header...)
		if resp.StatusCode != tt.code {
			t.Errorf("%s: %d, want %d", tt.name, resp.StatusCode, tt.code)
		}
		if tt.code == 403 && !strings.Contains(bodyOf(t, resp), "another site") {
			t.Errorf("%s: the refusal does not say why", tt.name)
		}
	}
	ovs, _, _ := e.svc.List(context.Background())
	if len(ovs) != 2 {
		t.Errorf("%d overrides saved, want the 2 from allowed origins", len(ovs))
	}
	// Sign-in and sign-out are changes too.
	for _, path := range []string{"/admin/sign-in", "/admin/sign-out"} {
		if resp := e.do("POST", path, url.Values{"token": {testToken}}, c, "Sec-Fetch-Site", "cross-site"); resp.StatusCode != 403 {
			t.Errorf("%s from another site: %d", path, resp.StatusCode)
		}
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	t.Parallel()
	good := newEnv(t, nil).cfg
	tests := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"no sessions", func(c *Config) { c.Sessions = nil }, "web: no session store: the admin page keeps its sessions in the store"},
		{"no tokens", func(c *Config) { c.Tokens = nil }, "web: no admin token to sign in with"},
		{"short token", func(c *Config) { c.Tokens = map[string]string{"x": "short"} }, `web: admin token "x": shorter than 16 characters`},
		{"idle past max", func(c *Config) { c.SessionIdle = 2 * time.Hour; c.SessionMax = time.Hour },
			"web: session idle timeout 2h0m0s is longer than the session's maximum 1h0m0s"},
		{"bad origin", func(c *Config) { c.TrustedOrigins = []string{"not an origin"} }, "web: trusted origin: "},
	}
	for _, tt := range tests {
		cfg := good
		tt.edit(&cfg)
		_, err := New(cfg)
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want %q", tt.name, err, tt.want)
		}
	}
}
