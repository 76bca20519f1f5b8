// Package certs serves a listener's TLS certificate from files that are
// replaced while the server runs: by cert-manager or the kubelet (which
// swap a "..data" symlink in a Secret volume), by certbot (which repoints
// a symlink), or by hand (a rename, or a write in place).
//
// New loads and checks the pair once, and fails with the file and the
// problem when it cannot serve. Run watches the files' directories
// (fsnotify, with a periodic re-read as a fallback for file systems that
// send no events) and, when the files' contents change, builds a complete
// new pair and swaps it in through an atomic pointer: handshakes after
// the swap get the new certificate, connections already open keep theirs.
// A new pair that fails the checks is refused and the previous one keeps
// serving. Because a pair is often replaced one file at a time, a refusal
// is reported (an ERROR, reghost_tls_certificate_reloads_total{result=
// "error"} and reghost_tls_certificate_reload_error 1) only when the same
// files still fail a moment later; a different failure is reported again,
// the same one is not.
//
// Certificates outside their validity period: at start an expired or not
// yet valid certificate is accepted with an ERROR, because refusing it
// would leave the listener with nothing to serve (and a crash loop hides
// what the metric would show), and clients that check dates refuse it
// anyway. On reload an expired certificate is refused (it can only be a
// step back), and one not valid yet is accepted with an ERROR (a clock a
// little behind the issuer's makes it so for a moment, and clients with
// the issuer's clock accept it). An ERROR is also logged once when the
// serving certificate expires. Alert on the expiry metric well before,
// e.g.
//
//	reghost_tls_certificate_expiry_timestamp_seconds - time() < 14 * 86400
//
// (cert-manager renews 30 days before expiry by default, certbot 30 days.)
//
// Use it with net/http as
//
//	srv := &http.Server{Handler: h, TLSConfig: r.TLSConfig()}
//	go r.Run(ctx)
//	srv.ServeTLS(ln, "", "")
//
// ServeTLS (or Serve on tls.NewListener(ln, srv.TLSConfig)) sets up
// HTTP/2 when TLSConfig.NextProtos holds "h2", as it does here; a server
// with HTTP/2 turned off must not advertise it, so drop "h2" from
// NextProtos there.
package certs

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Config says where a listener's certificate is.
type Config struct {
	CertFile string // PEM: the serving certificate first, then its intermediates
	KeyFile  string // PEM: its private key (PKCS #1, PKCS #8 or SEC 1)
	// ClientCAFile, when set, turns on mutual TLS: clients must present a
	// certificate that a CA in this PEM file signed. It is reloaded with
	// the pair.
	ClientCAFile string
	// Listener names the listener in metrics and logs ("public", "admin").
	Listener   string
	Logger     *slog.Logger          // nil = discard
	Registerer prometheus.Registerer // nil = metrics are kept but not registered
	// Poll is how often Run re-reads the files even without file system
	// events. 0 = 30 s.
	Poll time.Duration
}

// DefaultPoll is Run's fallback check interval when Config.Poll is 0.
const DefaultPoll = 30 * time.Second

// Reloader holds a listener's current certificate and replaces it when
// the files change. It is safe for concurrent use; Run must be called at
// most once.
type Reloader struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	cur     atomic.Pointer[pair]
	loaded  files // what New read, for Run to compare with
	now     func() time.Time

	// Run's timing; fields rather than constants so that tests can
	// shorten them.
	debounce time.Duration // wait after a file system event, so a burst is one check
	confirm  time.Duration // wait before reporting a refused pair, which may be half replaced
	noEvents bool          // poll only, as where inotify is unavailable

	// checked, when set, is called by Run after every check of the files:
	// attempted is false when they had not changed. For tests.
	checked func(attempted bool, err error)
}

// pair is what serves: a certificate and key that belong together, and the
// client CA pool read with them.
type pair struct {
	cert   *tls.Certificate // Leaf set
	mutual *tls.Config      // handshake config with the client CAs; nil without ClientCAFile
}

// New loads and checks the certificate, key and client CA files.
func New(cfg Config) (*Reloader, error) {
	switch {
	case cfg.CertFile == "":
		return nil, errors.New("certs: no certificate file")
	case cfg.KeyFile == "":
		return nil, errors.New("certs: no key file")
	case cfg.Listener == "":
		return nil, errors.New("certs: no listener name")
	case cfg.Poll < 0:
		return nil, fmt.Errorf("certs: poll interval %v is negative", cfg.Poll)
	}
	if cfg.Poll == 0 {
		cfg.Poll = DefaultPoll
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Reloader{
		cfg: cfg, log: log.With("listener", cfg.Listener), now: time.Now,
		debounce: 100 * time.Millisecond, confirm: 2 * time.Second,
	}
	r.loaded = r.read()
	p, err := r.build(r.loaded, false)
	if err != nil {
		return nil, err
	}
	// Only now: a listener that cannot start leaves no expiry of 0 behind.
	if r.metrics, err = newMetrics(cfg.Registerer, cfg.Listener); err != nil {
		return nil, err
	}
	r.swap(p)
	r.log.Info("tls: certificate loaded", certAttrs(p.cert.Leaf)...)
	return r, nil
}

// TLSConfig returns a server config that takes the current certificate
// (and client CAs) at each handshake. Each call returns a new config, which
// the caller may change further before use.
func (r *Reloader) TLSConfig() *tls.Config {
	c := r.baseConfig()
	c.GetCertificate = r.getCertificate
	if r.cfg.ClientCAFile != "" {
		// The CA pool is a field of tls.Config, not a callback: a config
		// per pair, picked per handshake, lets it change too.
		c.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return r.cur.Load().mutual, nil
		}
	}
	return c
}

// baseConfig holds the settings every handshake shares. Go's defaults
// choose cipher suites and curves (its list follows current advice and
// prefers AES-GCM or ChaCha20 by the hardware); only TLS 1.0 and 1.1 are
// turned off, as no registry client needs them.
func (r *Reloader) baseConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1"},
	}
}

func (r *Reloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.cur.Load().cert, nil
}

// Leaf returns the certificate being served.
func (r *Reloader) Leaf() *x509.Certificate { return r.cur.Load().cert.Leaf }

// files is what was read from the configured files, errors included, so
// that two reads can be compared whatever they found.
type files struct {
	cert, key, ca          []byte
	certErr, keyErr, caErr error
}

func (r *Reloader) read() files {
	var f files
	f.cert, f.certErr = os.ReadFile(r.cfg.CertFile)
	f.key, f.keyErr = os.ReadFile(r.cfg.KeyFile)
	if r.cfg.ClientCAFile != "" {
		f.ca, f.caErr = os.ReadFile(r.cfg.ClientCAFile)
	}
	return f
}

// same reports whether a and b read the same contents, or failed the same way.
func (a files) same(b files) bool {
	errText := func(err error) string {
		if err == nil {
			return ""
		}
		return err.Error()
	}
	return bytes.Equal(a.cert, b.cert) && bytes.Equal(a.key, b.key) && bytes.Equal(a.ca, b.ca) &&
		errText(a.certErr) == errText(b.certErr) && errText(a.keyErr) == errText(b.keyErr) &&
		errText(a.caErr) == errText(b.caErr)
}

// build checks what was read and makes a pair of it. reload says whether a
// pair is serving already (see the package comment for what changes).
func (r *Reloader) build(in files, reload bool) (*pair, error) {
	certFile, keyFile, caFile := r.cfg.CertFile, r.cfg.KeyFile, r.cfg.ClientCAFile
	if in.certErr != nil {
		return nil, fmt.Errorf("certs: certificate file: %w", in.certErr)
	}
	if in.keyErr != nil {
		return nil, fmt.Errorf("certs: key file: %w", in.keyErr)
	}
	chain, err := parseCertificates(in.cert)
	if err != nil {
		return nil, fmt.Errorf("certs: certificate file %s: %w", certFile, err)
	}
	// The chain parsed, so what X509KeyPair can still find wrong is the
	// key: not PEM, not a key, or not the certificate's.
	cert, err := tls.X509KeyPair(in.cert, in.key)
	if err != nil {
		msg := strings.TrimPrefix(err.Error(), "tls: ")
		if strings.Contains(msg, "does not match") {
			return nil, fmt.Errorf("certs: key file %s does not match certificate file %s (replace both together)", keyFile, certFile)
		}
		return nil, fmt.Errorf("certs: key file %s: %s", keyFile, msg)
	}
	leaf := chain[0]
	cert.Leaf = leaf
	if len(leaf.ExtKeyUsage) > 0 && !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth) &&
		!slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageAny) {
		return nil, fmt.Errorf("certs: certificate file %s: %q is not for servers (no serverAuth extended key usage); clients would refuse it", certFile, leaf.Subject)
	}
	now := r.now()
	switch {
	case now.After(leaf.NotAfter) && reload:
		return nil, fmt.Errorf("certs: certificate file %s: expired at %s; the serving certificate is kept", certFile, leaf.NotAfter.UTC().Format(time.RFC3339))
	case now.After(leaf.NotAfter):
		r.log.Error("tls: certificate has expired; serving it anyway, clients will refuse it: replace it",
			append(certAttrs(leaf), "file", certFile)...)
	case now.Before(leaf.NotBefore):
		r.log.Error("tls: certificate is not valid yet; clients whose clock is behind its start will refuse it",
			append(certAttrs(leaf), "file", certFile)...)
	}
	p := &pair{cert: &cert}
	if caFile != "" {
		if in.caErr != nil {
			return nil, fmt.Errorf("certs: client CA file: %w", in.caErr)
		}
		cas, err := parseCertificates(in.ca)
		if err != nil {
			return nil, fmt.Errorf("certs: client CA file %s: %w", caFile, err)
		}
		pool := x509.NewCertPool()
		for _, ca := range cas {
			pool.AddCert(ca)
		}
		p.mutual = r.baseConfig()
		p.mutual.Certificates = []tls.Certificate{cert}
		p.mutual.ClientAuth = tls.RequireAndVerifyClientCert
		p.mutual.ClientCAs = pool
	}
	return p, nil
}

// parseCertificates parses every CERTIFICATE block of a PEM file, and
// refuses a file with none, or with anything that is not PEM.
func parseCertificates(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	sawKey := false
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		// Other blocks are skipped, as tls.X509KeyPair does: a file may
		// hold the key too, and serve as both files.
		switch {
		case block.Type == "CERTIFICATE":
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("certificate %d: %w", len(out)+1, err)
			}
			out = append(out, c)
		case strings.HasSuffix(block.Type, "PRIVATE KEY"):
			sawKey = true
		}
	}
	switch {
	case bytes.Contains(rest, []byte("-----BEGIN")):
		// A file cut short while being written ends in an unterminated
		// block, which pem.Decode leaves unread.
		return nil, errors.New("ends in an incomplete PEM block (cut short, or still being written?)")
	case len(out) > 0:
	case sawKey:
		return nil, errors.New("holds a private key and no certificate (are the certificate and key files swapped?)")
	case len(bytes.TrimSpace(data)) == 0:
		return nil, errors.New("is empty")
	default:
		return nil, errors.New("has no PEM CERTIFICATE block")
	}
	return out, nil
}

// swap makes p the serving pair and updates the expiry metric.
func (r *Reloader) swap(p *pair) {
	r.cur.Store(p)
	r.metrics.expiry.Set(float64(p.cert.Leaf.NotAfter.Unix()))
}

func certAttrs(c *x509.Certificate) []any {
	return []any{
		"subject", c.Subject.String(),
		"dns_names", c.DNSNames,
		"serial", c.SerialNumber.Text(16),
		"not_before", c.NotBefore.UTC(),
		"not_after", c.NotAfter.UTC(),
	}
}
