package overrides

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/reghost/reghost/internal/atomicfile"
	"github.com/reghost/reghost/internal/rules"
	"github.com/reghost/reghost/internal/store"
)

// snapshot is the set last applied, kept on local disk (Config.Snapshot)
// so that a replica that starts while a shared store is unreachable
// serves what it last knew rather than no overrides at all.
type snapshot struct {
	Version   store.Version    `json:"version"`
	WrittenAt time.Time        `json:"written_at"`
	Overrides []rules.Override `json:"overrides"`
	Drains    []store.Drain    `json:"drains"`
}

// readSnapshot reads the snapshot at path; a missing file is (nil, nil).
func readSnapshot(path string) (*snapshot, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var snap snapshot
	if err := json.Unmarshal(data, &snap); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &snap, nil
}

// writeSnapshot writes snap to path atomically: a new file, synced, and
// renamed over the old one.
func writeSnapshot(path string, snap *snapshot) error {
	data, err := json.Marshal(snap)
	if err != nil {
		return err
	}
	return atomicfile.Write(path, data, 0o600)
}

// keepSnapshot writes the applied set to the snapshot file whenever it
// changed, until ctx is done, and once more then: at most once a second,
// and for a large set at most a fiftieth of the time (100,000
// overrides take a few hundred milliseconds to write), so that a steady
// stream of writes does not keep a replica busy rewriting the file.
func (s *Service) keepSnapshot(ctx context.Context) {
	if s.snapshotPath == "" {
		return
	}
	var written store.Version
	write := func() (took time.Duration) {
		start := time.Now()
		s.mu.Lock()
		v, loaded, fromDisk := s.version, s.loaded, s.fromSnapshot
		drains := make([]store.Drain, 0, len(s.drains))
		for _, d := range s.drains {
			drains = append(drains, d)
		}
		s.mu.Unlock()
		if !loaded || fromDisk || v == written {
			return 0 // nothing new: the file holds it already
		}
		snap := &snapshot{Version: v, WrittenAt: s.now().UTC(), Overrides: s.engine.Overrides(), Drains: drains}
		if err := writeSnapshot(s.snapshotPath, snap); err != nil {
			s.log.Warn("could not keep the overrides on local disk", "path", s.snapshotPath, "err", err)
			return time.Since(start)
		}
		written = v
		s.mu.Lock()
		s.snapshotWritten = s.now()
		s.mu.Unlock()
		return time.Since(start)
	}
	t := time.NewTimer(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			write()
			return
		case <-t.C:
			t.Reset(max(time.Second, 50*write()))
		}
	}
}

// startFromSnapshot applies the snapshot on local disk, because the
// store could not be read at start (err). Without one, the server starts
// with the config's rules alone. Either way the store's trouble is
// reported until it can be read.
func (s *Service) startFromSnapshot(err error) error {
	snap, rerr := readSnapshot(s.snapshotPath)
	if rerr != nil {
		s.log.Error("the overrides kept on local disk cannot be read", "path", s.snapshotPath, "err", rerr)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if snap == nil {
		s.failed = fmt.Errorf("%w; no overrides were kept on local disk (%s): serving the config's rules alone until the store can be read", err, s.snapshotPath)
		s.log.Error("the store cannot be read, and no overrides were kept on local disk: serving the config's rules alone", "err", err)
		return nil
	}
	s.report(s.engine.SetOverrides(snap.Overrides))
	s.drains = make(map[string]store.Drain, len(snap.Drains))
	for _, d := range snap.Drains {
		s.drains[d.Registry] = d
	}
	s.compileDrains()
	s.version, s.loaded, s.fromSnapshot = snap.Version, true, true
	if s.seen != nil {
		s.seen(snap.Version)
	}
	s.failed = fmt.Errorf("%w; serving the %d overrides kept on local disk at version %s (%s) until the store can be read",
		err, len(snap.Overrides), snap.Version, snap.WrittenAt.Format(time.RFC3339))
	s.log.Warn("the store cannot be read: serving the overrides kept on local disk", "version", snap.Version.String(),
		"overrides", len(snap.Overrides), "written_at", snap.WrittenAt, "err", err)
	return nil
}

// Restore writes the set this replica serves back to the store, whole,
// with its drains: after the store lost its data (a Redis flushed, or a
// new one without persistence), the one call that puts it back.
func (s *Service) Restore(ctx context.Context, who string) (store.Version, error) {
	drains := s.Drains()
	v, err := s.store.Replace(ctx, who, s.engine.Overrides())
	s.stored(err)
	if err != nil {
		return store.Version{}, err
	}
	for _, d := range drains {
		if v, err = s.store.Drain(ctx, who, d); err != nil {
			s.stored(err)
			return store.Version{}, fmt.Errorf("the overrides were restored, the drains not all: %w", err)
		}
	}
	if err := s.reload(ctx); err != nil {
		s.log.Warn("restored, but not reloaded here yet; the next change will", "err", err)
	}
	s.log.Info("restored the store from the set served here", "by", who, "version", v.String())
	return v, nil
}
