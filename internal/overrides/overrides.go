// Package overrides is the one path every change to the run-time
// overrides takes, whichever door it came in by (the admin API, the admin
// page, the loader): validate, write to the store, apply to the engine,
// answer with the version. It also follows the store's change
// notifications, so that writes by other replicas reach this one's
// engine.
//
// The service keeps the set it last applied, and the store version it
// came from. A write of its own that lands right after that version is
// applied as a change to the set; anything else (another writer got in
// between, a notification of a version it has not seen) reloads the
// whole set from the store.
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
	// SetOverrides compiles the overrides into the next snapshot; an
	// override that does not validate is left out and reported.
	SetOverrides([]rules.Override) error
}

// Config is what New needs.
type Config struct {
	Store  store.Store
	Engine Engine
	Logger *slog.Logger     // nil: discard
	Now    func() time.Time // nil: time.Now
}

// ValidationError is an override that cannot be written as it is. Its
// message starts with the field at fault ("match.country: ...").
type ValidationError struct{ Err error }

func (e *ValidationError) Error() string { return e.Err.Error() }
func (e *ValidationError) Unwrap() error { return e.Err }

func invalid(err error) error { return &ValidationError{err} }

// Service changes overrides and keeps the engine up to date with them.
// It is safe for concurrent use.
type Service struct {
	store  store.Store
	engine Engine
	log    *slog.Logger
	now    func() time.Time

	mu      sync.Mutex // serialises applying; guards the fields below
	applied map[string]rules.Override
	version uint64 // the store version applied is valid once loaded
	loaded  bool
	failed  error // the last store failure, until a store call succeeds
}

// New returns a service that has applied the store's current overrides
// to the engine. An unreadable store is an error.
func New(ctx context.Context, cfg Config) (*Service, error) {
	s := &Service{store: cfg.Store, engine: cfg.Engine, log: cfg.Logger, now: cfg.Now}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if err := s.reload(ctx, 0); err != nil {
		return nil, err
	}
	return s, nil
}

// List returns every stored override, sorted by ID, and the version.
func (s *Service) List(ctx context.Context) ([]rules.Override, uint64, error) {
	return s.store.List(ctx)
}

// Get returns the stored override with the ID, or store.ErrNotFound.
func (s *Service) Get(ctx context.Context, id string) (rules.Override, error) {
	return s.store.Get(ctx, id)
}

// StoreError is the last error the store answered a write or a reload
// with, or nil once a later one succeeded: while it is set, the store is
// not taking changes, and this replica may be serving an old set.
func (s *Service) StoreError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failed
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

// Version is the store version the engine has.
func (s *Service) Version() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.version
}

// Create stores a new override: an ID is made up if it has none, and
// created_at and created_by default to now and actor. It fails with
// store.ErrConflict when the ID exists, and a *ValidationError when the
// override is not valid. The change is applied here before it returns.
func (s *Service) Create(ctx context.Context, actor string, o rules.Override) (rules.Override, uint64, error) {
	o, err := s.prepare(o, rules.Override{}, actor)
	if err != nil {
		return rules.Override{}, 0, err
	}
	v, err := s.store.Create(ctx, o)
	s.stored(err)
	if err != nil {
		return rules.Override{}, 0, err
	}
	s.applyWrite(ctx, v, "create", actor, o.ID, &o)
	return o, v, nil
}

// Put creates or replaces the override with o's ID; created reports
// which. A replacement that leaves out created_at and created_by keeps
// the old ones.
func (s *Service) Put(ctx context.Context, actor string, o rules.Override) (_ rules.Override, created bool, version uint64, err error) {
	if o.ID == "" {
		return rules.Override{}, false, 0, invalid(errors.New("id: empty"))
	}
	prev, err := s.store.Get(ctx, o.ID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		created = true
	case err != nil:
		return rules.Override{}, false, 0, err
	}
	o, err = s.prepare(o, prev, actor)
	if err != nil {
		return rules.Override{}, false, 0, err
	}
	v, err := s.store.Put(ctx, o)
	s.stored(err)
	if err != nil {
		return rules.Override{}, false, 0, err
	}
	op := "replace"
	if created {
		op = "create"
	}
	s.applyWrite(ctx, v, op, actor, o.ID, &o)
	return o, created, v, nil
}

// Delete removes the override with the ID, or fails with
// store.ErrNotFound.
func (s *Service) Delete(ctx context.Context, actor, id string) (uint64, error) {
	v, err := s.store.Delete(ctx, id)
	s.stored(err)
	if err != nil {
		return 0, err
	}
	s.applyWrite(ctx, v, "delete", actor, id, nil)
	return v, nil
}

// prepare fills in what o leaves out, from prev (the override it
// replaces, if any) or the defaults, and validates it.
func (s *Service) prepare(o, prev rules.Override, actor string) (rules.Override, error) {
	// Not cut to the second: of two overrides with the same match the
	// newer wins, and a tie would go to whichever ID sorts first.
	now := s.now().UTC()
	if o.ID == "" {
		o.ID = newID()
	}
	o.CreatedAt = cmp.Or(o.CreatedAt, prev.CreatedAt, now)
	o.CreatedBy = cmp.Or(o.CreatedBy, prev.CreatedBy, actor)
	if !o.ExpiresAt.IsZero() && !o.ExpiresAt.After(now) {
		return o, invalid(fmt.Errorf("expires_at: %s is not in the future", o.ExpiresAt.Format(time.RFC3339)))
	}
	if err := s.engine.ValidateOverride(o); err != nil {
		return o, invalid(err)
	}
	return o, nil
}

func newID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "ovr-" + hex.EncodeToString(b[:])
}

// applyWrite makes the write that produced version v take effect here:
// o is the override written, nil for a delete. The write has succeeded
// whatever happens here; a failed reload is logged, and the next change
// notification tries again.
func (s *Service) applyWrite(ctx context.Context, v uint64, op, actor, id string, o *rules.Override) {
	s.log.LogAttrs(ctx, slog.LevelInfo, "override changed", slog.String("op", op), slog.String("id", id),
		slog.Uint64("version", v), slog.String("by", actor))
	s.mu.Lock()
	switch {
	case s.loaded && v <= s.version:
		// A notification got here first.
	case s.loaded && v == s.version+1:
		if o == nil {
			delete(s.applied, id)
		} else {
			s.applied[id] = *o
		}
		s.apply(v)
	default:
		s.mu.Unlock()
		if err := s.reload(ctx, v); err != nil {
			s.log.Warn("overrides not reloaded after a write; the last snapshot keeps serving until the next change", "err", err)
		}
		return
	}
	s.mu.Unlock()
}

// Run applies the store's changes from other writers until ctx is done.
func (s *Service) Run(ctx context.Context) {
	changes := s.store.Changes(ctx)
	// A write between New's load and this subscription sent no
	// notification here: catch up once (a no-op when nothing changed).
	if err := s.reload(ctx, 0); err != nil && ctx.Err() == nil {
		s.log.Warn("overrides not reloaded; the last snapshot keeps serving", "err", err)
	}
	for v := range changes {
		if err := s.reload(ctx, v); err != nil && ctx.Err() == nil {
			s.log.Warn("overrides not reloaded; the last snapshot keeps serving", "err", err)
		}
	}
}

// reload reads the whole set from the store and applies it, unless the
// engine already has version min or a later one.
func (s *Service) reload(ctx context.Context, min uint64) error {
	s.mu.Lock()
	err := s.reloadLocked(ctx, min)
	s.mu.Unlock()
	if ctx.Err() == nil {
		s.stored(err)
	}
	return err
}

func (s *Service) reloadLocked(ctx context.Context, min uint64) error {
	if s.loaded && min != 0 && s.version >= min {
		return nil
	}
	ovs, v, err := s.store.List(ctx)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if s.loaded && v == s.version {
		return nil
	}
	s.applied = make(map[string]rules.Override, len(ovs))
	for _, o := range ovs {
		s.applied[o.ID] = o
	}
	s.apply(v)
	return nil
}

// apply compiles the applied set into the engine as version v. Callers
// hold mu.
func (s *Service) apply(v uint64) {
	ovs := slices.Collect(maps.Values(s.applied))
	if err := s.engine.SetOverrides(ovs); err != nil {
		s.log.Warn("some overrides do not apply", "version", v, "err", err)
	}
	s.version, s.loaded = v, true
	s.log.Debug("overrides applied", "version", v, "count", len(ovs))
}
