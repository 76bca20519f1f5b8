package iso3166

import (
	"strings"
	"testing"
)

// The table holds each of the 249 assigned codes and XK once, in upper
// case, under one of MaxMind's seven continent codes.
func TestContinents(t *testing.T) {
	t.Parallel()
	seen := map[string]string{}
	for _, c := range Continents {
		if !strings.Contains(" AF AN AS EU NA OC SA ", " "+c.Continent+" ") {
			t.Errorf("continent %q", c.Continent)
		}
		for _, cc := range strings.Fields(c.Countries) {
			if len(cc) != 2 || cc != strings.ToUpper(cc) || !IsCountry(cc) {
				t.Errorf("%s: code %q", c.Continent, cc)
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
