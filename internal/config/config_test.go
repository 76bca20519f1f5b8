package config

import (
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/reghost/reghost/internal/rules"
)

// briefExample is the example configuration of the design brief, which
// must keep loading as keys are added.
const briefExample = `
listen: ":8080"
admin_listen: "127.0.0.1:9090"
redirect_status: 307            # 302 also allowed
client_ip:
  header: X-Real-IP             # or X-Forwarded-For
  trusted_proxies: [127.0.0.0/8, 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, "fc00::/7", "::1/128"]
  xff_trusted_hops: 1
geoip:
  asn: data/GeoLite2-ASN.mmdb          # optional
  country: data/GeoLite2-Country.mmdb  # optional; a City database also works
cloud_ranges:                   # optional; files in each provider's own published format
  aws: data/aws-ip-ranges.json
  gcp: data/gcp-cloud.json
  azure: data/azure-servicetags.json
  oracle: data/oracle-public-ip-ranges.json
  digitalocean: data/digitalocean-geofeed.csv
store: ""                       # empty: embedded single-node store; redis://… later
registries:
  - name: k8s
    url: https://us-west1-docker.pkg.dev/k8s-artifacts-prod/images
    default: true
  - name: aws-us-east-2
    url: https://prod-registry-k8s-io-us-east-2.s3.dualstack.us-east-2.amazonaws.com
  - name: hub
    url: https://registry-1.docker.io
rules:
  - match: {cidr: 192.168.0.0/24}
    registries: [hub]
  - match: {asn: 15169}
    registries: [hub, k8s]
  - match: {cloud: aws, region: us-east-2}
    registries: [aws-us-east-2]
  - match: {cloud: gcp}
    registries: [k8s]
  - match: {country: SE}
    registries: [hub]
  - match: {continent: EU}
    registries: [k8s]
`

func prefixes(ss ...string) []netip.Prefix {
	ps := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		ps[i] = netip.MustParsePrefix(s)
	}
	return ps
}

// briefWant is what briefExample decodes to.
func briefWant() *Config {
	return &Config{
		Listen:         ":8080",
		AdminListen:    "127.0.0.1:9090",
		RedirectStatus: 307,
		DataDir:        "data",
		TLS:            TLS{ACME: ACME{DirectoryURL: LetsEncrypt}},
		ClientIP: ClientIP{
			Header:         HeaderXRealIP,
			TrustedProxies: prefixes("127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7", "::1/128"),
			XFFTrustedHops: 1,
		},
		GeoIP: GeoIP{ASN: "data/GeoLite2-ASN.mmdb", Country: "data/GeoLite2-Country.mmdb"},
		CloudRanges: map[string]string{
			"aws":          "data/aws-ip-ranges.json",
			"gcp":          "data/gcp-cloud.json",
			"azure":        "data/azure-servicetags.json",
			"oracle":       "data/oracle-public-ip-ranges.json",
			"digitalocean": "data/digitalocean-geofeed.csv",
		},
		Registries: []rules.Registry{
			{Name: "k8s", URL: "https://us-west1-docker.pkg.dev/k8s-artifacts-prod/images", Default: true},
			{Name: "aws-us-east-2", URL: "https://prod-registry-k8s-io-us-east-2.s3.dualstack.us-east-2.amazonaws.com"},
			{Name: "hub", URL: "https://registry-1.docker.io"},
		},
		Rules: []rules.Rule{
			{Match: rules.Match{CIDR: netip.MustParsePrefix("192.168.0.0/24")}, Registries: []string{"hub"}},
			{Match: rules.Match{ASN: 15169}, Registries: []string{"hub", "k8s"}},
			{Match: rules.Match{Cloud: "aws", Region: "us-east-2"}, Registries: []string{"aws-us-east-2"}},
			{Match: rules.Match{Cloud: "gcp"}, Registries: []string{"k8s"}},
			{Match: rules.Match{Country: "SE"}, Registries: []string{"hub"}},
			{Match: rules.Match{Continent: "EU"}, Registries: []string{"k8s"}},
		},
		HealthPanicThreshold: 0.5,
		Redis:                Redis{Prefix: "reghost", Timeout: 500 * time.Millisecond, WaitTimeout: 500 * time.Millisecond},
	}
}

func TestParseBriefExample(t *testing.T) {
	t.Parallel()
	c, err := Parse([]byte(briefExample), "brief.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if want := briefWant(); !reflect.DeepEqual(c, want) {
		t.Errorf("Parse:\n got %+v\nwant %+v", c, want)
	}
	if got := c.Default(); got.Name != "k8s" {
		t.Errorf("Default() = %+v, want k8s", got)
	}
	if r, ok := c.Registry("hub"); !ok || r.URL != "https://registry-1.docker.io" {
		t.Errorf("Registry(hub) = %+v, %v", r, ok)
	}
	if r, ok := c.Registry("nope"); ok {
		t.Errorf("Registry(nope) = %+v, true", r)
	}
}

// The embedded example is the brief's example with every other key
// spelled out at its default, but for its trusted proxies: run as it is,
// on a machine whose neighbours are not proxies, trusting the private
// ranges would let any of them choose its registry.
func TestExample(t *testing.T) {
	t.Parallel()
	c, err := Parse(Example(), "example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := briefWant()
	want.ClientIP.TrustedProxies = prefixes("127.0.0.0/8", "::1/128")
	want.Registries[1].Health = rules.Probe{Path: "/v2/", Expect: []int{200, 403, 404}}
	on := true
	want.HealthDefaults = rules.Probe{Enabled: &on, Path: "/v2/", Expect: []int{200, 401}, Interval: 10 * time.Second,
		FastInterval: time.Second, Timeout: 2 * time.Second, Rise: 2, Fall: 3}
	want.HealthPanicThreshold = 0.5
	want.Admin.Tokens = []NamedToken{}
	want.Admin.TrustedOrigins = []string{}
	want.TLS.ACME.Domains = []string{}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Parse(Example()):\n got %+v\nwant %+v", c, want)
	}
}

// example.yaml is the config reference: it must show every key, and a
// file for every cloud.
func TestExampleShowsEveryKey(t *testing.T) {
	t.Parallel()
	var doc yaml.Node
	if err := yaml.Unmarshal(Example(), &doc); err != nil {
		t.Fatal(err)
	}
	root := doc.Content[0]
	// A key counts as shown if it is shown wherever its type is: a
	// registry's health block has the keys health_defaults shows.
	type key struct {
		t    reflect.Type
		name string
	}
	shown := map[key]bool{}
	var unseen []key
	var paths []string
	var walk func(ns []*yaml.Node, t reflect.Type, path string)
	walk = func(ns []*yaml.Node, t reflect.Type, path string) {
		switch t.Kind() {
		case reflect.Struct:
			if t == prefixType {
				return
			}
			_, names := yamlFields(t)
			for _, name := range names {
				var vs []*yaml.Node
				for _, n := range ns {
					if _, v := mapEntry(n, name); v != nil {
						vs = append(vs, v)
					}
				}
				if len(vs) == 0 {
					unseen = append(unseen, key{t, name})
					paths = append(paths, join(path, name))
					continue
				}
				shown[key{t, name}] = true
				fields, _ := yamlFields(t)
				walk(vs, fields[name], join(path, name))
			}
		case reflect.Slice:
			var items []*yaml.Node
			for _, n := range ns {
				items = append(items, n.Content...)
			}
			if len(items) == 0 {
				return // an empty list, its items' keys in a comment (admin.tokens)
			}
			walk(items, t.Elem(), path+"[]")
		}
	}
	walk([]*yaml.Node{root}, configType, "")
	var missing []string
	for i, k := range unseen {
		if !shown[k] {
			missing = append(missing, paths[i])
		}
	}
	if len(missing) > 0 {
		t.Errorf("example.yaml does not show %s", strings.Join(missing, ", "))
	}
	c, err := Parse(Example(), "example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, cloud := range rules.Clouds {
		if c.CloudRanges[cloud] == "" {
			t.Errorf("example.yaml has no cloud_ranges.%s", cloud)
		}
	}
}

// minimal is the least a config file needs.
const minimal = `
registries:
  - name: only
    url: https://registry.example/
    default: true
`

func TestDefaults(t *testing.T) {
	t.Parallel()
	c, err := Parse([]byte(minimal), "minimal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Listen:         ":8080",
		AdminListen:    "127.0.0.1:9090",
		RedirectStatus: 307,
		DataDir:        "data",
		ClientIP: ClientIP{
			Header:         HeaderXRealIP,
			TrustedProxies: prefixes("127.0.0.0/8", "::1/128"),
			XFFTrustedHops: 1,
		},
		Registries:           []rules.Registry{{Name: "only", URL: "https://registry.example", Default: true}},
		HealthPanicThreshold: 0.5,
		Redis:                Redis{Prefix: "reghost", Timeout: 500 * time.Millisecond, WaitTimeout: 500 * time.Millisecond},
		TLS:                  TLS{ACME: ACME{DirectoryURL: LetsEncrypt}},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Parse(minimal):\n got %+v\nwant %+v", c, want)
	}
}

// Values with more than one spelling come out in one, and keys that are
// present win over defaults even when empty.
func TestParseNormalizes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		got  func(*Config) any
		want any
	}{
		{"header lower case", "client_ip: {header: x-forwarded-for}", func(c *Config) any { return c.ClientIP.Header }, HeaderXForwardedFor},
		{"header as written in the brief", "client_ip: {header: X-Real-IP}", func(c *Config) any { return c.ClientIP.Header }, HeaderXRealIP},
		{"url trailing slash", "", func(c *Config) any { return c.Default().URL }, "https://a.example"},
		{"url path trailing slash", "registries: [{name: a, url: 'https://a.example:5000/v2/x/', default: true}]", func(c *Config) any { return c.Default().URL }, "https://a.example:5000/v2/x"},
		{"url scheme case", "registries: [{name: a, url: 'HTTPS://a.example', default: true}]", func(c *Config) any { return c.Default().URL }, "https://a.example"},
		{"url escaped path kept", "registries: [{name: a, url: 'https://a.example/a%20b/', default: true}]", func(c *Config) any { return c.Default().URL }, "https://a.example/a%20b"},
		{"empty trusted_proxies trusts no one", "client_ip: {trusted_proxies: []}", func(c *Config) any { return len(c.ClientIP.TrustedProxies) }, 0},
		{"redirect 302", "redirect_status: 302", func(c *Config) any { return c.RedirectStatus }, 302},
		{"port 0", "listen: 127.0.0.1:0", func(c *Config) any { return c.Listen }, "127.0.0.1:0"},
		{"ipv6 listen", `listen: "[::1]:8080"`, func(c *Config) any { return c.Listen }, "[::1]:8080"},
		{"zoned ipv6 listen", `listen: "[fe80::1%eth0]:8080"`, func(c *Config) any { return c.Listen }, "[fe80::1%eth0]:8080"},
		{"host name listen", `listen: "localhost:8080"`, func(c *Config) any { return c.Listen }, "localhost:8080"},
		{"both listeners on port 0", "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0", func(c *Config) any { return c.AdminListen }, "127.0.0.1:0"},
		{"trusted_proxies without a value trusts no one", "client_ip:\n  trusted_proxies:", func(c *Config) any { return len(c.ClientIP.TrustedProxies) }, 0},
		{"rediss store", "store: rediss://user:secret@redis.example:6380/1", func(c *Config) any { return c.Store }, "rediss://user:secret@redis.example:6380/1"},
		{"xff hops 10", "client_ip: {xff_trusted_hops: 10}", func(c *Config) any { return c.ClientIP.XFFTrustedHops }, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in := tt.in
			if !strings.Contains(in, "registries:") {
				in += "\nregistries: [{name: a, url: 'https://a.example/', default: true}]\n"
			}
			c, err := Parse([]byte(in), "c.yaml")
			if err != nil {
				t.Fatal(err)
			}
			if got := tt.got(c); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

// regs is appended to error cases that do not set registries, so that
// each case has exactly one problem; it comes last, so that line numbers
// in the cases are their own.
const regs = `
registries:
  - {name: a, url: "https://a.example", default: true}
  - {name: b, url: "https://b.example"}
`

func TestParseErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want string
	}{

		// Keys and shapes.
		{"unknown key", "listne: ':8080'\n", `c.yaml:1: listne: unknown key; known keys here: listen, admin_listen, tls, redirect_status, data_dir, admin, client_ip, geoip, cloud_ranges, store, redis, registries, rules, health_defaults, health_panic_threshold`},
		{"duration without a unit", "health_defaults: {interval: 10}\n", `c.yaml:1: health_defaults.interval: "10": write a duration with its unit, such as 10s or 200ms`},
		{"interval below the floor", "health_defaults: {interval: 10ms, fast_interval: 10ms, timeout: 10ms}\n", "c.yaml:1: health_defaults.interval: must be at least 100ms (every replica probes every registry), got 10ms\nc.yaml:1: health_defaults.fast_interval: must be at least 100ms, got 10ms"},
		{"bad expect", "registries:\n  - {name: a, url: 'https://a.example', default: true, health: {expect: [99]}}\n", "c.yaml:2: registries[0].health.expect: 99 is not an HTTP status code (100-599)"},
		{"fall of 0", "registries:\n  - {name: a, url: 'https://a.example', default: true, health: {fall: -1}}\n", "c.yaml:2: registries[0].health.fall: must be at least 1, got -1"},
		{"unknown probe key", "health_defaults: {intervall: 5s}\n", "c.yaml:1: health_defaults.intervall: unknown key; known keys here: enabled, path, expect, interval, fast_interval, timeout, rise, fall"},
		{"panic threshold", "health_panic_threshold: 1.5\n", "c.yaml:1: health_panic_threshold: 1.5 is not a share from 0 to 1 (0.5: ignore health when fewer than half the probed registries are up; 0: never)"},
		{"unknown nested key", "client_ip:\n  header: X-Real-IP\n  heder: X-Real-IP\n", `c.yaml:3: client_ip.heder: unknown key; known keys here: header, trusted_proxies, xff_trusted_hops`},
		{"unknown match key", "rules:\n  - match: {contry: SE}\n    registries: [a]\n", `c.yaml:2: rules[0].match.contry: unknown key; known keys here: cidr, asn, cloud, region, country, continent`},
		{"unknown registry key", "registries:\n  - {name: a, url: 'https://a.example', default: true, weight: 2}\n", `c.yaml:2: registries[0].weight: unknown key; known keys here: name, url, default, health`},
		{"unknown key in merge", "admin: &a {token_file: x, tokenfile: y}\nclient_ip: {<<: *a}\n", "c.yaml:1: admin.tokenfile: unknown key; known keys here: token_file, tokens, tls, trusted_origins\nc.yaml:1: client_ip.token_file: unknown key; known keys here: header, trusted_proxies, xff_trusted_hops\nc.yaml:1: client_ip.tokenfile: unknown key; known keys here: header, trusted_proxies, xff_trusted_hops"},
		{"key twice", "listen: ':1'\nlisten: ':2'\n", `c.yaml:2: listen: set twice; first at line 1`},
		{"token from a file and a variable", "admin:\n  tokens: [{name: ci, file: /run/ci, env: CI_TOKEN}, {name: ops}]\n", "c.yaml:2: admin.tokens[0]: name the file that holds the token (file) or the environment variable (env), one of the two\nc.yaml:2: admin.tokens[1]: name the file that holds the token (file) or the environment variable (env), one of the two"},
		{"redis wait timeout and two passwords", "redis: {wait_timeout: 0s, password_file: /run/redis-password, password_env: REDIS_PASSWORD}\n", "c.yaml:1: redis.wait_timeout: 0s: must be more than 0 (default 500ms)\nc.yaml:1: redis.password_env: password_file is set too: keep one"},
		{"trusted origin without a scheme", "admin:\n  trusted_origins: [admin.example.com, 'https://admin.example.com/admin/']\n", "c.yaml:2: admin.trusted_origins[0]: \"admin.example.com\" is not an origin: write scheme://host[:port], as https://admin.example.com\nc.yaml:2: admin.trusted_origins[1]: \"https://admin.example.com/admin/\" is not an origin: write scheme://host[:port], as https://admin.example.com"},
		{"cloud_ranges key twice", "cloud_ranges:\n  aws: a\n  aws: b\n", `c.yaml:3: cloud_ranges.aws: set twice; first at line 2`},
		{"string for list", "registries: a\n", `c.yaml:1: registries: expected a list, got "a"`},
		{"list for mapping", "client_ip: [X-Real-IP]\n", `c.yaml:1: client_ip: expected a mapping of keys to values, got a list`},
		{"mapping for string", "listen: {port: 1}\n", `c.yaml:1: listen: expected text, got a mapping`},
		{"word for number", "rules:\n  - match:\n      asn: google\n    registries: [a]\n", `c.yaml:3: rules[0].match.asn: expected a whole number from 0 to 4294967295, got "google"`},
		{"negative asn", "rules:\n  - match: {asn: -1}\n    registries: [a]\n", `c.yaml:2: rules[0].match.asn: expected a whole number from 0 to 4294967295, got "-1"`},
		{"word for bool", "registries:\n  - {name: a, url: 'https://a.example', default: maybe}\n", `c.yaml:2: registries[0].default: expected true or false, got "maybe"`},
		{"quoted number", "redirect_status: '307'\n", `c.yaml:1: redirect_status: expected a whole number, got "307"`},
		{"fraction for asn", "rules:\n  - match: {asn: 15169.9}\n    registries: [a]\n", `c.yaml:2: rules[0].match.asn: expected a whole number from 0 to 4294967295, got "15169.9"`},
		{"exponent for asn", "rules:\n  - match: {asn: 1.5e4}\n    registries: [a]\n", `c.yaml:2: rules[0].match.asn: expected a whole number from 0 to 4294967295, got "1.5e4"`},
		{"fraction for status", "redirect_status: 307.9\n", `c.yaml:1: redirect_status: expected a whole number, got "307.9"`},
		{"octal asn", "rules:\n  - match: {asn: 012345}\n    registries: [a]\n", `c.yaml:2: rules[0].match.asn: "012345": a leading 0 makes YAML read the number as octal; write it without`},
		{"leading zero asn", "rules:\n  - match: {asn: 015169}\n    registries: [a]\n", `c.yaml:2: rules[0].match.asn: "015169": a leading 0 makes YAML read the number as octal; write it without`},
		{"hex asn", "rules:\n  - match: {asn: 0x10}\n    registries: [a]\n", `c.yaml:2: rules[0].match.asn: "0x10": write the number in decimal digits (YAML would read 0x, 0o, 0b and _ forms too)`},
		{"underscored asn", "rules:\n  - match: {asn: 15_169}\n    registries: [a]\n", `c.yaml:2: rules[0].match.asn: "15_169": write the number in decimal digits (YAML would read 0x, 0o, 0b and _ forms too)`},
		{"fraction for hops", "client_ip: {xff_trusted_hops: 1.9}\n", `c.yaml:1: client_ip.xff_trusted_hops: expected a whole number, got "1.9"`},

		// CIDRs, in rules and trusted proxies.
		{"rule cidr no slash", "rules:\n  - match: {cidr: 192.168.0.1}\n    registries: [a]\n", `c.yaml:2: rules[0].match.cidr: "192.168.0.1" is not a CIDR prefix such as 10.0.0.0/8 or fc00::/7 (no '/'); for one address write 192.168.0.1/32`},
		{"rule cidr length", "rules:\n  - match: {cidr: 192.168.0.0/33}\n    registries: [a]\n", `c.yaml:2: rules[0].match.cidr: "192.168.0.0/33" is not a CIDR prefix such as 10.0.0.0/8 or fc00::/7 (prefix length out of range)`},
		{"rule cidr address", "rules:\n  - match: {cidr: 192.168.0/24}\n    registries: [a]\n", `c.yaml:2: rules[0].match.cidr: "192.168.0/24" is not a CIDR prefix such as 10.0.0.0/8 or fc00::/7 (ParseAddr("192.168.0"): IPv4 address too short)`},
		{"rule cidr word", "rules:\n  - match: {cidr: office}\n    registries: [a]\n", `c.yaml:2: rules[0].match.cidr: "office" is not a CIDR prefix such as 10.0.0.0/8 or fc00::/7 (no '/')`},
		{"rule cidr host bits", "rules:\n  - match: {cidr: 192.168.0.1/24}\n    registries: [a]\n", `c.yaml:2: rules[0].match.cidr: 192.168.0.1/24 has host bits set; did you mean 192.168.0.0/24?`},
		{"rule cidr v6 host bits", "rules:\n  - match: {cidr: '2001:db8::1/32'}\n    registries: [a]\n", `c.yaml:2: rules[0].match.cidr: 2001:db8::1/32 has host bits set; did you mean 2001:db8::/32?`},
		{"rule cidr mapped", "rules:\n  - match: {cidr: '::ffff:10.0.0.0/104'}\n    registries: [a]\n", `c.yaml:2: rules[0].match.cidr: ::ffff:10.0.0.0/104 is IPv4-mapped IPv6; write the IPv4 prefix`},
		{"proxy no slash", "client_ip:\n  trusted_proxies:\n    - 10.0.0.0/8\n    - 10.1.2.3\n", `c.yaml:4: client_ip.trusted_proxies[1]: "10.1.2.3" is not a CIDR prefix such as 10.0.0.0/8 or fc00::/7 (no '/'); for one address write 10.1.2.3/32`},
		{"proxy v6 no slash", "client_ip: {trusted_proxies: ['::1']}\n", `c.yaml:1: client_ip.trusted_proxies[0]: "::1" is not a CIDR prefix such as 10.0.0.0/8 or fc00::/7 (no '/'); for one address write ::1/128`},
		{"proxy host bits", "client_ip: {trusted_proxies: [10.0.0.1/8]}\n", `c.yaml:1: client_ip.trusted_proxies[0]: 10.0.0.1/8 has host bits set; did you mean 10.0.0.0/8?`},
		{"proxy null", "client_ip:\n  trusted_proxies:\n    - 10.0.0.0/8\n    - ~\n", `c.yaml:4: client_ip.trusted_proxies[1]: empty item; give it a value or remove it`},
		{"rule null", "rules:\n  -\n  - match: {country: SE}\n    registries: [a]\n", `c.yaml:2: rules[0]: empty item; give it a value or remove it`},
		{"rule registry null", "rules:\n  - match: {country: SE}\n    registries: [a, ~]\n", `c.yaml:3: rules[0].registries[1]: empty item; give it a value or remove it`},
		{"proxy not a list", "client_ip: {trusted_proxies: 10.0.0.0/8}\n", `c.yaml:1: client_ip.trusted_proxies: expected a list, got "10.0.0.0/8"`},

		// Rules.
		{"unknown registry", "rules:\n  - match: {country: SE}\n    registries: [a, hub]\n", `c.yaml:3: rules[0].registries[1]: unknown registry "hub"`},
		{"registry twice", "rules:\n  - match: {country: SE}\n    registries: [a, a]\n", `c.yaml:3: rules[0].registries[1]: "a" listed twice`},
		{"no registries", "rules:\n  - match: {country: SE}\n", `c.yaml:2: rules[0].registries: empty; list at least one registry`},
		{"empty match", "rules:\n  - match: {}\n    registries: [a]\n", `c.yaml:2: rules[0].match: empty; set one of cidr, asn, cloud (with optional region), country, continent`},
		{"two kinds", "rules:\n  - match: {asn: 1, country: SE}\n    registries: [a]\n", `c.yaml:2: rules[0].match: sets asn and country; a match sets exactly one kind`},
		{"region alone", "rules:\n  - match: {region: us-east-2}\n    registries: [a]\n", `c.yaml:2: rules[0].match.region: needs match.cloud`},
		{"unknown cloud", "rules:\n  - match: {cloud: ibm}\n    registries: [a]\n", `c.yaml:2: rules[0].match.cloud: unknown provider "ibm"; known: aws, gcp, azure, oracle, digitalocean`},
		{"country not assigned", "rules:\n  - match: {country: SE}\n    registries: [a]\n  - match: {country: XX}\n    registries: [a]\n", `c.yaml:4: rules[1].match.country: "XX" is not an ISO 3166-1 alpha-2 country code (two upper-case letters, such as SE)`},
		{"country lower case", "rules:\n  - match:\n      country: se\n    registries: [a]\n", `c.yaml:3: rules[0].match.country: "se" is not an ISO 3166-1 alpha-2 country code (two upper-case letters, such as SE); did you mean "SE"?`},
		{"country alpha-3", "rules:\n  - match: {country: SWE}\n    registries: [a]\n", `c.yaml:2: rules[0].match.country: "SWE" is not an ISO 3166-1 alpha-2 country code (two upper-case letters, such as SE)`},
		{"continent lower case", "rules:\n  - match: {continent: eu}\n    registries: [a]\n", `c.yaml:2: rules[0].match.continent: "eu" is not a continent code; known: AF, AN, AS, EU, NA, OC, SA; did you mean "EU"?`},
		{"same match twice", "rules:\n  - match: {country: SE}\n    registries: [a]\n  - match: {country: SE}\n    registries: [b]\n", `c.yaml:4: rules[1].match: country:SE is already matched by rules[0]; merge the two into one rule`},

		// Registries.
		{"empty registries", "registries: []\n", `c.yaml:1: registries: empty; list at least one registry and mark one default: true`},
		{"no default", "registries:\n  - {name: a, url: 'https://a.example'}\n", `c.yaml:1: registries: no default; mark exactly one registry default: true, for clients no rule matches`},
		{"two defaults", "registries:\n  - {name: a, url: 'https://a.example', default: true}\n  - {name: b, url: 'https://b.example', default: true}\n", `c.yaml:3: registries[1].default: registries[0] ("a") is already the default; mark exactly one`},
		{"duplicate name", "registries:\n  - {name: a, url: 'https://a.example', default: true}\n  - {name: a, url: 'https://b.example'}\n", `c.yaml:3: registries[1].name: "a" is already the name of registries[0]`},
		{"name upper case", "registries:\n  - {name: Hub, url: 'https://a.example', default: true}\n", `c.yaml:2: registries[0].name: "Hub" is not a registry name: 1-63 lower-case letters, digits, '_' or '-', starting with a letter or digit`},
		{"name leading dash", "registries:\n  - {name: -a, url: 'https://a.example', default: true}\n", `c.yaml:2: registries[0].name: "-a" is not a registry name: 1-63 lower-case letters, digits, '_' or '-', starting with a letter or digit`},
		{"name empty", "registries:\n  - {url: 'https://a.example', default: true}\n", `c.yaml:2: registries[0].name: "" is not a registry name: 1-63 lower-case letters, digits, '_' or '-', starting with a letter or digit`},
		{"name too long", "registries:\n  - {name: " + strings.Repeat("a", 64) + ", url: 'https://a.example', default: true}\n", `c.yaml:2: registries[0].name: "` + strings.Repeat("a", 64) + `" is not a registry name: 1-63 lower-case letters, digits, '_' or '-', starting with a letter or digit`},
		{"url empty", "registries:\n  - {name: a, default: true}\n", `c.yaml:2: registries[0].url: empty; write the registry's base URL, such as https://registry-1.docker.io`},
		{"url scheme", "registries:\n  - {name: a, url: 'ftp://a.example', default: true}\n", `c.yaml:2: registries[0].url: scheme "ftp" is not supported; use https (or http)`},
		{"url no scheme", "registries:\n  - {name: a, url: 'a.example', default: true}\n", `c.yaml:2: registries[0].url: scheme "" is not supported; use https (or http)`},
		{"url no host", "registries:\n  - {name: a, url: 'https:///v2', default: true}\n", `c.yaml:2: registries[0].url: no host; write scheme://host[:port][/path-prefix]`},
		{"url opaque", "registries:\n  - {name: a, url: 'https:a.example', default: true}\n", `c.yaml:2: registries[0].url: no host; write scheme://host[:port][/path-prefix]`},
		{"url user info", "registries:\n  - {name: a, url: 'https://u:p@a.example', default: true}\n", `c.yaml:2: registries[0].url: has user info; a redirect cannot carry credentials, and clients would see them`},
		{"url port out of range", "registries:\n  - {name: a, url: 'https://a.example:99999', default: true}\n", `c.yaml:2: registries[0].url: port "99999" is not a number from 1 to 65535`},
		{"url query", "registries:\n  - {name: a, url: 'https://a.example/?x=1', default: true}\n", `c.yaml:2: registries[0].url: has a query; clients' own query strings are kept, a registry URL cannot add one`},
		{"url empty query", "registries:\n  - {name: a, url: 'https://a.example/?', default: true}\n", `c.yaml:2: registries[0].url: has a query; clients' own query strings are kept, a registry URL cannot add one`},
		{"url fragment", "registries:\n  - {name: a, url: 'https://a.example/#x', default: true}\n", `c.yaml:2: registries[0].url: has a fragment; remove the #…`},
		{"url empty fragment", "registries:\n  - {name: a, url: 'https://a.example/#', default: true}\n", `c.yaml:2: registries[0].url: has a fragment; remove the #…`},
		{"url dot dot", "registries:\n  - {name: a, url: 'https://a.example/x/../y', default: true}\n", `c.yaml:2: registries[0].url: path "/x/../y" has a ".." segment; write the path it leads to`},
		{"url escaped dot dot", "registries:\n  - {name: a, url: 'https://a.example/x/%2e%2e', default: true}\n", `c.yaml:2: registries[0].url: path "/x/.." has a ".." segment; write the path it leads to`},
		{"url dot", "registries:\n  - {name: a, url: 'https://a.example/./y', default: true}\n", `c.yaml:2: registries[0].url: path "/./y" has a "." segment; write the path it leads to`},
		{"url double slash", "registries:\n  - {name: a, url: 'https://a.example/x//y', default: true}\n", `c.yaml:2: registries[0].url: path "/x//y" has an empty segment (//)`},
		{"url two trailing slashes", "registries:\n  - {name: a, url: 'https://a.example//', default: true}\n", `c.yaml:2: registries[0].url: path "//" has an empty segment (//)`},
		{"url bad port", "registries:\n  - {name: a, url: 'https://a.example:x', default: true}\n", `c.yaml:2: registries[0].url: not a URL (invalid port ":x" after host)`},

		// Scalars.
		{"redirect 301", "redirect_status: 301\n", `c.yaml:1: redirect_status: 301 is a permanent redirect, which clients and caches keep using after the rules or a registry's health change; use 307 (default) or 302`},
		{"redirect 308", "redirect_status: 308\n", `c.yaml:1: redirect_status: 308 is a permanent redirect, which clients and caches keep using after the rules or a registry's health change; use 307 (default) or 302`},
		{"redirect 200", "redirect_status: 200\n", `c.yaml:1: redirect_status: 200 is not a redirect status reghost sends; use 307 (default) or 302`},
		{"redirect 0", "redirect_status: 0\n", `c.yaml:1: redirect_status: 0 is not a redirect status reghost sends; use 307 (default) or 302`},
		{"listen no port", "listen: '8080'\n", `c.yaml:1: listen: "8080" is not host:port (missing port in address); write ":8080" for every interface or "127.0.0.1:8080" for one`},
		{"listen not an address", "listen: '256.1.1.1:8080'\n", `c.yaml:1: listen: "256.1.1.1:8080": "256.1.1.1" is neither an IP address nor a host name`},
		{"listen with a space", "listen: 'a b:80'\n", `c.yaml:1: listen: "a b:80": "a b" is neither an IP address nor a host name`},
		{"listeners on one address", "listen: ':9000'\nadmin_listen: ':9000'\n", `c.yaml:2: admin_listen: ":9000" is listen's address too; the admin listener needs its own`},
		{"listen without a value", "listen:\n", `c.yaml:1: listen: no value; give one, or remove the key for the default`},
		{"redirect_status without a value", "redirect_status: ~\n", `c.yaml:1: redirect_status: no value; give one, or remove the key for the default`},
		{"xff hops without a value", "client_ip:\n  xff_trusted_hops:\n", `c.yaml:2: client_ip.xff_trusted_hops: no value; give one, or remove the key for the default`},
		{"listen empty", "listen: ''\n", `c.yaml:1: listen: "" is not host:port (missing port in address); write ":8080" for every interface or "127.0.0.1:8080" for one`},
		{"listen ipv6 unbracketed", "listen: '::1:8080'\n", `c.yaml:1: listen: "::1:8080" is not host:port (too many colons in address); write ":8080" for every interface or "127.0.0.1:8080" for one`},
		{"listen port name", "listen: ':http'\n", `c.yaml:1: listen: ":http": port "http" is not a number from 0 to 65535`},
		{"listen port range", "listen: ':65536'\n", `c.yaml:1: listen: ":65536": port "65536" is not a number from 0 to 65535`},
		{"admin_listen", "admin_listen: localhost\n", `c.yaml:1: admin_listen: "localhost" is not host:port (missing port in address); write ":8080" for every interface or "127.0.0.1:8080" for one`},
		{"data_dir empty", "data_dir: ''\n", `c.yaml:1: data_dir: empty; remove the key to use the default "data"`},
		{"header", "client_ip: {header: Forwarded}\n", `c.yaml:1: client_ip.header: "Forwarded" is not supported; use X-Real-IP (default) or X-Forwarded-For`},
		{"hops 0", "client_ip: {xff_trusted_hops: 0}\n", `c.yaml:1: client_ip.xff_trusted_hops: 0 is out of range; count the trusted proxies that append to X-Forwarded-For, from 1 to 10`},
		{"hops 11", "client_ip:\n  xff_trusted_hops: 11\n", `c.yaml:2: client_ip.xff_trusted_hops: 11 is out of range; count the trusted proxies that append to X-Forwarded-For, from 1 to 10`},
		{"cloud_ranges unknown", "cloud_ranges:\n  aws: a.json\n  ibm: b.json\n", `c.yaml:3: cloud_ranges.ibm: unknown cloud; known: aws, gcp, azure, oracle, digitalocean`},
		{"cloud_ranges empty path", "cloud_ranges:\n  gcp: ''\n", `c.yaml:2: cloud_ranges.gcp: empty path; remove the key to go without gcp ranges`},
		{"store scheme", "store: https://redis.example\n", `c.yaml:1: store: scheme "https" is not supported; write redis://host:6379/0, rediss:// for TLS, unix:///path/to/redis.sock, or "" for the embedded store`},
		{"store no scheme", "store: redis.example:6379\n", `c.yaml:1: store: scheme "redis.example" is not supported; write redis://host:6379/0, rediss:// for TLS, unix:///path/to/redis.sock, or "" for the embedded store`},
		{"store no host", "store: redis:///0\n", `c.yaml:1: store: no host; write redis://host:6379/0`},
		{"store bad URL hides password", "store: 'redis://u:secret@redis.example:port/0'\n", `c.yaml:1: store: not a URL (invalid port ":port" after host)`},

		// Every problem is reported, in file order.
		{"several", "listen: x\nredirect_status: 301\nrules:\n  - match: {country: se}\n    registries: [c]\n", "c.yaml:1: listen: \"x\" is not host:port (missing port in address); write \":8080\" for every interface or \"127.0.0.1:8080\" for one\n" +
			"c.yaml:2: redirect_status: 301 is a permanent redirect, which clients and caches keep using after the rules or a registry's health change; use 307 (default) or 302\n" +
			"c.yaml:4: rules[0].match.country: \"se\" is not an ISO 3166-1 alpha-2 country code (two upper-case letters, such as SE); did you mean \"SE\"?"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in := tt.in
			if !strings.HasPrefix(in, "registries:") && !strings.Contains(in, "\nregistries:") {
				in += regs
			}
			c, err := Parse([]byte(in), "c.yaml")
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", c)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("error:\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

// Problems with the file as a whole; the input is the whole file.
func TestParseFileErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"empty file", "", `c.yaml: empty; a config file needs at least its registries (see example.yaml)`},
		{"only comments", "# nothing\n", `c.yaml: empty; a config file needs at least its registries (see example.yaml)`},
		{"null document", "---\n~\n", `c.yaml: empty; a config file needs at least its registries (see example.yaml)`},
		{"second document", "listen: ':1'\n---\nlisten: ':2'\n", `c.yaml:2: a second YAML document; a config file holds exactly one (remove the ---)`},
		{"syntax", "listen: [\n", `c.yaml:1: did not find expected node content`},
		{"top level list", "- listen\n", `c.yaml:1: expected a mapping of keys to values, got a list`},
		{"no registries key", "listen: ':8080'\n", `c.yaml: registries: empty; list at least one registry and mark one default: true`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := Parse([]byte(tt.in), "c.yaml")
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", c)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("error:\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	abs := filepath.Join(dir, "elsewhere", "asn.mmdb")
	path := filepath.Join(dir, "conf", "reghost.yaml")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	body := `
admin: {token_file: secret/token}
geoip:
  asn: ` + abs + `
  country: data/GeoLite2-City.mmdb
cloud_ranges:
  aws: ../ranges/aws.json
` + regs
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	confDir := filepath.Join(dir, "conf")
	for _, tt := range []struct{ key, got, want string }{
		{"data_dir (default)", c.DataDir, filepath.Join(confDir, "data")},
		{"admin.token_file", c.Admin.TokenFile, filepath.Join(confDir, "secret", "token")},
		{"geoip.asn (absolute)", c.GeoIP.ASN, abs},
		{"geoip.country", c.GeoIP.Country, filepath.Join(confDir, "data", "GeoLite2-City.mmdb")},
		{"cloud_ranges.aws", c.CloudRanges["aws"], filepath.Join(dir, "ranges", "aws.json")},
	} {
		if tt.got != tt.want {
			t.Errorf("%s = %q, want %q", tt.key, tt.got, tt.want)
		}
	}

	// Parse leaves the same paths as written: relative to the working
	// directory.
	c, err = Parse([]byte(body), path)
	if err != nil {
		t.Fatal(err)
	}
	if c.DataDir != "data" || c.Admin.TokenFile != "secret/token" || c.GeoIP.Country != "data/GeoLite2-City.mmdb" || c.CloudRanges["aws"] != "../ranges/aws.json" {
		t.Errorf("Parse changed paths: %+v", c)
	}
}

func TestLoadErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()

	missing := filepath.Join(dir, "missing.yaml")
	_, err := Load(missing)
	if want := missing + ": no such file or directory"; err == nil || err.Error() != want {
		t.Errorf("Load(missing) = %v, want %s", err, want)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want errors.Is fs.ErrNotExist", err)
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("listen: ':8080'\nlisten: ':8081'\n"+regs), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(bad)
	if want := bad + ":2: listen: set twice; first at line 1"; err == nil || err.Error() != want {
		t.Errorf("Load(bad) = %v, want %s", err, want)
	}
}

// The strict decoder stays on as a backstop behind checkShape.
func TestDecodeStrict(t *testing.T) {
	t.Parallel()
	err := decodeStrict([]byte("listen: ':1'\nextra: 1\n"), defaults())
	if err == nil || !strings.Contains(err.Error(), "field extra not found") {
		t.Errorf("decodeStrict = %v, want unknown field error", err)
	}
	if got := yamlError("c.yaml", err).Error(); got != "c.yaml:2: field extra not found in type config.Config" {
		t.Errorf("yamlError = %s", got)
	}
}

func TestLookup(t *testing.T) {
	t.Parallel()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(briefExample), &doc); err != nil {
		t.Fatal(err)
	}
	root := doc.Content[0]
	for path, line := range map[string]int{
		"":                          2,
		"listen":                    2,
		"client_ip.trusted_proxies": 7,
		"registries[1]":             23,
		"registries[1].url":         24,
		"rules[4].match.country":    36,
		"rules[4].match.nothing":    36, // closest: the match
		"rules[9].match":            27, // closest: rules
		"nothing":                   0,  // not there: no line
	} {
		got := 0
		if n := lookup(root, path); n != nil {
			got = n.Line
		}
		if got != line {
			t.Errorf("lookup(%q) line %d, want %d", path, got, line)
		}
	}
}

func TestWarnings(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		yaml string
		want []string
	}{
		"the example":             {"", nil},
		"admin on every address":  {`admin_listen: ":9090"`, []string{`admin_listen ":9090" is on every interface`}},
		"admin on 0.0.0.0":        {`admin_listen: "0.0.0.0:9090"`, []string{`admin_listen "0.0.0.0:9090" is on every interface`}},
		"admin on [::]":           {`admin_listen: "[::]:9090"`, []string{`admin_listen "[::]:9090" is on every interface`}},
		"admin on one address":    {`admin_listen: "10.0.0.5:9090"`, nil},
		"trust everyone, IPv4":    {`client_ip: {trusted_proxies: [0.0.0.0/0]}`, []string{"client_ip.trusted_proxies holds 0.0.0.0/0"}},
		"trust everyone, IPv6":    {`client_ip: {trusted_proxies: ["::/0", 10.0.0.0/8]}`, []string{"client_ip.trusted_proxies holds ::/0"}},
		"trust a private network": {`client_ip: {trusted_proxies: [10.0.0.0/8]}`, nil},
	} {
		text := string(Example())
		if tc.yaml != "" {
			text = minimal + tc.yaml + "\n"
		}
		c, err := Parse([]byte(text), "c.yaml")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got := c.Warnings()
		if len(got) != len(tc.want) {
			t.Errorf("%s: warnings %q, want %q", name, got, tc.want)
			continue
		}
		for i, w := range tc.want {
			if !strings.HasPrefix(got[i], w) {
				t.Errorf("%s: warning %q, want it to start %q", name, got[i], w)
			}
		}
	}
}
