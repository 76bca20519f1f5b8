package datasync

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// tmpMarker is in the name of every temporary file a sync makes beside a
// target, so that the next start removes what an interrupted one left.
const tmpMarker = ".datasync-tmp-"

// install fetches p into a temporary file beside t.Path, checks it, and
// renames it over t.Path: the file is the old one or the new one, whole,
// even across a crash.
func (s *Syncer) install(ctx context.Context, t *target, p Pointer) error {
	dir := filepath.Dir(t.Path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(t.Path)+tmpMarker+"*")
	if err != nil {
		return fmt.Errorf("creating a temporary file beside %s: %w", t.Path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op after the rename
	err = s.c.Fetch(ctx, p, f)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := t.Check(tmp); err != nil {
		return fmt.Errorf("%w: %w", errInvalid, err)
	}
	// A ranges file's modification time is its data's age (the server's
	// reghost_dataset_build_timestamp_seconds): when the loader published
	// it, on every replica alike, not when this one fetched it.
	if !p.PublishedAt.IsZero() {
		if err := os.Chtimes(tmp, p.PublishedAt, p.PublishedAt); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp, t.Path); err != nil {
		return fmt.Errorf("installing %s: %w", t.Path, err)
	}
	t.file.set(t.Path, p.SHA256)
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("installed %s, but flushing its directory failed: %w", t.Path, err)
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

// fileState remembers a file's SHA-256 with what it was when hashed, so
// that a look every poll interval does not read a large database again
// unless it changed.
type fileState struct {
	fi  os.FileInfo
	sum string
}

// sha256 returns the file's SHA-256 ("" when it cannot be read).
func (f *fileState) sha256(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		f.fi, f.sum = nil, ""
		return "", err
	}
	if f.fi != nil && os.SameFile(f.fi, fi) && f.fi.Size() == fi.Size() && f.fi.ModTime().Equal(fi.ModTime()) {
		return f.sum, nil
	}
	file, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer file.Close()
	h := sha256.New()
	if _, err := io.Copy(h, file); err != nil {
		return "", err
	}
	f.fi, f.sum = fi, hex.EncodeToString(h.Sum(nil))
	return f.sum, nil
}

// set records that the file at path now has SHA-256 sum.
func (f *fileState) set(path, sum string) {
	if fi, err := os.Stat(path); err == nil {
		f.fi, f.sum = fi, sum
	}
}

// removeStale deletes the temporary files an interrupted sync left
// beside path.
func removeStale(path string, log *slog.Logger) {
	dir, prefix := filepath.Dir(path), "."+filepath.Base(path)+tmpMarker
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) && e.Type().IsRegular() {
			if err := os.Remove(filepath.Join(dir, e.Name())); err == nil {
				log.Info("removed a temporary file left by an interrupted data set sync", "file", filepath.Join(dir, e.Name()))
			}
		}
	}
}
