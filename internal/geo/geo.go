// Package geo answers "which AS and which country is this address in" from
// MaxMind-format (.mmdb) databases: an ASN database and a Country (or City)
// database, from MaxMind (GeoIP2/GeoLite2), DB-IP, ip-location-db, ipinfo or
// anything else that uses the same record layouts (see record.go).
//
// Each database is opened (memory-mapped) with maxminddb-golang, verified,
// and walked once: every distinct data record is decoded into the few facts
// reghost needs, and every network goes into a table whose value is those
// facts, neighbours with the same facts joined: a flat range table for
// IPv4 (internal/iprange) and a bart prefix table for IPv6. A lookup is
// then one table lookup, for IPv4 about four times faster than walking
// the MaxMind search tree, and without allocating; the file is unmapped as
// soon as it is indexed. A file that cannot be read, or that provides
// nothing for its role, is refused before it serves.
//
// Replacing a database is safe while lookups run: Run watches the files, and
// a reload builds a complete new index and swaps it in atomically; lookups
// never read the file itself, so nothing can be unmapped under them. A file
// that fails its checks is refused and the previous index keeps serving.
// Publish a new file by renaming it over the old one (as geoipupdate and
// the reghost loader do): a file rewritten in place may be read half
// written, and is then refused until it is complete.
package geo

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// Config says which databases to open. An empty path leaves that lookup
// without data (it always answers ok=false).
type Config struct {
	ASN     string       // path to an ASN .mmdb; "" = none
	Country string       // path to a Country or City .mmdb; "" = none
	Logger  *slog.Logger // nil = discard
}

// DataSet describes one configured database, for the admin API.
type DataSet struct {
	Kind         string    `json:"kind"` // "asn" or "country"
	File         string    `json:"file"`
	DatabaseType string    `json:"database_type,omitempty"`
	BuildTime    time.Time `json:"build_time,omitzero"`
	Networks     int       `json:"networks"`         // networks in the search tree (IPv4 aliases counted once)
	Records      int       `json:"records"`          // distinct data records
	Prefixes     int       `json:"prefixes"`         // prefixes in the lookup table: networks with data for this role, neighbours with the same answer joined
	Schema       string    `json:"schema,omitempty"` // SchemaMaxMind or SchemaFlat
	LoadedAt     time.Time `json:"loaded_at,omitzero"`
	Err          string    `json:"error,omitempty"` // last load or reload error; "" once a load succeeds
	Loaded       bool      `json:"loaded"`          // a database is serving lookups
}

// ErrClosed is returned by Reload after Close.
var ErrClosed = errors.New("geo: database closed")

// DB serves ASN and country lookups from the configured databases. It is
// safe for concurrent use.
type DB struct {
	log     *slog.Logger
	asn     *slot // nil if not configured
	country *slot // nil if not configured

	// Run's timing; fields rather than constants so that tests can shorten them.
	debounce time.Duration // wait after a file system event before checking, so a burst is one check
	poll     time.Duration // check the files this often even without events
}

// slot holds the database currently serving one role.
type slot struct {
	kind kind
	path string
	log  *slog.Logger
	cur  atomic.Pointer[handle]

	mu      sync.Mutex // serialises loads; guards the fields below
	refused fs.FileInfo
	closed  bool
	// err is the last load error, "" after a success: set under mu,
	// read without it, so that DataSets never waits for a load.
	err atomic.Pointer[string]
}

// Open opens the configured databases and checks them. A database that is
// configured but does not exist yet is not an error: its lookups answer
// ok=false, a warning is logged, and Run loads it when it appears. A file
// that exists but cannot be used is an error.
func Open(cfg Config) (*DB, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &DB{log: log, debounce: 250 * time.Millisecond, poll: time.Minute}
	if cfg.ASN != "" {
		d.asn = &slot{kind: kindASN, path: cfg.ASN, log: log}
	}
	if cfg.Country != "" {
		d.country = &slot{kind: kindCountry, path: cfg.Country, log: log}
	}
	if d.asn == nil && d.country == nil {
		log.Warn("geo: no database configured; ASN and country lookups return no data")
	}
	for _, s := range d.slots() {
		err := s.load(true)
		if errors.Is(err, fs.ErrNotExist) {
			log.Warn("geo: database not found; its lookups return no data until it appears",
				"kind", s.kind, "file", s.path)
			continue
		}
		if err != nil {
			_ = d.Close()
			return nil, err
		}
	}
	return d, nil
}

func (d *DB) slots() []*slot {
	var out []*slot
	for _, s := range []*slot{d.asn, d.country} {
		if s != nil {
			out = append(out, s)
		}
	}
	return out
}

// ASN returns the autonomous system number and organisation of addr.
// IPv4-mapped IPv6 addresses are looked up as IPv4. It does not allocate
// and never blocks.
func (d *DB) ASN(addr netip.Addr) (asn uint32, org string, ok bool) {
	if d.asn == nil {
		return 0, "", false
	}
	h := d.asn.cur.Load()
	if h == nil {
		return 0, "", false
	}
	i, found := h.value(addr)
	if !found {
		return 0, "", false
	}
	f := h.asn[i]
	return f.asn, h.orgs[f.org:f.orgEnd], true
}

// Country returns the ISO 3166-1 alpha-2 country code and the continent code
// (AF AN AS EU NA OC SA) of addr. The country falls back to the registered
// country when the database has no location country, and the continent is
// derived from the country when the database has none. ok is true when
// either is known. IPv4-mapped IPv6 addresses are looked up as IPv4. It does
// not allocate and never blocks.
func (d *DB) Country(addr netip.Addr) (country, continent string, ok bool) {
	if d.country == nil {
		return "", "", false
	}
	h := d.country.cur.Load()
	if h == nil {
		return "", "", false
	}
	packed, found := h.value(addr)
	if !found {
		return "", "", false
	}
	return code(uint16(packed)), code(uint16(packed >> 16)), true
}

// Reload re-opens every configured database now, whether or not its file
// changed. A file that fails is refused and the database loaded before it
// keeps serving; the errors are returned (joined) and reported by DataSets.
func (d *DB) Reload() error {
	var errs []error
	for _, s := range d.slots() {
		errs = append(errs, s.load(true))
	}
	return errors.Join(errs...)
}

// DataSets describes the configured databases: ASN first, then country.
func (d *DB) DataSets() []DataSet {
	var out []DataSet
	for _, s := range d.slots() {
		out = append(out, s.dataSet())
	}
	return out
}

// Close drops the indexes (the files are already closed once indexed).
// Lookups after Close answer ok=false, and Reload and Run stop loading.
// Close is idempotent.
func (d *DB) Close() error {
	for _, s := range d.slots() {
		s.mu.Lock()
		s.closed = true
		s.cur.Store(nil)
		s.mu.Unlock()
	}
	return nil
}

// building is held while a database's tables are built (see load).
var building sync.Mutex

// load opens the slot's file and, if it passes the checks, makes it the
// serving one. Unless force is set, a file that is already serving or was
// already refused (same file, size and modification time) is left alone, so
// that watching can call load on every event.
func (s *slot) load(force bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	cur := s.cur.Load()
	if !force {
		fi, err := statFile(s.path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			// Gone: keep serving what is loaded, say so once.
			err = fmt.Errorf("geo: %s database %s: %w", s.kind, s.path, fs.ErrNotExist)
			s.fail(err, cur)
			return err
		case err != nil:
			s.fail(fmt.Errorf("geo: %s database %s: %w", s.kind, s.path, err), cur)
			return err
		case cur != nil && sameFile(cur.file, fi):
			return nil
		case s.refused != nil && sameFile(s.refused, fi):
			return nil
		}
	}
	// Memory while loading (bench/memory, real data, both databases
	// replaced at once): building them side by side and collecting at
	// GOGC's pace took the server to 173 MiB resident; one at a time,
	// collecting the build's garbage four times as often, 144 MiB.
	building.Lock()
	defer building.Unlock()
	defer debug.SetGCPercent(debug.SetGCPercent(25))
	h, fi, err := openHandle(s.path, s.kind)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			err = fmt.Errorf("geo: %s database %s: %w", s.kind, s.path, err)
		} else {
			err = fmt.Errorf("geo: %s database %s refused: %w", s.kind, s.path, err)
			s.refused = fi
		}
		s.fail(err, cur)
		return err
	}
	s.cur.Store(h)
	s.err.Store(nil)
	s.refused = nil
	s.log.Info("geo: database loaded", "kind", s.kind, "file", s.path,
		"database_type", h.info.DatabaseType, "build_time", h.info.BuildTime,
		"networks", h.info.Networks, "records", h.info.Records, "prefixes", h.info.Prefixes,
		"schema", h.info.Schema, "took", h.took.Round(time.Millisecond).String())
	// Building the tables left tens of megabytes of garbage, and a
	// replacement as much again, which GOGC would leave until the heap
	// doubled: with real data 193 MiB resident after a reload rather
	// than 100 (bench/memory). Loads come a few times a day.
	debug.FreeOSMemory()
	return nil
}

// fail records a load error and logs it once per distinct message.
func (s *slot) fail(err error, cur *handle) {
	msg := err.Error()
	if last := s.err.Load(); last != nil && *last == msg {
		return
	}
	s.err.Store(&msg)
	if cur != nil {
		s.log.Error("geo: database not loaded; still serving the previous one",
			"kind", s.kind, "file", s.path, "loaded_at", cur.info.LoadedAt, "err", err)
	} else if !errors.Is(err, fs.ErrNotExist) {
		s.log.Error("geo: database not loaded; its lookups return no data", "kind", s.kind, "file", s.path, "err", err)
	}
}

// dataSet describes the slot without waiting for a load in progress.
func (s *slot) dataSet() DataSet {
	ds := DataSet{Kind: s.kind.String(), File: s.path}
	if h := s.cur.Load(); h != nil {
		ds = h.info
		ds.Loaded = true
	}
	if err := s.err.Load(); err != nil {
		ds.Err = *err
	}
	return ds
}
