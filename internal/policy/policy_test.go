package policy

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/reghost/reghost/internal/rules"
)

// Fakes at the engine's own small interfaces. The tests in
// sources_test.go run the same engine against real .mmdb files and the
// real cloud snapshots.

type asnMap map[netip.Addr]uint32

func (m asnMap) ASN(a netip.Addr) (uint32, string, bool) {
	n, ok := m[a]
	return n, "AS-" + a.String(), ok
}

type geoMap map[netip.Addr][2]string

func (m geoMap) Country(a netip.Addr) (string, string, bool) {
	v, ok := m[a]
	return v[0], v[1], ok
}

type cloudMap map[netip.Addr][2]string

func (m cloudMap) Cloud(a netip.Addr) (string, string, bool) {
	v, ok := m[a]
	return v[0], v[1], ok
}

type downSet []string

// health is the Health that has d down.
func (d downSet) health() Health {
	h := Health{Down: map[string]bool{}}
	for _, name := range d {
		h.Down[name] = true
	}
	return h
}

var (
	ipCIDR    = netip.MustParseAddr("192.168.0.7")
	ipCIDR16  = netip.MustParseAddr("192.168.9.1")
	ipGoogle  = netip.MustParseAddr("1.0.0.1")
	ipAWS     = netip.MustParseAddr("99.77.162.1")
	ipAWSWest = netip.MustParseAddr("3.5.140.1")
	ipGCP     = netip.MustParseAddr("34.1.2.3")
	ipSE      = netip.MustParseAddr("89.160.20.112")
	ipDE      = netip.MustParseAddr("2a02:d180::1")
	ipJP      = netip.MustParseAddr("2001:218::1")
	ipNone    = netip.MustParseAddr("8.8.8.8")
	ipV6CIDR  = netip.MustParseAddr("2001:db8:1::5")
)

func testRegistries() []rules.Registry {
	return []rules.Registry{
		{Name: "k8s", URL: "https://us-west1-docker.pkg.dev/k8s-artifacts-prod/images", Default: true},
		{Name: "aws-us-east-2", URL: "https://prod-registry-k8s-io-us-east-2.s3.dualstack.us-east-2.amazonaws.com"},
		{Name: "hub", URL: "https://registry-1.docker.io"},
		{Name: "mirror", URL: "http://mirror.example:5000"},
	}
}

func m(s string) rules.Match {
	kind, v, _ := strings.Cut(s, ":")
	switch kind {
	case "cidr":
		return rules.Match{CIDR: netip.MustParsePrefix(v)}
	case "asn":
		n := uint32(0)
		for _, c := range v {
			n = n*10 + uint32(c-'0')
		}
		return rules.Match{ASN: n}
	case "cloud":
		c, r, _ := strings.Cut(v, "/")
		return rules.Match{Cloud: c, Region: r}
	case "country":
		return rules.Match{Country: v}
	case "continent":
		return rules.Match{Continent: v}
	}
	panic("bad match " + s)
}

func rule(match string, regs ...string) rules.Rule {
	return rules.Rule{Match: m(match), Registries: regs}
}

// The rules of the example config, plus an IPv6 prefix and a
// wider prefix around the /24.
func testRules() []rules.Rule {
	return []rules.Rule{
		rule("cidr:192.168.0.0/24", "hub"),
		rule("cidr:192.168.0.0/16", "mirror"),
		rule("cidr:2001:db8::/32", "mirror"),
		rule("asn:15169", "hub", "k8s"),
		rule("cloud:aws/us-east-2", "aws-us-east-2"),
		rule("cloud:gcp", "k8s"),
		rule("country:SE", "hub"),
		rule("continent:EU", "mirror"),
	}
}

func testSources() Sources {
	return Sources{
		ASN:     asnMap{ipGoogle: 15169, ipSE: 29518, ipAWS: 16509, ipAWSWest: 16509},
		Country: geoMap{ipSE: {"SE", "EU"}, ipDE: {"DE", "EU"}, ipJP: {"JP", "AS"}, ipGoogle: {"SE", "EU"}, ipCIDR: {"SE", "EU"}},
		Cloud:   cloudMap{ipAWS: {"aws", "us-east-2"}, ipAWSWest: {"aws", "us-west-2"}, ipGCP: {"gcp", "europe-west1"}},
	}
}

func newEngine(t *testing.T, src Sources, now func() time.Time) *Engine {
	t.Helper()
	e, err := New(Config{Registries: testRegistries(), Rules: testRules(), Sources: src, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestDecide(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		addr      netip.Addr
		overrides []rules.Override
		down      downSet
		registry  string
		reason    string
		source    string
		facts     Facts
	}{
		{name: "cidr /24", addr: ipCIDR, registry: "hub", reason: "cidr:192.168.0.0/24", source: "config"},
		{name: "cidr longest prefix, /16", addr: ipCIDR16, registry: "mirror", reason: "cidr:192.168.0.0/16", source: "config"},
		{name: "cidr IPv6", addr: ipV6CIDR, registry: "mirror", reason: "cidr:2001:db8::/32", source: "config"},
		{name: "cidr IPv4-mapped", addr: netip.AddrFrom16(ipCIDR.As16()), registry: "hub", reason: "cidr:192.168.0.0/24", source: "config"},
		{name: "cidr beats asn and country", addr: ipCIDR, registry: "hub", reason: "cidr:192.168.0.0/24", source: "config"},
		{name: "asn", addr: ipGoogle, registry: "hub", reason: "asn:15169", source: "config",
			facts: Facts{ASN: 15169, ASOrg: "AS-1.0.0.1"}},
		{name: "asn IPv4-mapped", addr: netip.AddrFrom16(ipGoogle.As16()), registry: "hub", reason: "asn:15169", source: "config",
			facts: Facts{ASN: 15169, ASOrg: "AS-1.0.0.1"}},
		{name: "asn second choice when first down", addr: ipGoogle, down: downSet{"hub"}, registry: "k8s", reason: "asn:15169", source: "config",
			facts: Facts{ASN: 15169, ASOrg: "AS-1.0.0.1"}},
		{name: "asn all down goes on to country", addr: ipGoogle, down: downSet{"hub", "k8s"}, registry: "mirror", reason: "continent:EU", source: "config",
			facts: Facts{ASN: 15169, ASOrg: "AS-1.0.0.1", Country: "SE", Continent: "EU"}},
		{name: "cloud region, most specific", addr: ipAWS, registry: "aws-us-east-2", reason: "cloud:aws/us-east-2", source: "config",
			facts: Facts{ASN: 16509, ASOrg: "AS-99.77.162.1", Cloud: "aws", Region: "us-east-2"}},
		{name: "cloud other region, no rule: default", addr: ipAWSWest, registry: "k8s", reason: "default", source: "default",
			facts: Facts{ASN: 16509, ASOrg: "AS-3.5.140.1", Cloud: "aws", Region: "us-west-2"}},
		{name: "cloud any region", addr: ipGCP, registry: "k8s", reason: "cloud:gcp", source: "config",
			facts: Facts{Cloud: "gcp", Region: "europe-west1"}},
		{name: "country", addr: ipSE, registry: "hub", reason: "country:SE", source: "config",
			facts: Facts{ASN: 29518, ASOrg: "AS-89.160.20.112", Country: "SE", Continent: "EU"}},
		{name: "continent, IPv6", addr: ipDE, registry: "mirror", reason: "continent:EU", source: "config",
			facts: Facts{Country: "DE", Continent: "EU"}},
		{name: "no rule for the continent", addr: ipJP, registry: "k8s", reason: "default", source: "default",
			facts: Facts{Country: "JP", Continent: "AS"}},
		{name: "unknown address", addr: ipNone, registry: "k8s", reason: "default", source: "default"},
		{name: "invalid address", addr: netip.Addr{}, registry: "k8s", reason: FallbackNoAddress, source: "default"},
		{name: "matched but all down: default", addr: ipSE, down: downSet{"hub", "mirror"}, registry: "k8s", reason: FallbackUnhealthy, source: "default",
			facts: Facts{ASN: 29518, ASOrg: "AS-89.160.20.112", Country: "SE", Continent: "EU"}},
		{name: "everything down: default anyway", addr: ipSE, down: downSet{"hub", "mirror", "k8s"}, registry: "k8s", reason: FallbackAllDown, source: "default",
			facts: Facts{ASN: 29518, ASOrg: "AS-89.160.20.112", Country: "SE", Continent: "EU"}},
		{name: "cidr /24 down falls to enclosing /16", addr: ipCIDR, down: downSet{"hub"}, registry: "mirror", reason: "cidr:192.168.0.0/16", source: "config"},
		{
			name:      "override beats static of the same kind",
			addr:      ipSE,
			overrides: []rules.Override{{ID: "se", Match: m("country:SE"), Registries: []string{"k8s"}}},
			registry:  "k8s", reason: "country:SE", source: "override:se",
			facts: Facts{ASN: 29518, ASOrg: "AS-89.160.20.112", Country: "SE", Continent: "EU"},
		},
		{
			name:      "override does not beat a more specific kind",
			addr:      ipCIDR,
			overrides: []rules.Override{{ID: "se", Match: m("country:SE"), Registries: []string{"k8s"}}},
			registry:  "hub", reason: "cidr:192.168.0.0/24", source: "config",
		},
		{
			name:      "cidr override beats a longer static prefix",
			addr:      ipCIDR,
			overrides: []rules.Override{{ID: "wide", Match: m("cidr:192.0.0.0/8"), Registries: []string{"k8s"}}},
			registry:  "k8s", reason: "cidr:192.0.0.0/8", source: "override:wide",
		},
		{
			name: "expired override is skipped",
			addr: ipSE,
			overrides: []rules.Override{{ID: "old", Match: m("country:SE"), Registries: []string{"k8s"},
				ExpiresAt: now.Add(-time.Second)}},
			registry: "hub", reason: "country:SE", source: "config",
			facts: Facts{ASN: 29518, ASOrg: "AS-89.160.20.112", Country: "SE", Continent: "EU"},
		},
		{
			name: "expiring at this instant is expired",
			addr: ipSE,
			overrides: []rules.Override{{ID: "now", Match: m("country:SE"), Registries: []string{"k8s"},
				ExpiresAt: now}},
			registry: "hub", reason: "country:SE", source: "config",
			facts: Facts{ASN: 29518, ASOrg: "AS-89.160.20.112", Country: "SE", Continent: "EU"},
		},
		{
			name: "unexpired override applies",
			addr: ipSE,
			overrides: []rules.Override{{ID: "soon", Match: m("country:SE"), Registries: []string{"k8s"},
				ExpiresAt: now.Add(time.Second)}},
			registry: "k8s", reason: "country:SE", source: "override:soon",
			facts: Facts{ASN: 29518, ASOrg: "AS-89.160.20.112", Country: "SE", Continent: "EU"},
		},
		{
			name: "expiring in 9999, beyond int64 nanoseconds, applies",
			addr: ipSE,
			overrides: []rules.Override{{ID: "forever", Match: m("country:SE"), Registries: []string{"k8s"},
				ExpiresAt: time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)}},
			registry: "k8s", reason: "country:SE", source: "override:forever",
			facts: Facts{ASN: 29518, ASOrg: "AS-89.160.20.112", Country: "SE", Continent: "EU"},
		},
		{
			name: "expired at the Unix epoch is expired",
			addr: ipSE,
			overrides: []rules.Override{{ID: "epoch", Match: m("country:SE"), Registries: []string{"k8s"},
				ExpiresAt: time.Unix(0, 0)}},
			registry: "hub", reason: "country:SE", source: "config",
			facts: Facts{ASN: 29518, ASOrg: "AS-89.160.20.112", Country: "SE", Continent: "EU"},
		},
		{
			name: "expired in 1600, before int64 nanoseconds, is expired",
			addr: ipSE,
			overrides: []rules.Override{{ID: "ancient", Match: m("country:SE"), Registries: []string{"k8s"},
				ExpiresAt: time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC)}},
			registry: "hub", reason: "country:SE", source: "config",
			facts: Facts{ASN: 29518, ASOrg: "AS-89.160.20.112", Country: "SE", Continent: "EU"},
		},
		{
			name: "only an expired override matched: default, not unhealthy",
			addr: ipJP,
			overrides: []rules.Override{{ID: "old", Match: m("country:JP"), Registries: []string{"hub"},
				ExpiresAt: now.Add(-time.Second)}},
			registry: "k8s", reason: "default", source: "default",
			facts: Facts{Country: "JP", Continent: "AS"},
		},
		{
			name: "newest of two overrides with one match wins",
			addr: ipGoogle,
			overrides: []rules.Override{
				{ID: "a", Match: m("asn:15169"), Registries: []string{"mirror"}, CreatedAt: now.Add(-time.Hour)},
				{ID: "b", Match: m("asn:15169"), Registries: []string{"k8s"}, CreatedAt: now.Add(-time.Minute)},
			},
			registry: "k8s", reason: "asn:15169", source: "override:b",
			facts: Facts{ASN: 15169, ASOrg: "AS-1.0.0.1"},
		},
		{
			name: "older override applies when the newer is down",
			addr: ipGoogle,
			down: downSet{"k8s"},
			overrides: []rules.Override{
				{ID: "a", Match: m("asn:15169"), Registries: []string{"mirror"}, CreatedAt: now.Add(-time.Hour)},
				{ID: "b", Match: m("asn:15169"), Registries: []string{"k8s"}, CreatedAt: now.Add(-time.Minute)},
			},
			registry: "mirror", reason: "asn:15169", source: "override:a",
			facts: Facts{ASN: 15169, ASOrg: "AS-1.0.0.1"},
		},
		{
			name:      "override for a cloud region",
			addr:      ipAWSWest,
			overrides: []rules.Override{{ID: "west", Match: m("cloud:aws/us-west-2"), Registries: []string{"mirror"}}},
			registry:  "mirror", reason: "cloud:aws/us-west-2", source: "override:west",
			facts: Facts{ASN: 16509, ASOrg: "AS-3.5.140.1", Cloud: "aws", Region: "us-west-2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEngine(t, testSources(), func() time.Time { return now })
			e.SetHealth(tt.down.health())
			if err := e.SetOverrides(tt.overrides); err != nil {
				t.Fatal(err)
			}
			for _, decide := range []func(netip.Addr, string, string) (Decision, error){e.Decide, e.Explain} {
				d, err := decide(tt.addr, "/v2/", "")
				if err != nil {
					t.Fatal(err)
				}
				if d.Registry != tt.registry || d.Reason != tt.reason || d.Source != tt.source {
					t.Errorf("got %s by %s (%s), want %s by %s (%s); trail %v",
						d.Registry, d.Reason, d.Source, tt.registry, tt.reason, tt.source, d.Trail)
				}
				if d.Trail == nil && d.Facts != tt.facts {
					t.Errorf("Decide facts = %+v, want %+v", d.Facts, tt.facts)
				}
			}
		})
	}
}

func TestExplainTrail(t *testing.T) {
	t.Parallel()
	e := newEngine(t, testSources(), nil)
	e.SetHealth(downSet{"hub"}.health())
	d, err := e.Explain(ipSE, "/v2/pause/manifests/3.9", "")
	if err != nil {
		t.Fatal(err)
	}
	want := []Step{
		{Match: "cidr:89.160.20.112", Outcome: OutcomeNoMatch},
		{Match: "asn:29518", Outcome: OutcomeNoMatch},
		{Match: "cloud", Outcome: OutcomeNoData},
		{Match: "country:SE", Source: "config", Registry: "hub", Outcome: OutcomeDown},
		{Match: "continent:EU", Source: "config", Registry: "mirror", Outcome: OutcomeChosen},
	}
	if !slices.Equal(d.Trail, want) {
		t.Errorf("trail:\n got %v\nwant %v", d.Trail, want)
	}
	// Explain looks every fact up, even where Decide needn't.
	if d.Facts.Cloud != "" || d.Facts.ASN != 29518 || d.Facts.Country != "SE" {
		t.Errorf("facts = %+v", d.Facts)
	}
	if d.Location != "http://mirror.example:5000/v2/pause/manifests/3.9" {
		t.Errorf("location = %s", d.Location)
	}
}

func TestExplainDefaultDown(t *testing.T) {
	t.Parallel()
	e := newEngine(t, testSources(), nil)
	e.SetHealth(downSet{"k8s"}.health())
	d, _ := e.Explain(ipNone, "/v2/", "")
	want := []Step{
		{Match: "cidr:8.8.8.8", Outcome: OutcomeNoMatch},
		{Match: "asn", Outcome: OutcomeNoData},
		{Match: "cloud", Outcome: OutcomeNoData},
		{Match: "country", Outcome: OutcomeNoData},
		{Match: "default", Source: "default", Registry: "k8s", Outcome: OutcomeDown},
		{Match: "default", Source: "default", Registry: "k8s", Outcome: OutcomeChosen},
	}
	if !slices.Equal(d.Trail, want) || d.Reason != FallbackAllDown {
		t.Errorf("reason %s, trail:\n got %v\nwant %v", d.Reason, d.Trail, want)
	}
}

func TestDecideWithoutSources(t *testing.T) {
	t.Parallel()
	// No GeoIP and no cloud data: those rules are inactive, cidr still works.
	e := newEngine(t, Sources{}, nil)
	for addr, want := range map[netip.Addr]string{ipCIDR: "hub", ipSE: "k8s", ipAWS: "k8s"} {
		if d, _ := e.Decide(addr, "/v2/", ""); d.Registry != want {
			t.Errorf("%s: got %s (%s), want %s", addr, d.Registry, d.Reason, want)
		}
	}
}

func TestSetOverridesSkipsInvalid(t *testing.T) {
	t.Parallel()
	e := newEngine(t, testSources(), nil)
	err := e.SetOverrides([]rules.Override{
		{ID: "gone", Match: m("country:SE"), Registries: []string{"removed"}},
		{ID: "ok", Match: m("asn:29518"), Registries: []string{"k8s"}},
	})
	if err == nil || err.Error() != `override "gone" skipped: registries[0]: unknown registry "removed"` {
		t.Fatalf("err = %v", err)
	}
	if d, _ := e.Decide(ipSE, "/v2/", ""); d.Source != "override:ok" {
		t.Errorf("the valid override should apply: %+v", d)
	}
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	regs := testRegistries()
	tests := []struct {
		name  string
		regs  []rules.Registry
		rules []rules.Rule
		want  string
	}{
		{"no default", regs[1:], nil, "no default registry"},
		{"two defaults", append(slices.Clone(regs), rules.Registry{Name: "x", URL: "https://x", Default: true}), nil,
			`registries "k8s" and "x" are both default`},
		{"duplicate", append(slices.Clone(regs), regs[2]), nil, `registry "hub" defined twice`},
		{"bad url", []rules.Registry{{Name: "x", URL: "ftp://x", Default: true}}, nil, `registry "x": url "ftp://x": scheme must be https or http`},
		{"url with query", []rules.Registry{{Name: "x", URL: "https://x/?a=b", Default: true}}, nil,
			`registry "x": url "https://x/?a=b": want scheme://host[:port][/repository/prefix] and nothing else`},
		{"unknown registry", regs, []rules.Rule{rule("asn:1", "nope")}, `rules[0]: registries[0]: unknown registry "nope"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(Config{Registries: tt.regs, Rules: tt.rules})
			if err == nil || err.Error() != tt.want {
				t.Errorf("err = %v, want %s", err, tt.want)
			}
		})
	}
}

func TestDecideBadPathStillChooses(t *testing.T) {
	t.Parallel()
	e := newEngine(t, testSources(), nil)
	d, err := e.Decide(ipSE, "/v2/../x", "")
	if !errors.Is(err, ErrInvalidPath) || d.Registry != "hub" || d.Location != "" {
		t.Errorf("got %+v, %v", d, err)
	}
}

// Health is part of the snapshot: it survives later changes of overrides
// and sources, and Registries reports what decisions see.
func TestHealthInSnapshot(t *testing.T) {
	t.Parallel()
	e := newEngine(t, testSources(), nil)
	e.SetHealth(downSet{"hub", "nonesuch"}.health())
	if err := e.SetOverrides([]rules.Override{{ID: "x", Match: m("country:JP"), Registries: []string{"hub"}}}); err != nil {
		t.Fatal(err)
	}
	e.SetSources(func(*Sources) {})
	if d := e.Choose(ipSE); d.Registry != "mirror" || d.Reason != "continent:EU" {
		t.Errorf("hub down: got %s by %s, want mirror by continent:EU", d.Registry, d.Reason)
	}
	regs, _ := e.Registries()
	for _, r := range regs {
		if r.Up == (r.Name == "hub") || r.Down != (r.Name == "hub") {
			t.Errorf("Registries: %s up = %v, down = %v", r.Name, r.Up, r.Down)
		}
	}
	e.SetHealth(Health{})
	if d := e.Choose(ipSE); d.Registry != "hub" {
		t.Errorf("all up again: got %s by %s, want hub", d.Registry, d.Reason)
	}
}

// A drained registry is skipped, and says so in the trail; in panic,
// health checks' "down" is ignored, but drains are not.
func TestDrainAndPanic(t *testing.T) {
	t.Parallel()
	e := newEngine(t, testSources(), nil)
	e.SetDrained(map[string]bool{"hub": true})
	d, _ := e.Explain(ipSE, "/v2/", "")
	if d.Registry != "mirror" || !slices.Contains(d.Trail, Step{Match: "country:SE", Source: "config", Registry: "hub", Outcome: OutcomeDrained}) {
		t.Errorf("hub drained: %s by %s; trail %v", d.Registry, d.Reason, d.Trail)
	}
	e.SetDrained(nil)
	e.SetHealth(Health{Down: map[string]bool{"hub": true, "mirror": true}, Panic: true})
	d, _ = e.Explain(ipSE, "/v2/", "")
	if d.Registry != "hub" || d.Trail[0] != (Step{Match: "health", Outcome: OutcomeIgnored}) {
		t.Errorf("panic: %s by %s; trail %v", d.Registry, d.Reason, d.Trail)
	}
	if regs, panic := e.Registries(); !panic || !regs[0].Up {
		t.Errorf("Registries in panic: %+v, %v", regs, panic)
	}
	e.SetDrained(map[string]bool{"hub": true})
	if d := e.Choose(ipSE); d.Registry != "mirror" {
		t.Errorf("drained in panic: %s by %s, want mirror", d.Registry, d.Reason)
	}
}

// A config reload replaces registries and rules and keeps what else the
// engine knows: sources, overrides (compiled against the new registries)
// and health.
func TestSetConfig(t *testing.T) {
	t.Parallel()
	e := newEngine(t, testSources(), nil)
	e.SetHealth(downSet{"mirror"}.health())
	ovs := []rules.Override{
		{ID: "jp", Match: m("country:JP"), Registries: []string{"hub"}},
		{ID: "gone", Match: m("country:DE"), Registries: []string{"mirror"}},
	}
	if err := e.SetOverrides(ovs); err != nil {
		t.Fatal(err)
	}
	regs := []rules.Registry{{Name: "k8s", URL: "https://k8s.example", Default: true}, {Name: "hub", URL: "https://hub2.example"}}
	skipped, err := e.SetConfig(regs, []rules.Rule{rule("country:SE", "hub")})
	if err != nil || skipped == nil || !strings.Contains(skipped.Error(), `override "gone" skipped`) {
		t.Errorf("SetConfig: skipped %v, err %v; want the override naming a removed registry reported", skipped, err)
	}
	if d := e.Choose(ipSE); d.Registry != "hub" || d.Host != "hub2.example" {
		t.Errorf("new rule: %s (%s) by %s", d.Registry, d.Host, d.Reason)
	}
	if d := e.Choose(ipJP); d.Reason != "country:JP" || d.Source != "override:jp" {
		t.Errorf("override kept: %s by %s (%s)", d.Registry, d.Reason, d.Source)
	}
	if _, err := e.SetConfig(regs, []rules.Rule{rule("country:SE", "nope")}); err == nil {
		t.Error("a rule naming an unknown registry was taken")
	}
	if d := e.Choose(ipSE); d.Registry != "hub" {
		t.Errorf("after a refused config: %s", d.Registry)
	}
}
