// Package overrides is the one path every run-time change to routing
// takes, whichever door it came in by (the admin API, the admin page, the
// loader): overrides and registry drains are validated, written to the
// store, applied to the engine, and answered with the store's version.
// It also follows the store's changes, so that writes by other replicas
// reach this one's engine.
//
// The engine keeps the set the service last applied, and the service the
// store version it came from. A change that comes right after that version (its own
// write, or another replica's as the store reports it) is applied as a
// change to the set; anything else (a gap, a new epoch, a Whole change)
// reloads everything from the store.
package overrides

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/reghost/reghost/internal/rules"
	"github.com/reghost/reghost/internal/store"
)

// Engine is what the service needs of the decision engine.
type Engine interface {
	// ValidateOverride checks an override against the configured
	// registries.
	ValidateOverride(rules.Override) error
	// SetOverrides makes ovs the whole set, compiled into the next
	// snapshot; an override that does not validate is left out and
	// reported.
	SetOverrides([]rules.Override) error
	// UpdateOverrides changes the set by what one write changed.
	UpdateOverrides(put []rules.Override, deleted []string) error
	// Overrides returns the set applied.
	Overrides() []rules.Override
	// SetDrained compiles the drained registries into the next snapshot.
	SetDrained(map[string]bool)
	// Known reports whether a registry is configured.
	Known(registry string) bool
}

// Config is what New needs.
type Config struct {
	Store  store.Store
	Engine Engine
	Logger *slog.Logger     // nil: discard
	Now    func() time.Time // nil: time.Now
	// ExpiredRetention is how long an expired override stays in the
	// store, listed as expired, before Run removes it; 7 days.
	ExpiredRetention time.Duration
	// Written, if set, is told of every override written through the
	// service, after the write (the server warns of a cloud region no
	// loaded ranges file publishes).
	Written func(rules.Override)
	// Snapshot, if set, is a file on local disk that keeps the set last
	// applied, written at most once a second while it changes (less
	// often for a large set; see keepSnapshot): a server
	// that starts while the store cannot be read serves it.
	Snapshot string
	// Seen, if set, is told the version of the snapshot a server started
	// from (the Redis store then knows an empty Redis lost data).
	Seen func(store.Version)
}

// The defaults and limits of Config and of what the service accepts.
const (
	DefaultExpiredRetention = 7 * 24 * time.Hour
	// MaxClockSkew is how far in the future a created_at may be: of two
	// overrides with the same match the newer wins, so one dated far
	// ahead would win for ever.
	MaxClockSkew = 5 * time.Minute
	// Expirer is who removes expired overrides, in the audit trail.
	Expirer = "reghost (expiry)"
)

// ValidationError is a change that cannot be made as it is. Its message
// starts with the field at fault ("match.country: ...").
type ValidationError struct{ Err error }

func (e *ValidationError) Error() string { return e.Err.Error() }
func (e *ValidationError) Unwrap() error { return e.Err }

func invalid(err error) error { return &ValidationError{err} }

// Service changes overrides and drains and keeps the engine up to date
// with them. It is safe for concurrent use.
type Service struct {
	store  store.Store
	engine Engine
	log    *slog.Logger
	now    func() time.Time

	reloadMu     sync.Mutex // serialises reloads, so that an older load never lands after a newer one
	retention    time.Duration
	written      func(rules.Override)
	snapshotPath string
	seen         func(store.Version)

	mu      sync.Mutex // serialises applying; guards the fields below
	drains  map[string]store.Drain
	version store.Version // the store version applied, valid once loaded
	loaded  bool
	// fromSnapshot: what is applied came from the snapshot on disk, the
	// store being unreadable at start.
	fromSnapshot bool
	// snapshotWritten is when keepSnapshot last wrote the file.
	snapshotWritten time.Time
	failed          error // the last store failure, until a store call succeeds
}

// New returns a service that has applied the store's current state to
// the engine. A store that cannot be read is an error, unless it is
// unavailable (a shared Redis that is down) and Config.Snapshot is set:
// then the snapshot (or, without one, nothing) is applied and the
// trouble reported until the store can be read.
func New(ctx context.Context, cfg Config) (*Service, error) {
	s := &Service{store: cfg.Store, engine: cfg.Engine, log: cfg.Logger, now: cfg.Now,
		retention: cmp.Or(cfg.ExpiredRetention, DefaultExpiredRetention), written: cfg.Written,
		snapshotPath: cfg.Snapshot, seen: cfg.Seen}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if err := s.reload(ctx); err != nil {
		// A store that is down (a shared Redis) is not a reason not to
		// serve: the snapshot, or the config alone, serves until it is
		// back. A store that answers with something it cannot read is.
		if !errors.Is(err, store.ErrUnavailable) || s.snapshotPath == "" {
			return nil, err
		}
		if err := s.startFromSnapshot(err); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// List returns every stored override, sorted by ID, and the version.
func (s *Service) List(ctx context.Context) ([]rules.Override, store.Version, error) {
	st, err := s.store.Load(ctx)
	return st.Overrides, st.Version, err
}

// Get returns the stored override with the ID, or store.ErrNotFound.
func (s *Service) Get(ctx context.Context, id string) (rules.Override, error) {
	return s.store.Get(ctx, id)
}

// Drains returns the drained registries, as applied here.
func (s *Service) Drains() []store.Drain {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.SortedFunc(maps.Values(s.drains), func(a, b store.Drain) int { return cmp.Compare(a.Registry, b.Registry) })
}

// Audit returns the most recent changes, newest first.
func (s *Service) Audit(ctx context.Context, n int) ([]store.AuditEntry, error) {
	return s.store.Audit(ctx, n)
}

// Now is the time by the service's clock: what expiry is judged by.
func (s *Service) Now() time.Time { return s.now() }

// Applied returns the overrides the engine has, sorted by ID.
func (s *Service) Applied() []rules.Override { return s.engine.Overrides() }

// Version is the store version the engine has.
func (s *Service) Version() store.Version {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.version
}

// Snapshot reports whether what is applied came from the snapshot on
// local disk (the store could not be read at start, and has not been
// since), and when this server last wrote that file (zero: not yet).
func (s *Service) Snapshot() (serving bool, written time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fromSnapshot, s.snapshotWritten
}

// StoreError is the store's trouble: the last error it answered a call
// with, until one succeeds, or what it reports of itself. While it is
// set, changes may not be saved, and this replica may be serving an old
// set.
func (s *Service) StoreError() error {
	s.mu.Lock()
	failed := s.failed
	s.mu.Unlock()
	return cmp.Or(failed, s.store.Health())
}

// stored notes how a store call went: a failure is logged (the first of
// a run at ERROR) and kept for StoreError until a call succeeds.
func (s *Service) stored(err error) {
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrConflict) {
		err = nil // the store answered
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case err != nil && s.failed == nil:
		s.log.Error("the override store failed; changes are not being saved", "err", err)
	case err == nil && s.failed != nil:
		s.log.Info("the override store works again", "was", s.failed)
	}
	s.failed = err
}

// Create stores a new override: an ID is made up if it has none, and
// created_at and created_by default to now and who. It fails with
// store.ErrConflict when the ID exists, and a *ValidationError when the
// override is not valid. The change is applied here before it returns.
func (s *Service) Create(ctx context.Context, who string, o rules.Override) (rules.Override, store.Version, error) {
	o, err := s.prepare(o, rules.Override{}, who)
	if err != nil {
		return rules.Override{}, store.Version{}, err
	}
	v, err := s.store.Create(ctx, who, o)
	s.stored(err)
	if err != nil {
		return rules.Override{}, store.Version{}, err
	}
	s.applyWrite(ctx, store.Change{Version: v, Override: &o})
	s.tell(o)
	return o, v, nil
}

func (s *Service) tell(o rules.Override) {
	if s.written != nil {
		s.written(o)
	}
}

// Put creates or replaces the override with o's ID; created reports
// which. A replacement that leaves out created_at and created_by keeps
// the old ones.
func (s *Service) Put(ctx context.Context, who string, o rules.Override) (_ rules.Override, created bool, _ store.Version, _ error) {
	if o.ID == "" {
		return rules.Override{}, false, store.Version{}, invalid(errors.New("id: empty"))
	}
	prev, err := s.store.Get(ctx, o.ID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		created = true
	case err != nil:
		s.stored(err)
		return rules.Override{}, false, store.Version{}, err
	}
	if o, err = s.prepare(o, prev, who); err != nil {
		return rules.Override{}, false, store.Version{}, err
	}
	v, err := s.store.Put(ctx, who, o)
	s.stored(err)
	if err != nil {
		return rules.Override{}, false, store.Version{}, err
	}
	s.applyWrite(ctx, store.Change{Version: v, Override: &o})
	s.tell(o)
	return o, created, v, nil
}

// Delete removes the override with the ID, or fails with
// store.ErrNotFound.
func (s *Service) Delete(ctx context.Context, who, id string) (store.Version, error) {
	v, err := s.store.Delete(ctx, who, id)
	s.stored(err)
	if err != nil {
		return store.Version{}, err
	}
	s.applyWrite(ctx, store.Change{Version: v, Deleted: id})
	return v, nil
}

// Replace makes ovs the whole set of overrides, in one step: an import
// or a restore. Every override is prepared and validated as Create would
// (created_by defaults to who), but may have expired already, as a set
// listed and written back holds those kept until the retention ends; one
// that is not valid fails the whole call with a *ValidationError naming
// it, and nothing is changed.
func (s *Service) Replace(ctx context.Context, who string, ovs []rules.Override) (store.Version, error) {
	ovs, err := PrepareSet(s.engine, s.now(), who, ovs)
	if err != nil {
		return store.Version{}, err
	}
	v, err := s.store.Replace(ctx, who, ovs)
	s.stored(err)
	if err != nil {
		return store.Version{}, err
	}
	s.applyWrite(ctx, store.Change{Version: v})
	return v, nil
}

// PrepareSet returns ovs as Replace would store them (IDs made up,
// created_at and created_by filled in, now being the time), or the
// *ValidationError Replace would fail with, which wraps an *ItemError
// naming the override at fault. It changes nothing, and needs no store:
// an import's dry run, also where no store exists yet. ovs is not
// modified.
func PrepareSet(e Engine, now time.Time, who string, ovs []rules.Override) ([]rules.Override, error) {
	out := make([]rules.Override, len(ovs))
	seen := make(map[string]int, len(ovs))
	for i := range ovs {
		o, err := prepare(e, now, ovs[i], rules.Override{}, who, true)
		if err != nil {
			return nil, invalid(&ItemError{Index: i, ID: o.ID, Err: err})
		}
		if j, dup := seen[o.ID]; dup {
			return nil, invalid(&ItemError{Index: i, ID: o.ID, Err: fmt.Errorf("id: %q is also overrides[%d]'s", o.ID, j)})
		}
		seen[o.ID] = i
		out[i] = o
	}
	return out, nil
}

// ItemError is one override of a set that is not valid: its place in
// the set, its ID, and why (a message that starts with the field).
type ItemError struct {
	Index int
	ID    string
	Err   error
}

func (e *ItemError) Error() string {
	return fmt.Sprintf("overrides[%d] (%s): %v", e.Index, e.ID, e.Err)
}

func (e *ItemError) Unwrap() error { return e.Err }

// Drain takes a registry out of routing on every replica.
func (s *Service) Drain(ctx context.Context, who, registry, note string) (store.Version, error) {
	if !s.engine.Known(registry) {
		return store.Version{}, fmt.Errorf("%w: registry %q is not configured", store.ErrNotFound, registry)
	}
	d := store.Drain{Registry: registry, By: who, At: s.now().UTC(), Note: note}
	v, err := s.store.Drain(ctx, who, d)
	s.stored(err)
	if err != nil {
		return store.Version{}, err
	}
	s.applyWrite(ctx, store.Change{Version: v, Drain: &d})
	return v, nil
}

// Undrain puts a drained registry back into routing.
func (s *Service) Undrain(ctx context.Context, who, registry string) (store.Version, error) {
	v, err := s.store.Undrain(ctx, who, registry)
	s.stored(err)
	if err != nil {
		return store.Version{}, err
	}
	s.applyWrite(ctx, store.Change{Version: v, Undrained: registry})
	return v, nil
}

// prepare fills in what o leaves out, from prev (the override it
// replaces, if any) or the defaults, and validates it.
func (s *Service) prepare(o, prev rules.Override, who string) (rules.Override, error) {
	return prepare(s.engine, s.now(), o, prev, who, false)
}

// prepare is Service.prepare with the engine and the time given;
// restoring lets an override that has expired through: a set written
// back as it was listed holds those still kept.
func prepare(e Engine, now time.Time, o, prev rules.Override, who string, restoring bool) (rules.Override, error) {
	// Not cut to the second: of two overrides with the same match the
	// newer wins, and a tie would go to whichever ID sorts first.
	now = now.UTC()
	if o.ID == "" {
		o.ID = newID()
	}
	o.CreatedAt = cmp.Or(o.CreatedAt, prev.CreatedAt, now)
	o.CreatedBy = cmp.Or(o.CreatedBy, prev.CreatedBy, who)
	if o.CreatedAt.After(now.Add(MaxClockSkew)) {
		return o, invalid(fmt.Errorf("created_at: %s is in the future; leave it out to mean now", o.CreatedAt.Format(time.RFC3339)))
	}
	if !restoring && !o.ExpiresAt.IsZero() && !o.ExpiresAt.After(now) {
		return o, invalid(fmt.Errorf("expires_at: %s is not in the future", o.ExpiresAt.Format(time.RFC3339)))
	}
	if err := e.ValidateOverride(o); err != nil {
		return o, invalid(err)
	}
	return o, nil
}

func newID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "ovr-" + hex.EncodeToString(b[:])
}

// applyWrite makes a write of this service's take effect here. The write
// has succeeded whatever happens here; a failed reload is logged, and
// the next change tries again.
func (s *Service) applyWrite(ctx context.Context, c store.Change) {
	if err := s.apply(ctx, c); err != nil {
		s.log.Warn("a change was saved but not applied here; the next change will try again", "version", c.Version.String(), "err", err)
	}
}

// Run applies the store's changes from other writers, and removes
// overrides expired for longer than the retention, until ctx is done.
func (s *Service) Run(ctx context.Context) {
	changes := s.store.Changes(ctx)
	cleanup := time.NewTicker(min(s.retention/10, 10*time.Minute))
	defer cleanup.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { s.keepSnapshot(ctx) })
	// A write between New's load and this subscription sent no
	// notification here: catch up once (a no-op when nothing changed).
	if err := s.apply(ctx, store.Change{}); err != nil && ctx.Err() == nil {
		s.log.Warn("overrides not reloaded; the last snapshot keeps serving", "err", err)
	}
	s.RemoveExpired(ctx)
	batch := make([]store.Change, 0, 256)
	for {
		select {
		case c, ok := <-changes:
			if !ok {
				return
			}
			// Whatever else has arrived is applied with c: while a
			// change compiles, more queue, and are compiled once.
			batch := append(batch[:0], c)
			for more := true; more && len(batch) < cap(batch); {
				select {
				case c, ok := <-changes:
					if more = ok; ok {
						batch = append(batch, c)
					}
				default:
					more = false
				}
			}
			if err := s.applyAll(ctx, batch); err != nil && ctx.Err() == nil {
				s.log.Warn("overrides not reloaded; the last snapshot keeps serving", "err", err)
			}
		case <-cleanup.C:
			s.RemoveExpired(ctx)
		}
	}
}

// RemoveExpired deletes the overrides that expired longer than the
// retention ago. Replicas may do it at once: a delete that finds the
// override gone already changes nothing.
func (s *Service) RemoveExpired(ctx context.Context) {
	cutoff := s.now().Add(-s.retention)
	var ids []string
	for _, o := range s.engine.Overrides() {
		if o.Expired(cutoff) {
			ids = append(ids, o.ID)
		}
	}
	for _, id := range ids {
		_, err := s.Delete(ctx, Expirer, id)
		switch {
		case err == nil:
			s.log.Info("removed an override expired for longer than the retention", "id", id, "retention", s.retention.String())
		case !errors.Is(err, store.ErrNotFound) && ctx.Err() == nil:
			s.log.Warn("could not remove an expired override; will try again", "id", id, "err", err)
			return
		}
	}
}

// apply brings the engine to c's version: as a change to the applied set
// when c comes right after it, else by reloading. A change the engine
// already has is skipped. The zero Change checks the store's version and
// reloads if it differs.
func (s *Service) apply(ctx context.Context, c store.Change) error {
	if c.Version == (store.Version{}) {
		v, err := s.store.Version(ctx)
		if serving, _ := s.Snapshot(); err != nil || v == s.Version() && !serving {
			return err
		}
		return s.reload(ctx)
	}
	return s.applyAll(ctx, []store.Change{c})
}

// applyAll applies changes, in version order, as one change to the
// engine: the last write to each override wins, and the set is compiled
// once. A gap, or a change that says to reload, reloads instead.
func (s *Service) applyAll(ctx context.Context, changes []store.Change) error {
	s.mu.Lock()
	if s.fromSnapshot {
		// The store answers again: read it whole, to leave the
		// snapshot behind.
		s.mu.Unlock()
		return s.reload(ctx)
	}
	v := s.version
	ovs := map[string]*rules.Override{} // nil: deleted
	drains := map[string]*store.Drain{} // nil: undrained
	for _, c := range changes {
		switch {
		case c.Version.Epoch == v.Epoch && c.Version.N <= v.N:
			continue // applied already
		case !v.Next(c.Version) || c.Whole():
			s.mu.Unlock()
			return s.reload(ctx)
		case c.Override != nil:
			ovs[c.Override.ID] = c.Override
		case c.Deleted != "":
			ovs[c.Deleted] = nil
		case c.Drain != nil:
			drains[c.Drain.Registry] = c.Drain
		case c.Undrained != "":
			drains[c.Undrained] = nil
		}
		v = c.Version
	}
	defer s.mu.Unlock()
	if len(ovs) > 0 {
		var put []rules.Override
		var deleted []string
		for id, o := range ovs {
			if o == nil {
				deleted = append(deleted, id)
			} else {
				put = append(put, *o)
			}
		}
		s.report(s.engine.UpdateOverrides(put, deleted))
	}
	if len(drains) > 0 {
		for registry, d := range drains {
			if d == nil {
				delete(s.drains, registry)
			} else {
				s.drains[registry] = *d
			}
		}
		s.compileDrains()
	}
	s.version = v
	return nil
}

// reload reads everything from the store and applies it, unless it is
// older than what the engine has: a store that went back (a Redis that
// lost its data) does not take the engine back with it. That is logged
// and reported until the store moves past what is applied, or a restore
// or an accepted empty set starts a new epoch.
func (s *Service) reload(ctx context.Context) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	applied := s.Version()
	st, err := s.store.Load(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.stored(err)
		}
		return fmt.Errorf("store: %w", err)
	}
	// Behind what was applied before the load began, the store went
	// back; behind only what was applied since, the load is just older
	// than this server's own writes made meanwhile.
	if behind := s.behind(st.Version, applied); behind != nil {
		return behind
	}
	s.stored(nil)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.loaded && !s.version.Less(st.Version) {
		if s.fromSnapshot && st.Version == s.version {
			s.log.Info("the store can be read again; it holds the set kept on local disk", "version", st.Version.String())
			s.fromSnapshot = false
		}
		return nil // a change got here first, or nothing changed
	}
	s.report(s.engine.SetOverrides(st.Overrides))
	s.drains = make(map[string]store.Drain, len(st.Drains))
	for _, d := range st.Drains {
		s.drains[d.Registry] = d
	}
	s.compileDrains()
	if s.fromSnapshot {
		s.log.Info("the store can be read again; serving what it holds", "version", st.Version.String())
	}
	s.version, s.loaded, s.fromSnapshot = st.Version, true, false
	s.log.Debug("overrides reloaded", "version", st.Version.String(), "overrides", len(st.Overrides), "drains", len(st.Drains))
	return nil
}

// behind reports, and keeps for StoreError, a store whose version v is
// behind the version applied when it was read.
func (s *Service) behind(v, applied store.Version) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.loaded || !v.Less(applied) {
		return nil
	}
	err := fmt.Errorf("%w: the store is at version %s, behind the %s applied here; serving what was applied until the store is restored",
		store.ErrUnavailable, v, s.version)
	if s.failed == nil || s.failed.Error() != err.Error() {
		s.log.Error("the override store went back; keeping the overrides applied", "store", v.String(), "applied", s.version.String())
	}
	s.failed = err
	return err
}

// report logs overrides the engine left out (they name a registry that
// is no longer configured).
func (s *Service) report(err error) {
	if err != nil {
		s.log.Warn("some overrides do not apply", "err", err)
	}
}

// compileDrains hands the applied drains to the engine. Callers hold mu.
func (s *Service) compileDrains() {
	drained := make(map[string]bool, len(s.drains))
	for name := range s.drains {
		drained[name] = true
	}
	s.engine.SetDrained(drained)
}
