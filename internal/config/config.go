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
	"reflect"
	"time"

	"github.com/reghost/reghost/internal/health"
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
// Relative paths (data_dir, admin.token_file, geoip.*, cloud_ranges.*,
// the tls files) are relative to the directory of the config file when it is read with
// Load, and are rewritten to include that directory; Parse and Example
// leave them as written, that is relative to the working directory.
type Config struct {
	// Listen is the public listener's address (default ":8080").
	Listen string `yaml:"listen"`
	// AdminListen is the admin listener's address (default
	// "127.0.0.1:9090").
	AdminListen string `yaml:"admin_listen"`
	// TLS turns the public listener to HTTPS. Off (plain HTTP) by
	// default; see TLS.
	TLS TLS `yaml:"tls"`
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
	// rediss:// URL (standalone, Sentinel or Cluster: see the README).
	Store string `yaml:"store"`
	// Redis tunes the Redis store.
	Redis Redis `yaml:"redis"`
	// Registries are the only possible redirect targets; exactly one is
	// the default. URLs have no trailing slash.
	Registries []rules.Registry `yaml:"registries"`
	// Rules are the static rules, in file order.
	Rules []rules.Rule `yaml:"rules"`
	// HealthDefaults are the probe settings of every registry that its
	// own health block does not set.
	HealthDefaults rules.Probe `yaml:"health_defaults"`
	// HealthPanicThreshold: when fewer than this share of the probed
	// registries are up, health is ignored for routing, the trouble
	// being most likely reghost's own (default 0.5; 0 never ignores it).
	HealthPanicThreshold float64 `yaml:"health_panic_threshold"`
}

// Admin configures the admin listener.
type Admin struct {
	// TokenFile holds the admin API token, named "admin". When empty
	// (the default) the server takes the token from the
	// REGHOST_ADMIN_TOKEN environment variable, or generates one into
	// data_dir/admin-token and logs where.
	TokenFile string `yaml:"token_file"`
	// Tokens are more tokens, each with a name, which the audit trail
	// records as who made a change.
	Tokens []NamedToken `yaml:"tokens"`
	// TLS turns the admin listener to HTTPS, and optionally to mutual
	// TLS. Off (plain HTTP) by default.
	TLS AdminTLS `yaml:"tls"`
	// TrustedOrigins may make changes on the admin page besides the
	// origin its requests name in Host ("https://admin.example.com"):
	// for a proxy or ingress that rewrites Host. Scheme and host, an
	// optional port, nothing more.
	TrustedOrigins []string `yaml:"trusted_origins"`
}

// NamedToken is an admin token, kept in a file or in an environment
// variable (one of the two), and the name it goes by.
type NamedToken struct {
	Name string `yaml:"name"`
	File string `yaml:"file"`
	Env  string `yaml:"env"`
}

// Redis tunes the Redis store (store: redis://...).
type Redis struct {
	// Prefix names every key, {prefix}:..., so that deployments can share
	// a Redis (default "reghost").
	Prefix string `yaml:"prefix"`
	// PasswordFile holds the data nodes' password, read at every new
	// connection; SentinelPasswordFile the Sentinels'. Not logged.
	PasswordFile         string `yaml:"password_file"`
	SentinelPasswordFile string `yaml:"sentinel_password_file"`
	// PasswordEnv names an environment variable holding the data nodes'
	// password, in place of PasswordFile.
	PasswordEnv string `yaml:"password_env"`
	// TLS applies with a rediss:// URL.
	TLS RedisTLS `yaml:"tls"`
	// ClientName is set on every connection; default reghost-<hostname>.
	ClientName string `yaml:"client_name"`
	// WaitReplicas: how many replicas must have a write before it is
	// answered; 0 (default) waits for one when the primary has any, -1
	// never waits.
	WaitReplicas int `yaml:"wait_replicas"`
	// WaitTimeout bounds that wait (default 500ms); a write no replica
	// has within it is answered with an error, though it may be kept.
	WaitTimeout time.Duration `yaml:"wait_timeout"`
	// Timeout bounds dialling, reading and writing (default 500ms): a
	// Redis that is down is known within it. Raise it for a slow link
	// or very large sets (a whole set is read within it).
	Timeout time.Duration `yaml:"timeout"`
}

// RedisTLS is the Redis store's TLS: a CA for the server's certificate,
// a client certificate, and the name to verify.
type RedisTLS struct {
	CAFile     string `yaml:"ca_file"`
	CertFile   string `yaml:"cert_file"`
	KeyFile    string `yaml:"key_file"`
	ServerName string `yaml:"server_name"`
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
		Listen:               ":8080",
		AdminListen:          "127.0.0.1:9090",
		RedirectStatus:       307,
		DataDir:              "data",
		HealthPanicThreshold: health.DefaultPanicThreshold,
		Redis:                Redis{Prefix: "reghost", Timeout: 500 * time.Millisecond, WaitTimeout: 500 * time.Millisecond},
		TLS:                  TLS{ACME: ACME{DirectoryURL: LetsEncrypt}},
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
// then makes its relative paths relative to the file's directory and
// checks the files that must be usable at start (the TLS certificates).
// Errors start with path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if pe, ok := errors.AsType[*fs.PathError](err); ok {
			err = pe.Err // path goes first, once
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c, p, err := parse(data, path)
	if err != nil {
		return nil, err
	}
	c.resolve(filepath.Dir(path))
	c.checkTLSFiles(p)
	if err := p.err(); err != nil {
		return nil, err
	}
	return c, nil
}

// Parse decodes data as a config file, applies defaults and validates
// it. name identifies data in errors, which start with it; relative
// paths are left as written, and files are not opened. Every problem
// found is reported, one per line, as "name:line: key.path: problem".
func Parse(data []byte, name string) (*Config, error) {
	c, _, err := parse(data, name)
	return c, err
}

// parse is Parse, also returning the problems collector (empty), for
// Load to report later problems at their lines.
func parse(data []byte, name string) (*Config, *problems, error) {
	root, err := parseDocument(data)
	if err != nil {
		return nil, nil, yamlError(name, err)
	}
	p := &problems{name: name, root: root}
	p.checkShape(root, configType, "")
	if err := p.err(); err != nil {
		return nil, nil, err
	}
	c := defaults()
	if err := decodeStrict(data, c); err != nil {
		return nil, nil, yamlError(name, err)
	}
	c.validate(p)
	if err := p.err(); err != nil {
		return nil, nil, err
	}
	return c, p, nil
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
	for i := range c.Admin.Tokens {
		abs(&c.Admin.Tokens[i].File)
	}
	abs(&c.Redis.PasswordFile)
	abs(&c.Redis.SentinelPasswordFile)
	abs(&c.Redis.TLS.CAFile)
	abs(&c.Redis.TLS.CertFile)
	abs(&c.Redis.TLS.KeyFile)
	abs(&c.TLS.CertFile)
	abs(&c.TLS.KeyFile)
	abs(&c.TLS.ACME.CacheDir)
	abs(&c.Admin.TLS.CertFile)
	abs(&c.Admin.TLS.KeyFile)
	abs(&c.Admin.TLS.ClientCAFile)
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
		// Mutual TLS puts a client certificate before the token.
		if ip := net.ParseIP(host); (host == "" || ip != nil && ip.IsUnspecified()) && c.Admin.TLS.ClientCAFile == "" {
			out = append(out, fmt.Sprintf("admin_listen %q is on every interface: the admin API and /metrics are open to the network, with only the token between; bind it to 127.0.0.1 or a private address", c.AdminListen))
		}
	}
	if c.Store == "" && !reflect.DeepEqual(c.Redis, defaults().Redis) {
		out = append(out, "redis is set, but store is the embedded one: the redis settings do nothing")
	}
	for _, p := range c.ClientIP.TrustedProxies {
		if p.Bits() == 0 {
			out = append(out, fmt.Sprintf("client_ip.trusted_proxies holds %s: every peer is trusted to name the client address, so anyone can choose their registry; list your proxies' addresses", p))
		}
	}
	return append(out, c.tlsWarnings()...)
}

// HealthTargets are the registries as the health checker probes them:
// each registry's health block over health_defaults over the built-in
// defaults. A registry's enabled, when written, beats health_defaults'.
func (c *Config) HealthTargets() []health.Target {
	defaults := probeSettings(c.HealthDefaults).WithDefaults(health.DefaultSettings())
	out := make([]health.Target, len(c.Registries))
	for i, r := range c.Registries {
		s := probeSettings(r.Health).WithDefaults(defaults)
		s.Disabled = !enabled(r.Health.Enabled, c.HealthDefaults.Enabled)
		out[i] = health.Target{Name: r.Name, URL: r.URL, Settings: s}
	}
	return out
}

// PanicThreshold is health_panic_threshold as the health checker takes
// it.
func (c *Config) PanicThreshold() float64 {
	if c.HealthPanicThreshold == 0 {
		return health.PanicOff
	}
	return c.HealthPanicThreshold
}

func probeSettings(p rules.Probe) health.Settings {
	return health.Settings{Path: p.Path, Expect: p.Expect, Interval: p.Interval, FastInterval: p.FastInterval,
		Timeout: p.Timeout, Rise: p.Rise, Fall: p.Fall}
}

// enabled is the first of the layers that says, or true.
func enabled(layers ...*bool) bool {
	for _, e := range layers {
		if e != nil {
			return *e
		}
	}
	return true
}
