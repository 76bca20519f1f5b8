package app

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reghost/reghost/internal/certs/certstest"
	"github.com/reghost/reghost/internal/config"
	"github.com/reghost/reghost/internal/logtest"
)

// tlsClient is a client of a reghost HTTPS listener that trusts roots only,
// speaks one protocol (HTTP/2 when h2), makes a new connection (so a new
// handshake) for every request, and hands back redirects instead of
// following them.
func tlsClient(roots *x509.CertPool, h2 bool, cert *tls.Certificate) *http.Client {
	var p http.Protocols
	p.SetHTTP1(!h2)
	p.SetHTTP2(h2)
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: roots},
		ForceAttemptHTTP2: h2,
		Protocols:         &p,
		DisableKeepAlives: true,
	}
	if cert != nil {
		// Presented whatever CAs the server asks for, so that the server
		// is the one to refuse a certificate of another CA.
		tr.TLSClientConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// tlsGet sends GET url and returns the answer, its body read, and the
// serial of the certificate the server presented.
func tlsGet(c *http.Client, url string) (*http.Response, string, int64, error) {
	resp, err := c.Get(url)
	if err != nil {
		return nil, "", 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, "", 0, err
	}
	if resp.TLS == nil || len(resp.TLS.PeerCertificates) == 0 {
		return nil, "", 0, errors.New("no TLS in the answer")
	}
	return resp, string(body), resp.TLS.PeerCertificates[0].SerialNumber.Int64(), nil
}

// metric reads one series' value from the admin listener's /metrics;
// ok is false when the series is absent.
func metric(t *testing.T, c *http.Client, adminURL, series string) (float64, bool) {
	t.Helper()
	resp, err := c.Get(adminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindSubmatch(body)
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v, true
}

// tlsWaitFor polls cond until it holds, failing the test after a
// deadline that no healthy run comes near.
func tlsWaitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting after 15s for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Over HTTPS the public listener answers direct mode as over HTTP, with
// HTTP/1.1 and with HTTP/2, and /metrics shows when the certificate
// expires.
func TestPublicTLSRedirects(t *testing.T) {
	t.Parallel()
	ca := certstest.NewCA(t, "test CA")
	notAfter := time.Now().Add(30 * 24 * time.Hour).Truncate(time.Second)
	pair := ca.WritePair(t, t.TempDir(), certstest.Leaf{Serial: 7, NotAfter: notAfter})
	a := newApp(t, fmt.Sprintf("tls: {cert_file: %s, key_file: %s}\n", pair.Cert, pair.Key), Options{})
	serve(t, a)

	target := "https://" + a.PublicAddr() + "/v2/pause/manifests/3.9?n=1"
	const wantLocation = "https://k8s.example/v2/images/pause/manifests/3.9?n=1"
	for _, tc := range []struct {
		name  string
		h2    bool
		major int
	}{{"HTTP/1.1", false, 1}, {"HTTP/2", true, 2}} {
		resp, _, serial, err := tlsGet(tlsClient(ca.Pool(), tc.h2, nil), target)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if resp.ProtoMajor != tc.major {
			t.Errorf("%s: answered over %s", tc.name, resp.Proto)
		}
		if resp.StatusCode != http.StatusTemporaryRedirect || resp.Header.Get("Location") != wantLocation {
			t.Errorf("%s: %s, Location %q; want 307 to %s", tc.name, resp.Status, resp.Header.Get("Location"), wantLocation)
		}
		if serial != 7 {
			t.Errorf("%s: served certificate serial %d, want 7", tc.name, serial)
		}
	}

	// Plain HTTP to the TLS port is refused, not answered in the clear.
	resp, err := http.Get("http://" + a.PublicAddr() + "/v2/")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP to the HTTPS listener: %s; want 400", resp.Status)
		}
	}

	got, ok := metric(t, http.DefaultClient, "http://"+a.AdminAddr(), `reghost_tls_certificate_expiry_timestamp_seconds{listener="public"}`)
	if !ok || got != float64(notAfter.Unix()) {
		t.Errorf("expiry metric = %v (present %v), want %d", got, ok, notAfter.Unix())
	}
	if _, ok := metric(t, http.DefaultClient, "http://"+a.AdminAddr(), `reghost_tls_certificate_expiry_timestamp_seconds{listener="admin"}`); ok {
		t.Error("an expiry metric for the admin listener, which serves plain HTTP")
	}
}

// A certificate renamed into place serves new handshakes while a client
// goes on pulling, and no request fails; a pair that does not match is
// refused, the certificate before it goes on serving, and the log and
// the metrics say so.
func TestPublicTLSRotation(t *testing.T) {
	t.Parallel()
	ca := certstest.NewCA(t, "test CA")
	dir := t.TempDir()
	pair := ca.WritePair(t, dir, certstest.Leaf{Serial: 1})
	logs := &logtest.Buffer{}
	a := newApp(t, fmt.Sprintf("tls: {cert_file: %s, key_file: %s}\n", pair.Cert, pair.Key),
		Options{Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	serve(t, a)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s", logs.String())
		}
	})

	// The client: one request after another, each on a new connection,
	// alternating HTTP/1.1 and HTTP/2, until told to stop.
	var (
		mu      sync.Mutex
		serials []int64 // of every answer, in order
		fails   []error
	)
	last := func() int64 {
		mu.Lock()
		defer mu.Unlock()
		if len(serials) == 0 {
			return 0
		}
		return serials[len(serials)-1]
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		clients := []*http.Client{tlsClient(ca.Pool(), false, nil), tlsClient(ca.Pool(), true, nil)}
		deadline := time.Now().Add(60 * time.Second) // bounded whatever the test does
		for i := 0; time.Now().Before(deadline); i++ {
			select {
			case <-stop:
				return
			default:
			}
			resp, _, serial, err := tlsGet(clients[i%2], "https://"+a.PublicAddr()+"/v2/pause/manifests/3.9")
			if err == nil && resp.StatusCode != http.StatusTemporaryRedirect {
				err = fmt.Errorf("status %s", resp.Status)
			}
			mu.Lock()
			if err != nil {
				fails = append(fails, err)
			} else {
				serials = append(serials, serial)
			}
			mu.Unlock()
		}
	}()
	stopClient := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-done
	}
	t.Cleanup(stopClient)
	tlsWaitFor(t, "the first answers", func() bool { return last() == 1 })

	// A new pair, key first and then certificate, each renamed into
	// place: in between the key is not the certificate's, and that
	// moment must not be served or reported.
	cert2, key2 := ca.Issue(t, certstest.Leaf{Serial: 2})
	certstest.Replace(t, pair.Key, key2)
	certstest.Replace(t, pair.Cert, cert2)
	tlsWaitFor(t, "serial 2 to be served", func() bool { return last() == 2 })

	// A key that is not the certificate's, alone.
	_, key3 := ca.Issue(t, certstest.Leaf{Serial: 3})
	certstest.Replace(t, pair.Key, key3)
	admin := "http://" + a.AdminAddr()
	tlsWaitFor(t, "the refusal to show in the metrics", func() bool {
		v, _ := metric(t, http.DefaultClient, admin, `reghost_tls_certificate_reload_error{listener="public"}`)
		return v == 1
	})
	n := func() int { mu.Lock(); defer mu.Unlock(); return len(serials) }
	after := n()
	tlsWaitFor(t, "more answers after the refusal", func() bool { return n() > after+4 })
	stopClient()

	if len(fails) > 0 {
		t.Errorf("%d of %d requests failed during rotation; first: %v", len(fails), len(fails)+len(serials), fails[0])
	}
	// Sequential handshakes: every answer before the first serial 2 is
	// serial 1, every one after it serial 2 (the refused pair never).
	switched := false
	for i, s := range serials {
		switch {
		case s == 2:
			switched = true
		case s != 1 || switched:
			t.Fatalf("answer %d of %d had serial %d after serial 2 had served; serials %v", i, len(serials), s, serials)
		}
	}
	if v, _ := metric(t, http.DefaultClient, admin, `reghost_tls_certificate_reloads_total{listener="public",result="ok"}`); v != 1 {
		t.Errorf("reloads ok = %v, want 1 (the half-replaced pair is not counted)", v)
	}
	if v, _ := metric(t, http.DefaultClient, admin, `reghost_tls_certificate_reloads_total{listener="public",result="error"}`); v < 1 {
		t.Errorf("reloads error = %v, want at least 1", v)
	}
	if log := logs.String(); !strings.Contains(log, `"level":"ERROR","msg":"tls: new certificate files refused; the previous certificate is still served"`) ||
		!strings.Contains(log, "does not match certificate file") {
		t.Errorf("no ERROR naming the mismatch in the log")
	}
	t.Logf("%d answers and %d failures during rotation", len(serials), len(fails))
}

// With client_ca_file the admin listener refuses a client without a
// certificate, or with one of another CA, and serves one with a
// certificate of its CA; the admin page's session cookie is Secure.
func TestAdminMutualTLS(t *testing.T) {
	t.Parallel()
	serverCA, clientCA, otherCA := certstest.NewCA(t, "server CA"), certstest.NewCA(t, "client CA"), certstest.NewCA(t, "other CA")
	dir := t.TempDir()
	pair := serverCA.WritePair(t, dir, certstest.Leaf{Serial: 5})
	caFile := filepath.Join(dir, "clients.crt")
	if err := os.WriteFile(caFile, clientCA.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &logtest.Buffer{}
	a := newApp(t, fmt.Sprintf("admin: {tls: {cert_file: %s, key_file: %s, client_ca_file: %s}}\n", pair.Cert, pair.Key, caFile),
		Options{Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	serve(t, a)
	admin := "https://" + a.AdminAddr()

	good := clientCA.TLSCertificate(t, certstest.Leaf{Serial: 10, Client: true})
	other := otherCA.TLSCertificate(t, certstest.Leaf{Serial: 11, Client: true})
	for _, tc := range []struct {
		name string
		cert *tls.Certificate
		h2   bool
		// "" for a 200 from /metrics; else why the server refused the
		// handshake, as its log says. (The client's words vary: with
		// TLS 1.3 the refusal arrives after the client has finished its
		// side of the handshake, while it may be writing a request.)
		refused string
	}{
		{"no certificate", nil, false, "client didn't provide a certificate"},
		{"no certificate, HTTP/2", nil, true, "client didn't provide a certificate"},
		{"another CA's certificate", &other, false, "certificate signed by unknown authority"},
		{"the client CA's certificate", &good, false, ""},
		{"the client CA's certificate, HTTP/2", &good, true, ""},
	} {
		before := len(logs.String())
		resp, body, _, err := tlsGet(tlsClient(serverCA.Pool(), tc.h2, tc.cert), admin+"/metrics")
		switch {
		case tc.refused != "" && err == nil:
			t.Errorf("%s: %s; want the handshake refused", tc.name, resp.Status)
		case tc.refused != "":
			tlsWaitFor(t, tc.name+": the server to log "+tc.refused, func() bool {
				return strings.Contains(logs.String()[before:], tc.refused)
			})
		case err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case !strings.Contains(body, `reghost_tls_certificate_expiry_timestamp_seconds{listener="admin"}`):
			t.Errorf("%s: /metrics has no admin certificate expiry", tc.name)
		}
	}

	// Sign in to the admin page: the cookie is Secure, and the answer
	// asks browsers to keep to HTTPS.
	c := tlsClient(serverCA.Pool(), true, &good)
	resp, err := c.PostForm(admin+"/admin/sign-in", url.Values{"token": {a.AdminToken()}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in: %s, want 303", resp.Status)
	}
	var session *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == "reghost_session" {
			session = ck
		}
	}
	if session == nil || !session.Secure || !session.HttpOnly {
		t.Errorf("session cookie %+v; want it Secure and HttpOnly", session)
	}
	if hsts := resp.Header.Get("Strict-Transport-Security"); hsts == "" {
		t.Error("no Strict-Transport-Security over HTTPS")
	}
}

// The admin page over plain HTTP sets no Secure cookie (a browser would
// drop it): Secure follows the admin listener's TLS.
func TestAdminPlainCookieNotSecure(t *testing.T) {
	t.Parallel()
	a := newApp(t, "", Options{})
	serve(t, a)
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.PostForm("http://"+a.AdminAddr()+"/admin/sign-in", url.Values{"token": {a.AdminToken()}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cookies := resp.Cookies()
	if len(cookies) != 1 || cookies[0].Secure {
		t.Errorf("cookies %+v; want one, not Secure", cookies)
	}
}

// A SIGHUP cannot move a listener to other certificate files or turn
// TLS on or off: the change is logged as needing a restart, and the
// certificate that serves stays.
func TestTLSReloadNeedsRestart(t *testing.T) {
	t.Parallel()
	ca := certstest.NewCA(t, "test CA")
	pair := ca.WritePair(t, t.TempDir(), certstest.Leaf{Serial: 1})
	other := ca.WritePair(t, t.TempDir(), certstest.Leaf{Serial: 2})
	logs := &logtest.Buffer{}
	dir := t.TempDir()
	text := func(p certstest.Pair) string {
		return fmt.Sprintf(baseConfig, dir) + fmt.Sprintf("tls: {cert_file: %s, key_file: %s}\nadmin: {tls: {cert_file: %s, key_file: %s}}\n", p.Cert, p.Key, p.Cert, p.Key)
	}
	cfg, err := config.Parse([]byte(text(pair)), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(cfg, Options{Logger: slog.New(slog.NewJSONHandler(logs, nil)), Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Listen(); err != nil {
		t.Fatal(err)
	}
	next, err := config.Parse([]byte(text(other)), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// Before Serve: Serve's start-up log reads the config unguarded, so
	// a Reload while it starts is a race of its own.
	if err := a.Reload(next); err != nil {
		t.Fatal(err)
	}
	serve(t, a)
	if !strings.Contains(logs.String(), `"keys":"tls, admin.tls"`) {
		t.Errorf("no restart warning for tls and admin.tls in the log:\n%s", logs.String())
	}
	_, _, serial, err := tlsGet(tlsClient(ca.Pool(), false, nil), "https://"+a.PublicAddr()+"/healthz")
	if err != nil || serial != 1 {
		t.Errorf("after reload: serial %d, %v; want serial 1 still", serial, err)
	}
}

// A pair that cannot serve stops New, naming the listener's key.
func TestTLSNewErrors(t *testing.T) {
	t.Parallel()
	ca := certstest.NewCA(t, "test CA")
	pair := ca.WritePair(t, t.TempDir(), certstest.Leaf{Serial: 1})
	_, otherKey := ca.Issue(t, certstest.Leaf{Serial: 2})
	bad := filepath.Join(t.TempDir(), "other.key")
	certstest.Replace(t, bad, otherKey)
	for _, tc := range []struct{ name, yaml, want string }{
		{"public", fmt.Sprintf("tls: {cert_file: %s, key_file: %s}\n", pair.Cert, bad),
			fmt.Sprintf("tls: certs: key file %s does not match certificate file %s (replace both together)", bad, pair.Cert)},
		{"admin", fmt.Sprintf("admin: {tls: {cert_file: %s, key_file: %s}}\n", pair.Cert, bad),
			fmt.Sprintf("admin.tls: certs: key file %s does not match certificate file %s (replace both together)", bad, pair.Cert)},
	} {
		cfg, err := config.Parse([]byte(fmt.Sprintf(baseConfig, t.TempDir())+tc.yaml), "test.yaml")
		if err != nil {
			t.Fatal(err)
		}
		_, err = New(cfg, Options{Getenv: func(string) string { return "" }})
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s: New: %v\nwant %s", tc.name, err, tc.want)
		}
	}
}

// admin.trusted_origins reaches the admin page's cross-origin check, for
// an ingress that rewrites Host, and a reload changes it.
func TestAdminTrustedOrigins(t *testing.T) {
	t.Parallel()
	const origin = "https://admin.example.com"
	a := newApp(t, "admin: {trusted_origins: [\""+origin+"\"]}\n", Options{})
	serve(t, a)
	signIn := func() int {
		req, _ := http.NewRequest("POST", "http://"+a.AdminAddr()+"/admin/sign-in", strings.NewReader(url.Values{"token": {a.AdminToken()}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", origin)
		req.Header.Set("Sec-Fetch-Site", "cross-site")
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := signIn(); code != http.StatusSeeOther {
		t.Errorf("sign-in from the trusted origin: %d, want 303", code)
	}
	cfg, err := config.Parse([]byte(fmt.Sprintf(baseConfig, a.cfg.DataDir)), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if code := signIn(); code != http.StatusForbidden {
		t.Errorf("sign-in from an origin no longer trusted: %d, want 403", code)
	}
}
