package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/mail"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/reghost/reghost/internal/certs"
)

// TLS is the public listener's HTTPS: a certificate and key from files,
// which are reloaded when they are replaced, or a certificate that an
// ACME CA issues and renews. Neither (the default) serves plain HTTP.
type TLS struct {
	// CertFile (PEM: the certificate, then its intermediates) and KeyFile
	// go together.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ACME gets the certificate from an ACME CA instead of files.
	ACME ACME `yaml:"acme"`
}

// On reports whether the public listener serves HTTPS.
func (t TLS) On() bool { return t.CertFile != "" || t.ACME.On() }

// ACME gets the public listener's certificate from an ACME CA (Let's
// Encrypt by default), answering the TLS-ALPN-01 challenge on the public
// listener itself.
type ACME struct {
	// Domains are the names the certificate is for; none turns ACME off.
	Domains []string `yaml:"domains"`
	// Email is given to the CA for expiry notices; optional.
	Email string `yaml:"email"`
	// CacheDir keeps the account key and the certificates across
	// restarts (default data_dir/acme).
	CacheDir string `yaml:"cache_dir"`
	// DirectoryURL is the CA's ACME directory (default Let's Encrypt's).
	DirectoryURL string `yaml:"directory_url"`
}

// On reports whether ACME is configured.
func (a ACME) On() bool { return len(a.Domains) > 0 }

// LetsEncrypt is Let's Encrypt's production ACME directory, the default
// acme.directory_url.
const LetsEncrypt = "https://acme-v02.api.letsencrypt.org/directory"

// AdminTLS is the admin listener's HTTPS, and optionally mutual TLS.
type AdminTLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ClientCAFile, when set, makes every client (browsers, scripts,
	// Prometheus) present a certificate signed by a CA in this PEM file.
	ClientCAFile string `yaml:"client_ca_file"`
}

// On reports whether the admin listener serves HTTPS.
func (t AdminTLS) On() bool { return t.CertFile != "" }

// validateTLS checks both listeners' TLS settings, and sets the ACME
// cache's default, which depends on data_dir.
func (c *Config) validateTLS(p *problems) {
	t := &c.TLS
	if (t.CertFile == "") != (t.KeyFile == "") {
		p.at("tls", "cert_file and key_file go together; set both for HTTPS, or neither for plain HTTP")
	}
	a := &t.ACME
	if a.On() {
		if t.CertFile != "" || t.KeyFile != "" {
			p.at("tls.acme", "set with cert_file and key_file; the certificate comes from files or from ACME, not both")
		}
		seen := map[string]int{}
		for i, d := range a.Domains {
			path := fmt.Sprintf("tls.acme.domains[%d]", i)
			if msg := checkDomain(d); msg != "" {
				p.at(path, "%s", msg)
			} else if j, dup := seen[strings.ToLower(d)]; dup {
				p.at(path, "%q is already domains[%d]", d, j)
			} else {
				seen[strings.ToLower(d)] = i
			}
		}
		if a.Email != "" {
			if m, err := mail.ParseAddress(a.Email); err != nil || m.Address != a.Email {
				p.at("tls.acme.email", "%q is not an email address such as ops@example.com", a.Email)
			}
		}
		if u, err := url.Parse(a.DirectoryURL); err != nil || u.Scheme != "https" || u.Host == "" {
			p.at("tls.acme.directory_url", "%q is not an https:// URL; remove the key for Let's Encrypt (%s)", a.DirectoryURL, LetsEncrypt)
		}
		if a.CacheDir == "" {
			a.CacheDir = filepath.Join(c.DataDir, "acme")
		}
	}
	at := c.Admin.TLS
	switch {
	case (at.CertFile == "") != (at.KeyFile == ""):
		p.at("admin.tls", "cert_file and key_file go together; set both for HTTPS, or neither for plain HTTP")
	case at.ClientCAFile != "" && at.CertFile == "":
		p.at("admin.tls.client_ca_file", "mutual TLS needs HTTPS: set cert_file and key_file too")
	}
}

// checkDomain returns what is wrong with a name to get a certificate
// for, or "".
func checkDomain(d string) string {
	switch {
	case strings.HasPrefix(d, "*."):
		return fmt.Sprintf("%q: TLS-ALPN-01 cannot get a wildcard certificate; list each name", d)
	case net.ParseIP(d) != nil:
		return fmt.Sprintf("%q is an IP address; ACME certificates are for DNS names", d)
	case !hostName.MatchString(d) || !strings.Contains(strings.Trim(d, "."), ".") || strings.HasSuffix(d, "."):
		return fmt.Sprintf("%q is not a DNS name such as registry.example.com", d)
	}
	return ""
}

// tlsWarnings are TLS settings that are valid but probably not what was
// meant.
func (c *Config) tlsWarnings() []string {
	var out []string
	a := c.TLS.ACME
	if !a.On() && (a.Email != "" || a.CacheDir != "" || a.DirectoryURL != LetsEncrypt) {
		out = append(out, "tls.acme is set but lists no domains: ACME is off")
	}
	if a.On() {
		if _, port, err := net.SplitHostPort(c.Listen); err == nil && port != "443" {
			out = append(out, fmt.Sprintf("tls.acme: the CA connects to port 443 of each domain for the TLS-ALPN-01 challenge, and listen is %q: forward port 443 to it", c.Listen))
		}
	}
	return out
}

// checkTLSFiles opens the certificate, key and client CA files and
// checks that they serve, as the listeners will at start, so that a
// problem is reported with the key that names the file. Load calls it
// once the paths are resolved.
func (c *Config) checkTLSFiles(p *problems) {
	check := func(block, listener string, cfg certs.Config) {
		ok := true
		for _, f := range []struct{ key, path string }{
			{"cert_file", cfg.CertFile}, {"key_file", cfg.KeyFile}, {"client_ca_file", cfg.ClientCAFile},
		} {
			if f.path == "" {
				continue
			}
			if msg := checkReadable(f.path); msg != "" {
				p.at(block+"."+f.key, "%s", msg)
				ok = false
			}
		}
		if !ok || cfg.CertFile == "" {
			return
		}
		// certs.New with no registerer and no logger only reads and
		// checks: nothing is registered, started or logged.
		cfg.Listener = listener
		if _, err := certs.New(cfg); err != nil {
			p.at(block, "%s", strings.TrimPrefix(err.Error(), "certs: "))
		}
	}
	check("tls", "public", certs.Config{CertFile: c.TLS.CertFile, KeyFile: c.TLS.KeyFile})
	at := c.Admin.TLS
	check("admin.tls", "admin", certs.Config{CertFile: at.CertFile, KeyFile: at.KeyFile, ClientCAFile: at.ClientCAFile})
}

// checkReadable returns what keeps path from being read as a file, or "".
func checkReadable(path string) string {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Sprintf("%s does not exist", path)
		}
		if pe, ok := errors.AsType[*fs.PathError](err); ok {
			err = pe.Err
		}
		return fmt.Sprintf("%s: %v", path, err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		return fmt.Sprintf("%s is a directory; name the PEM file in it", path)
	}
	return ""
}
