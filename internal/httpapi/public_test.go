package httpapi

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/reghost/reghost/internal/geo"
	"github.com/reghost/reghost/internal/policy"
	"github.com/reghost/reghost/internal/rules"
)

// The engine these tests run is real, over MaxMind's official test
// databases (testdata/maxmind): 89.160.20.112 is AS29518 in SE,
// 1.0.0.1 is AS15169, 2001:218::1 is JP, 2a02:d180::1 is DE.

func testEngine(t testing.TB) *policy.Engine {
	t.Helper()
	db, err := geo.Open(geo.Config{
		ASN:     "../../testdata/maxmind/GeoLite2-ASN-Test.mmdb",
		Country: "../../testdata/maxmind/GeoIP2-Country-Test.mmdb",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	e, err := policy.New(policy.Config{
		Registries: []rules.Registry{
			{Name: "k8s", URL: "https://us-west1-docker.pkg.dev/k8s-artifacts-prod/images", Default: true},
			{Name: "hub", URL: "https://registry-1.docker.io"},
			{Name: "eu", URL: "https://eu.example"},
			{Name: "v6", URL: "https://v6.example"},
		},
		Rules: []rules.Rule{
			{Match: rules.Match{CIDR: netip.MustParsePrefix("192.168.0.0/24")}, Registries: []string{"hub"}},
			{Match: rules.Match{CIDR: netip.MustParsePrefix("2001:db8::/32")}, Registries: []string{"v6"}},
			{Match: rules.Match{ASN: 15169}, Registries: []string{"hub"}},
			{Match: rules.Match{Country: "SE"}, Registries: []string{"hub"}},
			{Match: rules.Match{Continent: "EU"}, Registries: []string{"eu"}},
		},
		Sources: policy.Sources{ASN: db, Country: db},
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func newPublicServer(t testing.TB, ci ClientIPConfig, status int) *httptest.Server {
	t.Helper()
	if ci.TrustedProxies == nil {
		ci.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	}
	h, err := NewPublic(PublicConfig{Engine: testEngine(t), ClientIP: ci, RedirectStatus: status,
		Ready: func(context.Context) any { return map[string]string{"status": "ok"} }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

type resp struct {
	status int
	header http.Header
	body   string
}

func do(t testing.TB, method, url string, header map[string]string) resp {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	r, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return resp{r.StatusCode, r.Header, string(b)}
}

func TestOriginalContract(t *testing.T) {
	t.Parallel()
	srv := newPublicServer(t, ClientIPConfig{Header: "X-Real-IP"}, 0)
	tests := []struct {
		name, realIP string
		status       int
		body         string
	}{
		{"cidr", "192.168.0.10", 200, "registry-1.docker.io"},
		{"asn", "1.0.0.1", 200, "registry-1.docker.io"},
		{"continent, IPv6", "2a02:d180::1", 200, "eu.example"},
		{"IPv6 in brackets", "[2001:db8::5]", 200, "v6.example"},
		{"IPv4-mapped", "::ffff:192.168.0.10", 200, "registry-1.docker.io"},
		{"unknown address: default", "10.1.2.3", 200, "us-west1-docker.pkg.dev"},
		{"no header: the peer, default", "", 200, "us-west1-docker.pkg.dev"},
		{"malformed", "not-an-ip", 400, "malformed client address: X-Real-Ip \"not-an-ip\" is not an IP address\n"},
		{"with port", "1.2.3.4:80", 400, "malformed client address: X-Real-Ip \"1.2.3.4:80\" is not an IP address\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := map[string]string{}
			if tt.realIP != "" {
				h["X-Real-Ip"] = tt.realIP
			}
			r := do(t, "GET", srv.URL+"/", h)
			if r.status != tt.status || r.body != tt.body {
				t.Errorf("got %d %q, want %d %q", r.status, r.body, tt.status, tt.body)
			}
			if tt.status == 200 && r.header.Get("Content-Type") != "text/plain; charset=UTF-8" {
				t.Errorf("Content-Type = %q", r.header.Get("Content-Type"))
			}
		})
	}
}

// The original Lua reads the body and builds "https://"..body..path:
// the body must be the host, byte for byte, with nothing around it.
func TestOriginalContractByteForByte(t *testing.T) {
	t.Parallel()
	srv := newPublicServer(t, ClientIPConfig{Header: "X-Forwarded-For"}, 0)
	// Even when the config reads X-Forwarded-For, "GET /" reads X-Real-IP,
	// as the original Lua sends it.
	r := do(t, "GET", srv.URL+"/", map[string]string{"X-Real-Ip": "89.160.20.112", "X-Forwarded-For": "10.0.0.1"})
	if got := []byte(r.body); string(got) != "registry-1.docker.io" || len(got) != 20 {
		t.Fatalf("body = %q", got)
	}
	if r.header.Get("Content-Length") != "20" {
		t.Errorf("Content-Length = %q", r.header.Get("Content-Length"))
	}
}

func TestDirect(t *testing.T) {
	t.Parallel()
	srv := newPublicServer(t, ClientIPConfig{Header: "X-Forwarded-For", XFFTrustedHops: 1}, 0)
	tests := []struct {
		name, method, path, xff string
		status                  int
		location                string
	}{
		{"GET manifest, prefix inserted", "GET", "/v2/pause/manifests/3.9", "10.9.9.9", 307,
			"https://us-west1-docker.pkg.dev/v2/k8s-artifacts-prod/images/pause/manifests/3.9"},
		{"HEAD", "HEAD", "/v2/pause/manifests/3.9", "89.160.20.112", 307, "https://registry-1.docker.io/v2/pause/manifests/3.9"},
		{"query kept", "GET", "/v2/pause/tags/list?n=10&last=3.8", "89.160.20.112", 307,
			"https://registry-1.docker.io/v2/pause/tags/list?n=10&last=3.8"},
		{"IPv6 client", "GET", "/v2/a/blobs/sha256:00", "2001:db8::1", 307, "https://v6.example/v2/a/blobs/sha256:00"},
		{"rightmost XFF entry is the client", "GET", "/v2/a/manifests/1", "192.168.0.9, 2a02:d180::1", 307, "https://eu.example/v2/a/manifests/1"},
		{"malformed XFF: default registry", "GET", "/v2/a/manifests/1", "192.168.0.9, garbage", 307,
			"https://us-west1-docker.pkg.dev/v2/k8s-artifacts-prod/images/a/manifests/1"},
		{"POST is 405", "POST", "/v2/a/blobs/uploads/", "", 405, ""},
		{"PUT is 405", "PUT", "/v2/a/manifests/1", "", 405, ""},
		{"dot segments rejected", "GET", "/v2/a/%2e%2e/b", "", 400, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := map[string]string{}
			if tt.xff != "" {
				h["X-Forwarded-For"] = tt.xff
			}
			r := do(t, tt.method, srv.URL+tt.path, h)
			if r.status != tt.status || r.header.Get("Location") != tt.location {
				t.Fatalf("got %d %q, want %d %q (%s)", r.status, r.header.Get("Location"), tt.status, tt.location, r.body)
			}
			switch {
			case tt.status == 307:
				if cc := r.header.Get("Cache-Control"); cc != "private, no-store" {
					t.Errorf("Cache-Control = %q", cc)
				}
				// HEAD answers with GET's headers, as http.Redirect does.
				if ct := r.header.Get("Content-Type"); ct != "text/html; charset=UTF-8" {
					t.Errorf("Content-Type = %q", ct)
				}
				wantBody := ""
				if tt.method == "GET" {
					wantBody = `<a href="` + strings.ReplaceAll(tt.location, "&", "&amp;") + `">Temporary Redirect</a>.` + "\n"
				}
				if r.body != wantBody {
					t.Errorf("body = %q, want %q", r.body, wantBody)
				}
			case tt.status == 405:
				if r.header.Get("Allow") != "GET, HEAD" {
					t.Errorf("Allow = %q", r.header.Get("Allow"))
				}
			}
		})
	}
}

func TestDirectAPIRoot(t *testing.T) {
	t.Parallel()
	srv := newPublicServer(t, ClientIPConfig{}, 0)
	for _, p := range []string{"/v2/", "/v2"} {
		r := do(t, "GET", srv.URL+p, nil)
		if r.status != 200 || r.header.Get("Docker-Distribution-Api-Version") != "registry/2.0" || r.body != "{}" {
			t.Errorf("%s: %d %v %q", p, r.status, r.header, r.body)
		}
	}
}

func TestRedirectStatus302(t *testing.T) {
	t.Parallel()
	srv := newPublicServer(t, ClientIPConfig{}, 302)
	r := do(t, "GET", srv.URL+"/v2/a/manifests/1", nil)
	if r.status != 302 || !strings.Contains(r.body, ">Found</a>") {
		t.Errorf("got %d %q", r.status, r.body)
	}
}

// An untrusted peer's headers are ignored: it cannot choose its registry.
func TestUntrustedPeer(t *testing.T) {
	t.Parallel()
	for _, header := range []string{"X-Real-IP", "X-Forwarded-For"} {
		srv := newPublicServer(t, ClientIPConfig{Header: header, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, 0)
		spoof := map[string]string{"X-Real-Ip": "89.160.20.112", "X-Forwarded-For": "89.160.20.112"}
		if r := do(t, "GET", srv.URL+"/", spoof); r.body != "us-west1-docker.pkg.dev" {
			t.Errorf("%s: GET / from an untrusted peer went to %q", header, r.body)
		}
		if r := do(t, "GET", srv.URL+"/v2/a/manifests/1", spoof); !strings.HasPrefix(r.header.Get("Location"), "https://us-west1-docker.pkg.dev/") {
			t.Errorf("%s: direct from an untrusted peer went to %q", header, r.header.Get("Location"))
		}
		if r := do(t, "GET", srv.URL+"/decide?ip=89.160.20.112&path=/v2/", nil); r.status != http.StatusForbidden {
			t.Errorf("%s: ?ip= from an untrusted peer: %d", header, r.status)
		}
		// A malformed header from an untrusted peer is ignored, not an error.
		if r := do(t, "GET", srv.URL+"/", map[string]string{"X-Real-Ip": "nonsense"}); r.status != 200 {
			t.Errorf("%s: malformed header from an untrusted peer: %d", header, r.status)
		}
	}
}

// The peer itself over IPv6: a real connection from ::1.
func TestIPv6Peer(t *testing.T) {
	t.Parallel()
	h, err := NewPublic(PublicConfig{Engine: testEngine(t), ClientIP: ClientIPConfig{TrustedProxies: []netip.Prefix{}}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Fatalf("IPv6 loopback is needed for this test: %v", err)
	}
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	r := do(t, "GET", srv.URL+"/decide?path=/v2/", map[string]string{"Accept": "application/json"})
	var got decideResponse
	if err := json.Unmarshal([]byte(r.body), &got); err != nil || got.Client != "::1" {
		t.Fatalf("got %d %q (%v)", r.status, r.body, err)
	}
}

func TestDecide(t *testing.T) {
	t.Parallel()
	srv := newPublicServer(t, ClientIPConfig{Header: "X-Real-IP"}, 0)
	r := do(t, "GET", srv.URL+"/decide", map[string]string{"X-Real-Ip": "89.160.20.112", "X-Original-Path": "/v2/pause/manifests/3.9?n=1"})
	wantLoc := "https://registry-1.docker.io/v2/pause/manifests/3.9?n=1"
	if r.status != 200 || r.header.Get(HeaderLocation) != wantLoc || r.header.Get(HeaderRegistry) != "hub" ||
		r.header.Get(HeaderReason) != "country:SE" || r.body != wantLoc {
		t.Fatalf("got %d %v %q", r.status, r.header, r.body)
	}

	r = do(t, "GET", srv.URL+"/decide?ip=89.160.20.112&path=/v2/x/manifests/y", map[string]string{"Accept": "application/json"})
	var got map[string]any
	if err := json.Unmarshal([]byte(r.body), &got); err != nil {
		t.Fatal(err, r.body)
	}
	facts, _ := got["facts"].(map[string]any)
	trail, _ := got["trail"].([]any)
	for _, k := range []string{"asn", "as_org", "country", "continent", "cloud", "region"} {
		if _, ok := facts[k]; !ok {
			t.Errorf("facts lack %q: %s", k, r.body)
		}
	}
	if got["registry"] != "hub" || got["host"] != "registry-1.docker.io" || got["reason"] != "country:SE" ||
		got["location"] != "https://registry-1.docker.io/v2/x/manifests/y" ||
		facts["asn"] != 29518.0 || facts["as_org"] != "Bredband2 AB" || facts["country"] != "SE" || facts["continent"] != "EU" ||
		len(trail) == 0 {
		t.Errorf("JSON = %s", r.body)
	}

	// ?ip= from a trusted proxy is the client, whatever the header says.
	r = do(t, "GET", srv.URL+"/decide?ip=89.160.20.112&path=/v2/x/manifests/y", map[string]string{"X-Real-Ip": "bogus"})
	if r.status != 200 || r.header.Get(HeaderReason) != "country:SE" {
		t.Errorf("?ip= with a malformed header: got %d %q %q", r.status, r.header.Get(HeaderReason), r.body)
	}

	for name, h := range map[string]map[string]string{
		"malformed address": {"X-Real-Ip": "1.2.3", "X-Original-Path": "/v2/"},
		"missing path":      {"X-Real-Ip": "1.2.3.4"},
		"backslash path":    {"X-Real-Ip": "1.2.3.4", "X-Original-Path": `/v2/a\\evil`},
		"scheme-relative":   {"X-Real-Ip": "1.2.3.4", "X-Original-Path": "//evil.example/v2/"},
	} {
		if r := do(t, "GET", srv.URL+"/decide", h); r.status != 400 || r.header.Get(HeaderLocation) != "" {
			t.Errorf("%s: got %d %q", name, r.status, r.body)
		}
	}
}

// An untrusted peer asking /decide for JSON gets the decision, but not
// the trail or the override's ID.
func TestDecideUntrustedGetsNoTrail(t *testing.T) {
	t.Parallel()
	env := newAdminEnv(t)
	if code, body := env.call(t, "POST", "/api/v1/overrides", `{"id":"secret-id","match":{"cidr":"127.0.0.0/8"},"registries":["eu"]}`); code != 201 {
		t.Fatalf("create: %d %v", code, body)
	}
	// The public server here trusts nobody: the test client is untrusted.
	h, err := NewPublic(PublicConfig{Engine: env.engine, ClientIP: ClientIPConfig{TrustedProxies: []netip.Prefix{}}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	r := do(t, "GET", srv.URL+"/decide?path=/v2/x/manifests/y", map[string]string{"Accept": "application/json"})
	var got map[string]any
	if err := json.Unmarshal([]byte(r.body), &got); err != nil {
		t.Fatal(err, r.body)
	}
	if got["registry"] != "eu" || got["source"] != "override" || got["trail"] != nil || strings.Contains(r.body, "secret-id") {
		t.Errorf("untrusted /decide: %s", r.body)
	}
}

func TestHealth(t *testing.T) {
	t.Parallel()
	srv := newPublicServer(t, ClientIPConfig{}, 0)
	if r := do(t, "GET", srv.URL+"/healthz", nil); r.status != 200 {
		t.Errorf("healthz: %d", r.status)
	}
	if r := do(t, "GET", srv.URL+"/readyz", nil); r.status != 200 || !strings.Contains(r.body, `"status":"ok"`) {
		t.Errorf("readyz: %d %s", r.status, r.body)
	}
}

// TestHeadWhereGet: every GET route answers HEAD with GET's status and
// headers and no body, and other methods get 405 naming both.
func TestHeadWhereGet(t *testing.T) {
	t.Parallel()
	srv := newPublicServer(t, ClientIPConfig{Header: "X-Real-IP"}, 0)
	client := map[string]string{"X-Real-IP": "89.160.20.112", "X-Original-Path": "/v2/pause/manifests/3.9"}
	for _, path := range []string{"/", "/decide", "/healthz", "/readyz"} {
		get := do(t, "GET", srv.URL+path, client)
		head := do(t, "HEAD", srv.URL+path, client)
		if get.status != 200 || head.status != get.status || head.body != "" {
			t.Errorf("%s: GET %d, HEAD %d with body %q", path, get.status, head.status, head.body)
		}
		for _, k := range []string{"Content-Type", "Content-Length", "X-Reghost-Registry"} {
			if head.header.Get(k) != get.header.Get(k) {
				t.Errorf("%s: HEAD %s %q, GET's %q", path, k, head.header.Get(k), get.header.Get(k))
			}
		}
		post := do(t, "POST", srv.URL+path, client)
		if allow := post.header.Get("Allow"); post.status != 405 || !strings.Contains(allow, "GET") || !strings.Contains(allow, "HEAD") {
			t.Errorf("%s: POST %d, Allow %q", path, post.status, allow)
		}
	}
}

func TestExtAuthz(t *testing.T) {
	t.Parallel()
	srv := newPublicServer(t, ClientIPConfig{Header: "X-Real-IP"}, 0)
	r := do(t, "GET", srv.URL+"/ext_authz/v2/pause/manifests/3.9?n=2", map[string]string{"X-Real-Ip": "1.0.0.1"})
	if r.status != 307 || r.header.Get("Location") != "https://registry-1.docker.io/v2/pause/manifests/3.9?n=2" {
		t.Errorf("got %d %q", r.status, r.header.Get("Location"))
	}
	if r := do(t, "POST", srv.URL+"/ext_authz/v2/x/blobs/uploads/", nil); r.status != 405 {
		t.Errorf("POST: %d", r.status)
	}
}

func TestClientIPXFFHops(t *testing.T) {
	t.Parallel()
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	tests := []struct {
		hops   int
		values []string
		want   string
		err    bool
	}{
		{1, []string{"1.1.1.1, 2.2.2.2"}, "2.2.2.2", false},
		{2, []string{"1.1.1.1, 2.2.2.2"}, "1.1.1.1", false},
		{2, []string{"1.1.1.1", "2.2.2.2"}, "1.1.1.1", false},
		{3, []string{"1.1.1.1, 2.2.2.2"}, "1.1.1.1", false},
		{1, []string{" [2001:db8::1] "}, "2001:db8::1", false},
		{1, []string{"1.1.1.1,"}, "", true},
		{2, []string{"1.1.1.1,"}, "1.1.1.1", false},
		{2, []string{"", "1.1.1.1"}, "1.1.1.1", false}, // an empty first line: the leftmost entry still
		{1, []string{""}, "", true},
		{1, []string{"fe80::1%eth0"}, "", true},
	}
	for _, tt := range tests {
		ci, err := newClientIP(ClientIPConfig{Header: "x-forwarded-for", TrustedProxies: trusted, XFFTrustedHops: tt.hops})
		if err != nil {
			t.Fatal(err)
		}
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = "127.0.0.1:1234"
		r.Header["X-Forwarded-For"] = tt.values
		got, err := ci.addr(r)
		if (err != nil) != tt.err || (!tt.err && got.String() != tt.want) {
			t.Errorf("hops %d %q: got %v, %v; want %s", tt.hops, tt.values, got, err, tt.want)
		}
	}
	if _, err := newClientIP(ClientIPConfig{Header: "Forwarded"}); err == nil {
		t.Error("Forwarded header accepted")
	}
}

// A proxy reaching reghost over a link-local address has a zone in its
// peer address; it is trusted all the same, and no zone reaches a
// decision or the access log.
func TestClientIPZonedPeer(t *testing.T) {
	t.Parallel()
	ci, err := newClientIP(ClientIPConfig{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("fe80::/10")}})
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "[fe80::1%eth0]:1234"
	r.Header.Set("X-Real-Ip", "89.160.20.112")
	if got, err := ci.addr(r); err != nil || got != netip.MustParseAddr("89.160.20.112") {
		t.Errorf("trusted zoned peer: got %v, %v; want its header's address", got, err)
	}
	r.RemoteAddr = `[fe81::1%e"th0]:1234`
	r.Header.Set("X-Real-Ip", "89.160.20.112")
	ci.trusted = nil
	if got, err := ci.addr(r); err != nil || got != netip.MustParseAddr("fe81::1") {
		t.Errorf("untrusted zoned peer: got %v, %v; want fe81::1 without its zone", got, err)
	}
}

// peer is the connection's address without a zone, IPv4-mapped
// addresses as IPv4.
func TestPeer(t *testing.T) {
	t.Parallel()
	for remote, want := range map[string]string{
		"127.0.0.1:1":         "127.0.0.1",
		"[::ffff:10.0.0.1]:2": "10.0.0.1",
		"[fe80::1%eth0]:3":    "fe80::1",
		"[2001:db8::1]:4":     "2001:db8::1",
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = remote
		if got := peer(r); got != netip.MustParseAddr(want) {
			t.Errorf("%s: peer %v, want %s", remote, got, want)
		}
	}
}

var testTrusted = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
