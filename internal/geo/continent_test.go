package geo_test

import (
	"strings"
	"testing"

	"golang.org/x/text/language"

	"github.com/reghost/reghost/internal/geo"
)

func TestContinentOf(t *testing.T) {
	t.Parallel()
	tests := []struct{ country, want string }{
		// The ones MaxMind's data must agree with.
		{"SE", "EU"}, {"US", "NA"}, {"JP", "AS"}, {"BR", "SA"}, {"AU", "OC"}, {"EG", "AF"}, {"AQ", "AN"},
		// Where CLDR's M49 regions and MaxMind (GeoNames) disagree.
		{"CY", "EU"}, {"TL", "OC"}, {"CX", "AS"}, {"IO", "AS"}, {"TF", "AN"}, {"BV", "AN"}, {"GS", "AN"},
		// Central America and the Caribbean are North America.
		{"PA", "NA"}, {"CU", "NA"}, {"MX", "NA"}, {"GL", "NA"},
		{"RU", "EU"}, {"TR", "AS"}, {"XK", "EU"}, {"UM", "OC"},
		{"se", "EU"}, {"aQ", "AN"},
		// Obsolete codes, through CLDR containment.
		{"AN", "NA"}, {"YU", "EU"},
		// Not a country.
		{"", ""}, {"S", ""}, {"SWE", ""}, {"ZZ", ""}, {"EU", ""}, {"QO", ""}, {"1A", ""}, {"Sé", ""},
	}
	for _, tt := range tests {
		if got := geo.ContinentOf(tt.country); got != tt.want {
			t.Errorf("ContinentOf(%q) = %q, want %q", tt.country, got, tt.want)
		}
	}
}

// TestContinentOfCoversCLDR checks every country CLDR knows has a continent,
// and that the table differs from CLDR's containment only where MaxMind
// does.
func TestContinentOfCoversCLDR(t *testing.T) {
	t.Parallel()
	maxmindDiffers := map[string]bool{"AQ": true, "BV": true, "GS": true, "HM": true, "TF": true, "CC": true, "CX": true, "IO": true, "CY": true, "TL": true}
	groups := []struct{ m49, continent string }{
		{"002", "AF"}, {"142", "AS"}, {"150", "EU"}, {"005", "SA"}, {"019", "NA"}, {"009", "OC"},
	}
	// Codes that are not (or no longer) countries of ISO 3166-1 but that
	// CLDR still places: withdrawn (BU CS DD NT SU TP YD YU ZR, and AN, the
	// Netherlands Antilles) and reserved (AC CP DG EA FX IC TA). Only these
	// are left to the CLDR fallback.
	cldrOnly := map[string]bool{}
	for _, c := range strings.Fields("AC AN BU CP CS DD DG EA FX IC NT SU TA TP YD YU ZR") {
		cldrOnly[c] = true
	}
	n := 0
	for a := 'A'; a <= 'Z'; a++ {
		for b := 'A'; b <= 'Z'; b++ {
			iso := string([]rune{a, b})
			r, err := language.ParseRegion(iso)
			if err != nil || !r.IsCountry() || r.String() != iso {
				continue
			}
			cldr := ""
			for _, g := range groups {
				if language.MustParseRegion(g.m49).Contains(r) {
					cldr = g.continent
					break
				}
			}
			if cldr == "" && r.String() != "AQ" {
				continue // a retired code CLDR places nowhere (DY, UK, …)
			}
			n++
			got := geo.ContinentOf(iso)
			switch {
			case !geo.ContinentInTable(iso) && !cldrOnly[iso]:
				// Else the comparison below would test CLDR against itself.
				t.Errorf("%s is not in the continent table, only in CLDR's fallback", iso)
			case geo.ContinentInTable(iso) && cldrOnly[iso]:
				t.Errorf("%s is in the continent table; take it out of cldrOnly", iso)
			case got == "":
				t.Errorf("ContinentOf(%q) = \"\", CLDR says %q", iso, cldr)
			case got != cldr && !maxmindDiffers[iso]:
				t.Errorf("ContinentOf(%q) = %q, CLDR says %q and the difference is not a known MaxMind one", iso, got, cldr)
			case got == cldr && maxmindDiffers[iso]:
				t.Errorf("ContinentOf(%q) = %q, same as CLDR, but MaxMind differs", iso, got)
			}
		}
	}
	if n < 250 {
		t.Errorf("CLDR lists only %d countries", n)
	}
}
