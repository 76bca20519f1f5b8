package e2e

import (
	"net/http"
	"testing"
)

// TestUntrustedPeerCannotChooseRegistry sends a client-address header
// from loopback to reghosts that trust loopback and that do not. Only
// the first may move the request to client A's registry; the others
// decide on the peer address, which no rule matches, and redirect to
// the default registry.
func TestUntrustedPeerCannotChooseRegistry(t *testing.T) {
	t.Parallel()
	const (
		a = "http://a.registry.test"
		b = "http://b.registry.test/" + mirrorPrefix
	)
	def := neverHit(t) // redirects are checked, never followed
	const path = "/v2/" + repo + "/manifests/" + tag
	for _, tc := range []struct {
		name    string
		trusted string // client_ip.trusted_proxies
		header  http.Header
		want    string
	}{
		{"loopback trusted: the header is believed", "[127.0.0.0/8]",
			http.Header{"X-Forwarded-For": {clientA}}, a + path},
		{"loopback not trusted", "[10.0.0.0/8]",
			http.Header{"X-Forwarded-For": {clientA}}, def.URL + path},
		{"loopback not trusted, client as every hop", "[10.0.0.0/8]",
			http.Header{"X-Forwarded-For": {clientA + ", " + clientA, clientA}}, def.URL + path},
		{"loopback not trusted, X-Real-IP too", "[10.0.0.0/8]",
			http.Header{"X-Forwarded-For": {clientA}, "X-Real-Ip": {clientA}}, def.URL + path},
		{"nobody trusted", "[]",
			http.Header{"X-Forwarded-For": {clientA}}, def.URL + path},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rh := startReghost(t, configYAML(t, a, b, def.URL, tc.trusted))
			resp, body, err := get(t.Context(), noRedirects, "http://"+rh.public+path, tc.header)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusTemporaryRedirect {
				t.Fatalf("GET %s: %s; want 307; body: %s", path, resp.Status, body)
			}
			if got := resp.Header.Get("Location"); got != tc.want {
				t.Errorf("GET %s from loopback with %v: Location %s; want %s", path, tc.header, got, tc.want)
			}
		})
	}
}
