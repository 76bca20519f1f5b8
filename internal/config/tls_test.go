package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/reghost/reghost/internal/certs/certstest"
)

func TestTLSParse(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		in   string
		want TLS
		adm  AdminTLS
	}{
		{"files", "tls: {cert_file: a.crt, key_file: a.key}",
			TLS{CertFile: "a.crt", KeyFile: "a.key", ACME: ACME{DirectoryURL: LetsEncrypt}}, AdminTLS{}},
		{"acme with defaults", "data_dir: /var/lib/reghost\ntls: {acme: {domains: [registry.example.com, r2.example.com]}}",
			TLS{ACME: ACME{Domains: []string{"registry.example.com", "r2.example.com"}, CacheDir: "/var/lib/reghost/acme", DirectoryURL: LetsEncrypt}}, AdminTLS{}},
		{"acme with everything", "tls: {acme: {domains: [r.example.com], email: ops@example.com, cache_dir: /c, directory_url: 'https://ca.example/dir'}}",
			TLS{ACME: ACME{Domains: []string{"r.example.com"}, Email: "ops@example.com", CacheDir: "/c", DirectoryURL: "https://ca.example/dir"}}, AdminTLS{}},
		{"mutual admin", "admin: {tls: {cert_file: a.crt, key_file: a.key, client_ca_file: ca.crt}}",
			TLS{ACME: ACME{DirectoryURL: LetsEncrypt}}, AdminTLS{CertFile: "a.crt", KeyFile: "a.key", ClientCAFile: "ca.crt"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := Parse([]byte(tc.in+"\n"+regs), "c.yaml")
			if err != nil {
				t.Fatal(err)
			}
			if !equalTLS(c.TLS, tc.want) || c.Admin.TLS != tc.adm {
				t.Errorf("tls = %+v, admin.tls = %+v; want %+v, %+v", c.TLS, c.Admin.TLS, tc.want, tc.adm)
			}
			if c.TLS.On() != (tc.want.CertFile != "" || len(tc.want.ACME.Domains) > 0) || c.Admin.TLS.On() != (tc.adm.CertFile != "") {
				t.Errorf("On() = %v, %v", c.TLS.On(), c.Admin.TLS.On())
			}
		})
	}
}

func equalTLS(a, b TLS) bool {
	return a.CertFile == b.CertFile && a.KeyFile == b.KeyFile && strings.Join(a.ACME.Domains, ",") == strings.Join(b.ACME.Domains, ",") &&
		a.ACME.Email == b.ACME.Email && a.ACME.CacheDir == b.ACME.CacheDir && a.ACME.DirectoryURL == b.ACME.DirectoryURL
}

func TestTLSParseErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, in, want string }{
		{"cert without key", "tls:\n  cert_file: a.crt\n", "c.yaml:1: tls: cert_file and key_file go together; set both for HTTPS, or neither for plain HTTP"},
		{"key without cert", "admin:\n  tls: {key_file: a.key}\n", "c.yaml:2: admin.tls: cert_file and key_file go together; set both for HTTPS, or neither for plain HTTP"},
		{"client CA alone", "admin:\n  tls: {client_ca_file: ca.crt}\n", "c.yaml:2: admin.tls.client_ca_file: mutual TLS needs HTTPS: set cert_file and key_file too"},
		{"client CA on the public listener", "tls: {cert_file: a, key_file: b, client_ca_file: c}\n", "c.yaml:1: tls.client_ca_file: unknown key; known keys here: cert_file, key_file, acme"},
		{"acme on the admin listener", "admin: {tls: {acme: {domains: [a.example]}}}\n", "c.yaml:1: admin.tls.acme: unknown key; known keys here: cert_file, key_file, client_ca_file"},
		{"files and acme", "tls:\n  cert_file: a\n  key_file: b\n  acme: {domains: [r.example.com]}\n", "c.yaml:4: tls.acme: set with cert_file and key_file; the certificate comes from files or from ACME, not both"},
		{"wildcard", "tls: {acme: {domains: ['*.example.com']}}\n", `c.yaml:1: tls.acme.domains[0]: "*.example.com": TLS-ALPN-01 cannot get a wildcard certificate; list each name`},
		{"IP address", "tls: {acme: {domains: [192.0.2.1]}}\n", `c.yaml:1: tls.acme.domains[0]: "192.0.2.1" is an IP address; ACME certificates are for DNS names`},
		{"single label", "tls: {acme: {domains: [localhost]}}\n", `c.yaml:1: tls.acme.domains[0]: "localhost" is not a DNS name such as registry.example.com`},
		{"twice", "tls: {acme: {domains: [r.example.com, R.example.com]}}\n", `c.yaml:1: tls.acme.domains[1]: "R.example.com" is already domains[0]`},
		{"email", "tls: {acme: {domains: [r.example.com], email: 'ops at example'}}\n", `c.yaml:1: tls.acme.email: "ops at example" is not an email address such as ops@example.com`},
		{"plain http directory", "tls: {acme: {domains: [r.example.com], directory_url: 'http://ca.example/dir'}}\n", `c.yaml:1: tls.acme.directory_url: "http://ca.example/dir" is not an https:// URL; remove the key for Let's Encrypt (https://acme-v02.api.letsencrypt.org/directory)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := Parse([]byte(tc.in+regs), "c.yaml")
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", c)
			}
			if got := err.Error(); got != tc.want {
				t.Errorf("error:\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestTLSWarnings(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, in, want string }{
		{"acme without domains", "tls: {acme: {email: ops@example.com}}", "tls.acme is set but lists no domains: ACME is off"},
		{"acme off port 443", "listen: ':8443'\ntls: {acme: {domains: [r.example.com]}}", `tls.acme: the CA connects to port 443 of each domain for the TLS-ALPN-01 challenge, and listen is ":8443": forward port 443 to it`},
		{"acme on 443", "listen: ':443'\ntls: {acme: {domains: [r.example.com]}}", ""},
		{"mutual TLS admin on every interface", "admin_listen: ':9090'\nadmin: {tls: {cert_file: a, key_file: b, client_ca_file: c}}", ""},
	} {
		c, err := Parse([]byte(tc.in+"\n"+regs), "c.yaml")
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		got := strings.Join(c.Warnings(), "\n")
		if got != tc.want {
			t.Errorf("%s: warnings %q, want %q", tc.name, got, tc.want)
		}
	}
}

// Load resolves the TLS paths against the config file's directory and
// checks the files, naming the key and its line.
func TestLoadTLS(t *testing.T) {
	t.Parallel()
	ca := certstest.NewCA(t, "test CA")
	dir := t.TempDir()
	confDir := filepath.Join(dir, "conf")
	if err := os.MkdirAll(filepath.Join(confDir, "tls"), 0o755); err != nil {
		t.Fatal(err)
	}
	good := ca.WritePair(t, filepath.Join(confDir, "tls"), certstest.Leaf{Serial: 1})
	_, otherKey := ca.Issue(t, certstest.Leaf{Serial: 2})
	certstest.Replace(t, filepath.Join(confDir, "tls", "other.key"), otherKey)
	certstest.Replace(t, filepath.Join(confDir, "tls", "ca.crt"), ca.PEM)
	certstest.Replace(t, filepath.Join(confDir, "tls", "junk.crt"), []byte("junk\n"))
	path := filepath.Join(confDir, "reghost.yaml")
	in := func(s string) string { return filepath.Join(confDir, s) }

	for _, tc := range []struct{ name, yaml, want string }{
		{"good, relative paths", "tls: {cert_file: tls/tls.crt, key_file: tls/tls.key}\nadmin:\n  tls: {cert_file: tls/tls.crt, key_file: tls/tls.key, client_ca_file: tls/ca.crt}\n", ""},
		{"missing certificate", "tls:\n  cert_file: tls/nope.crt\n  key_file: tls/tls.key\n",
			path + ":2: tls.cert_file: " + in("tls/nope.crt") + " does not exist"},
		{"a directory", "admin:\n  tls:\n    cert_file: tls/tls.crt\n    key_file: tls/tls.key\n    client_ca_file: tls\n",
			path + ":5: admin.tls.client_ca_file: " + in("tls") + " is a directory; name the PEM file in it"},
		{"key of another certificate", "tls:\n  cert_file: tls/tls.crt\n  key_file: tls/other.key\n",
			path + ":1: tls: key file " + in("tls/other.key") + " does not match certificate file " + in("tls/tls.crt") + " (replace both together)"},
		{"client CA not PEM", "admin:\n  tls: {cert_file: tls/tls.crt, key_file: tls/tls.key, client_ca_file: tls/junk.crt}\n",
			path + ":2: admin.tls: client CA file " + in("tls/junk.crt") + ": has no PEM CERTIFICATE block"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Not parallel: each case writes the same config file.
			if err := os.WriteFile(path, []byte(tc.yaml+regs), 0o644); err != nil {
				t.Fatal(err)
			}
			c, err := Load(path)
			if tc.want != "" {
				if err == nil || err.Error() != tc.want {
					t.Fatalf("Load:\n got %v\nwant %s", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.TLS.CertFile != good.Cert || c.TLS.KeyFile != good.Key || c.Admin.TLS.ClientCAFile != in("tls/ca.crt") {
				t.Errorf("paths not resolved: tls %+v, admin.tls %+v", c.TLS, c.Admin.TLS)
			}
		})
	}
}

// The ACME cache's default follows data_dir, and is resolved with it.
func TestLoadACMECache(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "reghost.yaml")
	if err := os.WriteFile(path, []byte("data_dir: state\ntls: {acme: {domains: [r.example.com]}}\n"+regs), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "state", "acme"); c.TLS.ACME.CacheDir != want {
		t.Errorf("acme.cache_dir = %q, want %q", c.TLS.ACME.CacheDir, want)
	}
}
