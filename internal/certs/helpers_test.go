package certs

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/reghost/reghost/internal/logtest"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t testing.TB, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// leaf says what certificate to issue; the zero value is a server
// certificate for localhost and 127.0.0.1, valid from an hour ago for a day.
type leaf struct {
	serial              int64
	notBefore, notAfter time.Time
	usage               []x509.ExtKeyUsage
}

// issue returns a certificate and its key, PEM-encoded.
func (ca *testCA) issue(t testing.TB, l leaf) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if l.serial == 0 {
		l.serial = 1
	}
	if l.notBefore.IsZero() {
		l.notBefore = time.Now().Add(-time.Hour)
	}
	if l.notAfter.IsZero() {
		l.notAfter = time.Now().Add(24 * time.Hour)
	}
	if l.usage == nil {
		l.usage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(l.serial),
		Subject:      pkix.Name{CommonName: fmt.Sprintf("leaf %d", l.serial)},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    l.notBefore,
		NotAfter:     l.notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  l.usage,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

// clientCert issues a client certificate as a tls.Certificate.
func (ca *testCA) clientCert(t testing.TB) tls.Certificate {
	t.Helper()
	c, k := ca.issue(t, leaf{serial: 99, usage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	cert, err := tls.X509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// replace writes data to path as a certificate tool should: a new file
// renamed over the old one, so that a reader sees the old or the new.
func replace(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// fixture is a Reloader on files in a scratch directory, its log, its
// metrics, and a count of Run's checks.
type fixture struct {
	ca            *testCA
	dir           string
	cert, key     string
	reg           *prometheus.Registry
	logs          *logtest.Buffer
	r             *Reloader
	checks        atomic.Int64 // checks Run has made
	attemptedErrs chan error   // every attempt's error (nil for a success), while there is room
}

// newFixture writes a pair with serial 1 and starts a Reloader on it;
// edit changes its Config and timing before New and Run.
func newFixture(t *testing.T, edit func(*Config)) *fixture {
	t.Helper()
	f := &fixture{ca: newCA(t, "test CA"), dir: t.TempDir(), reg: prometheus.NewRegistry(), logs: &logtest.Buffer{}}
	f.cert, f.key = filepath.Join(f.dir, "tls.crt"), filepath.Join(f.dir, "tls.key")
	c, k := f.ca.issue(t, leaf{serial: 1})
	replace(t, f.cert, c)
	replace(t, f.key, k)
	cfg := Config{
		CertFile: f.cert, KeyFile: f.key, Listener: "public",
		Logger:     slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registerer: f.reg,
		Poll:       time.Hour, // file events only, unless a test wants polls
	}
	if edit != nil {
		edit(&cfg)
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.debounce = 10 * time.Millisecond
	r.confirm = 100 * time.Millisecond
	f.attemptedErrs = make(chan error, 100)
	r.checked = func(attempted bool, err error) {
		f.checks.Add(1)
		if attempted {
			select {
			case f.attemptedErrs <- err:
			default:
			}
		}
	}
	f.r = r
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s", f.logs.String())
		}
	})
	return f
}

// run starts Run, and stops it (waiting for it to return) at the end of
// the test.
func (f *fixture) run(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		f.r.Run(ctx)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return within 10s of its context's end")
		}
	})
}

// serve serves HTTPS with the Reloader's config on a loopback port, as
// the package comment says to, and returns its address. The handler
// answers the request's protocol.
func (f *fixture) serve(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, r.Proto)
		}),
		TLSConfig:         f.r.TLSConfig(),
		ReadHeaderTimeout: 10 * time.Second,
		// Refused handshakes are what some tests make; not worth a line each.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// clientOpts says how a test client connects.
type clientOpts struct {
	http1Only bool             // never HTTP/2
	reuse     bool             // keep connections alive; else one handshake per request
	cert      *tls.Certificate // client certificate for mutual TLS
}

func (f *fixture) client(o clientOpts) *http.Client {
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: f.ca.pool(), ServerName: "localhost"},
		ForceAttemptHTTP2: !o.http1Only,
		DisableKeepAlives: !o.reuse,
	}
	if o.http1Only {
		// A non-nil, empty map turns HTTP/2 off: only http/1.1 is offered.
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	if o.cert != nil {
		tr.TLSClientConfig.Certificates = []tls.Certificate{*o.cert}
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// get returns the serial of the certificate the server presented, the
// protocol and the body.
func get(c *http.Client, addr string) (serial int64, proto string, err error) {
	resp, err := c.Get("https://" + addr + "/")
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, "", err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, "", fmt.Errorf("status %d", resp.StatusCode)
	}
	if string(body) != resp.Proto {
		return 0, "", fmt.Errorf("the server saw %s, the client %s", body, resp.Proto)
	}
	return resp.TLS.PeerCertificates[0].SerialNumber.Int64(), resp.Proto, nil
}

// waitFor polls cond until it holds, failing the test after a deadline
// that no healthy run comes near.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting after 10s for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitServing waits until new connections get the certificate with serial.
func (f *fixture) waitServing(t *testing.T, addr string, serial int64) {
	t.Helper()
	c := f.client(clientOpts{})
	waitFor(t, fmt.Sprintf("serial %d to be served", serial), func() bool {
		got, _, err := get(c, addr)
		return err == nil && got == serial
	})
}

// errorLines returns the log's ERROR lines.
func (f *fixture) errorLines() []string {
	var out []string
	for line := range strings.Lines(f.logs.String()) {
		if strings.Contains(line, `"level":"ERROR"`) {
			out = append(out, line)
		}
	}
	return out
}

// value reads one series of the fixture's registry, a gauge or a counter.
func (f *fixture) value(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue metric
				}
			}
			switch {
			case m.Gauge != nil:
				return m.GetGauge().GetValue()
			case m.Counter != nil:
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no series %s%v", name, labels)
	return 0
}
