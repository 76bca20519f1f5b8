package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/reghost/reghost/internal/rules"
)

var _ Store = (*File)(nil)

var (
	errClosed  = fmt.Errorf("%w: store is closed", ErrUnavailable)
	errEmptyID = errors.New("store: override id is empty")
)

// File is the embedded store: overrides in one JSON file that every write
// replaces atomically, and in memory as the file's lines (see records).
//
// Next to the file it keeps <path>.lock, flocked for as long as the store
// is open so that a second process cannot write the same file, and
// writes go through <path>.tmp, which is fsynced and renamed over the
// file. The rename is the commit point: a write that fails before it
// changes nothing, on disk or in memory.
type File struct {
	path   string
	tmp    string
	logger *slog.Logger
	unlock func() error

	// Locks are taken in the order writeMu, mu, subMu. A write holds
	// writeMu throughout and mu only to apply its change in memory, so
	// readers never wait for the disk.
	writeMu sync.Mutex
	buf     bytes.Buffer // the file being written; guarded by writeMu

	mu      sync.RWMutex // guards closed, version and recs
	closed  bool
	version uint64
	recs    *records

	subMu      sync.Mutex // guards subs and subsClosed
	subs       map[*subscriber]struct{}
	subsClosed bool
}

type subscriber struct {
	ch   chan uint64
	stop func() bool // stops the context.AfterFunc that unsubscribes
}

// fileData is the file's format. Unknown fields are refused when reading,
// so that a file written by a newer reghost is not silently truncated by
// an older one.
type fileData struct {
	Version   uint64           `json:"version"`
	Overrides []rules.Override `json:"overrides"`
}

// OpenFile opens the store kept in the file at path, creating the parent
// directory and an empty store if they are missing. A file that cannot be
// read or parsed is an error, never replaced. A nil logger discards.
func OpenFile(path string, logger *slog.Logger) (*File, error) {
	if path == "" {
		return nil, errors.New("store: empty file path")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("store: creating the directory of %s: %w", path, err)
	}
	unlock, err := lockFile(path+".lock", logger)
	if err != nil {
		return nil, err
	}
	f := &File{
		path:   path,
		tmp:    path + ".tmp",
		logger: logger,
		unlock: unlock,
		subs:   make(map[*subscriber]struct{}),
	}

	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		f.recs = new(records) // none
		f.recs.encode(&f.buf, 0)
		if err := f.write(); err != nil {
			_ = unlock()
			return nil, fmt.Errorf("store: creating an empty store in %s: %w", path, err)
		}
		logger.Info("created an empty override store", "path", path)
	case err != nil:
		_ = unlock()
		return nil, fmt.Errorf("store: reading %s: %w", path, err)
	default:
		f.version, f.recs, err = parse(data)
		if err != nil {
			_ = unlock()
			return nil, fmt.Errorf("store: %s: %w; fix or move the file aside (reghost never replaces an unreadable store)", path, err)
		}
		logger.Info("opened the override store", "path", path, "version", f.version, "overrides", f.recs.len())
	}
	return f, nil
}

// parse decodes the file strictly and checks what the store relies on:
// non-empty, unique IDs. Each override is kept as its line of the file,
// encoded again so that every line is in the form a write gives it.
func parse(data []byte) (uint64, *records, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return 0, nil, errors.New("file is empty")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var fd fileData
	if err := dec.Decode(&fd); err != nil {
		return 0, nil, jsonError(data, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		off := dec.InputOffset()
		return 0, nil, fmt.Errorf("%s: data after the end of the store object", position(data, off))
	}
	type item struct {
		id   string
		line []byte
	}
	items := make([]item, len(fd.Overrides))
	for i, o := range fd.Overrides {
		if o.ID == "" {
			return 0, nil, fmt.Errorf("overrides[%d]: empty id", i)
		}
		line, err := encodeOverride(o)
		if err != nil {
			return 0, nil, fmt.Errorf("override %q: %w", o.ID, err)
		}
		items[i] = item{o.ID, line}
	}
	slices.SortStableFunc(items, func(a, b item) int { return strings.Compare(a.id, b.id) })
	for i := 1; i < len(items); i++ {
		if items[i].id == items[i-1].id {
			return 0, nil, fmt.Errorf("override id %q appears more than once", items[i].id)
		}
	}
	recs := newRecords(len(items), func(yield func(string, []byte)) {
		for _, it := range items {
			yield(it.id, it.line)
		}
	})
	return fd.Version, recs, nil
}

// jsonError adds the line and column to a decoding error.
func jsonError(data []byte, err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Errorf("%s: invalid JSON: %w", position(data, syn.Offset), err)
	case errors.As(err, &typ):
		return fmt.Errorf("%s: %w", position(data, typ.Offset), err)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%s: invalid JSON: file ends early (truncated?)", position(data, int64(len(data))))
	}
	return fmt.Errorf("invalid store file: %w", err)
}

// position renders a byte offset as "line L, column C (byte N)".
func position(data []byte, off int64) string {
	off = min(max(off, 0), int64(len(data)))
	before := data[:off]
	line := bytes.Count(before, []byte{'\n'}) + 1
	col := off - int64(bytes.LastIndexByte(before, '\n'))
	return "line " + strconv.Itoa(line) + ", column " + strconv.FormatInt(col, 10) + " (byte " + strconv.FormatInt(off, 10) + ")"
}

// List decodes every override, sorted by ID, and returns them with their
// version.
func (f *File) List(ctx context.Context) ([]rules.Override, uint64, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed {
		return nil, 0, errClosed
	}
	out := make([]rules.Override, f.recs.len())
	for i := range out {
		o, err := f.recs.override(i)
		if err != nil {
			return nil, 0, err
		}
		out[i] = o
	}
	return out, f.version, nil
}

// Get decodes the override with the ID, or fails with ErrNotFound.
func (f *File) Get(ctx context.Context, id string) (rules.Override, error) {
	if err := ctx.Err(); err != nil {
		return rules.Override{}, err
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed {
		return rules.Override{}, errClosed
	}
	i, ok := f.recs.find(id)
	if !ok {
		return rules.Override{}, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	return f.recs.override(i)
}

// Put creates or replaces the override with o's ID.
func (f *File) Put(ctx context.Context, o rules.Override) (uint64, error) {
	return f.put(ctx, o, false)
}

// Create stores o, or fails with ErrConflict if its ID exists.
func (f *File) Create(ctx context.Context, o rules.Override) (uint64, error) {
	return f.put(ctx, o, true)
}

func (f *File) put(ctx context.Context, o rules.Override, createOnly bool) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if o.ID == "" {
		return 0, errEmptyID
	}
	// Only writers change closed and recs, and this one holds writeMu:
	// it reads them without mu.
	f.writeMu.Lock()
	defer f.writeMu.Unlock()
	if f.closed {
		return 0, errClosed
	}
	line, err := encodeOverride(o)
	if err != nil {
		return 0, fmt.Errorf("store: override %q: %w", o.ID, err)
	}
	i, found := f.recs.find(o.ID)
	if found && createOnly {
		return 0, fmt.Errorf("%w: %q", ErrConflict, o.ID)
	}
	j := i
	if found {
		j = i + 1
	}
	return f.commit(f.recs.splice(i, j, o.ID, line), "put", o.ID)
}

// Delete removes the override with the ID, or fails with ErrNotFound.
func (f *File) Delete(ctx context.Context, id string) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	f.writeMu.Lock()
	defer f.writeMu.Unlock()
	if f.closed {
		return 0, errClosed
	}
	i, found := f.recs.find(id)
	if !found {
		return 0, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	return f.commit(f.recs.splice(i, i+1, "", nil), "delete", id)
}

// commit writes recs, the result of an op on the override with the ID, as
// the next version and makes it the store's. Callers hold writeMu.
func (f *File) commit(recs *records, op, id string) (uint64, error) {
	v := f.version + 1
	recs.encode(&f.buf, v)
	if err := f.write(); err != nil {
		return 0, f.writeError(err)
	}
	f.mu.Lock()
	f.recs, f.version = recs, v
	f.mu.Unlock()
	f.notify(v, op, id)
	return v, nil
}

// Version returns the current version.
func (f *File) Version(ctx context.Context) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed {
		return 0, errClosed
	}
	return f.version, nil
}

// Changes returns a channel that receives the version after every write;
// see Store.Changes. Holding it costs no goroutine.
func (f *File) Changes(ctx context.Context) <-chan uint64 {
	ch := make(chan uint64, 1)
	f.subMu.Lock()
	defer f.subMu.Unlock()
	if f.subsClosed {
		close(ch)
		return ch
	}
	s := &subscriber{ch: ch}
	f.subs[s] = struct{}{}
	s.stop = context.AfterFunc(ctx, func() {
		f.subMu.Lock()
		defer f.subMu.Unlock()
		if _, ok := f.subs[s]; ok {
			delete(f.subs, s)
			close(s.ch)
		}
	})
	return ch
}

// Close closes every Changes channel and releases the lock file. It
// waits for a write in progress and is safe to call more than once.
func (f *File) Close() error {
	f.writeMu.Lock()
	defer f.writeMu.Unlock()
	if f.closed {
		return nil
	}
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	f.subMu.Lock()
	for s := range f.subs {
		s.stop()
		close(s.ch)
	}
	f.subs = nil
	f.subsClosed = true
	f.subMu.Unlock()
	if err := f.unlock(); err != nil {
		return fmt.Errorf("store: releasing the lock on %s: %w", f.path, err)
	}
	return nil
}

// notify sends version v, which a write has just committed, to every
// Changes channel. Callers hold writeMu, which keeps the versions sent in
// order.
func (f *File) notify(v uint64, op, id string) {
	f.logger.Debug("override store written", "op", op, "id", id, "version", v)
	f.subMu.Lock()
	defer f.subMu.Unlock()
	for s := range f.subs {
		select {
		case s.ch <- v:
		default:
			// Full: replace the unread version with this one. Only
			// notify sends, under subMu, so the second send cannot block.
			select {
			case <-s.ch:
			default:
			}
			s.ch <- v
		}
	}
}

func (f *File) writeError(err error) error {
	return fmt.Errorf("%w: writing %s: %w; the change was not saved", ErrUnavailable, f.path, err)
}

// write replaces the file with what encode left in f.buf. It changes
// nothing in memory, so that a failed write leaves the store as it was.
// Callers hold writeMu.
func (f *File) write() error {
	// The buffer is the file's size: kept between the rare writes, it
	// would only make the heap, and so the collector's goal, that much
	// bigger.
	defer func() { f.buf = bytes.Buffer{} }()
	t, err := os.OpenFile(f.tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	_, err = t.Write(f.buf.Bytes())
	if err == nil {
		err = t.Sync()
	}
	if cerr := t.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.tmp, f.path)
	}
	if err != nil {
		_ = os.Remove(f.tmp)
		return err
	}
	// The new file is in place and is what a restart would read, so the
	// write stands even if making the rename durable fails.
	if err := syncDir(filepath.Dir(f.path)); err != nil {
		f.logger.Error("override store written but its directory could not be synced; the last write may be lost on power failure",
			"path", f.path, "err", err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
