package loader

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Set names one data set.
type Set struct {
	Kind string // "geoip" or "cloud"
	Name string // geoip: "asn" or "country"; cloud: the provider ("aws", …)
}

// String is "geoip/asn", "cloud/aws", …: the names the server's metrics
// use for the same data sets.
func (s Set) String() string { return s.Kind + "/" + s.Name }

// Installed describes a data set that has just been installed in the data
// directory: what a Publisher is told.
type Installed struct {
	Set    Set
	File   string // where it now is; read the content from here
	SHA256 string // hex, of the content
	Size   int64
	// Version is MaxMind's release date (YYYYMMDD), the database type and
	// build time of a local file, or the provider's publication stamp.
	Version string
	// Source is the URL (without credentials) or local file it came from.
	Source string
	// BuildTime is the database's build time or the provider's
	// publication time; zero when unknown.
	BuildTime   time.Time
	InstalledAt time.Time
}

// Publisher is told of every data set the loader installs, after the file
// is in place in the data directory and before the state records it. A
// Redis publisher belongs here: it reads Installed.File and hands the
// content to every replica. An error fails the run and leaves the data
// set unrecorded, so the next run installs and publishes it again.
type Publisher interface {
	Publish(ctx context.Context, in Installed) error
}

// Restorer brings back into the data directory a data set that the state
// records as installed but whose file is missing or not as recorded: a
// loader in a fresh container (a CronJob pod without a persistent
// volume) whose state and data sets are kept in Redis. The file is then
// what the next checks compare with (the release installed, the prefix
// count, the build time), as if the data directory had persisted.
//
// Restore writes to w the content of set as published, when its SHA-256
// is sum; ok is false, with nothing written, when what is published is
// something else or nothing.
type Restorer interface {
	Restore(ctx context.Context, set Set, sum string, w io.Writer) (ok bool, err error)
}

// Locker keeps two loaders from writing the same data sets at once.
// Lock waits until it holds the lock or ctx is done; the returned
// function releases it. A Redis implementation (a key with a token and
// an expiry) can stand in for the file lock when servers share no disk.
type Locker interface {
	Lock(ctx context.Context) (unlock func() error, err error)
}

// tmpMarker is in the name of every temporary file the loader makes, so
// that the next run can remove what an interrupted one left behind.
const tmpMarker = ".loader-tmp-"

// staged is a candidate file written beside its destination, not yet in
// place. Remove it unless it was installed.
type staged struct {
	path   string
	dest   string
	sha256 string
	size   int64
}

// staging is a temporary file beside a destination, being written. It
// hashes what it is given and takes at most max bytes.
type staging struct {
	f    *os.File
	h    hash.Hash
	n    int64
	max  int64
	dest string
}

// newStaging creates a temporary file beside dest, and dest's directory
// if need be.
func newStaging(dest string, max int64) (*staging, error) {
	dir := filepath.Dir(dest)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(dest)+tmpMarker+"*")
	if err != nil {
		return nil, fmt.Errorf("creating a temporary file beside %s: %w", dest, err)
	}
	return &staging{f: f, h: sha256.New(), max: max, dest: dest}, nil
}

func (s *staging) Write(p []byte) (int, error) {
	if s.n+int64(len(p)) > s.max {
		return 0, fmt.Errorf("larger than the limit of %d bytes", s.max)
	}
	n, err := s.f.Write(p)
	s.h.Write(p[:n])
	s.n += int64(n)
	return n, err
}

// finish flushes the file to disk and closes it. On error the file is
// removed.
func (s *staging) finish() (*staged, error) {
	err := s.f.Chmod(0o644)
	if err == nil {
		err = s.f.Sync()
	}
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(s.f.Name())
		return nil, fmt.Errorf("writing %s: %w", s.f.Name(), err)
	}
	return &staged{path: s.f.Name(), dest: s.dest, sha256: hex.EncodeToString(s.h.Sum(nil)), size: s.n}, nil
}

// abort closes and removes the file.
func (s *staging) abort() {
	s.f.Close()
	os.Remove(s.f.Name())
}

// stage copies r into a new temporary file beside dest, flushed to disk.
func stage(dest string, r io.Reader, max int64) (*staged, error) {
	s, err := newStaging(dest, max)
	if err != nil {
		return nil, err
	}
	if _, err := io.Copy(s, r); err != nil {
		s.abort()
		return nil, err
	}
	return s.finish()
}

// remove deletes the temporary file; after install it is a no-op.
func (s *staged) remove() {
	if s != nil && s.path != "" {
		os.Remove(s.path)
	}
}

// install renames the staged file over its destination and flushes the
// directory, so that the rename itself survives a crash. The file is
// already on disk (stage synced it), so after a crash the destination is
// the old file or the new one, whole, never a mix.
func (s *staged) install() error {
	if err := os.Rename(s.path, s.dest); err != nil {
		s.remove()
		return fmt.Errorf("installing %s: %w", s.dest, err)
	}
	s.path = ""
	if err := syncDir(filepath.Dir(s.dest)); err != nil {
		return fmt.Errorf("installed %s, but flushing its directory failed: %w", s.dest, err)
	}
	return nil
}

// writeFileAtomic writes data to path the way data sets are installed.
func writeFileAtomic(path string, data []byte) error {
	s, err := stage(path, bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return err
	}
	return s.install()
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

// removeStale deletes the temporary files an interrupted loader left in
// dir. It runs under the lock, so none of them is being written.
func removeStale(dir string, log *slog.Logger) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") && strings.Contains(e.Name(), tmpMarker) && e.Type().IsRegular() {
			p := filepath.Join(dir, e.Name())
			if err := os.Remove(p); err == nil {
				log.Info("removed a temporary file left by an interrupted loader", "file", p)
			}
		}
	}
}

// fileSHA256 hashes a file; ok is false when it cannot be read.
func fileSHA256(path string) (sum string, ok bool) {
	f, err := os.Open(path)
	if err != nil {
		return "", false
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", false
	}
	return hex.EncodeToString(h.Sum(nil)), true
}

// intact reports whether the file a SetState describes is still there
// with the content recorded: only then may a run skip fetching it.
func intact(rec SetState, dest string) bool {
	if rec.SHA256 == "" || rec.File != dest {
		return false
	}
	sum, ok := fileSHA256(dest)
	return ok && sum == rec.SHA256
}

// maxRestore bounds a restored file: the largest database accepted.
const maxRestore = defaultMaxDatabase

// present reports whether the data set rec records is at dest as
// recorded, bringing it back through the Restorer first when it is not
// and the run may write (not a dry run). A restore that fails is logged
// and leaves dest as it was: the data set is then fetched again.
func (l *Loader) present(ctx context.Context, set Set, dest string, rec SetState, write bool) bool {
	if intact(rec, dest) {
		return true
	}
	// The record's file may be elsewhere (another pod's data directory):
	// the content is what counts.
	if l.restorer == nil || !write || rec.SHA256 == "" {
		return false
	}
	s, err := newStaging(dest, maxRestore)
	if err != nil {
		l.log.Warn("cannot restore the installed data set; fetching it again", "set", set.String(), "file", dest, "err", err)
		return false
	}
	ok, err := l.restorer.Restore(ctx, set, rec.SHA256, s)
	if err != nil || !ok {
		s.abort()
		if err != nil {
			l.log.Warn("cannot restore the installed data set; fetching it again", "set", set.String(), "file", dest, "err", err)
		} else {
			l.log.Info("the data set the state records is not the one published; fetching it again", "set", set.String(), "sha256", rec.SHA256)
		}
		return false
	}
	st, err := s.finish()
	if err == nil && st.sha256 != rec.SHA256 {
		st.remove()
		err = fmt.Errorf("restored content has SHA-256 %s, not %s", st.sha256, rec.SHA256)
	}
	if err == nil {
		err = st.install()
	}
	if err != nil {
		l.log.Warn("cannot restore the installed data set; fetching it again", "set", set.String(), "file", dest, "err", err)
		return false
	}
	l.log.Info("restored the installed data set from where it is published", "set", set.String(), "file", dest, "sha256", rec.SHA256)
	return true
}

// publish tells every publisher, in order, of an installed data set.
func (l *Loader) publish(ctx context.Context, in Installed) error {
	for _, p := range l.pub {
		if err := p.Publish(ctx, in); err != nil {
			return fmt.Errorf("%s is installed in the data directory, but publishing it failed (the next run tries again): %w", in.Set, err)
		}
	}
	return nil
}
