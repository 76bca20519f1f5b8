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
	"unique"

	"github.com/reghost/reghost/internal/rules"
)

var _ Store = (*File)(nil)

var (
	errClosed  = fmt.Errorf("%w: store is closed", ErrUnavailable)
	errEmptyID = errors.New("store: override id is empty")
)

// File is the embedded store: overrides in memory, and in one JSON file
// that every write replaces atomically.
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

	mu      sync.RWMutex // guards closed, version and items
	closed  bool
	version uint64
	items   []entry // sorted by ID

	compactor compactor // guarded by writeMu

	subMu      sync.Mutex // guards subs and subsClosed
	subs       map[*subscriber]struct{}
	subsClosed bool
}

// entry is a stored override and its JSON line in the file, kept so that
// a write encodes only the override it changes.
type entry struct {
	o    rules.Override // Registries owned by the store
	json []byte
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
		f.encode(0, nil, nil, nil)
		if err := f.write(); err != nil {
			_ = unlock()
			return nil, fmt.Errorf("store: creating an empty store in %s: %w", path, err)
		}
		logger.Info("created an empty override store", "path", path)
	case err != nil:
		_ = unlock()
		return nil, fmt.Errorf("store: reading %s: %w", path, err)
	default:
		f.version, f.items, err = parse(data, &f.compactor)
		if err != nil {
			_ = unlock()
			return nil, fmt.Errorf("store: %s: %w; fix or move the file aside (reghost never replaces an unreadable store)", path, err)
		}
		logger.Info("opened the override store", "path", path, "version", f.version, "overrides", len(f.items))
	}
	return f, nil
}

// parse decodes the file strictly and checks what the store relies on:
// non-empty, unique IDs. It returns the overrides sorted by ID.
func parse(data []byte, c *compactor) (uint64, []entry, error) {
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
	items := fd.Overrides
	for i, o := range items {
		if o.ID == "" {
			return 0, nil, fmt.Errorf("overrides[%d]: empty id", i)
		}
	}
	slices.SortStableFunc(items, func(a, b rules.Override) int { return strings.Compare(a.ID, b.ID) })
	for i := 1; i < len(items); i++ {
		if items[i].ID == items[i-1].ID {
			return 0, nil, fmt.Errorf("override id %q appears more than once", items[i].ID)
		}
	}
	entries := make([]entry, len(items))
	for i, o := range items {
		e, err := c.entry(o)
		if err != nil {
			return 0, nil, fmt.Errorf("override %q: %w", o.ID, err)
		}
		entries[i] = e
	}
	pack(entries)
	return fd.Version, entries, nil
}

// pack moves the IDs and lines of entries read from the file into one
// string and one byte slice. Held one by one, a hundred thousand of each
// are small objects that live for the life of the process, marked in
// every collection, and scattered among the spans that request garbage
// of the same sizes is allocated from.
// Overrides written later are held one by one; they are few.
func pack(entries []entry) {
	var ids strings.Builder
	n := 0
	for _, e := range entries {
		ids.WriteString(e.o.ID)
		n += len(e.json)
	}
	all, lines := ids.String(), make([]byte, 0, n)
	for i := range entries {
		e := &entries[i]
		e.o.ID, all = all[:len(e.o.ID)], all[len(e.o.ID):]
		start := len(lines)
		lines = append(lines, e.json...)
		e.json = lines[start:len(lines):len(lines)]
	}
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

// List returns copies of every override, sorted by ID, and their version.
func (f *File) List(ctx context.Context) ([]rules.Override, uint64, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed {
		return nil, 0, errClosed
	}
	out := make([]rules.Override, len(f.items))
	n := 0
	for i, e := range f.items {
		out[i] = e.o
		n += len(e.o.Registries)
	}
	// One backing array for every Registries slice keeps List at two
	// allocations; the three-index slices stop an append by the caller
	// from running into the next override's registries.
	regs := make([]string, n)
	for i := range out {
		if r := out[i].Registries; r != nil {
			k := copy(regs, r)
			out[i].Registries, regs = regs[:k:k], regs[k:]
		}
	}
	return out, f.version, nil
}

// Get returns a copy of the override with the ID, or ErrNotFound.
func (f *File) Get(ctx context.Context, id string) (rules.Override, error) {
	if err := ctx.Err(); err != nil {
		return rules.Override{}, err
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed {
		return rules.Override{}, errClosed
	}
	i, ok := f.find(id)
	if !ok {
		return rules.Override{}, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	o := f.items[i].o
	o.Registries = slices.Clone(o.Registries)
	return o, nil
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
	// Only writers change closed and items, and this one holds writeMu:
	// it reads them without mu.
	f.writeMu.Lock()
	defer f.writeMu.Unlock()
	if f.closed {
		return 0, errClosed
	}
	e, err := f.compactor.entry(o)
	if err != nil {
		return 0, fmt.Errorf("store: override %q: %w", o.ID, err)
	}
	i, found := f.find(o.ID)
	if found && createOnly {
		return 0, fmt.Errorf("%w: %q", ErrConflict, o.ID)
	}
	j := i
	if found {
		j = i + 1
	}
	v := f.version + 1
	f.encode(v, f.items[:i], e.json, f.items[j:])
	if err := f.write(); err != nil {
		return 0, f.writeError(err)
	}
	f.mu.Lock()
	if found {
		f.items[i] = e
	} else {
		f.items = slices.Insert(f.items, i, e)
	}
	f.version = v
	f.mu.Unlock()
	f.notify(v, "put", o.ID)
	return v, nil
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
	i, found := f.find(id)
	if !found {
		return 0, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	v := f.version + 1
	f.encode(v, f.items[:i], nil, f.items[i+1:])
	if err := f.write(); err != nil {
		return 0, f.writeError(err)
	}
	f.mu.Lock()
	f.items = slices.Delete(f.items, i, i+1)
	f.version = v
	f.mu.Unlock()
	f.notify(v, "delete", id)
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

// find returns where id is or would be in f.items. Callers hold mu or
// writeMu.
func (f *File) find(id string) (int, bool) {
	return slices.BinarySearchFunc(f.items, id, func(e entry, id string) int {
		return strings.Compare(e.o.ID, id)
	})
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

// encode renders version v and the overrides head, then the one encoded
// as mid (if not nil), then tail into f.buf, one override per line so that
// the file reads and diffs well. Callers hold writeMu.
func (f *File) encode(v uint64, head []entry, mid []byte, tail []entry) {
	b := &f.buf
	b.Reset()
	n := 64 + len(mid)
	for _, e := range head {
		n += len(e.json) + 6
	}
	for _, e := range tail {
		n += len(e.json) + 6
	}
	b.Grow(n)
	b.WriteString("{\n  \"version\": ")
	b.WriteString(strconv.FormatUint(v, 10))
	b.WriteString(",\n  \"overrides\": [")
	sep := "\n    "
	add := func(js []byte) {
		b.WriteString(sep)
		b.Write(js)
		sep = ",\n    "
	}
	for _, e := range head {
		add(e.json)
	}
	if mid != nil {
		add(mid)
	}
	for _, e := range tail {
		add(e.json)
	}
	if len(head)+len(tail) > 0 || mid != nil {
		b.WriteString("\n  ")
	}
	b.WriteString("]\n}\n")
}

// encodeOverride renders o as one line of the file.
func encodeOverride(o rules.Override) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(o); err != nil {
		return nil, err
	}
	return bytes.Clone(bytes.TrimSuffix(b.Bytes(), []byte{'\n'})), nil
}

// compactor makes the entries the store keeps in memory small in the
// collector's eyes: the store holds every override for as long as the
// process runs, and each string or slice of its own is one more object
// to mark in every cycle (3.67 an override before, see
// TestFileHoldsFewObjects). Registry lists, which few overrides do not
// share with many others, are kept once; the short strings that repeat
// (registry names, created_by, match values) are interned.
type compactor struct {
	lists map[string][]string // by the names joined with NUL
}

// entry returns o compacted, with its line of the file. The stored
// Registries are the compactor's own, never the caller's.
func (c *compactor) entry(o rules.Override) (entry, error) {
	o.Registries = c.list(o.Registries)
	o.CreatedBy = intern(o.CreatedBy)
	m := &o.Match
	m.Cloud, m.Region, m.Country, m.Continent = intern(m.Cloud), intern(m.Region), intern(m.Country), intern(m.Continent)
	js, err := encodeOverride(o)
	return entry{o: o, json: js}, err
}

func (c *compactor) list(names []string) []string {
	if names == nil {
		return nil
	}
	key := strings.Join(names, "\x00")
	if l, ok := c.lists[key]; ok && len(l) == len(names) {
		return l
	}
	l := make([]string, len(names))
	for i, n := range names {
		l[i] = intern(n)
	}
	if c.lists == nil {
		c.lists = map[string][]string{}
	}
	c.lists[key] = l
	return l
}

func intern(s string) string {
	if s == "" {
		return ""
	}
	return unique.Make(s).Value()
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
