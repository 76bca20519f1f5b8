package config

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/reghost/reghost/internal/health"
	"github.com/reghost/reghost/internal/rules"
)

// validate checks c, after decoding and defaults, and normalises what
// has more than one spelling: the client IP header's case and a
// registry URL's trailing slash.
func (c *Config) validate(p *problems) {
	if msg := checkListen(c.Listen); msg != "" {
		p.at("listen", "%s", msg)
	}
	if msg := checkListen(c.AdminListen); msg != "" {
		p.at("admin_listen", "%s", msg)
	} else if c.AdminListen == c.Listen && !strings.HasSuffix(c.Listen, ":0") {
		p.at("admin_listen", "%q is listen's address too; the admin listener needs its own", c.AdminListen)
	}
	switch c.RedirectStatus {
	case 302, 307:
	case 301, 308:
		p.at("redirect_status", "%d is a permanent redirect, which clients and caches keep using after the rules or a registry's health change; use 307 (default) or 302", c.RedirectStatus)
	default:
		p.at("redirect_status", "%d is not a redirect status reghost sends; use 307 (default) or 302", c.RedirectStatus)
	}
	if c.DataDir == "" {
		p.at("data_dir", `empty; remove the key to use the default "data"`)
	}
	c.ClientIP.validate(p)
	for _, cloud := range slices.Sorted(maps.Keys(c.CloudRanges)) {
		path := "cloud_ranges." + cloud
		switch {
		case !slices.Contains(rules.Clouds, cloud):
			p.at(path, "unknown cloud; known: %s", strings.Join(rules.Clouds, ", "))
		case c.CloudRanges[cloud] == "":
			p.at(path, "empty path; remove the key to go without %s ranges", cloud)
		}
	}
	if msg := checkStore(c.Store); msg != "" {
		p.at("store", "%s", msg)
	}
	c.validateAdmin(p)
	c.validateTLS(p)
	c.validateRedis(p)
	c.validateRegistries(p)
	c.validateRules(p)
	c.validateHealth(p)
}

// validateHealth checks health_defaults, and each registry's probe as
// layered over it, naming the key the problem comes from.
func (c *Config) validateHealth(p *problems) {
	report := func(path string, err error) {
		var fes []*health.FieldError
		for _, e := range unjoin(err) {
			if fe, ok := errors.AsType[*health.FieldError](e); ok {
				fes = append(fes, fe)
			}
		}
		for _, fe := range fes {
			p.at(path+"."+fe.Field, "%s", fe.Problem)
		}
	}
	defaults := probeSettings(c.HealthDefaults).WithDefaults(health.DefaultSettings())
	report("health_defaults", defaults.Validate())
	for i, t := range c.HealthTargets() {
		if c.Registries[i].Health.Enabled == nil && reflect.ValueOf(c.Registries[i].Health).IsZero() {
			continue // health_defaults alone, checked above
		}
		report(fmt.Sprintf("registries[%d].health", i), t.Settings.Validate())
	}
	if th := c.HealthPanicThreshold; th < 0 || th > 1 {
		p.at("health_panic_threshold", "%v is not a share from 0 to 1 (0.5: ignore health when fewer than half the probed registries are up; 0: never)", th)
	}
}

// unjoin returns the errors joined in err, or err alone.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	if err == nil {
		return nil
	}
	return []error{err}
}

// checkListen returns what is wrong with a listen address, or "".
func checkListen(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		reason := err.Error()
		if ae, ok := errors.AsType[*net.AddrError](err); ok {
			reason = ae.Err
		}
		return fmt.Sprintf(`%q is not host:port (%s); write ":8080" for every interface or "127.0.0.1:8080" for one`, addr, reason)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Sprintf("%q: port %q is not a number from 0 to 65535", addr, port)
	}
	ip, _, _ := strings.Cut(host, "%") // a zone is for the system to check
	if host != "" && net.ParseIP(ip) == nil && !hostName.MatchString(host) {
		return fmt.Sprintf("%q: %q is neither an IP address nor a host name", addr, host)
	}
	return ""
}

// hostName matches a DNS name whose last label is not all digits, so
// that a mistyped IPv4 address (256.1.1.1) is not taken for a name.
var hostName = regexp.MustCompile(`^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9-]*[A-Za-z-][A-Za-z0-9-]*\.?$`)

// checkStore returns what is wrong with the store setting, or "". It
// never repeats the URL, which may hold a password.
func checkStore(store string) string {
	if store == "" {
		return ""
	}
	u, err := url.Parse(store)
	if err != nil {
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err
		}
		return fmt.Sprintf("not a URL (%v)", err)
	}
	switch {
	case u.Scheme == "unix":
		if u.Path == "" {
			return "no socket path; write unix:///path/to/redis.sock"
		}
	case u.Scheme != "redis" && u.Scheme != "rediss":
		return fmt.Sprintf(`scheme %q is not supported; write redis://host:6379/0, rediss:// for TLS, unix:///path/to/redis.sock, or "" for the embedded store`, u.Scheme)
	case u.Host == "":
		return "no host; write redis://host:6379/0"
	}
	return ""
}

var tokenNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

func (c *Config) validateAdmin(p *problems) {
	names := map[string]int{"admin": -1}
	for i, t := range c.Admin.Tokens {
		path := fmt.Sprintf("admin.tokens[%d]", i)
		switch j, dup := names[t.Name]; {
		case !tokenNameRE.MatchString(t.Name):
			p.at(path+".name", "%q is not a token name: 1-64 letters, digits, '.', '_', '@' or '-'", t.Name)
		case dup && j < 0:
			p.at(path+".name", `"admin" is the name of the token of admin.token_file or REGHOST_ADMIN_TOKEN`)
		case dup:
			p.at(path+".name", "%q is already the name of admin.tokens[%d]", t.Name, j)
		default:
			names[t.Name] = i
		}
		if (t.File == "") == (t.Env == "") {
			p.at(path, "name the file that holds the token (file) or the environment variable (env), one of the two")
		}
	}
	for i, o := range c.Admin.TrustedOrigins {
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
			(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
			p.at(fmt.Sprintf("admin.trusted_origins[%d]", i), "%q is not an origin: write scheme://host[:port], as https://admin.example.com", o)
		}
	}
}

func (c *Config) validateRedis(p *problems) {
	r := c.Redis
	if r.Prefix == "" {
		p.at("redis.prefix", `empty; remove the key for the default "reghost"`)
	} else if strings.ContainsAny(r.Prefix, "{}: \t\n") {
		p.at("redis.prefix", "%q: braces, colons and spaces are not allowed (reghost adds {prefix}: itself)", r.Prefix)
	}
	if r.WaitReplicas < -1 {
		p.at("redis.wait_replicas", "%d: write -1 (never wait), 0 (wait for one when there is one), or a number of replicas", r.WaitReplicas)
	}
	if r.Timeout <= 0 {
		p.at("redis.timeout", "%v: must be more than 0 (default 500ms)", r.Timeout)
	}
	if r.WaitTimeout <= 0 {
		p.at("redis.wait_timeout", "%v: must be more than 0 (default 500ms)", r.WaitTimeout)
	}
	if r.PasswordEnv != "" && r.PasswordFile != "" {
		p.at("redis.password_env", "password_file is set too: keep one")
	}
	if (r.TLS.CertFile == "") != (r.TLS.KeyFile == "") {
		p.at("redis.tls", "cert_file and key_file go together")
	}
}

func (ci *ClientIP) validate(p *problems) {
	switch strings.ToLower(ci.Header) {
	case "x-real-ip":
		ci.Header = HeaderXRealIP
	case "x-forwarded-for":
		ci.Header = HeaderXForwardedFor
	default:
		p.at("client_ip.header", "%q is not supported; use X-Real-IP (default) or X-Forwarded-For", ci.Header)
	}
	for i, pfx := range ci.TrustedProxies {
		path := fmt.Sprintf("client_ip.trusted_proxies[%d]", i)
		// The same checks and words as a rule's cidr.
		if err := (rules.Match{CIDR: pfx}).Validate(); err != nil {
			p.at(path, "%s", strings.TrimPrefix(err.Error(), "match.cidr: "))
		}
	}
	if ci.XFFTrustedHops < 1 || ci.XFFTrustedHops > 10 {
		p.at("client_ip.xff_trusted_hops", "%d is out of range; count the trusted proxies that append to X-Forwarded-For, from 1 to 10", ci.XFFTrustedHops)
	}
}

var registryNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

func (c *Config) validateRegistries(p *problems) {
	if len(c.Registries) == 0 {
		p.at("registries", "empty; list at least one registry and mark one default: true")
		return
	}
	names := map[string]int{}
	def := -1
	for i := range c.Registries {
		r := &c.Registries[i]
		path := fmt.Sprintf("registries[%d]", i)
		switch j, dup := names[r.Name]; {
		case !registryNameRE.MatchString(r.Name):
			p.at(path+".name", "%q is not a registry name: 1-63 lower-case letters, digits, '_' or '-', starting with a letter or digit", r.Name)
		case dup:
			p.at(path+".name", "%q is already the name of registries[%d]", r.Name, j)
		default:
			names[r.Name] = i
		}
		if u, msg := normalizeURL(r.URL); msg != "" {
			p.at(path+".url", "%s", msg)
		} else {
			r.URL = u
		}
		if r.Default {
			if def >= 0 {
				p.at(path+".default", "registries[%d] (%q) is already the default; mark exactly one", def, c.Registries[def].Name)
			} else {
				def = i
			}
		}
	}
	if def < 0 {
		p.at("registries", "no default; mark exactly one registry default: true, for clients no rule matches")
	}
}

// normalizeURL checks a registry's base URL and returns it without a
// trailing slash, or what is wrong with it. The URL becomes the start
// of every Location reghost sends to that registry, so it must be an
// origin plus an optional path prefix and nothing else.
func normalizeURL(raw string) (string, string) {
	if raw == "" {
		return "", "empty; write the registry's base URL, such as https://registry-1.docker.io"
	}
	u, err := url.Parse(raw)
	if err != nil {
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err
		}
		return "", fmt.Sprintf("not a URL (%v)", err)
	}
	switch {
	case u.Scheme != "https" && u.Scheme != "http":
		return "", fmt.Sprintf("scheme %q is not supported; use https (or http)", u.Scheme)
	case u.Opaque != "" || u.Hostname() == "":
		return "", "no host; write scheme://host[:port][/path-prefix]"
	case u.User != nil:
		return "", "has user info; a redirect cannot carry credentials, and clients would see them"
	case u.Port() != "" && !validPort(u.Port()):
		return "", fmt.Sprintf("port %q is not a number from 1 to 65535", u.Port())
	case u.RawQuery != "" || u.ForceQuery:
		return "", "has a query; clients' own query strings are kept, a registry URL cannot add one"
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return "", "has a fragment; remove the #…"
	}
	path := strings.TrimSuffix(u.Path, "/")
	if path != "" {
		for seg := range strings.SplitSeq(path[1:], "/") {
			switch seg {
			case "":
				return "", fmt.Sprintf("path %q has an empty segment (//)", u.Path)
			case ".", "..":
				return "", fmt.Sprintf("path %q has a %q segment; write the path it leads to", u.Path, seg)
			}
		}
	}
	u.Path = path
	u.RawPath = strings.TrimSuffix(u.RawPath, "/")
	return u.String(), ""
}

func validPort(s string) bool {
	n, err := strconv.ParseUint(s, 10, 16)
	return err == nil && n > 0
}

func (c *Config) validateRules(p *problems) {
	known := func(name string) bool {
		return slices.ContainsFunc(c.Registries, func(r rules.Registry) bool { return r.Name == name })
	}
	seen := map[rules.Match]int{}
	for i, r := range c.Rules {
		path := fmt.Sprintf("rules[%d]", i)
		if err := r.Validate(known); err != nil {
			// rules' messages start with the field's own path.
			sub, msg, ok := strings.Cut(err.Error(), ": ")
			if !ok {
				sub, msg = "", err.Error()
			}
			p.at(join(path, sub), "%s%s", msg, caseHint(r.Match, sub))
			continue
		}
		if j, dup := seen[r.Match]; dup {
			p.at(path+".match", "%s is already matched by rules[%d]; merge the two into one rule", r.Match, j)
			continue
		}
		seen[r.Match] = i
	}
}

// caseHint suggests the upper-case spelling of a country or continent
// code written in lower case, the likeliest slip.
func caseHint(m rules.Match, field string) string {
	var v string
	var valid func(string) bool
	switch field {
	case "match.country":
		v, valid = m.Country, rules.IsCountry
	case "match.continent":
		v, valid = m.Continent, func(s string) bool { return slices.Contains(rules.Continents, s) }
	default:
		return ""
	}
	if up := strings.ToUpper(v); up != v && valid(up) {
		return fmt.Sprintf("; did you mean %q?", up)
	}
	return ""
}
