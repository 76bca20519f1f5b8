package geo

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Run watches the configured database files and reloads one when it is
// replaced (a new file renamed over it, a Kubernetes volume's symlink swap,
// or a write in place), appears after being missing, or changes in a way
// the file system events missed (checked every poll interval). It returns
// nil when ctx is done, or an error if watching cannot start at all.
//
// A replacement that fails the checks is logged and reported by DataSets;
// the previous database keeps serving.
func (d *DB) Run(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("geo: watching database files: %w", err)
	}
	defer w.Close()

	// Watch directories, not files: a rename over a file replaces the
	// inode a file watch would follow. A directory that does not exist yet,
	// or is removed, is (re)added at the next poll. When the configured
	// path is a symlink, the directory of its target is watched too (where
	// geoipupdate renames new files into place).
	var dirs []string
	names := map[string]bool{}
	add := func(path string) {
		dir := filepath.Clean(filepath.Dir(path))
		if !slices.Contains(dirs, dir) {
			dirs = append(dirs, dir)
		}
		names[filepath.Base(path)] = true
	}
	for _, s := range d.slots() {
		add(s.path)
		if target, err := filepath.EvalSymlinks(s.path); err == nil && target != filepath.Clean(s.path) {
			add(target)
		}
	}
	warned := map[string]bool{}
	watch := func() {
		watched := w.WatchList()
		for _, dir := range dirs {
			if slices.Contains(watched, dir) {
				continue
			}
			if err := w.Add(dir); err != nil {
				if !warned[dir] {
					d.log.Warn("geo: cannot watch database directory; checking it periodically instead",
						"dir", dir, "every", d.poll, "err", err)
					warned[dir] = true
				}
				continue
			}
			warned[dir] = false
		}
	}
	watch()
	d.check() // anything that changed before the watch started

	poll := time.NewTicker(d.poll)
	defer poll.Stop()
	var settle <-chan time.Time // non-nil while a check is pending
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			base := filepath.Base(ev.Name)
			// "..data" and friends: Kubernetes swaps a symlink to update
			// ConfigMap and Secret volumes.
			if !names[base] && !strings.HasPrefix(base, "..") {
				continue
			}
			if settle == nil {
				settle = time.After(d.debounce)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			d.log.Warn("geo: file watch error; checking the files now", "err", err)
			d.check()
		case <-settle:
			settle = nil
			d.check()
		case <-poll.C:
			watch()
			d.check()
		}
	}
}

// Check loads every database whose file changed now, rather than at the
// next file system event or poll (a file the caller has just replaced,
// maybe in a directory that did not exist when Run started watching).
func (d *DB) Check() { d.check() }

// check loads every database whose file changed since it was last loaded or
// refused. Failures are logged and kept for DataSets by load.
func (d *DB) check() {
	for _, s := range d.slots() {
		_ = s.load(false)
	}
}

func statFile(path string) (os.FileInfo, error) {
	return os.Stat(path) // follows symlinks: a swapped link target is a change
}

// sameFile reports whether two stats are of the same, unchanged file.
func sameFile(a, b os.FileInfo) bool {
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}
