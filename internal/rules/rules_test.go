package rules

import (
	"net/netip"
	"testing"
	"time"
)

func TestMatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		m      Match
		kind   Kind
		reason string
		err    string
	}{
		{"cidr v4", Match{CIDR: netip.MustParsePrefix("192.168.0.0/24")}, KindCIDR, "cidr:192.168.0.0/24", ""},
		{"cidr v6", Match{CIDR: netip.MustParsePrefix("2001:db8::/32")}, KindCIDR, "cidr:2001:db8::/32", ""},
		{"host bits", Match{CIDR: netip.MustParsePrefix("10.0.0.1/8")}, KindCIDR, "cidr:10.0.0.1/8", "match.cidr: 10.0.0.1/8 has host bits set; did you mean 10.0.0.0/8?"},
		{"mapped", Match{CIDR: netip.MustParsePrefix("::ffff:10.0.0.0/104")}, KindCIDR, "cidr:::ffff:10.0.0.0/104", "match.cidr: ::ffff:10.0.0.0/104 is IPv4-mapped IPv6; write the IPv4 prefix"},
		{"asn", Match{ASN: 15169}, KindASN, "asn:15169", ""},
		{"cloud region", Match{Cloud: "aws", Region: "us-east-2"}, KindCloudRegion, "cloud:aws/us-east-2", ""},
		{"cloud", Match{Cloud: "gcp"}, KindCloud, "cloud:gcp", ""},
		{"unknown cloud", Match{Cloud: "ibm"}, KindCloud, "cloud:ibm", `match.cloud: unknown provider "ibm"; known: aws, gcp, azure, oracle, digitalocean`},
		{"bad region", Match{Cloud: "aws", Region: "us east"}, KindCloudRegion, "cloud:aws/us east", `match.region: "us east" is not a region name`},
		{"region alone", Match{Region: "us-east-2"}, KindNone, "none", "match.region: needs match.cloud"},
		{"region beside country", Match{Country: "SE", Region: "us-east-2"}, KindCountry, "country:SE", "match.region: needs match.cloud"},
		{"country", Match{Country: "SE"}, KindCountry, "country:SE", ""},
		{"lower-case country", Match{Country: "se"}, KindCountry, "country:se", `match.country: "se" is not an ISO 3166-1 alpha-2 country code (two upper-case letters, such as SE)`},
		{"unassigned country", Match{Country: "XX"}, KindCountry, "country:XX", `match.country: "XX" is not an ISO 3166-1 alpha-2 country code (two upper-case letters, such as SE)`},
		{"alpha-3", Match{Country: "SWE"}, KindCountry, "country:SWE", `match.country: "SWE" is not an ISO 3166-1 alpha-2 country code (two upper-case letters, such as SE)`},
		{"continent", Match{Continent: "EU"}, KindContinent, "continent:EU", ""},
		{"bad continent", Match{Continent: "XX"}, KindContinent, "continent:XX", `match.continent: "XX" is not a continent code; known: AF, AN, AS, EU, NA, OC, SA`},
		{"empty", Match{}, KindNone, "none", "match: empty; set one of cidr, asn, cloud (with optional region), country, continent"},
		{"two kinds", Match{ASN: 1, Country: "SE"}, KindASN, "asn:1", "match: sets asn and country; a match sets exactly one kind"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if k := tt.m.Kind(); k != tt.kind {
				t.Errorf("Kind = %v, want %v", k, tt.kind)
			}
			if s := tt.m.String(); s != tt.reason {
				t.Errorf("String = %q, want %q", s, tt.reason)
			}
			err := tt.m.Validate()
			if (err == nil) != (tt.err == "") || err != nil && err.Error() != tt.err {
				t.Errorf("Validate = %v, want %q", err, tt.err)
			}
		})
	}
}

func TestRuleAndOverride(t *testing.T) {
	t.Parallel()
	known := func(n string) bool { return n == "hub" || n == "k8s" }
	asn := Match{ASN: 1}
	for _, tt := range []struct {
		o   Override
		err string
	}{
		{Override{ID: "a", Match: asn, Registries: []string{"hub", "k8s"}}, ""},
		{Override{ID: "a", Match: asn, Registries: []string{"hub", "hub"}}, `registries[1]: "hub" listed twice`},
		{Override{ID: "a", Match: asn, Registries: []string{"nope"}}, `registries[0]: unknown registry "nope"`},
		{Override{ID: "a", Match: asn}, "registries: empty; list at least one registry"},
		{Override{ID: "", Match: asn, Registries: []string{"hub"}}, `id: "" must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit`},
		{Override{ID: "-x", Match: asn, Registries: []string{"hub"}}, `id: "-x" must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit`},
	} {
		err := tt.o.Validate(known)
		if (err == nil) != (tt.err == "") || err != nil && err.Error() != tt.err {
			t.Errorf("%+v: %v, want %q", tt.o, err, tt.err)
		}
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		expires time.Time
		want    bool
	}{{time.Time{}, false}, {now.Add(time.Second), false}, {now, true}, {now.Add(-time.Second), true}} {
		if got := (Override{ExpiresAt: tt.expires}).Expired(now); got != tt.want {
			t.Errorf("Expired with %v = %v", tt.expires, got)
		}
	}
}

func TestIsCountry(t *testing.T) {
	t.Parallel()
	for cc, want := range map[string]bool{"SE": true, "US": true, "GB": true, "XK": true, "SS": true, "BQ": true, "AQ": true,
		"UK": false, "EU": false, "ZZ": false, "se": false, "Se": false, "": false, "S": false, "S[": false,
		"UN": false, "EZ": false, "FX": false, "SU": false, "YU": false, "CS": false, "AN": false, "ZR": false} {
		if IsCountry(cc) != want {
			t.Errorf("IsCountry(%q) = %v", cc, !want)
		}
	}
}
