package geo

import (
	"strings"

	"golang.org/x/text/language"
)

// Continent codes as MaxMind (and GeoNames, which MaxMind follows) use them.
// The table follows GeoNames' countryInfo.txt rather than the UN M49 regions
// in CLDR, because the two disagree where it matters to MaxMind users: CLDR
// puts AQ, BV, GS, HM and TF in Oceania (MaxMind: AN), CC, CX and IO in
// Oceania (AS), CY in Asia (EU) and TL in Asia (OC). CLDR containment is
// only the fallback for codes the table does not know (obsolete or future
// codes such as AN, CS, YU).
var continentMembers = [...]struct {
	continent string
	countries string // space-separated ISO 3166-1 alpha-2 codes
}{
	{"AF", "AO BF BI BJ BW CD CF CG CI CM CV DJ DZ EG EH ER ET GA GH GM GN GQ GW KE KM LR LS LY MA MG ML MR MU MW MZ NA NE NG RE RW SC SD SH SL SN SO SS ST SZ TD TG TN TZ UG YT ZA ZM ZW"},
	{"AN", "AQ BV GS HM TF"},
	{"AS", "AE AF AM AZ BD BH BN BT CC CN CX GE HK ID IL IN IO IQ IR JO JP KG KH KP KR KW KZ LA LB LK MM MN MO MV MY NP OM PH PK PS QA SA SG SY TH TJ TM TR TW UZ VN YE"},
	{"EU", "AD AL AT AX BA BE BG BY CH CY CZ DE DK EE ES FI FO FR GB GG GI GR HR HU IE IM IS IT JE LI LT LU LV MC MD ME MK MT NL NO PL PT RO RS RU SE SI SJ SK SM UA VA XK"},
	{"NA", "AG AI AW BB BL BM BQ BS BZ CA CR CU CW DM DO GD GL GP GT HN HT JM KN KY LC MF MQ MS MX NI PA PM PR SV SX TC TT US VC VG VI"},
	{"OC", "AS AU CK FJ FM GU KI MH MP NC NF NR NU NZ PF PG PN PW SB TK TL TO TV UM VU WF WS"},
	{"SA", "AR BO BR CL CO EC FK GF GY PE PY SR UY VE"},
}

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
		for _, m := range continentMembers {
			c := codeIndex(m.continent)
			for _, country := range strings.Fields(m.countries) {
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

// IsCountry reports whether cc is, in upper case, one of the codes the
// continent table lists: the 249 ISO 3166-1 alpha-2 codes assigned
// today, and XK (Kosovo), which MaxMind uses. Reserved codes (UK, EU, UN)
// and deleted ones (SU, YU, AN) are not: no database reports them.
func IsCountry(cc string) bool {
	i := codeIndex(cc)
	return i != noCode && cc[0] <= 'Z' && cc[1] <= 'Z' && continentOf[i] != noCode
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
