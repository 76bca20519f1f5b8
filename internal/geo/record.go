package geo

import (
	"strconv"
	"strings"

	"github.com/oschwald/maxminddb-golang/v2/mmdbdata"
)

// Schema names reported in DataSet.Schema.
const (
	SchemaMaxMind = "maxmind" // GeoIP2/GeoLite2 and compatible (DB-IP): nested country/continent maps, autonomous_system_*
	SchemaFlat    = "flat"    // free redistributions (ip-location-db, ipinfo): country_code, asn/as_name
)

// record is what reghost needs from one data record of either schema. It is
// decoded once per distinct record when a database is opened, never on the
// lookup path.
//
// Fields understood:
//
//	MaxMind: autonomous_system_number (uint), autonomous_system_organization,
//	         country.iso_code, registered_country.iso_code, continent.code
//	flat:    asn (uint, or string "AS15169" / "15169"), as_name,
//	         country_code, continent_code, and country / continent when they
//	         are strings holding a code (ipinfo's country_asn layout)
//
// Everything else is skipped, and so is a known field whose value has an
// unexpected kind: a record is used for what it does provide.
type record struct {
	asn        uint32
	org        string
	country    uint16 // code index; from country, else registered_country
	registered uint16
	continent  uint16
	maxmind    bool // a MaxMind-schema field was seen
	flat       bool // a flat-schema field was seen
}

// countryIndex is the country to report: the record's country, else the
// registered country (MaxMind leaves country out for some networks, e.g.
// satellite providers and anycast, but still knows the registrant).
func (r *record) countryIndex() uint16 {
	if r.country != noCode {
		return r.country
	}
	return r.registered
}

// continentIndex is the record's continent, else the one of its country.
func (r *record) continentIndex() uint16 {
	if r.continent != noCode {
		return r.continent
	}
	if c := r.countryIndex(); c != noCode {
		return codeIndex(ContinentOf(code(c)))
	}
	return noCode
}

// UnmarshalMaxMindDBCursor implements mmdbdata.CursorUnmarshaler.
func (r *record) UnmarshalMaxMindDBCursor(c mmdbdata.Cursor) (mmdbdata.Cursor, error) {
	kind, err := c.Kind()
	if err != nil {
		return mmdbdata.Cursor{}, err
	}
	if kind != mmdbdata.KindMap {
		// A database whose records are not maps (some custom files hold a
		// bare string) has nothing reghost can use.
		return c.Skip()
	}
	m, err := c.Map()
	if err != nil {
		return mmdbdata.Cursor{}, err
	}
	var next mmdbdata.Cursor
	for {
		key, v, ok := m.Next(next)
		if !ok {
			break
		}
		switch string(key) {
		case "autonomous_system_number":
			var n uint64
			if n, next, err = readUint(v); err == nil && n > 0 && n <= 0xFFFFFFFF {
				r.asn, r.maxmind = uint32(n), true
			}
		case "autonomous_system_organization":
			var s string
			if s, next, err = readString(v); err == nil && s != "" {
				r.org, r.maxmind = s, true
			}
		case "asn":
			var n uint64
			if n, next, err = readASN(v); err == nil && n > 0 && n <= 0xFFFFFFFF {
				r.asn, r.flat = uint32(n), true
			}
		case "as_name":
			var s string
			if s, next, err = readString(v); err == nil && s != "" {
				r.org, r.flat = s, true
			}
		case "country":
			var i uint16
			var nested bool
			if i, nested, next, err = readCode(v, "iso_code"); err == nil && i != noCode {
				r.country = i
				r.maxmind = r.maxmind || nested
				r.flat = r.flat || !nested
			}
		case "registered_country":
			var i uint16
			if i, _, next, err = readCode(v, "iso_code"); err == nil && i != noCode {
				r.registered, r.maxmind = i, true
			}
		case "country_code":
			var s string
			if s, next, err = readString(v); err == nil && codeIndex(s) != noCode {
				r.country, r.flat = codeIndex(s), true
			}
		case "continent":
			var i uint16
			var nested bool
			if i, nested, next, err = readCode(v, "code"); err == nil && continentCodes[i] {
				r.continent = i
				r.maxmind = r.maxmind || nested
				r.flat = r.flat || !nested
			}
		case "continent_code":
			var s string
			if s, next, err = readString(v); err == nil && continentCodes[codeIndex(s)] {
				r.continent, r.flat = codeIndex(s), true
			}
		default:
			next, err = v.Skip()
		}
		if err != nil {
			return mmdbdata.Cursor{}, err
		}
	}
	return m.End()
}

// readUint reads an unsigned (or non-negative signed) integer; any other kind
// is skipped and reported as 0.
func readUint(c mmdbdata.Cursor) (uint64, mmdbdata.Cursor, error) {
	kind, err := c.Kind()
	if err != nil {
		return 0, mmdbdata.Cursor{}, err
	}
	switch kind {
	case mmdbdata.KindUint16, mmdbdata.KindUint32, mmdbdata.KindUint64, mmdbdata.KindInt32:
		n, signed, next, err := c.ReadInteger()
		if signed && int64(n) < 0 {
			n = 0
		}
		return n, next, err
	}
	next, err := c.Skip()
	return 0, next, err
}

// readString reads a string; any other kind is skipped and reported as "".
func readString(c mmdbdata.Cursor) (string, mmdbdata.Cursor, error) {
	kind, err := c.Kind()
	if err != nil {
		return "", mmdbdata.Cursor{}, err
	}
	if kind != mmdbdata.KindString {
		next, err := c.Skip()
		return "", next, err
	}
	return c.ReadString()
}

// readASN reads an AS number stored as an integer or as a string, with or
// without the "AS" prefix ("AS15169", "as15169", "15169").
func readASN(c mmdbdata.Cursor) (uint64, mmdbdata.Cursor, error) {
	kind, err := c.Kind()
	if err != nil {
		return 0, mmdbdata.Cursor{}, err
	}
	if kind != mmdbdata.KindString {
		return readUint(c)
	}
	s, next, err := c.ReadString()
	if err != nil {
		return 0, next, err
	}
	return parseASN(s), next, nil
}

func parseASN(s string) uint64 {
	s = strings.TrimSpace(s)
	if len(s) > 2 && (s[0] == 'A' || s[0] == 'a') && (s[1] == 'S' || s[1] == 's') {
		s = s[2:]
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0
	}
	return n
}

// readCode reads a two-letter code held either directly as a string (flat
// schema) or under key in a map (MaxMind schema: country.iso_code,
// continent.code). nested reports which form it was.
func readCode(c mmdbdata.Cursor, key string) (i uint16, nested bool, next mmdbdata.Cursor, err error) {
	kind, err := c.Kind()
	if err != nil {
		return noCode, false, mmdbdata.Cursor{}, err
	}
	switch kind {
	case mmdbdata.KindString:
		s, next, err := c.ReadString()
		return codeIndex(s), false, next, err
	case mmdbdata.KindMap:
		m, err := c.Map()
		if err != nil {
			return noCode, true, mmdbdata.Cursor{}, err
		}
		var next mmdbdata.Cursor
		for {
			k, v, ok := m.Next(next)
			if !ok {
				break
			}
			if string(k) == key {
				var s string
				s, next, err = readString(v)
				i = codeIndex(s)
			} else {
				next, err = v.Skip()
			}
			if err != nil {
				return noCode, true, mmdbdata.Cursor{}, err
			}
		}
		end, err := m.End()
		return i, true, end, err
	default:
		next, err := c.Skip()
		return noCode, false, next, err
	}
}
