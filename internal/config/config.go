// Package config reads reghost's configuration file: one YAML document,
// decoded strictly, with defaults applied in one place (defaults) and
// every value checked before the server starts, so that a bad file fails
// at start with a message naming the file, line, key path and problem:
//
//	reghost.yaml:31: rules[3].match.country: "se" is not an ISO 3166-1 alpha-2 country code (two upper-case letters, such as SE); did you mean "SE"?
//
// example.yaml, embedded and returned by Example, is both the
// configuration the server runs with when it is given none and the
// reference for every key.
package config

import (
	_ "embed"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/reghost/reghost/internal/rules"
)

// The client address headers reghost understands, in the canonical form
// of net/http (textproto.CanonicalMIMEHeaderKey), which is the form
// ClientIP.Header holds after Load or Parse whatever case the file used.
const (
	HeaderXRealIP       = "X-Real-Ip"
	HeaderXForwardedFor = "X-Forwarded-For"
)

// Config is the whole configuration file. Load and Parse return it with
// defaults applied and every field validated; see example.yaml for what
// each key means.
//
// Relative paths (data_dir, admin.token_file, geoip.*, cloud_ranges.*)
// are relative to the directory of the config file when it is read with
// Load, and are rewritten to include that directory; Parse and Example
// leave them as written, that is relative to the working directory.
type Config struct {
	// Listen is the public listener's address (default ":8080").
	Listen string `yaml:"listen"`
	// AdminListen is the admin listener's address (default
	// "127.0.0.1:9090").
	AdminListen string `yaml:"admin_listen"`
	// RedirectStatus is 307 (default) or 302. Permanent redirects are
	// refused: clients would cache them and never see a new decision.
	RedirectStatus int `yaml:"redirect_status"`
	// DataDir holds the embedded store and downloaded data sets
	// (default "data").
	DataDir string `yaml:"data_dir"`
	// Admin configures the admin listener.
	Admin Admin `yaml:"admin"`
	// ClientIP says whom to believe about the client address.
	ClientIP ClientIP `yaml:"client_ip"`
	// GeoIP names the MaxMind-format databases; both are optional.
	GeoIP GeoIP `yaml:"geoip"`
	// CloudRanges maps a provider in rules.Clouds to a file in that
	// provider's published format. Optional; a provider without a file
	// matches no address.
	CloudRanges map[string]string `yaml:"cloud_ranges"`
	// Store is "" for the embedded single-node store, or a redis:// or
	// rediss:// URL.
	Store string `yaml:"store"`
	// Registries are the only possible redirect targets; exactly one is
	// the default. URLs have no trailing slash.
	Registries []rules.Registry `yaml:"registries"`
	// Rules are the static rules, in file order.
	Rules []rules.Rule `yaml:"rules"`
}

// Admin configures the admin listener.
type Admin struct {
	// TokenFile holds the admin API token. When empty (the default) the
	// server takes the token from the REGHOST_ADMIN_TOKEN environment
	// variable, or generates one into data_dir/admin-token and logs where.
	TokenFile string `yaml:"token_file"`
}

// ClientIP says when a header may name the client instead of the peer.
type ClientIP struct {
	// Header is HeaderXRealIP (default) or HeaderXForwardedFor; the file
	// may spell either in any case.
	Header string `yaml:"header"`
	// TrustedProxies are the peers whose Header is believed (default
	// 127.0.0.0/8 and ::1/128). The key present with an empty list or
	// no value trusts no one: every request is decided on its peer
	// address.
	TrustedProxies []netip.Prefix `yaml:"trusted_proxies"`
	// XFFTrustedHops is how many X-Forwarded-For entries, counted from
	// the right, were added by trusted proxies (default 1, at most 10).
	XFFTrustedHops int `yaml:"xff_trusted_hops"`
}

// GeoIP names the MaxMind-format databases. An empty path, or a file
// that is missing when the server starts, leaves that lookup inactive.
type GeoIP struct {
	// ASN is a GeoLite2-ASN or GeoIP2-ISP database.
	ASN string `yaml:"asn"`
	// Country is a Country or City database.
	Country string `yaml:"country"`
}

// defaults is the one place defaults live. Parse decodes the file over
// it, so a key that is present wins even when its value is empty or
// zero, and then fails validation rather than being silently replaced.
func defaults() *Config {
	return &Config{
		Listen:         ":8080",
		AdminListen:    "127.0.0.1:9090",
		RedirectStatus: 307,
		DataDir:        "data",
		ClientIP: ClientIP{
			Header: HeaderXRealIP,
			TrustedProxies: []netip.Prefix{
				netip.MustParsePrefix("127.0.0.0/8"),
				netip.MustParsePrefix("::1/128"),
			},
			XFFTrustedHops: 1,
		},
	}
}

//go:embed example.yaml
var example string

// Example returns example.yaml: the configuration the server runs with
// when given none, and the reference for every key. It needs no data
// files; its geoip and cloud_ranges paths point into data/, relative to
// the working directory, and are inactive until the loader fills it.
func Example() []byte { return []byte(example) }

// Load reads, parses, defaults and validates the config file at path,
// then makes its relative paths relative to the file's directory.
// Errors start with path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if pe, ok := errors.AsType[*fs.PathError](err); ok {
			err = pe.Err // path goes first, once
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c, err := Parse(data, path)
	if err != nil {
		return nil, err
	}
	c.resolve(filepath.Dir(path))
	return c, nil
}

// Parse decodes data as a config file, applies defaults and validates
// it. name identifies data in errors, which start with it; relative
// paths are left as written. Every problem found is reported, one per
// line, as "name:line: key.path: problem".
func Parse(data []byte, name string) (*Config, error) {
	root, err := parseDocument(data)
	if err != nil {
		return nil, yamlError(name, err)
	}
	p := &problems{name: name, root: root}
	p.checkShape(root, configType, "")
	if err := p.err(); err != nil {
		return nil, err
	}
	c := defaults()
	if err := decodeStrict(data, c); err != nil {
		return nil, yamlError(name, err)
	}
	c.validate(p)
	if err := p.err(); err != nil {
		return nil, err
	}
	return c, nil
}

// resolve makes the relative paths of c relative to dir.
func (c *Config) resolve(dir string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	abs(&c.DataDir)
	abs(&c.Admin.TokenFile)
	abs(&c.GeoIP.ASN)
	abs(&c.GeoIP.Country)
	for k, v := range c.CloudRanges {
		abs(&v)
		c.CloudRanges[k] = v
	}
}

// Default returns the default registry: the one with default: true.
// On a Config that Load or Parse returned there is exactly one.
func (c *Config) Default() rules.Registry {
	for _, r := range c.Registries {
		if r.Default {
			return r
		}
	}
	return rules.Registry{}
}

// Registry returns the registry called name.
func (c *Config) Registry(name string) (rules.Registry, bool) {
	for _, r := range c.Registries {
		if r.Name == name {
			return r, true
		}
	}
	return rules.Registry{}, false
}

// Warnings are settings that are valid but risky, for the server to log
// at start: an admin listener on every interface, or a proxy trust that
// lets anyone choose the client address.
func (c *Config) Warnings() []string {
	var out []string
	if host, _, err := net.SplitHostPort(c.AdminListen); err == nil {
		if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
			out = append(out, fmt.Sprintf("admin_listen %q is on every interface: the admin API and /metrics are open to the network, with only the token between; bind it to 127.0.0.1 or a private address", c.AdminListen))
		}
	}
	for _, p := range c.ClientIP.TrustedProxies {
		if p.Bits() == 0 {
			out = append(out, fmt.Sprintf("client_ip.trusted_proxies holds %s: every peer is trusted to name the client address, so anyone can choose their registry; list your proxies' addresses", p))
		}
	}
	return out
}
