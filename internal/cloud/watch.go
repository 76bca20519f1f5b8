package cloud

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Config says which providers' files a Set loads.
type Config struct {
	// Files maps a provider name (see Providers) to its ranges file.
	Files map[string]string
	// Poll is how often the files are checked for changes; 0: 30s.
	Poll time.Duration
	// OnChange gets the new table whenever a provider's ranges change,
	// from Open and from Run. Nil: nobody is told.
	OnChange func(*Table)
	Logger   *slog.Logger // nil: discard
}

// Set keeps each configured provider's ranges loaded from its file, as
// geo.DB does for the GeoIP databases: a file that is replaced is
// loaded again, and one that turns bad or disappears leaves that
// provider's last good ranges serving, while the other providers go on
// being reloaded. Every error shows in DataSets and is logged once.
//
// Readers (Table, DataSets) never wait for a load: what they read is
// swapped whole after each one.
type Set struct {
	cfg       Config
	log       *slog.Logger
	mu        sync.Mutex // serialises loads; guards providers
	providers []*provider
	cur       atomic.Pointer[snapshot]
}

// provider is one configured provider's file and what was loaded from it.
type provider struct {
	name, file string
	loaded     stamp   // the file as last loaded; zero: nothing loaded
	refused    stamp   // the file as last refused, not to be parsed again
	ranges     []Range // the last good ranges
	ds         DataSet
	err        error
}

// stamp is what a file was when it was read: a replacement that keeps
// the old modification time (cp -p, rsync -t) seldom keeps the size too.
type stamp struct {
	mod  time.Time
	size int64
}

func stampOf(fi os.FileInfo) stamp { return stamp{fi.ModTime(), fi.Size()} }

// snapshot is what readers see.
type snapshot struct {
	table *Table
	sets  []DataSet
}

// Open loads the configured files. An unknown provider, or a file that is
// present but bad, is an error: at start a bad file is a mistake to fix,
// not one to serve around. A missing file leaves its provider without
// ranges until it appears.
func Open(cfg Config) (*Set, error) {
	for name := range cfg.Files {
		if parserOf(name) == nil {
			return nil, unknownProvider(name)
		}
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 30 * time.Second
	}
	s := &Set{cfg: cfg, log: cfg.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	for _, name := range Providers() {
		if file, ok := cfg.Files[name]; ok {
			s.providers = append(s.providers, &provider{name: name, file: file,
				ds: DataSet{Provider: name, File: file}})
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.providers {
		err := s.load(p, false)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			s.log.Warn("cloud ranges missing; rules for this provider are inactive until the file appears",
				"provider", p.name, "file", p.file)
		case err != nil:
			return nil, err
		}
	}
	s.publish(true)
	s.notify()
	return s, nil
}

// Run checks the files every poll interval until ctx is done.
func (s *Set) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.Poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.check(false)
		}
	}
}

// Check loads the files that changed now rather than at the next poll
// (a file the caller has just replaced), and returns the errors of
// those that could not be loaded.
func (s *Set) Check() error { return s.check(false) }

// Reload reads every file again now, changed or not, and returns the
// errors of those that could not be loaded (their last good ranges keep
// serving).
func (s *Set) Reload() error { return s.check(true) }

// check loads the files that changed since they were last loaded or
// refused, or all with force, and publishes the result if anything
// changed.
func (s *Set) check(force bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	changed := false
	var errs []error
	for _, p := range s.providers {
		before := p.ds.LoadedAt
		if err := s.load(p, force); err != nil {
			errs = append(errs, err)
		}
		changed = changed || !p.ds.LoadedAt.Equal(before)
	}
	s.publish(changed) // errors show even when no ranges changed
	if changed {
		s.notify()
	}
	return errors.Join(errs...)
}

// load (re)loads p's file if it changed, or with force. A failure keeps
// p's ranges, records the error and logs it once; it is returned too.
func (s *Set) load(p *provider, force bool) error {
	fi, err := os.Stat(p.file)
	switch {
	case errors.Is(err, fs.ErrNotExist) && p.loaded == (stamp{}):
		return s.fail(p, fmt.Errorf("cloud_ranges.%s: %s: %w", p.name, p.file, fs.ErrNotExist))
	case errors.Is(err, fs.ErrNotExist):
		return s.fail(p, fmt.Errorf("cloud_ranges.%s: %s is gone; the ranges loaded from it keep serving until it is back", p.name, p.file))
	case err != nil:
		return s.fail(p, fmt.Errorf("cloud_ranges.%s: %w", p.name, err))
	}
	st := stampOf(fi)
	if !force && (st == p.loaded || st == p.refused) {
		if st == p.loaded && p.err != nil {
			// As it was loaded: whatever went wrong since (the file moved
			// away and back, a bad copy replaced by the good one) is over.
			s.log.Info("cloud ranges file is back as it was loaded", "provider", p.name, "file", p.file, "was", p.err)
			p.err = nil
		}
		return p.err
	}
	ranges, ds, err := loadFile(p.name, p.file)
	if err != nil {
		p.refused = st
		return s.fail(p, fmt.Errorf("cloud_ranges.%s: %w", p.name, err))
	}
	if p.loaded != (stamp{}) {
		s.log.Info("cloud ranges reloaded", "provider", p.name, "file", p.file, "prefixes", len(ranges))
	}
	ds.LoadedAt = time.Now()
	ds.Loaded = true
	p.ranges, p.ds, p.err, p.loaded, p.refused = ranges, ds, nil, st, stamp{}
	return nil
}

// fail records err as p's and logs it unless it is what was logged last.
func (s *Set) fail(p *provider, err error) error {
	if p.err == nil || p.err.Error() != err.Error() {
		if p.loaded != (stamp{}) {
			s.log.Error("cloud ranges not reloaded; the last good ones keep serving", "provider", p.name, "err", err)
		} else if !errors.Is(err, fs.ErrNotExist) {
			s.log.Error("cloud ranges not loaded; rules for this provider are inactive", "provider", p.name, "err", err)
		}
	}
	p.err = err
	return err
}

// publish builds what readers see from the providers' current state,
// with a new table if rebuild is set. Callers hold mu.
func (s *Set) publish(rebuild bool) {
	snap := &snapshot{sets: make([]DataSet, 0, len(s.providers))}
	var sets [][]Range
	for _, p := range s.providers {
		sets = append(sets, p.ranges)
		ds := p.ds
		if p.err != nil {
			ds.Err = p.err.Error()
		}
		snap.sets = append(snap.sets, ds)
	}
	if rebuild {
		snap.table = NewTable(sets...)
	} else {
		snap.table = s.cur.Load().table
	}
	s.cur.Store(snap)
}

func (s *Set) notify() {
	if s.cfg.OnChange != nil {
		s.cfg.OnChange(s.Table())
	}
}

// Table returns the table of every provider's current ranges.
func (s *Set) Table() *Table { return s.cur.Load().table }

// DataSets describes every configured provider's file, in the order of
// Providers, loaded or not.
func (s *Set) DataSets() []DataSet { return slices.Clone(s.cur.Load().sets) }
