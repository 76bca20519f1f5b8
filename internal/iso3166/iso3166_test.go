package iso3166

import (
	"strings"
	"testing"

	"golang.org/x/text/language"
)

// The table holds each of the 249 assigned codes and XK once, under one
// of MaxMind's seven continent codes: each is a country code to CLDR too
// (XK, which MaxMind uses, is user-assigned there).
func TestContinents(t *testing.T) {
	t.Parallel()
	seen := map[string]string{}
	for _, c := range Continents {
		if !strings.Contains(" AF AN AS EU NA OC SA ", " "+c.Continent+" ") {
			t.Errorf("continent %q", c.Continent)
		}
		for _, cc := range strings.Fields(c.Countries) {
			if r, err := language.ParseRegion(cc); cc != "XK" && (err != nil || !r.IsCountry() || r.String() != cc) {
				t.Errorf("%s: %q is not an ISO 3166-1 country code", c.Continent, cc)
			}
			if !IsCountry(cc) {
				t.Errorf("IsCountry(%q) = false", cc)
			}
			if prev, ok := seen[cc]; ok {
				t.Errorf("%s in %s and %s", cc, prev, c.Continent)
			}
			seen[cc] = c.Continent
		}
	}
	if len(seen) != 250 {
		t.Errorf("%d codes, want 250 (249 assigned, and XK)", len(seen))
	}
	for _, cc := range []string{"UK", "EU", "UN", "SU", "YU", "AN", "se", ""} {
		if IsCountry(cc) {
			t.Errorf("IsCountry(%q)", cc)
		}
	}
}
