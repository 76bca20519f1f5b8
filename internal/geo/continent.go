package geo

import (
	"strings"

	"golang.org/x/text/language"

	"github.com/reghost/reghost/internal/iso3166"
)

// A two-letter code (country or continent) is kept as a small index so that
// facts fit in a uint32 and lookups can hand out strings without allocating:
// code(i) slices one shared string.
const (
	noCode   = 0
	numCodes = 26*26 + 1
)

var (
	// pairs holds "AAABAC…ZZ"; the code with index i is pairs[2(i-1):2i].
	pairs = func() string {
		var b strings.Builder
		b.Grow(2 * 26 * 26)
		for x := byte('A'); x <= 'Z'; x++ {
			for y := byte('A'); y <= 'Z'; y++ {
				b.WriteByte(x)
				b.WriteByte(y)
			}
		}
		return b.String()
	}()

	// continentOf maps a country code index to its continent code index.
	continentOf = func() (t [numCodes]uint16) {
		for _, m := range iso3166.Continents {
			c := codeIndex(m.Continent)
			for _, country := range strings.Fields(m.Countries) {
				t[codeIndex(country)] = c
			}
		}
		return t
	}()

	// continentCodes are the only continent codes MaxMind uses.
	continentCodes = func() (set [numCodes]bool) {
		for _, c := range []string{"AF", "AN", "AS", "EU", "NA", "OC", "SA"} {
			set[codeIndex(c)] = true
		}
		return set
	}()
)

// codeIndex returns the index of a two-letter code, either case, or noCode.
func codeIndex(s string) uint16 {
	if len(s) != 2 {
		return noCode
	}
	x, y := s[0]|0x20, s[1]|0x20 // ASCII lower case
	if x < 'a' || x > 'z' || y < 'a' || y > 'z' {
		return noCode
	}
	return uint16(x-'a')*26 + uint16(y-'a') + 1
}

// code returns the upper-case code for an index, "" for noCode.
func code(i uint16) string {
	if i == noCode || i >= numCodes {
		return ""
	}
	return pairs[2*(i-1) : 2*i]
}

// ContinentOf returns the continent code (AF AN AS EU NA OC SA, as MaxMind
// uses them) of an ISO 3166-1 alpha-2 country code, or "" if unknown.
// Lower-case input is accepted.
func ContinentOf(country string) string {
	i := codeIndex(country)
	if i == noCode {
		return ""
	}
	if c := continentOf[i]; c != noCode {
		return code(c)
	}
	return continentFromCLDR(code(i))
}

// continentFromCLDR maps a code the table does not list through CLDR region
// containment, so that obsolete and newly assigned codes still get a
// continent.
func continentFromCLDR(country string) string {
	r, err := language.ParseRegion(country)
	if err != nil || !r.IsCountry() {
		return ""
	}
	for _, g := range cldrContinents {
		if g.region.Contains(r) {
			return g.continent
		}
	}
	return ""
}

var cldrContinents = func() []struct {
	region    language.Region
	continent string
} {
	groups := []struct{ m49, continent string }{
		{"AQ", "AN"}, // before 009: CLDR nests Antarctica in Oceania
		{"002", "AF"},
		{"142", "AS"},
		{"150", "EU"},
		{"005", "SA"}, // before 019: South America is part of the Americas
		{"019", "NA"},
		{"009", "OC"},
	}
	out := make([]struct {
		region    language.Region
		continent string
	}, len(groups))
	for i, g := range groups {
		out[i].region = language.MustParseRegion(g.m49)
		out[i].continent = g.continent
	}
	return out
}()
