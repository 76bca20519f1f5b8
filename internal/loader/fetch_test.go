package loader

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func testFetcher(t *testing.T, cfg HTTPConfig) *fetcher {
	t.Helper()
	if cfg.Proxy == nil {
		cfg.Proxy = func(*http.Request) (*url.URL, error) { return nil, nil }
	}
	if cfg.RetryWait == 0 {
		cfg.RetryWait = time.Millisecond
	}
	f, err := newFetcher(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.close)
	return f
}

func get(t *testing.T, f *fetcher, r request) (string, error) {
	t.Helper()
	var body string
	err := f.do(t.Context(), r, func(_ *http.Response, rd io.Reader) error {
		b, err := io.ReadAll(rd)
		body = string(b)
		return err
	})
	return body, err
}

// HTTPS_PROXY is honoured: an HTTPS download goes through the proxy's
// CONNECT tunnel, and the proxy never sees the credentials (they travel
// inside TLS).
func TestHTTPSProxyFromEnv(t *testing.T) {
	t.Parallel()
	origin := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "acct" || p != "key" {
			http.Error(w, "no auth", http.StatusUnauthorized)
			return
		}
		io.WriteString(w, "through the tunnel")
	}))
	defer origin.Close()
	// httpproxy never proxies loopback addresses: the loader asks for
	// origin.test, which only the proxy knows is the test server.
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(origin.URL, "https://"))
	host := "origin.test:" + port

	var tunnels atomic.Int32
	var proxyAuth atomic.Value
	var wg sync.WaitGroup
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect || r.Host != host {
			http.Error(w, "CONNECT to origin.test only", http.StatusMethodNotAllowed)
			return
		}
		proxyAuth.Store(r.Header.Get("Authorization"))
		up, err := net.Dial("tcp", "127.0.0.1:"+port)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		tunnels.Add(1)
		w.WriteHeader(http.StatusOK)
		conn, buf, err := w.(http.Hijacker).Hijack()
		if err != nil {
			up.Close()
			return
		}
		// The copies end when either side closes; the test waits.
		wg.Go(func() { io.Copy(up, buf); up.Close() })
		wg.Go(func() { io.Copy(conn, up); conn.Close() })
	}))
	defer proxy.Close()

	env := map[string]string{"HTTPS_PROXY": proxy.URL}
	pool := x509.NewCertPool()
	pool.AddCert(origin.Certificate())
	f := testFetcher(t, HTTPConfig{
		Proxy: ProxyFromEnv(func(k string) string { return env[k] }),
		TLS:   &tls.Config{RootCAs: pool, ServerName: "example.com"}, // httptest's certificate
	})
	body, err := get(t, f, request{url: "https://" + host + "/db", label: "db",
		auth: &credentials{scheme: "https", host: host, user: "acct", pass: "key"}})
	f.close() // ends the tunnel, if Close reaches the transport
	wg.Wait()
	if err != nil || body != "through the tunnel" {
		t.Fatalf("got %q, %v", body, err)
	}
	if tunnels.Load() != 1 {
		t.Errorf("%d tunnels, want 1", tunnels.Load())
	}
	if a, _ := proxyAuth.Load().(string); a != "" {
		t.Errorf("the proxy saw Authorization %q", a)
	}
}

// Credentials go to their origin only: not to another port of the same
// host name (net/http would copy them there), not after a redirect.
func TestCredentialsStayWithTheirOrigin(t *testing.T) {
	t.Parallel()
	var seen sync.Map
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Store("other", r.Header.Get("Authorization"))
		io.WriteString(w, "data")
	}))
	defer other.Close()
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Store("origin", r.Header.Get("Authorization"))
		http.Redirect(w, r, other.URL+"/blob", http.StatusFound)
	}))
	defer origin.Close()
	f := testFetcher(t, HTTPConfig{})
	u, _ := url.Parse(origin.URL)
	body, err := get(t, f, request{url: origin.URL + "/x", label: "x", auth: &credentials{scheme: "http", host: u.Host, user: "a", pass: "b"}})
	if err != nil || body != "data" {
		t.Fatalf("%q, %v", body, err)
	}
	if a, _ := seen.Load("origin"); a == "" {
		t.Error("the origin got no credentials")
	}
	if a, _ := seen.Load("other"); a != "" {
		t.Errorf("the redirect target got %q", a)
	}
}

// A redirect from HTTPS to plain HTTP is refused.
func TestNoDowngradeRedirect(t *testing.T) {
	t.Parallel()
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "x") }))
	defer plain.Close()
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, plain.URL, http.StatusFound)
	}))
	defer tlsSrv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(tlsSrv.Certificate())
	f := testFetcher(t, HTTPConfig{TLS: &tls.Config{RootCAs: pool}})
	if _, err := get(t, f, request{url: tlsSrv.URL, label: "x"}); err == nil || !strings.Contains(err.Error(), "refusing a redirect from HTTPS") {
		t.Fatalf("err %v", err)
	}
}

// What is retried and what is not, counted at the server.
func TestRetries(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code  int
		tries int32
	}{
		{http.StatusInternalServerError, 3},
		{http.StatusBadGateway, 3},
		{http.StatusRequestTimeout, 3},
		{http.StatusUnauthorized, 1},
		{http.StatusForbidden, 1},
		{http.StatusTooManyRequests, 1},
		{http.StatusNotFound, 1},
	}
	for _, tt := range tests {
		t.Run(http.StatusText(tt.code), func(t *testing.T) {
			t.Parallel()
			var n atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n.Add(1)
				w.Header().Set("Retry-After", "3600") // over a minute: ignored
				http.Error(w, "no", tt.code)
			}))
			defer srv.Close()
			f := testFetcher(t, HTTPConfig{Attempts: 3})
			_, err := get(t, f, request{url: srv.URL, label: "x"})
			se, ok := errors.AsType[*StatusError](err)
			if !ok || se.Code != tt.code {
				t.Fatalf("err %v", err)
			}
			if n.Load() != tt.tries {
				t.Errorf("%d requests, want %d", n.Load(), tt.tries)
			}
		})
	}
}

// A connection that breaks off mid-body is retried; one that stalls is
// cut by the idle deadline, however long the whole transfer has taken.
func TestBrokenAndStalledBodies(t *testing.T) {
	t.Parallel()
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "10")
		if n.Add(1) == 1 {
			io.WriteString(w, "short") // and close: unexpected EOF
			return
		}
		io.WriteString(w, "0123456789")
	}))
	defer srv.Close()
	f := testFetcher(t, HTTPConfig{Attempts: 2})
	if body, err := get(t, f, request{url: srv.URL, label: "x"}); err != nil || body != "0123456789" {
		t.Fatalf("%q, %v", body, err)
	}

	stall := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		// Data comes, slower than the idle timeout in total but never
		// idle that long, then stops.
		for range 4 {
			io.WriteString(w, "x")
			w.(http.Flusher).Flush()
			select {
			case <-time.After(60 * time.Millisecond):
			case <-r.Context().Done():
				return
			}
		}
		<-r.Context().Done()
	}))
	defer stall.Close()
	f = testFetcher(t, HTTPConfig{Attempts: 1, IdleTimeout: 150 * time.Millisecond})
	_, err := get(t, f, request{url: stall.URL, label: "x"})
	if !errors.Is(err, ErrStalled) {
		t.Fatalf("err %v, want ErrStalled", err)
	}
}
