package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/reghost/reghost/internal/rules"
)

// The embedded store's files in the data directory.
const (
	// BoltFile is the database.
	BoltFile = "reghost.db"
	// markerFile says that a store was created in this directory: a
	// start that finds it but not the database refuses, rather than
	// starting empty and losing every override without a word.
	markerFile = ".reghost-store"
	// legacyFile is the JSON file the embedded store kept before; a
	// directory with it and no database is migrated.
	legacyFile = "overrides.json"
)

// Buckets of the database, and the keys of meta.
var (
	bucketMeta      = []byte("meta")
	bucketOverrides = []byte("overrides")
	bucketDrains    = []byte("drains")
	bucketAudit     = []byte("audit")
	keyEpoch        = []byte("epoch")
	keyN            = []byte("n")
)

// BoltOptions tune OpenBolt; zero values take the defaults.
type BoltOptions struct {
	Logger *slog.Logger // nil: discard
	// AuditLimit is how many audit entries are kept; 10,000.
	AuditLimit int
	// CheckInterval is how often the database file is checked to be
	// where it was opened; 10 s.
	CheckInterval time.Duration
	// ReadOnly opens an existing store to read it, changing nothing on
	// disk (a backup, or an import's dry run): no directory, marker or
	// database is created, the file is not watched, and writes fail.
	// bbolt's shared lock still conflicts with a running server's, so
	// the open fails with ErrLocked while one has the store. A missing
	// database is an error that wraps fs.ErrNotExist.
	ReadOnly bool
}

// Bolt is the embedded store: a bbolt database in the data directory.
// Every write is one transaction, synced to disk before it returns, and
// costs the same however many overrides are stored; a crash (kill -9,
// power loss) loses no write that returned. bbolt locks the database file
// itself, so a second process cannot open it.
//
// The file is checked every CheckInterval: if it was removed or replaced
// while the store is open, the store writes it again from the open
// database, logs an ERROR, and Health reports it.
type Bolt struct {
	dir, path, marker string
	log               *slog.Logger
	opts              BoltOptions

	// mu guards db and closed: calls hold it shared, and rewriting the
	// file, which swaps db, holds it exclusively.
	mu      sync.RWMutex
	db      *bbolt.DB
	file    os.FileInfo // the database file as opened
	closed  bool
	writeMu sync.Mutex // keeps commits and their notifications in order

	hub      hub
	incident atomic.Pointer[incident]
	stop     context.CancelFunc
	done     chan struct{}
}

// incident is trouble with the database file, for Health.
type incident struct {
	err error
	at  time.Time
}

var _ Store = (*Bolt)(nil)

// OpenBolt opens the store in dir, creating the directory and an empty
// store if there is none yet, or migrating the JSON file of earlier
// versions (overrides.json) if that is there. A database that cannot be
// read is an error, never replaced.
func OpenBolt(dir string, opts BoltOptions) (*Bolt, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.AuditLimit <= 0 {
		opts.AuditLimit = 10_000
	}
	if opts.CheckInterval <= 0 {
		opts.CheckInterval = 10 * time.Second
	}
	b := &Bolt{dir: dir, path: filepath.Join(dir, BoltFile), marker: filepath.Join(dir, markerFile),
		log: opts.Logger, opts: opts, done: make(chan struct{})}
	if opts.ReadOnly {
		if err := b.openReadOnly(); err != nil {
			return nil, err
		}
		return b, nil
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("store: creating %s: %w", dir, err)
	}
	legacy, err := b.checkMissing()
	if err != nil {
		return nil, err
	}
	if err := b.open(); err != nil {
		return nil, err
	}
	if legacy != nil {
		if err := b.migrate(legacy); err != nil {
			b.db.Close()
			os.Remove(b.path)
			return nil, err
		}
	}
	// Everything stored must decode: a store that cannot be read whole
	// is refused at start, not served half.
	var st State
	err = faultsAsErrors(func() (err error) {
		st, err = b.Load(context.Background())
		return err
	})
	if err != nil {
		b.db.Close()
		return nil, fmt.Errorf("%w; restore %s from a backup or move it aside (reghost never replaces an unreadable store)", err, b.path)
	}
	if err := os.WriteFile(b.marker, []byte("a reghost store lives here: "+BoltFile+"\n"), 0o640); err != nil {
		b.db.Close()
		return nil, fmt.Errorf("store: %w", err)
	}
	b.log.Info("opened the override store", "path", b.path, "version", st.Version.String(),
		"overrides", len(st.Overrides), "drains", len(st.Drains))
	ctx, cancel := context.WithCancel(context.Background())
	b.stop = cancel
	go b.watch(ctx)
	return b, nil
}

// openReadOnly opens the existing database for reading only.
func (b *Bolt) openReadOnly() error {
	if _, err := os.Stat(b.path); err != nil {
		return fmt.Errorf("store: no store at %s: %w", b.path, err)
	}
	if err := b.open(); err != nil {
		return err
	}
	err := faultsAsErrors(func() error { _, err := b.Load(context.Background()); return err })
	if err != nil {
		b.db.Close()
		return err
	}
	b.stop = func() {}
	close(b.done) // nothing to watch
	return nil
}

// legacyStore is the JSON file store's content, to migrate.
type legacyStore struct {
	path      string
	version   uint64
	overrides []rules.Override
}

// checkMissing decides what a directory without a database means: a new
// store, one to migrate from the JSON file, or a store that was lost,
// which is refused.
func (b *Bolt) checkMissing() (*legacyStore, error) {
	if _, err := os.Stat(b.path); !errors.Is(err, fs.ErrNotExist) {
		return nil, nil // there, or an error that opening will report
	}
	if _, err := os.Stat(b.marker); err == nil {
		return nil, fmt.Errorf("store: %s is missing, but %s says a store was kept here: its overrides would be lost. "+
			"Restore %s from a backup, or remove %s to start with an empty store on purpose", b.path, b.marker, BoltFile, b.marker)
	}
	path := filepath.Join(b.dir, legacyFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		b.log.Info("creating an empty override store", "path", b.path)
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("store: reading %s to migrate it: %w", path, err)
	}
	v, ovs, err := parseLegacy(data)
	if err != nil {
		return nil, fmt.Errorf("store: %s, to migrate: %w; fix or move the file aside", path, err)
	}
	return &legacyStore{path, v, ovs}, nil
}

// migrate writes the JSON file's overrides into the new database, at the
// file's version, and keeps the file as overrides.json.migrated.
func (b *Bolt) migrate(l *legacyStore) error {
	err := b.db.Update(func(tx *bbolt.Tx) error {
		for _, o := range l.overrides {
			if err := putJSON(tx.Bucket(bucketOverrides), o.ID, o); err != nil {
				return err
			}
		}
		return putVersion(tx, Version{Epoch: 1, N: l.version})
	})
	if err != nil {
		return fmt.Errorf("store: migrating %s: %w", l.path, err)
	}
	if err := os.Rename(l.path, l.path+".migrated"); err != nil {
		return fmt.Errorf("store: migrated %s, but cannot rename it: %w", l.path, err)
	}
	b.log.Warn("migrated the override store to the embedded database", "from", l.path, "to", b.path,
		"overrides", len(l.overrides), "kept", l.path+".migrated")
	return nil
}

// open opens the database file at b.path, creating its buckets.
func (b *Bolt) open() error {
	var db *bbolt.DB
	err := faultsAsErrors(func() (err error) {
		// The freelist is written at every commit (bbolt's default). Not
		// writing it (NoFreelistSync) makes a write a little cheaper, but
		// then bbolt rebuilds the freelist at open in a goroutine of its
		// own, where a damaged file panics beyond any recover: the
		// process dies instead of saying which file is damaged.
		db, err = bbolt.Open(b.path, 0o600, &bbolt.Options{Timeout: 200 * time.Millisecond, ReadOnly: b.opts.ReadOnly})
		return err
	})
	switch {
	case errors.Is(err, bolterrors.ErrTimeout):
		return fmt.Errorf("%w: %s is held; is another reghost running with the same data directory?", ErrLocked, b.path)
	case err != nil:
		return fmt.Errorf("store: %s: %w; restore it from a backup or move it aside (reghost never replaces an unreadable store)", b.path, err)
	}
	if b.opts.ReadOnly {
		err = db.View(func(tx *bbolt.Tx) error {
			for _, name := range [][]byte{bucketMeta, bucketOverrides, bucketDrains, bucketAudit} {
				if tx.Bucket(name) == nil {
					return fmt.Errorf("no %s bucket: not a reghost store", name)
				}
			}
			return nil
		})
		if err != nil {
			db.Close()
			return fmt.Errorf("store: %s: %w", b.path, err)
		}
		b.db = db
		return nil
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, name := range [][]byte{bucketMeta, bucketOverrides, bucketDrains, bucketAudit} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		if tx.Bucket(bucketMeta).Get(keyEpoch) == nil {
			return putVersion(tx, Version{Epoch: 1})
		}
		return nil
	})
	if err == nil {
		var fi os.FileInfo
		if fi, err = os.Stat(b.path); err == nil {
			b.db, b.file = db, fi
			return nil
		}
	}
	db.Close()
	return fmt.Errorf("store: %s: %w", b.path, err)
}

// view runs fn on a read transaction of the open database.
func (b *Bolt) view(ctx context.Context, fn func(tx *bbolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return errClosed
	}
	return b.db.View(fn)
}

var errClosed = fmt.Errorf("%w: store is closed", ErrUnavailable)

func (b *Bolt) Load(ctx context.Context) (State, error) {
	var st State
	err := b.view(ctx, func(tx *bbolt.Tx) error {
		st.Version = getVersion(tx)
		err := tx.Bucket(bucketOverrides).ForEach(func(k, v []byte) error {
			var o rules.Override
			if err := json.Unmarshal(v, &o); err != nil {
				return fmt.Errorf("store: %s: override %q: %w", b.path, k, err)
			}
			st.Overrides = append(st.Overrides, o)
			return nil
		})
		if err != nil {
			return err
		}
		return tx.Bucket(bucketDrains).ForEach(func(k, v []byte) error {
			var d Drain
			if err := json.Unmarshal(v, &d); err != nil {
				return fmt.Errorf("store: %s: drain %q: %w", b.path, k, err)
			}
			st.Drains = append(st.Drains, d)
			return nil
		})
	})
	return st, err
}

func (b *Bolt) Get(ctx context.Context, id string) (rules.Override, error) {
	var o rules.Override
	err := b.view(ctx, func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketOverrides).Get([]byte(id))
		if v == nil {
			return fmt.Errorf("%w: override %q", ErrNotFound, id)
		}
		return json.Unmarshal(v, &o)
	})
	return o, err
}

func (b *Bolt) Version(ctx context.Context) (Version, error) {
	var v Version
	err := b.view(ctx, func(tx *bbolt.Tx) error { v = getVersion(tx); return nil })
	return v, err
}

func (b *Bolt) Create(ctx context.Context, who string, o rules.Override) (Version, error) {
	return b.putOverride(ctx, who, o, true)
}

func (b *Bolt) Put(ctx context.Context, who string, o rules.Override) (Version, error) {
	return b.putOverride(ctx, who, o, false)
}

func (b *Bolt) putOverride(ctx context.Context, who string, o rules.Override, createOnly bool) (Version, error) {
	if o.ID == "" {
		return Version{}, errors.New("store: override id is empty")
	}
	return b.write(ctx, sameEpoch, func(tx *bbolt.Tx) (Change, AuditEntry, error) {
		bk := tx.Bucket(bucketOverrides)
		before := bk.Get([]byte(o.ID))
		if before != nil && createOnly {
			return Change{}, AuditEntry{}, fmt.Errorf("%w: %q", ErrConflict, o.ID)
		}
		after, err := json.Marshal(o)
		if err != nil {
			return Change{}, AuditEntry{}, err
		}
		op := OpCreate
		if before != nil {
			op = OpReplace
		}
		audit := AuditEntry{Who: who, Op: op, ID: o.ID, Before: clone(before), After: after}
		return Change{Override: &o}, audit, bk.Put([]byte(o.ID), after)
	})
}

func (b *Bolt) Delete(ctx context.Context, who, id string) (Version, error) {
	return b.write(ctx, sameEpoch, func(tx *bbolt.Tx) (Change, AuditEntry, error) {
		bk := tx.Bucket(bucketOverrides)
		before := bk.Get([]byte(id))
		if before == nil {
			return Change{}, AuditEntry{}, fmt.Errorf("%w: override %q", ErrNotFound, id)
		}
		audit := AuditEntry{Who: who, Op: OpDelete, ID: id, Before: clone(before)}
		return Change{Deleted: id}, audit, bk.Delete([]byte(id))
	})
}

func (b *Bolt) Replace(ctx context.Context, who string, ovs []rules.Override) (Version, error) {
	ids := make(map[string]bool, len(ovs))
	for _, o := range ovs {
		if o.ID == "" {
			return Version{}, errors.New("store: override id is empty")
		}
		if ids[o.ID] {
			return Version{}, fmt.Errorf("store: override id %q appears more than once", o.ID)
		}
		ids[o.ID] = true
	}
	return b.write(ctx, newEpoch, func(tx *bbolt.Tx) (Change, AuditEntry, error) {
		before := tx.Bucket(bucketOverrides).Stats().KeyN
		if err := tx.DeleteBucket(bucketOverrides); err != nil {
			return Change{}, AuditEntry{}, err
		}
		bk, err := tx.CreateBucket(bucketOverrides)
		if err != nil {
			return Change{}, AuditEntry{}, err
		}
		// In ID order, bbolt fills pages rather than splitting them.
		sorted := slices.SortedFunc(slices.Values(ovs), func(x, y rules.Override) int { return strings.Compare(x.ID, y.ID) })
		for _, o := range sorted {
			if err := putJSON(bk, o.ID, o); err != nil {
				return Change{}, AuditEntry{}, err
			}
		}
		audit := AuditEntry{Who: who, Op: OpReplaceAll,
			Before: fmt.Appendf(nil, `{"overrides":%d}`, before), After: fmt.Appendf(nil, `{"overrides":%d}`, len(ovs))}
		return Change{}, audit, nil
	})
}

func (b *Bolt) Drain(ctx context.Context, who string, d Drain) (Version, error) {
	if d.Registry == "" {
		return Version{}, errors.New("store: registry name is empty")
	}
	return b.write(ctx, sameEpoch, func(tx *bbolt.Tx) (Change, AuditEntry, error) {
		bk := tx.Bucket(bucketDrains)
		before := bk.Get([]byte(d.Registry))
		after, err := json.Marshal(d)
		if err != nil {
			return Change{}, AuditEntry{}, err
		}
		audit := AuditEntry{Who: who, Op: OpDrain, ID: d.Registry, Before: clone(before), After: after}
		return Change{Drain: &d}, audit, bk.Put([]byte(d.Registry), after)
	})
}

func (b *Bolt) Undrain(ctx context.Context, who, registry string) (Version, error) {
	return b.write(ctx, sameEpoch, func(tx *bbolt.Tx) (Change, AuditEntry, error) {
		bk := tx.Bucket(bucketDrains)
		before := bk.Get([]byte(registry))
		if before == nil {
			return Change{}, AuditEntry{}, fmt.Errorf("%w: registry %q is not drained", ErrNotFound, registry)
		}
		audit := AuditEntry{Who: who, Op: OpUndrain, ID: registry, Before: clone(before)}
		return Change{Undrained: registry}, audit, bk.Delete([]byte(registry))
	})
}

// What write does to the version: bump N, or start a new epoch.
const (
	sameEpoch = false
	newEpoch  = true
)

// write runs change in one transaction with the version it makes, adds
// its audit entry, and publishes the change once it is on disk.
func (b *Bolt) write(ctx context.Context, epoch bool, change func(tx *bbolt.Tx) (Change, AuditEntry, error)) (Version, error) {
	if err := ctx.Err(); err != nil {
		return Version{}, err
	}
	b.writeMu.Lock()
	defer b.writeMu.Unlock()
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return Version{}, errClosed
	}
	if b.opts.ReadOnly {
		return Version{}, fmt.Errorf("store: %s is open read-only", b.path)
	}
	var c Change
	err := b.db.Update(func(tx *bbolt.Tx) error {
		v := getVersion(tx)
		if epoch {
			v = Version{Epoch: v.Epoch + 1}
		} else {
			v.N++
		}
		var audit AuditEntry
		var err error
		if c, audit, err = change(tx); err != nil {
			return err
		}
		c.Version = v
		audit.At, audit.Version = time.Now().UTC(), v
		if err := b.appendAudit(tx, audit); err != nil {
			return err
		}
		return putVersion(tx, v)
	})
	switch {
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrConflict):
		return Version{}, err
	case err != nil:
		return Version{}, fmt.Errorf("%w: writing %s: %w; the change was not saved", ErrUnavailable, b.path, err)
	}
	b.hub.publish(c)
	return c.Version, nil
}

// appendAudit adds e to the trail and drops the entry that falls off its
// end.
func (b *Bolt) appendAudit(tx *bbolt.Tx, e AuditEntry) error {
	bk := tx.Bucket(bucketAudit)
	seq, err := bk.NextSequence()
	if err != nil {
		return err
	}
	if err := putJSON(bk, string(seqKey(seq)), e); err != nil {
		return err
	}
	if seq > uint64(b.opts.AuditLimit) {
		return bk.Delete(seqKey(seq - uint64(b.opts.AuditLimit)))
	}
	return nil
}

func (b *Bolt) Audit(ctx context.Context, n int) ([]AuditEntry, error) {
	var out []AuditEntry
	err := b.view(ctx, func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketAudit).Cursor()
		for k, v := c.Last(); k != nil && len(out) < n; k, v = c.Prev() {
			var e AuditEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("store: %s: audit entry %d: %w", b.path, binary.BigEndian.Uint64(k), err)
			}
			out = append(out, e)
		}
		return nil
	})
	return out, err
}

func (b *Bolt) Changes(ctx context.Context) <-chan Change { return b.hub.subscribe(ctx) }

// Health reports trouble with the database file: removed or replaced
// while open, whether or not it could be written again. It stays set for
// ten minutes after the store recovered, so that it is seen.
func (b *Bolt) Health() error {
	i := b.incident.Load()
	if i == nil || time.Since(i.at) > 10*time.Minute && !errors.Is(i.err, ErrUnavailable) {
		return nil
	}
	return i.err
}

// Close stops checking the file, closes every Changes channel and the
// database, and releases its lock. It is safe to call more than once.
func (b *Bolt) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	b.stop()
	<-b.done
	b.hub.close()
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.db.Close(); err != nil {
		return fmt.Errorf("store: closing %s: %w", b.path, err)
	}
	return nil
}

// watch checks the database file every CheckInterval until ctx is done.
func (b *Bolt) watch(ctx context.Context) {
	defer close(b.done)
	t := time.NewTicker(b.opts.CheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			b.check()
		}
	}
}

// check writes the database file again if it is no longer the file the
// store has open: removed (the open file lives on, unlinked, until the
// process ends, and a restart would find nothing) or replaced.
func (b *Bolt) check() {
	b.mu.RLock()
	fi, err := os.Stat(b.path)
	same := err == nil && os.SameFile(fi, b.file)
	closed := b.closed
	b.mu.RUnlock()
	if same || closed {
		if _, err := os.Stat(b.marker); errors.Is(err, fs.ErrNotExist) && !closed {
			_ = os.WriteFile(b.marker, []byte("a reghost store lives here: "+BoltFile+"\n"), 0o640)
		}
		return
	}
	what := "removed"
	if err == nil {
		what = "replaced by another file"
	}
	b.log.Error("the store's database file was "+what+" while in use; writing it again from the open database",
		"path", b.path)
	if err := b.rewrite(err == nil); err != nil {
		err = fmt.Errorf("%w: %s was %s and could not be written again: %w", ErrUnavailable, b.path, what, err)
		b.log.Error("the store's database file could not be written again; a restart would lose the overrides", "err", err)
		b.incident.Store(&incident{err, time.Now()})
		return
	}
	b.incident.Store(&incident{fmt.Errorf("store: %s was %s at %s and has been written again from memory; find what touched it",
		b.path, what, time.Now().UTC().Format(time.RFC3339)), time.Now()})
}

// rewrite copies the open database to its path, and opens that copy in
// its place. A file found in its place is kept beside it.
func (b *Bolt) rewrite(replaced bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	tmp := b.path + ".tmp"
	if err := b.db.View(func(tx *bbolt.Tx) error { return tx.CopyFile(tmp, 0o600) }); err != nil {
		os.Remove(tmp)
		return err
	}
	if replaced {
		aside := b.path + ".found-" + time.Now().UTC().Format("20060102T150405")
		if err := os.Rename(b.path, aside); err != nil {
			os.Remove(tmp)
			return err
		}
		b.log.Warn("the file found in the store's place is kept", "path", aside)
	}
	if err := syncFile(tmp); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, b.path); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := syncDir(b.dir); err != nil {
		b.log.Warn("store: syncing the data directory", "err", err)
	}
	old := b.db
	if err := b.open(); err != nil {
		return err
	}
	old.Close()
	return os.WriteFile(b.marker, []byte("a reghost store lives here: "+BoltFile+"\n"), 0o640)
}

// faultsAsErrors runs fn, which opens or reads the database at start,
// turning a damaged file's faults and panics into an error. bbolt maps
// the file: one cut short (a full disk, a bad copy) makes it read past
// the end of the mapping, which raises SIGBUS and would kill the
// process; and it panics on a page that is not what it should be.
func faultsAsErrors(fn func() error) (err error) {
	defer func(old bool) {
		debug.SetPanicOnFault(old)
		switch e := recover().(type) {
		case nil:
		case interface{ Addr() uintptr }:
			err = fmt.Errorf("the file is shorter than its contents say (cut short?): %v", e)
		default:
			err = fmt.Errorf("the database is damaged: %v", e)
		}
	}(debug.SetPanicOnFault(true))
	return fn()
}

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func getVersion(tx *bbolt.Tx) Version {
	m := tx.Bucket(bucketMeta)
	return Version{Epoch: getUint(m, keyEpoch), N: getUint(m, keyN)}
}

func putVersion(tx *bbolt.Tx, v Version) error {
	m := tx.Bucket(bucketMeta)
	if err := m.Put(keyEpoch, binary.BigEndian.AppendUint64(nil, v.Epoch)); err != nil {
		return err
	}
	return m.Put(keyN, binary.BigEndian.AppendUint64(nil, v.N))
}

func getUint(b *bbolt.Bucket, k []byte) uint64 {
	if v := b.Get(k); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

func putJSON(b *bbolt.Bucket, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put([]byte(key), data)
}

// clone copies a value read in a transaction, which is valid only until
// it ends.
func clone(v []byte) json.RawMessage {
	if v == nil {
		return nil
	}
	return bytes.Clone(v)
}
