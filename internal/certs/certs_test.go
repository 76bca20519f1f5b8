package certs

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/reghost/reghost/internal/logtest"
)

// TestNewRefuses gives New pairs that cannot serve, and wants an error
// naming the file and the problem.
func TestNewRefuses(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "test CA")
	goodCert, goodKey := ca.issue(t, leaf{serial: 1})
	_, otherKey := ca.issue(t, leaf{serial: 2})
	clientCert, clientKey := ca.issue(t, leaf{serial: 3, usage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})

	for _, tc := range []struct {
		name      string
		cert, key []byte // nil: the file does not exist
		ca        []byte // nil: no client CA file
		listener  string
		want      string // with {cert}, {key}, {ca} for the files' paths
	}{
		{name: "no certificate file", key: goodKey, want: "certs: certificate file: open {cert}: no such file or directory"},
		{name: "no key file", cert: goodCert, want: "certs: key file: open {key}: no such file or directory"},
		{name: "empty certificate", cert: []byte("\n"), key: goodKey, want: "certs: certificate file {cert}: is empty"},
		{name: "not PEM", cert: []byte("hello"), key: goodKey, want: "certs: certificate file {cert}: has no PEM CERTIFICATE block"},
		{name: "cut short", cert: goodCert[:len(goodCert)/2], key: goodKey, want: "certs: certificate file {cert}: ends in an incomplete PEM block"},
		{name: "bad DER", cert: []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), key: goodKey, want: "certs: certificate file {cert}: certificate 1: x509: malformed certificate"},
		{name: "swapped", cert: goodKey, key: goodCert, want: "certs: certificate file {cert}: holds a private key and no certificate (are the certificate and key files swapped?)"},
		{name: "another certificate's key", cert: goodCert, key: otherKey, want: "certs: key file {key} does not match certificate file {cert} (replace both together)"},
		{name: "key not PEM", cert: goodCert, key: []byte("secret"), want: "certs: key file {key}: failed to find any PEM data in key input"},
		{name: "client certificate", cert: clientCert, key: clientKey, want: `certs: certificate file {cert}: "CN=leaf 3" is not for servers`},
		{name: "client CA not PEM", cert: goodCert, key: goodKey, ca: []byte("nope"), want: "certs: client CA file {ca}: has no PEM CERTIFICATE block"},
		{name: "client CA is a key", cert: goodCert, key: goodKey, ca: goodKey, want: "certs: client CA file {ca}: holds a private key and no certificate"},
		{name: "no listener", cert: goodCert, key: goodKey, listener: "-", want: "certs: no listener name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			cfg := Config{CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key"), Listener: "public"}
			if tc.listener == "-" {
				cfg.Listener = ""
			}
			for path, data := range map[string][]byte{cfg.CertFile: tc.cert, cfg.KeyFile: tc.key} {
				if data != nil {
					replace(t, path, data)
				}
			}
			if tc.ca != nil {
				cfg.ClientCAFile = filepath.Join(dir, "ca.crt")
				replace(t, cfg.ClientCAFile, tc.ca)
			}
			want := strings.NewReplacer("{cert}", cfg.CertFile, "{key}", cfg.KeyFile, "{ca}", cfg.ClientCAFile).Replace(tc.want)
			r, err := New(cfg)
			if err == nil || !strings.HasPrefix(err.Error(), want) {
				t.Errorf("New: %v, %v\nwant an error starting %q", r, err, want)
			}
		})
	}

	t.Run("one file holding both", func(t *testing.T) {
		t.Parallel()
		both := filepath.Join(t.TempDir(), "tls.pem")
		replace(t, both, append(bytes.Clone(goodCert), goodKey...))
		if _, err := New(Config{CertFile: both, KeyFile: both, Listener: "public"}); err != nil {
			t.Errorf("New with the certificate and key in one file: %v", err)
		}
	})
}

// TestNewOutsideValidity: at start, an expired or not yet valid
// certificate serves, with an ERROR, since there is nothing else to serve.
func TestNewOutsideValidity(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "test CA")
	for _, tc := range []struct {
		name string
		leaf leaf
		want string
	}{
		{"expired", leaf{notBefore: time.Now().Add(-48 * time.Hour), notAfter: time.Now().Add(-time.Hour)}, "certificate has expired"},
		{"not valid yet", leaf{notBefore: time.Now().Add(time.Hour), notAfter: time.Now().Add(48 * time.Hour)}, "certificate is not valid yet"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			c, k := ca.issue(t, tc.leaf)
			cfg := Config{CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key"), Listener: "admin"}
			replace(t, cfg.CertFile, c)
			replace(t, cfg.KeyFile, k)
			var logs logtest.Buffer
			cfg.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
			reg := prometheus.NewRegistry()
			cfg.Registerer = reg
			r, err := New(cfg)
			if err != nil {
				t.Fatalf("New: %v; want the certificate accepted", err)
			}
			if n := strings.Count(logs.String(), `"level":"ERROR"`); n != 1 || !strings.Contains(logs.String(), tc.want) {
				t.Errorf("%d ERROR lines; want one saying %q:\n%s", n, tc.want, logs.String())
			}
			f := &fixture{reg: reg}
			if got := f.value(t, "reghost_tls_certificate_expiry_timestamp_seconds", map[string]string{"listener": "admin"}); got != float64(r.Leaf().NotAfter.Unix()) {
				t.Errorf("expiry metric %v; want %d", got, r.Leaf().NotAfter.Unix())
			}
		})
	}
}

// TestRotationUnderLoad replaces the pair while clients keep making
// requests on new connections, and on one kept-alive connection.
func TestRotationUnderLoad(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	f.r.confirm = time.Hour // the pair is replaced a file at a time: never report the moment between
	f.run(t)
	addr := f.serve(t)

	// A connection opened before the rotation and kept alive.
	kept := f.client(clientOpts{reuse: true})
	if serial, _, err := get(kept, addr); err != nil || serial != 1 {
		t.Fatalf("before the rotation: serial %d, %v", serial, err)
	}

	var (
		stop     atomic.Bool
		wg       sync.WaitGroup
		mu       sync.Mutex
		failures []error
		seen     = map[int64]int{}
	)
	for range 4 {
		wg.Go(func() {
			c := f.client(clientOpts{}) // a new handshake every request
			sawNew := false
			for !stop.Load() {
				serial, _, err := get(c, addr)
				mu.Lock()
				switch {
				case err != nil:
					failures = append(failures, err)
				case serial == 1 && sawNew:
					failures = append(failures, errors.New("a new connection got the old certificate after one got the new"))
				}
				seen[serial]++
				mu.Unlock()
				sawNew = sawNew || serial == 2
			}
		})
	}
	waitFor(t, "requests with the first certificate", func() bool { mu.Lock(); defer mu.Unlock(); return seen[1] >= 20 })
	c2, k2 := f.ca.issue(t, leaf{serial: 2})
	replace(t, f.cert, c2)
	replace(t, f.key, k2)
	waitFor(t, "requests with the new certificate", func() bool { mu.Lock(); defer mu.Unlock(); return seen[2] >= 20 })
	stop.Store(true)
	wg.Wait()

	for _, err := range failures {
		t.Errorf("request during the rotation: %v", err)
	}
	if serial, _, err := get(kept, addr); err != nil || serial != 1 {
		t.Errorf("kept-alive connection after the rotation: serial %d, %v; want it still open, with the certificate it began with", serial, err)
	}
	if got := f.value(t, "reghost_tls_certificate_reloads_total", map[string]string{"listener": "public", "result": "ok"}); got < 1 {
		t.Errorf("reloads_total{result=ok} %v; want at least 1", got)
	}
	if got := f.value(t, "reghost_tls_certificate_reloads_total", map[string]string{"listener": "public", "result": "error"}); got != 0 {
		t.Errorf("reloads_total{result=error} %v; want 0", got)
	}
	if got, want := f.value(t, "reghost_tls_certificate_expiry_timestamp_seconds", map[string]string{"listener": "public"}), float64(f.r.Leaf().NotAfter.Unix()); got != want || f.r.Leaf().SerialNumber.Int64() != 2 {
		t.Errorf("expiry metric %v, serving serial %d; want %v, 2", got, f.r.Leaf().SerialNumber, want)
	}
	t.Logf("requests by certificate serial: %v", seen)
}

// TestSymlinkSwap updates the files as the kubelet updates a Secret
// volume: the files are symlinks through "..data" to a timestamped
// directory, and an update swaps "..data" in one rename.
func TestSymlinkSwap(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "test CA")
	dir := t.TempDir()
	version := func(name string, serial int64) {
		c, k := ca.issue(t, leaf{serial: serial})
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		for file, data := range map[string][]byte{"tls.crt": c, "tls.key": k} {
			if err := os.WriteFile(filepath.Join(dir, name, file), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	link := func(target, name string) {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	version("..2026_12_07_04_00_00.1", 1)
	link("..2026_12_07_04_00_00.1", "..data")
	link("..data/tls.crt", "tls.crt")
	link("..data/tls.key", "tls.key")

	f := newFixture(t, func(c *Config) {
		c.CertFile, c.KeyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	})
	f.ca = ca
	f.run(t)
	addr := f.serve(t)
	f.waitServing(t, addr, 1)

	version("..2026_12_07_05_00_00.2", 2)
	link("..2026_12_07_05_00_00.2", "..data_tmp")
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "..2026_12_07_04_00_00.1")); err != nil {
		t.Fatal(err)
	}
	f.waitServing(t, addr, 2)

	// And again, now that the first target directory is gone.
	version("..2026_12_07_06_00_00.3", 3)
	link("..2026_12_07_06_00_00.3", "..data_tmp")
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	f.waitServing(t, addr, 3)
	if lines := f.errorLines(); len(lines) > 0 {
		t.Errorf("ERRORs during symlink swaps: %q", lines)
	}
}

// TestRefusedPairKeepsServing breaks the files in different ways: the old
// pair keeps serving, the failure is reported once, and a later good pair
// clears it.
func TestRefusedPairKeepsServing(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		break_ func(t *testing.T, f *fixture)
		want   string
	}{
		{"another certificate's key", func(t *testing.T, f *fixture) {
			_, k := f.ca.issue(t, leaf{serial: 5})
			replace(t, f.key, k)
		}, "does not match certificate file"},
		{"key not PEM", func(t *testing.T, f *fixture) { replace(t, f.key, []byte("garbage")) }, "failed to find any PEM data in key input"},
		{"certificate half written", func(t *testing.T, f *fixture) {
			c, _ := f.ca.issue(t, leaf{serial: 5})
			// Written in place, and left cut short.
			if err := os.WriteFile(f.cert, c[:len(c)/2], 0o600); err != nil {
				t.Fatal(err)
			}
		}, "ends in an incomplete PEM block"},
		{"certificate removed", func(t *testing.T, f *fixture) {
			if err := os.Remove(f.cert); err != nil {
				t.Fatal(err)
			}
		}, "no such file or directory"},
		{"expired certificate", func(t *testing.T, f *fixture) {
			c, k := f.ca.issue(t, leaf{serial: 5, notBefore: time.Now().Add(-48 * time.Hour), notAfter: time.Now().Add(-time.Hour)})
			replace(t, f.cert, c)
			replace(t, f.key, k)
		}, "expired at"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, func(c *Config) { c.Poll = 20 * time.Millisecond })
			f.run(t)
			addr := f.serve(t)
			f.waitServing(t, addr, 1)
			failing := func() float64 {
				return f.value(t, "reghost_tls_certificate_reload_error", map[string]string{"listener": "public"})
			}
			errorsTotal := func() float64 {
				return f.value(t, "reghost_tls_certificate_reloads_total", map[string]string{"listener": "public", "result": "error"})
			}
			if failing() != 0 {
				t.Fatalf("reload_error %v before anything broke", failing())
			}

			tc.break_(t, f)
			waitFor(t, "reload_error to be 1", func() bool { return failing() == 1 })
			if serial, _, err := get(f.client(clientOpts{}), addr); err != nil || serial != 1 {
				t.Errorf("while refused: serial %d, %v; want the old certificate, 1", serial, err)
			}
			// Polls go on re-reading the same broken files: still one
			// ERROR and one error counted.
			n := f.checks.Load()
			waitFor(t, "five more checks", func() bool { return f.checks.Load() >= n+5 })
			if lines := f.errorLines(); len(lines) != 1 || !strings.Contains(lines[0], tc.want) || !strings.Contains(lines[0], "the previous certificate is still served") {
				t.Errorf("ERROR lines %q; want one, saying %q", lines, tc.want)
			}
			if got := errorsTotal(); got != 1 {
				t.Errorf("reloads_total{result=error} %v; want 1", got)
			}

			c, k := f.ca.issue(t, leaf{serial: 6})
			replace(t, f.key, k)
			replace(t, f.cert, c)
			waitFor(t, "reload_error to be 0", func() bool { return failing() == 0 })
			f.waitServing(t, addr, 6)
			if got := f.value(t, "reghost_tls_certificate_reloads_total", map[string]string{"listener": "public", "result": "ok"}); got < 1 {
				t.Errorf("reloads_total{result=ok} %v after the good pair", got)
			}
			if !strings.Contains(f.logs.String(), `"resolves":`) {
				t.Errorf("the reload after a refusal does not say it resolves it")
			}
		})
	}
}

// TestReplacedOneFileAtATime: the certificate is replaced, checked (and
// refused: the key is still the old one), then the key: that moment is
// no error, and the new pair serves.
func TestReplacedOneFileAtATime(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	f.r.confirm = time.Hour // only the key's arrival can end the wait
	f.run(t)
	addr := f.serve(t)
	c, k := f.ca.issue(t, leaf{serial: 2})
	replace(t, f.cert, c)
	for err := range f.attemptedErrs {
		if err != nil && strings.Contains(err.Error(), "does not match") {
			break
		}
		t.Fatalf("attempt after replacing the certificate: %v; want a mismatch", err)
	}
	if serial, _, err := get(f.client(clientOpts{}), addr); err != nil || serial != 1 {
		t.Errorf("between the files: serial %d, %v; want the old certificate, 1", serial, err)
	}
	replace(t, f.key, k)
	f.waitServing(t, addr, 2)
	if lines := f.errorLines(); len(lines) > 0 {
		t.Errorf("ERROR for a pair replaced one file at a time: %q", lines)
	}
	if got := f.value(t, "reghost_tls_certificate_reloads_total", map[string]string{"listener": "public", "result": "error"}); got != 0 {
		t.Errorf("reloads_total{result=error} %v; want 0", got)
	}
}

// TestPollWithoutEvents: where no file system events come, the periodic
// check finds the new pair.
func TestPollWithoutEvents(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *Config) { c.Poll = 20 * time.Millisecond })
	f.r.noEvents = true
	f.run(t)
	addr := f.serve(t)
	c, k := f.ca.issue(t, leaf{serial: 2})
	replace(t, f.key, k)
	replace(t, f.cert, c)
	f.waitServing(t, addr, 2)
	if !strings.Contains(f.logs.String(), "checking them periodically instead") {
		t.Error("no warning that the files are only polled")
	}
}

// TestHTTP2AndHTTP1: clients that offer h2 get HTTP/2, clients that do not
// get HTTP/1.1, from the same listener.
func TestHTTP2AndHTTP1(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	addr := f.serve(t)
	for _, tc := range []struct {
		name  string
		opts  clientOpts
		proto string
	}{
		{"h2", clientOpts{reuse: true}, "HTTP/2.0"},
		{"http/1.1", clientOpts{http1Only: true, reuse: true}, "HTTP/1.1"},
	} {
		serial, proto, err := get(f.client(tc.opts), addr)
		if err != nil || proto != tc.proto || serial != 1 {
			t.Errorf("%s client: %s, serial %d, %v; want %s", tc.name, proto, serial, err, tc.proto)
		}
	}
}

// TestMutualTLS: with a client CA, clients without a certificate or with
// one from another CA are refused, and the CA file is reloaded too.
func TestMutualTLS(t *testing.T) {
	t.Parallel()
	caA, caB := newCA(t, "client CA A"), newCA(t, "client CA B")
	var caFile string
	f := newFixture(t, func(c *Config) {
		caFile = filepath.Join(filepath.Dir(c.CertFile), "client-ca.crt")
		replace(t, caFile, caA.pem)
		c.ClientCAFile = caFile
		c.Listener = "admin"
	})
	f.run(t)
	addr := f.serve(t)
	certA, certB := caA.clientCert(t), caB.clientCert(t)
	try := func(cert *tls.Certificate, http1 bool) (string, error) {
		_, proto, err := get(f.client(clientOpts{cert: cert, http1Only: http1}), addr)
		return proto, err
	}

	if _, err := try(nil, false); err == nil {
		t.Error("a client without a certificate was served")
	}
	if _, err := try(&certB, false); err == nil {
		t.Error("a client with a certificate from another CA was served")
	}
	if proto, err := try(&certA, false); err != nil || proto != "HTTP/2.0" {
		t.Errorf("a client with a certificate from the CA: %s, %v; want HTTP/2.0", proto, err)
	}
	if proto, err := try(&certA, true); err != nil || proto != "HTTP/1.1" {
		t.Errorf("an HTTP/1.1 client with a certificate from the CA: %s, %v", proto, err)
	}

	replace(t, caFile, caB.pem)
	waitFor(t, "the new client CA", func() bool { _, err := try(&certB, false); return err == nil })
	if _, err := try(&certA, false); err == nil {
		t.Error("a client with a certificate from the replaced CA is still served")
	}
}

// TestExpiresWhileServing: the serving certificate's expiry is logged,
// once, by the periodic check.
func TestExpiresWhileServing(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *Config) { c.Poll = 20 * time.Millisecond })
	var clock atomic.Pointer[time.Time]
	now := time.Now()
	clock.Store(&now)
	f.r.now = func() time.Time { return *clock.Load() }
	f.run(t)
	later := f.r.Leaf().NotAfter.Add(time.Minute)
	clock.Store(&later)
	waitFor(t, "an ERROR", func() bool { return len(f.errorLines()) > 0 })
	n := f.checks.Load()
	waitFor(t, "five more checks", func() bool { return f.checks.Load() >= n+5 })
	if lines := f.errorLines(); len(lines) != 1 || !strings.Contains(lines[0], "the certificate being served has expired") {
		t.Errorf("ERROR lines %q; want one, about the expiry", lines)
	}
}

// TestNotYetValidReplacementServes: a new certificate that starts a
// little later than the local clock serves, with an ERROR.
func TestNotYetValidReplacementServes(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	f.run(t)
	c, k := f.ca.issue(t, leaf{serial: 2, notBefore: time.Now().Add(time.Minute)})
	replace(t, f.key, k)
	replace(t, f.cert, c)
	// Not through a client: this one's clock is the local one, and it
	// refuses the certificate until then.
	waitFor(t, "serial 2 to be served", func() bool { return f.r.Leaf().SerialNumber.Int64() == 2 })
	if lines := f.errorLines(); len(lines) != 1 || !strings.Contains(lines[0], "not valid yet") {
		t.Errorf("ERROR lines %q; want one saying it is not valid yet", lines)
	}
}

// TestMetricsTwoListeners: the public and admin listeners' Reloaders share
// a registry, each with its own series.
func TestMetricsTwoListeners(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	c, k := f.ca.issue(t, leaf{serial: 7, notAfter: time.Now().Add(48 * time.Hour).Truncate(time.Second)})
	dir := t.TempDir()
	replace(t, filepath.Join(dir, "admin.crt"), c)
	replace(t, filepath.Join(dir, "admin.key"), k)
	admin, err := New(Config{CertFile: filepath.Join(dir, "admin.crt"), KeyFile: filepath.Join(dir, "admin.key"), Listener: "admin", Registerer: f.reg})
	if err != nil {
		t.Fatal(err)
	}
	for listener, r := range map[string]*Reloader{"public": f.r, "admin": admin} {
		if got := f.value(t, "reghost_tls_certificate_expiry_timestamp_seconds", map[string]string{"listener": listener}); got != float64(r.Leaf().NotAfter.Unix()) {
			t.Errorf("%s expiry %v; want %d", listener, got, r.Leaf().NotAfter.Unix())
		}
		for _, result := range []string{"ok", "error"} {
			if got := f.value(t, "reghost_tls_certificate_reloads_total", map[string]string{"listener": listener, "result": result}); got != 0 {
				t.Errorf("%s reloads_total{result=%s} %v; want 0", listener, result, got)
			}
		}
		if got := f.value(t, "reghost_tls_certificate_reload_error", map[string]string{"listener": listener}); got != 0 {
			t.Errorf("%s reload_error %v; want 0", listener, got)
		}
	}
}

// TestSymlinkTargetReplaced: the configured paths are symlinks into
// another directory (as certbot's live/ into archive/), and the files
// there are replaced: that directory is watched too.
func TestSymlinkTargetReplaced(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "test CA")
	root := t.TempDir()
	live, archive := filepath.Join(root, "live"), filepath.Join(root, "archive")
	for _, d := range []string{live, archive} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	c, k := ca.issue(t, leaf{serial: 1})
	replace(t, filepath.Join(archive, "cert.pem"), c)
	replace(t, filepath.Join(archive, "key.pem"), k)
	for _, name := range []string{"cert.pem", "key.pem"} {
		if err := os.Symlink(filepath.Join("..", "archive", name), filepath.Join(live, name)); err != nil {
			t.Fatal(err)
		}
	}
	f := newFixture(t, func(c *Config) {
		c.CertFile, c.KeyFile = filepath.Join(live, "cert.pem"), filepath.Join(live, "key.pem")
	})
	f.ca = ca
	f.run(t)
	addr := f.serve(t)
	f.waitServing(t, addr, 1)
	c, k = ca.issue(t, leaf{serial: 2})
	replace(t, filepath.Join(archive, "key.pem"), k)
	replace(t, filepath.Join(archive, "cert.pem"), c)
	f.waitServing(t, addr, 2)
}

// TestSameRefusalReportedOnce: two different bad pairs that fail the same
// way are one ERROR (and two refusals counted); a different failure is
// another ERROR.
func TestSameRefusalReportedOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	f.run(t)
	errorsTotal := func() float64 {
		return f.value(t, "reghost_tls_certificate_reloads_total", map[string]string{"listener": "public", "result": "error"})
	}
	for i := range 2 {
		_, k := f.ca.issue(t, leaf{serial: int64(10 + i)})
		replace(t, f.key, k)
		waitFor(t, "a refusal counted", func() bool { return errorsTotal() == float64(i+1) })
	}
	replace(t, f.key, []byte("garbage"))
	waitFor(t, "a third refusal counted", func() bool { return errorsTotal() == 3 })
	lines := f.errorLines()
	if len(lines) != 2 || !strings.Contains(lines[0], "does not match") || !strings.Contains(lines[1], "failed to find any PEM data") {
		t.Errorf("ERROR lines %q; want one for the mismatches, one for the garbage", lines)
	}
}

// TestTLSMinimumVersion: TLS 1.2 at least. A TLS 1.1 client is refused
// in the handshake.
func TestTLSMinimumVersion(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	addr := f.serve(t)
	for _, tc := range []struct {
		version uint16
		ok      bool
	}{{tls.VersionTLS11, false}, {tls.VersionTLS12, true}, {tls.VersionTLS13, true}} {
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: f.ca.pool(), ServerName: "localhost", MinVersion: tc.version, MaxVersion: tc.version})
		if err == nil {
			conn.Close()
		}
		if (err == nil) != tc.ok {
			t.Errorf("a %s client: %v, want ok %v", tls.VersionName(tc.version), err, tc.ok)
		}
	}
}
