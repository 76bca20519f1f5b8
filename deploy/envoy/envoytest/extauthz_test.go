package envoytest

import (
	"context"
	"io"
	"net/http"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
)

// authzEnvoy plays what envoy-ext-authz.yaml configures Envoy to do with a
// request, as source/extensions/filters/common/ext_authz/
// ext_authz_http_impl.cc does it: the connection manager appends the
// client to X-Forwarded-For (use_remote_address); ext_authz sends reghost
// the allowed headers plus Host, Method, Path and Authorization, the path
// behind path_prefix, its headers_to_add (overwriting), Content-Length: 0,
// and through the async client x-envoy-internal and Envoy's own address
// appended to X-Forwarded-For. No answer, a timeout or a 5xx is an error:
// with failure_mode_allow the request goes on to the route; 200 lets it
// through; any other status is a denial sent to the client with the
// allowed headers (and :status, Content-Length, WWW-Authenticate and
// Location) and the body.
type authzEnvoy struct {
	authz    *extauthzv3.ExtAuthz
	hcm      *hcmv3.HttpConnectionManager
	fallback *routev3.Route
	reghost  string // base URL of the cluster
	local    string // Envoy's own address
}

func newAuthzEnvoy(t *testing.T, reghost string) *authzEnvoy {
	t.Helper()
	c, problems := decodeEnvoyConfig(readFile(t, filepath.Join(envoyDir(t), "envoy-ext-authz.yaml")))
	if len(problems) > 0 {
		t.Fatalf("envoy-ext-authz.yaml: %v", problems)
	}
	authz := typedOf[*extauthzv3.ExtAuthz](c)
	hcm := typedOf[*hcmv3.HttpConnectionManager](c)
	if len(authz) != 1 || len(hcm) != 1 {
		t.Fatalf("want one ext_authz filter and one connection manager, found %d and %d", len(authz), len(hcm))
	}
	routes := hcm[0].GetRouteConfig().GetVirtualHosts()[0].GetRoutes()
	if hcm[0].GetXffNumTrustedHops() != 0 || !hcm[0].GetUseRemoteAddress().GetValue() {
		t.Fatal("the emulation knows use_remote_address: true with xff_num_trusted_hops: 0 only")
	}
	return &authzEnvoy{authz: authz[0], hcm: hcm[0], fallback: routes[len(routes)-1], reghost: reghost, local: "10.0.0.2"}
}

type clientAnswer struct {
	status int
	header http.Header
	body   string
	// byReghost: the answer is reghost's denial, not the route's.
	byReghost bool
}

func matchesExact(patterns []string, name string) bool { return slices.Contains(patterns, name) }

// serve answers a client request: method, path (with query), its headers
// and the peer address "ip:port" of its connection.
func (e *authzEnvoy) serve(t *testing.T, method, path string, header http.Header, peer string) clientAnswer {
	t.Helper()
	ap := netip.MustParseAddrPort(peer)
	header = header.Clone()
	if header == nil {
		header = http.Header{}
	}
	// use_remote_address: true appends the peer.
	if xff := header.Get("X-Forwarded-For"); xff != "" {
		header.Set("X-Forwarded-For", xff+","+ap.Addr().String())
	} else {
		header.Set("X-Forwarded-For", ap.Addr().String())
	}

	hs := e.authz.GetHttpService()
	var allowed []string
	for _, m := range e.authz.GetAllowedHeaders().GetPatterns() {
		if m.GetExact() == "" {
			t.Fatalf("the emulation knows exact header matchers only, not %v", m)
		}
		allowed = append(allowed, strings.ToLower(m.GetExact()))
	}
	allowed = append(allowed, "authorization")
	check := http.Header{}
	for k, vs := range header {
		if matchesExact(allowed, strings.ToLower(k)) {
			check[k] = []string{strings.Join(vs, ",")}
		}
	}
	for _, h := range hs.GetAuthorizationRequest().GetHeadersToAdd() {
		v := h.GetValue()
		v = strings.ReplaceAll(v, "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%", ap.Addr().String())
		v = strings.ReplaceAll(v, "%DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT%", ap.Addr().String())
		if strings.Contains(v, "%") {
			t.Fatalf("headers_to_add %s: the emulation does not know %q", h.GetKey(), h.GetValue())
		}
		check.Set(h.GetKey(), v)
	}
	check.Set("X-Envoy-Internal", "true")
	check.Set("X-Forwarded-For", strings.Join(append(check.Values("X-Forwarded-For"), e.local), ","))

	ctx, cancel := context.WithTimeout(t.Context(), hs.GetServerUri().GetTimeout().AsDuration())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, e.reghost+hs.GetPathPrefix()+path, http.NoBody)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = check
	req.Host = "registry.example.com"
	req.ContentLength = 0
	client := &http.Client{
		Transport:     &http.Transport{DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	var body []byte
	if err == nil {
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	switch {
	case err != nil || resp.StatusCode >= 500:
		if !e.authz.GetFailureModeAllow() {
			return clientAnswer{status: http.StatusForbidden, header: http.Header{}}
		}
		return e.route(path)
	case resp.StatusCode == http.StatusOK:
		return e.route(path)
	}
	clientHeaders := []string{":status", "content-length", "www-authenticate", "location"}
	for _, m := range hs.GetAuthorizationResponse().GetAllowedClientHeaders().GetPatterns() {
		clientHeaders = append(clientHeaders, strings.ToLower(m.GetExact()))
	}
	out := http.Header{}
	for k, vs := range resp.Header {
		if matchesExact(clientHeaders, strings.ToLower(k)) {
			out[k] = vs
		}
	}
	return clientAnswer{status: resp.StatusCode, header: out, body: string(body), byReghost: true}
}

// route is the router's answer: the fallback redirect.
func (e *authzEnvoy) route(path string) clientAnswer {
	rd := e.fallback.GetRedirect()
	codes := map[routev3.RedirectAction_RedirectResponseCode]int{
		routev3.RedirectAction_MOVED_PERMANENTLY:  301,
		routev3.RedirectAction_FOUND:              302,
		routev3.RedirectAction_SEE_OTHER:          303,
		routev3.RedirectAction_TEMPORARY_REDIRECT: 307,
		routev3.RedirectAction_PERMANENT_REDIRECT: 308,
	}
	h := http.Header{}
	h.Set("Location", rd.GetSchemeRedirect()+"://"+rd.GetHostRedirect()+path)
	return clientAnswer{status: codes[rd.GetResponseCode()], header: h}
}

// TestExtAuthzAgainstReghost replays what envoy-ext-authz.yaml makes Envoy
// send reghost, and what it makes of the answers.
func TestExtAuthzAgainstReghost(t *testing.T) {
	realIP := startReghost(t, reghostYAML(t, "X-Real-IP", 1))
	xff2 := startReghost(t, reghostYAML(t, "X-Forwarded-For", 2))
	xff1 := startReghost(t, reghostYAML(t, "X-Forwarded-For", 1))
	script := readFile(t, filepath.Join(envoyDir(t), "reghost.lua"))
	fallback := "https://" + luaConstant(t, script, defaultRegistryRE)
	// A reghost that answers too late, and says whether Envoy gave up on
	// it: a late 200 would end in the same fallback redirect as a timeout.
	gaveUp := make(chan struct{})
	slow := stubURL(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(2 * time.Second):
			w.WriteHeader(http.StatusOK)
		case <-r.Context().Done():
			close(gaveUp)
		}
	})

	type tc struct {
		name      string
		reghost   string
		method    string
		path      string
		header    http.Header
		peer      string
		status    int
		location  string
		byReghost bool
	}
	for _, c := range []tc{
		{name: "GET rule client", reghost: realIP, method: "GET", path: manifest, peer: ruleV4 + ":5555",
			status: 307, location: mirrorLoc, byReghost: true},
		{name: "HEAD rule client", reghost: realIP, method: "HEAD", path: manifest, peer: ruleV4 + ":5555",
			status: 307, location: mirrorLoc, byReghost: true},
		{name: "GET default client IPv6", reghost: realIP, method: "GET", path: manifest, peer: "[" + otherV6 + "]:443",
			status: 307, location: reghostDefLo, byReghost: true},
		{name: "GET rule client IPv6", reghost: realIP, method: "GET", path: manifest, peer: "[" + ruleV6 + "]:443",
			status: 307, location: mirrorLoc, byReghost: true},
		{name: "query kept", reghost: realIP, method: "GET", path: "/v2/pause/tags/list?n=1&last=3.8", peer: ruleV4 + ":5555",
			status: 307, location: "https://" + mirrorHost + "/v2/images/pause/tags/list?n=1&last=3.8", byReghost: true},
		{name: "client headers cannot move the client", reghost: realIP, method: "GET", path: manifest, peer: otherV4 + ":5555",
			header: http.Header{"X-Real-Ip": {ruleV4}, "X-Forwarded-For": {ruleV4}},
			status: 307, location: reghostDefLo, byReghost: true},
		{name: "POST", reghost: realIP, method: "POST", path: "/v2/pause/blobs/uploads/", peer: ruleV4 + ":5555",
			status: 405, byReghost: true},
		{name: "reghost down", reghost: closedURL(t), method: "GET", path: manifest, peer: ruleV4 + ":5555",
			status: 302, location: fallback + manifest},
		{name: "reghost slow", reghost: slow, method: "GET", path: "/v2/pause/tags/list?n=1", peer: ruleV4 + ":5555",
			status: 302, location: fallback + "/v2/pause/tags/list?n=1"},
		{name: "reghost 500", reghost: stubURL(t, func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "boom", http.StatusInternalServerError)
		}), method: "GET", path: manifest, peer: ruleV4 + ":5555", status: 302, location: fallback + manifest},

		// reghost reading X-Forwarded-For instead works with two trusted
		// hops (the client's entry is followed by Envoy's own); with one,
		// it decides for Envoy.
		{name: "X-Forwarded-For with 2 hops", reghost: xff2, method: "GET", path: manifest, peer: ruleV4 + ":5555",
			header: http.Header{"X-Forwarded-For": {otherV4}}, status: 307, location: mirrorLoc, byReghost: true},
		{name: "X-Forwarded-For with 1 hop decides for Envoy", reghost: xff1, method: "GET", path: manifest, peer: ruleV4 + ":5555",
			status: 307, location: reghostDefLo, byReghost: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := newAuthzEnvoy(t, c.reghost).serve(t, c.method, c.path, c.header, c.peer)
			if c.reghost == slow {
				select {
				case <-gaveUp:
				case <-time.After(5 * time.Second):
					t.Error("Envoy waited for the slow reghost: the ext_authz timeout did not apply")
				}
			}
			if got.status != c.status || got.header.Get("Location") != c.location || got.byReghost != c.byReghost {
				t.Fatalf("client gets %d Location %q (from reghost: %v), want %d %q (%v)",
					got.status, got.header.Get("Location"), got.byReghost, c.status, c.location, c.byReghost)
			}
			switch {
			case c.status == 405:
				if got.header.Get("Allow") != "GET, HEAD" {
					t.Errorf("Allow %q, want GET, HEAD", got.header.Get("Allow"))
				}
			case c.byReghost:
				if got.header.Get("Cache-Control") != "private, no-store" {
					t.Errorf("Cache-Control %q, want private, no-store", got.header.Get("Cache-Control"))
				}
			}
		})
	}
}
