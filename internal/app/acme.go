package app

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"

	"github.com/reghost/reghost/internal/certs"
	"github.com/reghost/reghost/internal/config"
)

// acmeTLS is the public listener's TLS config when its certificate comes
// from an ACME CA. autocert asks for a certificate at the first handshake
// for each configured domain, answering the CA's TLS-ALPN-01 challenge on
// this listener, keeps it and the account key in the cache directory
// (so a restart asks for nothing), and renews it 30 days before it
// expires. A handshake for another name, or with no name (a client that
// dials an IP address), is refused.
func acmeTLS(c config.ACME, log *slog.Logger, reg prometheus.Registerer) (*tls.Config, error) {
	// autocert would make it at the first write, and fail a handshake
	// then; a directory that cannot be made is a start-up error.
	if err := os.MkdirAll(c.CacheDir, 0o700); err != nil {
		return nil, fmt.Errorf("tls.acme.cache_dir: %w", err)
	}
	expiry, err := certs.ExpiryGauge(reg, "public")
	if err != nil {
		return nil, err
	}
	m := &autocert.Manager{
		Prompt:     autocert.AcceptTOS, // configuring acme is accepting the CA's terms
		Cache:      autocert.DirCache(c.CacheDir),
		HostPolicy: autocert.HostWhitelist(c.Domains...),
		Email:      c.Email,
		Client:     &acme.Client{DirectoryURL: c.DirectoryURL, UserAgent: "reghost"},
	}
	w := &acmeWatch{log: log.With("listener", "public"), expiry: expiry, notAfter: map[string]time.Time{}, failed: map[string]string{}}
	for _, d := range c.Domains {
		w.domains = append(w.domains, strings.ToLower(d))
	}
	tc := m.TLSConfig() // offers h2, http/1.1 and acme-tls/1
	tc.MinVersion = tls.VersionTLS12
	tc.GetCertificate = w.wrap(m.GetCertificate)
	return tc, nil
}

// acmeWatch reports what autocert serves: the earliest expiry of the
// domains' certificates as the expiry gauge, a new certificate once, and
// a failure to get one for a configured domain once per reason.
type acmeWatch struct {
	log     *slog.Logger
	expiry  prometheus.Gauge
	domains []string

	mu       sync.Mutex
	notAfter map[string]time.Time // by domain
	failed   map[string]string    // the last error logged, by domain
}

func (w *acmeWatch) wrap(get func(*tls.ClientHelloInfo) (*tls.Certificate, error)) func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		cert, err := get(hello)
		name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
		if !slices.Contains(w.domains, name) || slices.Contains(hello.SupportedProtos, acme.ALPNProto) {
			return cert, err // another name, refused; or the CA's challenge
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		if err != nil {
			if w.failed[name] != err.Error() {
				w.failed[name] = err.Error()
				w.log.Error("tls: no ACME certificate for a configured domain; its handshakes fail", "domain", name, "err", err)
			}
			return nil, err
		}
		delete(w.failed, name)
		if cert.Leaf != nil && !cert.Leaf.NotAfter.Equal(w.notAfter[name]) {
			w.notAfter[name] = cert.Leaf.NotAfter
			w.log.Info("tls: ACME certificate serving", "domain", name, "serial", cert.Leaf.SerialNumber.Text(16),
				"not_after", cert.Leaf.NotAfter.UTC())
			earliest := cert.Leaf.NotAfter
			for _, t := range w.notAfter {
				if t.Before(earliest) {
					earliest = t
				}
			}
			w.expiry.Set(float64(earliest.Unix()))
		}
		return cert, nil
	}
}
