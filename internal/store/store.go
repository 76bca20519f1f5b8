// Package store keeps what operators change at run time: overrides and
// registry drains, with an audit trail of who changed what. It declares
// the Store the server reads and writes them through, and provides Bolt,
// the embedded single-node implementation on an embedded database in the
// data directory (the default). The Redis implementation shares the same
// interface and passes the same conformance suite (storetest).
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/reghost/reghost/internal/rules"
)

// Errors callers act on. They are wrapped with details (the ID, the path,
// the cause), so compare with errors.Is.
var (
	// ErrNotFound: no override has the ID, or the registry is not
	// drained (admin API: 404).
	ErrNotFound = errors.New("store: not found")
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

// Version names one state of the whole store. Within an epoch every
// write bumps N by one. A new epoch starts when the state is replaced
// whole (Replace: an import or a restore) or when a store finds that it
// lost writes (a Redis that came back empty): a reader that sees a new
// epoch reloads, even if N looks familiar.
type Version struct {
	Epoch uint64 `json:"epoch"`
	N     uint64 `json:"n"`
}

func (v Version) String() string { return fmt.Sprintf("%d.%d", v.Epoch, v.N) }

// Next reports whether w is the write right after v.
func (v Version) Next(w Version) bool { return w.Epoch == v.Epoch && w.N == v.N+1 }

// Less reports whether v comes before w. Epochs only grow.
func (v Version) Less(w Version) bool {
	return v.Epoch < w.Epoch || v.Epoch == w.Epoch && v.N < w.N
}

// Drain takes a registry out of routing while its health checks go on.
type Drain struct {
	Registry string    `json:"registry"`
	By       string    `json:"by"`
	At       time.Time `json:"at"`
	Note     string    `json:"note,omitempty"`
}

// State is everything the store holds, at one version.
type State struct {
	Version   Version
	Overrides []rules.Override // sorted by ID
	Drains    []Drain          // sorted by registry
}

// Change is what one write changed, as Changes delivers it. Exactly one
// of Override, Deleted, Drain and Undrained is set, or none: then the
// reader must reload (the set was replaced, or notifications were lost).
type Change struct {
	Version   Version
	Override  *rules.Override // created or replaced
	Deleted   string          // the ID of a deleted override
	Drain     *Drain          // a registry drained
	Undrained string          // a registry undrained
}

// Whole reports whether c says nothing of what changed: reload.
func (c Change) Whole() bool {
	return c.Override == nil && c.Deleted == "" && c.Drain == nil && c.Undrained == ""
}

// AuditEntry is one change in the audit trail: who made it, when, and
// the override or drain before and after (JSON; null when there was
// none).
type AuditEntry struct {
	At      time.Time       `json:"at"`
	Who     string          `json:"who"`
	Op      string          `json:"op"` // create, replace, delete, replace-all, drain, undrain
	ID      string          `json:"id"` // the override's ID or the registry's name; "" for replace-all
	Version Version         `json:"version"`
	Before  json.RawMessage `json:"before"`
	After   json.RawMessage `json:"after"`
}

// Audit operations.
const (
	OpCreate     = "create"
	OpReplace    = "replace"
	OpDelete     = "delete"
	OpReplaceAll = "replace-all"
	OpDrain      = "drain"
	OpUndrain    = "undrain"
)

// Store holds overrides and drains. Values passed in and returned are
// copies: callers may keep and modify them. The store validates nothing
// but IDs and registry names being non-empty; callers validate
// overrides (rules.Override.Validate) before writing them. who, on every
// write, is recorded in the audit trail.
type Store interface {
	// Load returns everything, at one version.
	Load(ctx context.Context) (State, error)
	// Get returns the override with the ID, or ErrNotFound.
	Get(ctx context.Context, id string) (rules.Override, error)
	// Create stores the override, or fails with ErrConflict if its ID
	// exists.
	Create(ctx context.Context, who string, o rules.Override) (Version, error)
	// Put creates the override or replaces the one with the same ID.
	Put(ctx context.Context, who string, o rules.Override) (Version, error)
	// Delete removes the override with the ID, or fails with
	// ErrNotFound.
	Delete(ctx context.Context, who, id string) (Version, error)
	// Replace makes ovs the whole set of overrides, in one step, and
	// starts a new epoch. Drains are kept.
	Replace(ctx context.Context, who string, ovs []rules.Override) (Version, error)
	// Drain takes a registry out of routing (again, if it is drained).
	Drain(ctx context.Context, who string, d Drain) (Version, error)
	// Undrain puts a drained registry back, or fails with ErrNotFound.
	Undrain(ctx context.Context, who, registry string) (Version, error)
	// Version returns the current version.
	Version(ctx context.Context) (Version, error)
	// Changes returns a channel that receives every write, by this
	// replica or another. A slow reader may be sent a Change that is
	// Whole in place of those it missed, and writers never wait for
	// readers. The channel is closed when ctx is done or the store is
	// closed.
	//
	// To miss nothing, call Changes before Load, then apply what comes
	// after the version Load returned.
	Changes(ctx context.Context) <-chan Change
	// Audit returns the most recent changes, newest first, at most n.
	Audit(ctx context.Context, n int) ([]AuditEntry, error)
	// Health is the store's last known trouble (unreachable, its file
	// lost), or nil. It never waits: readiness reads it.
	Health() error
	// Close releases the store and closes every Changes channel. Calls
	// after Close fail with ErrUnavailable.
	Close() error
}
