// Package iso3166 lists the country codes GeoIP databases report, each
// with its continent as MaxMind gives it. Validating rules
// (internal/rules) and answering lookups (internal/geo) read the same
// table.
package iso3166

import "strings"

// Continents lists each continent code, as MaxMind (and GeoNames, which
// MaxMind follows) uses them, with its countries. The table follows
// GeoNames' countryInfo.txt rather than the UN M49 regions in CLDR,
// because the two disagree where it matters to MaxMind users: CLDR puts
// AQ, BV, GS, HM and TF in Oceania (MaxMind: AN), CC, CX and IO in
// Oceania (AS), CY in Asia (EU) and TL in Asia (OC). For a code the table
// does not know, which a database built in the future might report,
// geo.ContinentOf falls back to CLDR containment.
var Continents = [...]struct {
	Continent string
	Countries string // space-separated ISO 3166-1 alpha-2 codes
}{
	{"AF", "AO BF BI BJ BW CD CF CG CI CM CV DJ DZ EG EH ER ET GA GH GM GN GQ GW KE KM LR LS LY MA MG ML MR MU MW MZ NA NE NG RE RW SC SD SH SL SN SO SS ST SZ TD TG TN TZ UG YT ZA ZM ZW"},
	{"AN", "AQ BV GS HM TF"},
	{"AS", "AE AF AM AZ BD BH BN BT CC CN CX GE HK ID IL IN IO IQ IR JO JP KG KH KP KR KW KZ LA LB LK MM MN MO MV MY NP OM PH PK PS QA SA SG SY TH TJ TM TR TW UZ VN YE"},
	{"EU", "AD AL AT AX BA BE BG BY CH CY CZ DE DK EE ES FI FO FR GB GG GI GR HR HU IE IM IS IT JE LI LT LU LV MC MD ME MK MT NL NO PL PT RO RS RU SE SI SJ SK SM UA VA XK"},
	{"NA", "AG AI AW BB BL BM BQ BS BZ CA CR CU CW DM DO GD GL GP GT HN HT JM KN KY LC MF MQ MS MX NI PA PM PR SV SX TC TT US VC VG VI"},
	{"OC", "AS AU CK FJ FM GU KI MH MP NC NF NR NU NZ PF PG PN PW SB TK TL TO TV UM VU WF WS"},
	{"SA", "AR BO BR CL CO EC FK GF GY PE PY SR UY VE"},
}

var countries = func() map[string]bool {
	m := map[string]bool{}
	for _, c := range Continents {
		for _, cc := range strings.Fields(c.Countries) {
			m[cc] = true
		}
	}
	return m
}()

// IsCountry reports whether cc, in upper case, is one of the table's
// codes: the 249 ISO 3166-1 alpha-2 codes assigned today, and XK
// (Kosovo), which MaxMind uses. Reserved codes (UK, EU, UN) and deleted
// ones (SU, YU, AN) are not: current databases do not report them, so a
// rule naming one would never match.
func IsCountry(cc string) bool {
	return countries[cc]
}
