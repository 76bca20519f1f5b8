package geo

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/gaissmai/bart"
	"github.com/oschwald/maxminddb-golang/v2"

	"github.com/reghost/reghost/internal/iprange"
)

// kind is the role a database plays: the source of ASNs or of countries.
type kind uint8

const (
	kindASN kind = iota
	kindCountry
)

func (k kind) String() string {
	if k == kindASN {
		return "asn"
	}
	return "country"
}

// MarshalText has JSON logs say "asn" or "country" rather than 0 or 1.
func (k kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// Database types whose records hold neither ASN nor country data. They are
// refused by name before their records are walked; any other type is judged
// by its records.
var uselessTypes = []string{
	"Anonymous-IP", "Anonymous-Plus", "Connection-Type", "Domain",
	"IP-Risk", "User-Count", "Density-Income", "Static-IP-Score",
}

// probeEvery sets how many networks apart the self-check lookups are taken
// during the walk (at most maxProbes of them).
const (
	probeEvery = 1024
	maxProbes  = 256
)

// ErrNoData is wrapped by errors for a database that provides nothing
// reghost can use in the role it was configured for (an Anonymous-IP
// database, a country database given as the ASN one, …).
var ErrNoData = errors.New("database provides no usable data")

// asnFacts is what an ASN lookup returns: the AS number, and where the
// organisation's name is in handle.orgs. The names live in one string
// rather than one each, so that a database's tens of thousands of them
// are one object for the collector to mark rather than tens of thousands,
// and an entry is half the size.
type asnFacts struct {
	asn         uint32
	org, orgEnd uint32
}

// asnKey is a distinct (AS number, organisation) pair while indexing.
type asnKey struct {
	asn uint32
	org string
}

// asnIndexer numbers the distinct pairs of a database.
type asnIndexer struct {
	index map[asnKey]uint32
	orgs  strings.Builder
}

// handle is everything one database file provides, indexed for lookups. It
// is built completely from the file and then never changes, so lookups need
// no locks and a reload just publishes a new handle.
//
// Lookups do not read the file: the file is memory-mapped only while it is
// verified and indexed, and unmapped before the handle is published. A
// lookup therefore never touches memory that a reload, a Close or someone
// rewriting the file in place could pull away, and nothing has to count
// readers.
type handle struct {
	// v4 and v6 map each network, IPv4 and IPv6 respectively, to a
	// value: an index into asn (kindASN), or a packed country index |
	// continent index<<16 (kindCountry). Networks without data for the role
	// answer nothing.
	v4   *iprange.Table
	v6   *bart.Table[uint32]
	asn  []asnFacts
	orgs string // the organisations' names, see asnFacts

	// The IPv6 networks that MaxMind-format writers alias to the IPv4 tree:
	// 6to4 (2002::/16, IPv4 in bits 16-47) and Teredo (2001::/32, IPv4 in
	// bits 32-63). Lookups there use the embedded IPv4 address, as
	// maxminddb's own lookups do.
	alias6to4, aliasTeredo bool
	// compat4 is set for an IPv6 database, whose IPv4 tree is ::/96: an
	// IPv4-compatible address (::a.b.c.d) is looked up as a.b.c.d there,
	// as maxminddb does.
	compat4 bool

	info DataSet     // all but Err and Loaded
	file os.FileInfo // identity of the file that was opened, to notice a replacement
	took time.Duration
}

// value returns the table value for addr.
func (h *handle) value(addr netip.Addr) (uint32, bool) {
	addr = addr.Unmap()
	if addr.Is6() {
		b := addr.As16()
		switch {
		case h.alias6to4 && b[0] == 0x20 && b[1] == 0x02:
			addr = netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]})
		case h.aliasTeredo && b[0] == 0x20 && b[1] == 0x01 && b[2] == 0 && b[3] == 0:
			addr = netip.AddrFrom4([4]byte{b[4], b[5], b[6], b[7]})
		case h.compat4 && [12]byte(b[:12]) == [12]byte{}:
			addr = netip.AddrFrom4([4]byte(b[12:]))
		}
	}
	if addr.Is4() {
		return h.v4.LookupAddr(addr)
	}
	return h.v6.Lookup(addr)
}

// openHandle opens, verifies and indexes one database file for a role. It
// also returns what the file was when it was opened (nil if it could not be
// found), so that the same file is not tried again until it changes. The
// file is looked at before it is opened: if it is replaced in between, the
// new one is noticed as a change and loaded again, never skipped.
func openHandle(path string, k kind) (*handle, os.FileInfo, error) {
	start := time.Now()
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			err = fs.ErrNotExist // the caller names the file
		}
		return nil, nil, err
	}
	if fi.IsDir() {
		return nil, fi, errors.New("it is a directory, not an .mmdb file")
	}
	h, err := readFile(path, k, func(path string) (*maxminddb.Reader, error) { return maxminddb.Open(path) })
	if err != nil {
		return nil, fi, err
	}
	h.info.Kind = k.String()
	h.info.File = path
	h.info.LoadedAt = time.Now()
	h.file = fi
	h.took = time.Since(start)
	return h, fi, nil
}

// readFile opens (with open: maxminddb.Open, but for tests), verifies and
// indexes one database file.
//
// The file is memory-mapped. If someone truncates it meanwhile (rewriting
// it in place rather than renaming a new file over it), reading the mapping
// raises SIGBUS, which would kill the process; SetPanicOnFault turns that
// into a panic that is recovered here as an error. Opening reads the
// mapping too (maxminddb looks for the metadata from the end of the
// file), so the guard is up before it.
func readFile(path string, k kind, open func(string) (*maxminddb.Reader, error)) (h *handle, err error) {
	var r *maxminddb.Reader
	defer func(old bool) {
		debug.SetPanicOnFault(old)
		if e := recover(); e != nil {
			if _, isFault := e.(interface{ Addr() uintptr }); !isFault {
				panic(e)
			}
			h, err = nil, fmt.Errorf("the file changed while it was being read (replace it by renaming a new file over it): %v", e)
		}
		if r != nil {
			if cerr := r.Close(); err == nil && cerr != nil {
				h, err = nil, fmt.Errorf("unmapping: %w", cerr)
			}
		}
	}(debug.SetPanicOnFault(true))

	r, err = open(path)
	if err != nil {
		r = nil
		return nil, fmt.Errorf("not a readable MaxMind DB file: %w", err)
	}
	return build(r, k)
}

// aliased reports whether the database's writer pointed p at the IPv4
// tree, as MaxMind's writers do for 6to4 and Teredo: walking p then finds
// networks only when aliases are included. (Comparing the record of one
// address with its IPv4 form's also takes for aliased a p with data of its
// own that happens to be the same record.)
func aliased(r *maxminddb.Reader, p netip.Prefix) bool {
	for range r.NetworksWithin(p) {
		return false
	}
	for range r.NetworksWithin(p, maxminddb.IncludeAliasedNetworks()) {
		return true
	}
	return false
}

// build verifies the database and indexes it. Call it through readFile,
// which turns a fault reading the file into an error.
func build(r *maxminddb.Reader, k kind) (*handle, error) {
	md := r.Metadata
	for _, t := range uselessTypes {
		if strings.Contains(md.DatabaseType, t) {
			return nil, fmt.Errorf("database type %q holds no %s data: %w", md.DatabaseType, k, ErrNoData)
		}
	}
	// The MaxMind DB format does not require a description, and
	// ip-location-db's and DB-IP's files have none, but Verify wants one:
	// give it one, so that it goes on to check what matters.
	if len(r.Metadata.Description) == 0 {
		r.Metadata.Description = map[string]string{"en": "(none)"}
	}
	// Verify walks the whole search tree and data section, so that a
	// corrupt file is refused whole rather than half-indexed.
	if err := r.Verify(); err != nil {
		return nil, fmt.Errorf("failed verification: %w", err)
	}
	return index(r, k)
}

// index walks every network once, decodes each distinct record into the
// facts lookups need, and puts the networks into a prefix table. It refuses
// a database that provides nothing for the role, and checks a sample of
// networks against maxminddb's own lookup.
func index(r *maxminddb.Reader, k kind) (*handle, error) {
	md := r.Metadata
	h := new(handle)
	h.info.DatabaseType = md.DatabaseType
	h.info.BuildTime = md.BuildTime().UTC()

	type probe struct {
		addr  netip.Addr
		off   uintptr
		value uint32
		ok    bool
	}
	var (
		probes                      []probe
		networks, records, useful   int
		maxmindRecords, flatRecords int
		withASN, withCountry        int // records with the other role's data, for the error message
		values                      = map[uintptr]uint32{}
		noValue                     = map[uintptr]bool{}
		asns                        = asnIndexer{index: map[asnKey]uint32{}}
		v4                          range4Builder
		v6                          = new(bart.Table[uint32])
		m                           = merger{out: func(p netip.Prefix, v uint32) error {
			if p.Addr().Is4() {
				return v4.add(p, v)
			}
			v6.Insert(p, v)
			return nil
		}}
		fill4    uint32 // the value of an IPv6 network over all of IPv4
		hasFill4 bool
	)
	for res := range r.Networks() {
		if err := res.Err(); err != nil {
			return nil, fmt.Errorf("walking the search tree: %w", err)
		}
		networks++
		off := res.Offset()
		v, ok := values[off]
		if !ok && !noValue[off] {
			records++
			var rec record
			if err := res.Decode(&rec); err != nil {
				return nil, fmt.Errorf("decoding the record of %s: %w", res.Prefix(), err)
			}
			switch {
			case rec.maxmind:
				maxmindRecords++
			case rec.flat:
				flatRecords++
			}
			if rec.asn != 0 {
				withASN++
			}
			if rec.countryIndex() != noCode || rec.continent != noCode {
				withCountry++
			}
			v, ok = factsValue(k, &rec, h, &asns)
			if ok {
				values[off] = v
				useful++
			} else {
				noValue[off] = true
			}
		}
		p := res.Prefix()
		if networks%probeEvery == 1 && len(probes) < maxProbes {
			probes = append(probes, probe{p.Addr(), off, v, ok})
		}
		switch {
		case !ok:
		case p.Addr().Is6() && p.Bits() <= 96 && p.Contains(netip.IPv6Unspecified()):
			// A network over the whole IPv4 tree (::/96) is reported as
			// IPv6; IPv4 lookups must find it too. No IPv4 network can
			// be inside it, so it answers for every IPv4 address.
			fill4, hasFill4 = v, true
			fallthrough
		default:
			if err := m.push(p, v); err != nil {
				return nil, err
			}
		}
	}
	if err := m.flush(); err != nil {
		return nil, err
	}
	v4t, err := v4.finish(fill4, hasFill4)
	if err != nil {
		return nil, err
	}
	h.v4 = v4t
	h.v6 = v6
	h.orgs = asns.orgs.String()
	if useful == 0 {
		hint := ""
		switch {
		case networks == 0:
			hint = " (it holds no networks)"
		case k == kindASN && withCountry > 0:
			hint = " (it holds country data: is this the country database?)"
		case k == kindCountry && withASN > 0:
			hint = " (it holds ASN data: is this the ASN database?)"
		}
		want := "autonomous_system_number or asn"
		if k == kindCountry {
			want = "country.iso_code, registered_country.iso_code, continent.code, country_code or continent_code"
		}
		return nil, fmt.Errorf("database type %q: none of its %d records has %s%s: %w",
			md.DatabaseType, records, want, hint, ErrNoData)
	}

	// The index must answer what maxminddb answers.
	for _, p := range probes {
		if res := r.Lookup(p.addr); !res.Found() || res.Offset() != p.off {
			return nil, fmt.Errorf("self-check failed: maxminddb does not find for %s the record the tree walk found", p.addr)
		}
		if v, ok := h.value(p.addr); v != p.value || ok != p.ok {
			return nil, fmt.Errorf("self-check failed: the index answers %d, %v for %s, want %d, %v", v, ok, p.addr, p.value, p.ok)
		}
	}
	if md.IPVersion == 6 {
		h.compat4 = true
		h.alias6to4 = aliased(r, netip.MustParsePrefix("2002::/16"))
		h.aliasTeredo = aliased(r, netip.MustParsePrefix("2001::/32"))
	}

	h.info.Networks = networks
	h.info.Records = records
	h.info.Schema = SchemaMaxMind
	if flatRecords > maxmindRecords {
		h.info.Schema = SchemaFlat
	}
	h.info.Prefixes = m.inserted
	return h, nil
}

// factsValue turns a record into the table value for the role; ok is false
// when the record has nothing for it.
func factsValue(k kind, rec *record, h *handle, asns *asnIndexer) (uint32, bool) {
	if k == kindASN {
		if rec.asn == 0 {
			return 0, false
		}
		key := asnKey{rec.asn, rec.org}
		i, ok := asns.index[key]
		if !ok {
			i = uint32(len(h.asn))
			off := uint32(asns.orgs.Len())
			asns.orgs.WriteString(rec.org)
			h.asn = append(h.asn, asnFacts{asn: rec.asn, org: off, orgEnd: uint32(asns.orgs.Len())})
			asns.index[key] = i
		}
		return i, true
	}
	v := uint32(rec.countryIndex()) | uint32(rec.continentIndex())<<16
	return v, v != 0
}
