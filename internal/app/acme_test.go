package app

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/reghost/reghost/internal/acmetest"
	"github.com/reghost/reghost/internal/config"
)

// With tls.acme the public listener gets its certificate from the CA at
// the first handshake for a configured name, answering the CA's
// TLS-ALPN-01 challenge itself, and serves redirects with it over
// HTTP/1.1 and HTTP/2; the certificate is kept in the cache directory
// and its expiry is in /metrics. A name that is not configured is
// refused. The CA is golang.org/x/crypto's test CA (internal/acmetest).
func TestPublicACME(t *testing.T) {
	t.Parallel()
	ca := acmetest.NewCAServer(t).ChallengeTypes("tls-alpn-01").Start()
	const domain = "registry.example.com"
	dir := t.TempDir()
	cfg, err := config.Parse([]byte(fmt.Sprintf(baseConfig, dir)+"tls: {acme: {domains: ["+domain+"], email: ops@example.com}}\n"), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg.TLS.ACME.DirectoryURL = ca.URL() // plain HTTP, which the config refuses
	a, err := New(cfg, Options{Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Listen(); err != nil {
		t.Fatal(err)
	}
	ca.Resolve(domain, a.PublicAddr()) // where the CA checks the challenge
	serve(t, a)

	client := func(h2 bool, serverName string) *http.Client {
		c := tlsClient(ca.Roots(), h2, nil)
		tr := c.Transport.(*http.Transport)
		tr.TLSClientConfig.ServerName = serverName
		tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, a.PublicAddr())
		}
		return c
	}
	const wantLocation = "https://k8s.example/v2/images/pause/manifests/3.9"
	var leaf int64
	for _, h2 := range []bool{false, true} {
		resp, _, serial, err := tlsGet(client(h2, domain), "https://"+domain+"/v2/pause/manifests/3.9")
		if err != nil {
			t.Fatalf("h2 %v: %v", h2, err)
		}
		if want := map[bool]int{false: 1, true: 2}[h2]; resp.ProtoMajor != want {
			t.Errorf("answered over %s; want HTTP/%d", resp.Proto, want)
		}
		if resp.StatusCode != http.StatusTemporaryRedirect || resp.Header.Get("Location") != wantLocation {
			t.Errorf("%s, Location %q; want 307 to %s", resp.Status, resp.Header.Get("Location"), wantLocation)
		}
		if got := resp.TLS.PeerCertificates[0]; !slices.Contains(got.DNSNames, domain) {
			t.Errorf("served a certificate for %v", got.DNSNames)
		} else if h2 {
			if serial != leaf {
				t.Errorf("second request: serial %d, first %d: a second certificate was issued", serial, leaf)
			}
			v, ok := metric(t, http.DefaultClient, "http://"+a.AdminAddr(), `reghost_tls_certificate_expiry_timestamp_seconds{listener="public"}`)
			if !ok || v != float64(got.NotAfter.Unix()) {
				t.Errorf("expiry metric %v (present %v); want %d", v, ok, got.NotAfter.Unix())
			}
		}
		leaf = serial
	}
	if _, err := os.Stat(filepath.Join(dir, "acme", domain)); err != nil {
		t.Errorf("the certificate is not in the cache directory: %v", err)
	}
	if _, _, _, err := tlsGet(client(false, "other.example.com"), "https://other.example.com/v2/"); err == nil {
		t.Error("a handshake for a name not in tls.acme.domains succeeded")
	}
}
