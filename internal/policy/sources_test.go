package policy_test

import (
	"net/netip"
	"testing"

	"github.com/reghost/reghost/internal/cloud"
	"github.com/reghost/reghost/internal/geo"
	"github.com/reghost/reghost/internal/policy"
	"github.com/reghost/reghost/internal/rules"
)

// The engine over real data: MaxMind's official test databases, the
// generated flat-schema fixtures (testdata/geo, from tools/mmdbgen) and
// the real cloud snapshots. The table-driven precedence cases with fakes
// are in policy_test.go; these show that the facts real files give drive
// every kind of match.

func realEngine(t *testing.T, asnDB, countryDB string, overrides ...rules.Override) *policy.Engine {
	t.Helper()
	db, err := geo.Open(geo.Config{ASN: asnDB, Country: countryDB})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	table, _, err := cloud.Load(map[string]string{
		"aws": "../../testdata/cloud/aws-ip-ranges.json",
		"gcp": "../../testdata/cloud/gcp-cloud.json",
	})
	if err != nil {
		t.Fatal(err)
	}
	e, err := policy.New(policy.Config{
		Registries: []rules.Registry{
			{Name: "default", URL: "https://default.example", Default: true},
			{Name: "cidr", URL: "https://cidr.example"},
			{Name: "asn", URL: "https://asn.example"},
			{Name: "aws-east", URL: "https://aws-east.example"},
			{Name: "gcp", URL: "https://gcp.example"},
			{Name: "se", URL: "https://se.example"},
			{Name: "eu", URL: "https://eu.example"},
			{Name: "asia", URL: "https://asia.example"},
			{Name: "override", URL: "https://override.example"},
		},
		Rules: []rules.Rule{
			{Match: rules.Match{CIDR: netip.MustParsePrefix("81.2.69.0/24")}, Registries: []string{"cidr"}},
			{Match: rules.Match{ASN: 15169}, Registries: []string{"asn"}},
			{Match: rules.Match{Cloud: "aws", Region: "us-east-2"}, Registries: []string{"aws-east"}},
			{Match: rules.Match{Cloud: "gcp"}, Registries: []string{"gcp"}},
			{Match: rules.Match{Country: "SE"}, Registries: []string{"se"}},
			{Match: rules.Match{Continent: "EU"}, Registries: []string{"eu"}},
			{Match: rules.Match{Continent: "AS"}, Registries: []string{"asia"}},
		},
		Sources: policy.Sources{ASN: db, Country: db, Cloud: table},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.SetOverrides(overrides); err != nil {
		t.Fatal(err)
	}
	return e
}

func TestRealMaxMindData(t *testing.T) {
	t.Parallel()
	e := realEngine(t, "../../testdata/maxmind/GeoLite2-ASN-Test.mmdb", "../../testdata/maxmind/GeoLite2-City-Test.mmdb",
		rules.Override{ID: "jp", Match: rules.Match{Country: "JP"}, Registries: []string{"override"}})
	tests := []struct {
		ip, registry, reason string
	}{
		{"81.2.69.142", "cidr", "cidr:81.2.69.0/24"},       // GB, but the prefix wins
		{"1.0.0.1", "asn", "asn:15169"},                    // AS15169 "Google Inc."
		{"::ffff:1.0.0.1", "asn", "asn:15169"},             // IPv4-mapped
		{"99.77.162.1", "aws-east", "cloud:aws/us-east-2"}, // us-east-2 /24 inside a GLOBAL /18
		{"89.160.20.112", "se", "country:SE"},              // AS29518, SE
		{"2a02:d180::1", "eu", "continent:EU"},             // DE
		{"2001:218::1", "override", "country:JP"},          // JP: the override beats the continent rule
		{"216.160.83.56", "default", "default"},            // US, no rule
		{"8.8.8.8", "default", "default"},                  // in no database
		{"2001:db8::1", "default", "default"},              // documentation range
		{"2002:59a0:1470::1", "se", "country:SE"},          // 6to4 of 89.160.20.112
	}
	for _, tt := range tests {
		d, err := e.Decide(netip.MustParseAddr(tt.ip), "/v2/", "")
		if err != nil || d.Registry != tt.registry || d.Reason != tt.reason {
			t.Errorf("%s: %s by %s (%v); want %s by %s", tt.ip, d.Registry, d.Reason, err, tt.registry, tt.reason)
		}
	}
	// A GCP address from the snapshot, by its published prefix.
	d, err := e.Explain(netip.MustParseAddr("34.1.208.1"), "/v2/", "")
	if err != nil || d.Facts.Cloud != "gcp" || d.Registry != "gcp" || d.Reason != "cloud:gcp" {
		t.Errorf("gcp address: %+v (%v)", d, err)
	}
}

func TestGeneratedFlatFixtures(t *testing.T) {
	t.Parallel()
	e := realEngine(t, "../../testdata/geo/flat-asn.mmdb", "../../testdata/geo/flat-country.mmdb")
	for _, tt := range []struct{ ip, registry string }{
		{"8.8.8.8", "asn"},      // flat asn "AS15169"
		{"89.160.20.112", "se"}, // flat country_code SE
		{"2001:218::1", "asia"}, // JP, continent derived
		{"216.160.83.56", "default"},
	} {
		d, err := e.Explain(netip.MustParseAddr(tt.ip), "/v2/", "")
		if err != nil || d.Registry != tt.registry {
			t.Errorf("%s: %s by %s, facts %+v; want %s", tt.ip, d.Registry, d.Reason, d.Facts, tt.registry)
		}
	}
}
