package health

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"flag"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// Every test's checker must have stopped and every probe connection
// closed by the end.
func TestMain(m *testing.M) {
	flag.Parse()
	// The tests spend their time waiting for probe intervals, not
	// computing: run more than GOMAXPROCS of them at once (two, on the
	// project's machines) unless -parallel says otherwise.
	parallelSet := false
	flag.Visit(func(f *flag.Flag) { parallelSet = parallelSet || f.Name == "test.parallel" })
	if !parallelSet {
		flag.Set("test.parallel", "16")
	}
	goleak.VerifyTestMain(m)
}

// fast are settings for tests: probes every few tens of milliseconds
// while a change is in doubt. The timeout (and so the interval, which
// may not be shorter) is generous next to a loopback round trip, so
// that a busy machine (-race, two cores, other packages' tests at the
// same time) does not fail probes the test did not mean to fail.
func fast() Settings {
	return Settings{
		Interval:     250 * time.Millisecond,
		FastInterval: 20 * time.Millisecond,
		Timeout:      250 * time.Millisecond,
		Rise:         2,
		Fall:         3,
	}
}

// waitTimeout bounds every wait for a state: far longer than any test
// needs, so that only a real failure reaches it.
const waitTimeout = 10 * time.Second

// start runs a checker for the test and stops it (waiting for Run to
// return) when the test ends.
func start(t *testing.T, cfg Config) *Checker {
	t.Helper()
	cfg.minInterval = time.Millisecond
	if cfg.Version == "" {
		cfg.Version = "test"
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(waitTimeout):
			t.Errorf("Run did not return within %v of its context being cancelled", waitTimeout)
		}
	})
	return c
}

// waitFor polls the checker until cond holds, and fails the test with
// the state it saw when it does not within waitTimeout.
func waitFor(t *testing.T, c *Checker, what string, cond func(Status) bool) Status {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		s := c.Status()
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("still not %s after %v; status:\n%s", what, waitTimeout, dump(s))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// reg returns the named registry's state.
func reg(t *testing.T, s Status, name string) RegistryStatus {
	t.Helper()
	for _, r := range s.Registries {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("no registry %q in status", name)
	return RegistryStatus{}
}

func dump(s Status) string {
	var b strings.Builder
	fmt.Fprintf(&b, "panic=%v up=%d/%d\n", s.Panic, s.Up, s.Probed)
	for _, r := range s.Registries {
		fmt.Fprintf(&b, "  %s: probed=%v up=%v confirmed=%v transitions=%d last error %s: %s\n",
			r.Name, r.Probed, r.Up, r.Confirmed, r.Transitions, r.ErrorClass, r.LastError)
		for _, res := range r.Results {
			fmt.Fprintf(&b, "    %s ok=%v status=%d class=%s latency=%v %s\n",
				res.At.Format("15:04:05.000"), res.OK, res.Status, res.Class, res.Latency, res.Err)
		}
	}
	return b.String()
}

// fake is a registry whose answers a test scripts: each request takes
// the next entry of the script, or the default once it is used up.
type fake struct {
	srv *httptest.Server

	mu       sync.Mutex
	script   []http.HandlerFunc
	def      http.HandlerFunc
	requests []request
}

type request struct {
	at        time.Time
	path, ua  string
	hasHeader bool
}

// newFake starts a plain HTTP registry answering 200 by default.
func newFake(t *testing.T) *fake {
	f := &fake{def: status(http.StatusOK)}
	f.srv = httptest.NewServer(f)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.requests = append(f.requests, request{at: time.Now(), path: r.URL.RequestURI(), ua: r.UserAgent()})
	h := f.def
	if len(f.script) > 0 {
		h, f.script = f.script[0], f.script[1:]
	}
	f.mu.Unlock()
	h(w, r)
}

// then queues answers for the next requests.
func (f *fake) then(hs ...http.HandlerFunc) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.script = append(f.script, hs...)
}

// always sets the answer for every request after the script.
func (f *fake) always(h http.HandlerFunc) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.def = h
}

func (f *fake) log() []request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]request(nil), f.requests...)
}

func status(code int) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(code) }
}

func challenge(code int, scheme string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("WWW-Authenticate", scheme)
		w.WriteHeader(code)
	}
}

// hang answers nothing until the client gives up.
func hang(w http.ResponseWriter, r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-time.After(waitTimeout):
	}
}

// cutOff closes the connection without an answer.
func cutOff(w http.ResponseWriter, _ *http.Request) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err == nil {
		conn.Close()
	}
}

// closedAddr returns a loopback address where nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// selfSigned makes a certificate for 127.0.0.1 that nothing trusts.
func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "self-signed registry"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// quiet keeps a TLS test server from logging the handshakes that the
// test means to fail.
func quiet(srv *httptest.Server) {
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
}

// pool trusts a TLS test server's certificate.
func pool(srv *httptest.Server) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(srv.Certificate())
	return p
}
