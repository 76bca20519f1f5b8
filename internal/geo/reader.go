package geo

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/oschwald/maxminddb-golang/v2"
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

// asnFacts is what an ASN lookup returns; asn 0 marks a record without one.
type asnFacts struct {
	asn uint32
	org string
}

// handle is one opened database file with the facts decoded from it. It is
// immutable once built, except for its reference count: lookups hold a
// reference while they read the memory-mapped file, and the file is
// unmapped only when the last reference is dropped, so swapping a handle out
// never pulls memory from under a running lookup.
type handle struct {
	refs   atomic.Int64 // one for the slot that publishes it, one per lookup in flight; 0 = closed
	broken atomic.Bool  // the mapping faulted (file truncated in place): serve nothing from it

	reader *maxminddb.Reader
	ipv6   bool // the tree holds IPv6; an IPv4-only tree answers nothing for IPv6
	log    *slog.Logger

	asn     map[uintptr]asnFacts // kindASN: by data offset
	country map[uintptr]uint32   // kindCountry: by data offset; country index | continent index<<16, 0 = none

	info DataSet       // the static parts: File, DatabaseType, BuildTime, Networks, Records, Schema, LoadedAt
	file os.FileInfo   // identity of the file that was opened, to notice a replacement
	took time.Duration // time to open and index
}

// acquire takes a lookup reference; it fails once the handle is closed.
func (h *handle) acquire() bool {
	for {
		n := h.refs.Load()
		if n <= 0 {
			return false
		}
		if h.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// release drops a reference; the last one unmaps the file.
func (h *handle) release() {
	if h.refs.Add(-1) == 0 {
		if err := h.reader.Close(); err != nil {
			h.log.Warn("geo: closing replaced database", "file", h.info.File, "err", err)
		}
	}
}

// offset walks the search tree for addr and returns its data offset.
//
// The file is memory-mapped. If someone rewrites it in place instead of
// renaming a new file over it, and truncates it, touching the mapping
// raises SIGBUS, which would kill the process. SetPanicOnFault turns that
// into a panic that is recovered here: the handle is marked broken (the
// watcher reloads the file once the writer is done) and the lookup reports
// no data.
func (h *handle) offset(addr netip.Addr) (off uintptr, found bool) {
	if h.broken.Load() || (addr.Is6() && !h.ipv6) {
		return 0, false
	}
	defer h.recoverFault(debug.SetPanicOnFault(true), &found)
	res := h.reader.Lookup(addr)
	if !res.Found() {
		return 0, false
	}
	return res.Offset(), true
}

func (h *handle) recoverFault(old bool, found *bool) {
	debug.SetPanicOnFault(old)
	e := recover()
	if e == nil {
		return
	}
	if _, isFault := e.(interface{ Addr() uintptr }); !isFault {
		panic(e)
	}
	*found = false
	if h.broken.CompareAndSwap(false, true) {
		h.log.Error("geo: database memory fault; the file was changed in place (replace it by renaming a new file over it); serving no data from it until it is reloaded",
			"file", h.info.File, "err", e)
	}
}

// openHandle opens, checks and indexes one database file for a role.
func openHandle(path string, k kind, log *slog.Logger) (*handle, error) {
	start := time.Now()
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		return nil, fmt.Errorf("%s is a directory, not an .mmdb file", path)
	}
	r, err := maxminddb.Open(path)
	if err != nil {
		return nil, fmt.Errorf("not a readable MaxMind DB file: %w", err)
	}
	// Verify walks the whole search tree and data section: a corrupt tree
	// would otherwise surface as wrong answers or errors on the lookup path.
	if err := r.Verify(); err != nil {
		_ = r.Close()
		return nil, fmt.Errorf("failed verification: %w", err)
	}
	h := &handle{
		reader: r,
		ipv6:   r.Metadata.IPVersion == 6,
		log:    log,
		file:   fi,
	}
	if err := h.index(k); err != nil {
		_ = r.Close()
		return nil, err
	}
	h.info.File = path
	h.info.LoadedAt = time.Now()
	h.info.Kind = k.String()
	h.took = time.Since(start)
	h.refs.Store(1)
	return h, nil
}

// index walks every network once, decodes each distinct record into the
// facts lookups need, refuses a database that provides nothing for the
// role, and then checks a sample of networks through the lookup path.
func (h *handle) index(k kind) error {
	md := h.reader.Metadata
	h.info.DatabaseType = md.DatabaseType
	h.info.BuildTime = md.BuildTime().UTC()
	for _, t := range uselessTypes {
		if strings.Contains(md.DatabaseType, t) {
			return fmt.Errorf("database type %q holds no %s data: %w", md.DatabaseType, k, ErrNoData)
		}
	}

	if k == kindASN {
		h.asn = make(map[uintptr]asnFacts)
	} else {
		h.country = make(map[uintptr]uint32)
	}
	type probe struct {
		addr netip.Addr
		off  uintptr
	}
	var (
		probes                      []probe
		networks, useful            int
		maxmindRecords, flatRecords int
		withASN, withCountry        int // records carrying the other role's data, for the error message
		records                     int
		seen                        func(uintptr) bool
	)
	if k == kindASN {
		seen = func(off uintptr) bool { _, ok := h.asn[off]; return ok }
	} else {
		seen = func(off uintptr) bool { _, ok := h.country[off]; return ok }
	}
	for res := range h.reader.Networks() {
		if err := res.Err(); err != nil {
			return fmt.Errorf("walking the search tree: %w", err)
		}
		networks++
		off := res.Offset()
		if networks%probeEvery == 1 && len(probes) < maxProbes {
			probes = append(probes, probe{res.Prefix().Addr(), off})
		}
		if seen(off) {
			continue
		}
		records++
		var rec record
		if err := res.Decode(&rec); err != nil {
			return fmt.Errorf("decoding the record of %s: %w", res.Prefix(), err)
		}
		if rec.maxmind {
			maxmindRecords++
		} else if rec.flat {
			flatRecords++
		}
		if rec.asn != 0 {
			withASN++
		}
		if rec.countryIndex() != noCode || rec.continent != noCode {
			withCountry++
		}
		if k == kindASN {
			if rec.asn != 0 {
				h.asn[off] = asnFacts{asn: rec.asn, org: rec.org}
				useful++
			} else {
				h.asn[off] = asnFacts{} // seen, nothing to tell
			}
		} else {
			packed := uint32(rec.countryIndex()) | uint32(rec.continentIndex())<<16
			h.country[off] = packed
			if packed != 0 {
				useful++
			}
		}
	}
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
		return fmt.Errorf("database type %q: none of its %d records has %s%s: %w",
			md.DatabaseType, records, want, hint, ErrNoData)
	}
	for _, p := range probes {
		off, ok := h.offset(p.addr)
		if !ok || off != p.off {
			return fmt.Errorf("self-check failed: looking up %s does not find the record the tree walk found for it", p.addr)
		}
	}
	h.info.Networks = networks
	h.info.Records = records
	h.info.Schema = SchemaMaxMind
	if flatRecords > maxmindRecords {
		h.info.Schema = SchemaFlat
	}
	return nil
}

// ErrNoData is wrapped by errors for a database that provides nothing
// reghost can use in the role it was configured for (an Anonymous-IP
// database, a country database given as the ASN one, …).
var ErrNoData = errors.New("database provides no usable data")
