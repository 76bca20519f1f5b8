// Package store keeps the overrides edited at run time: it declares the
// Store the server reads and writes them through, and provides File, the
// embedded single-node implementation kept in one JSON file in the data
// directory (the default). A Redis implementation fits the same
// interface: a hash of overrides keyed by ID, a version counter bumped
// and published in the same transaction as every write, and pub/sub plus
// a version poll behind Changes.
package store

import (
	"context"
	"errors"

	"github.com/reghost/reghost/internal/rules"
)

// Errors callers act on. They are wrapped with details (the ID, the path,
// the cause), so compare with errors.Is.
var (
	// ErrNotFound: no override has the ID (admin API: 404).
	ErrNotFound = errors.New("store: override not found")
	// ErrConflict: Create with an ID that exists (admin API: 409).
	ErrConflict = errors.New("store: override already exists")
	// ErrUnavailable: the store cannot serve the call now (Redis down,
	// disk full, data directory gone, store closed). Nothing was
	// changed; the caller keeps serving its last snapshot and may retry
	// (admin API: 503).
	ErrUnavailable = errors.New("store: unavailable")
	// ErrLocked: another process has the store open for writing.
	ErrLocked = errors.New("store: locked by another process")
)

// Store holds the run-time overrides. Every write bumps the version by
// one; a version names one state of the whole set, so a reader that has
// built a snapshot from List at version v can skip any notification of v
// or less.
//
// Values passed in and returned are copies: callers may keep and modify
// them. The store validates nothing but the ID being non-empty; callers
// validate overrides (rules.Override.Validate) before writing them.
type Store interface {
	// List returns every override, sorted by ID, and the version they
	// are at.
	List(ctx context.Context) (overrides []rules.Override, version uint64, err error)
	// Get returns the override with the ID, or ErrNotFound.
	Get(ctx context.Context, id string) (rules.Override, error)
	// Put creates the override or replaces the one with the same ID, and
	// returns the new version.
	Put(ctx context.Context, o rules.Override) (version uint64, err error)
	// Create stores the override, or fails with ErrConflict if its ID
	// exists, and returns the new version.
	Create(ctx context.Context, o rules.Override) (version uint64, err error)
	// Delete removes the override with the ID, or fails with
	// ErrNotFound, and returns the new version.
	Delete(ctx context.Context, id string) (version uint64, err error)
	// Version returns the current version.
	Version(ctx context.Context) (uint64, error)
	// Changes returns a channel that receives the new version after
	// every write, by this replica or another. Notifications coalesce:
	// a slow reader may miss intermediate versions but always gets the
	// latest, and writers never wait for readers. The channel is closed
	// when ctx is done or the store is closed.
	//
	// To miss nothing, call Changes before List, then reload whenever a
	// received version is above the one List returned.
	Changes(ctx context.Context) <-chan uint64
	// Close releases the store and closes every Changes channel. Calls
	// after Close fail with ErrUnavailable.
	Close() error
}
