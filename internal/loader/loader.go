// Package loader fetches the data sets reghost decides from — MaxMind-format
// GeoIP databases and the cloud providers' published IP ranges — checks
// them with the server's own code, and installs them where the servers
// read them.
//
// Every data set goes the same way:
//
//	restore   a data set the State records but the data directory lacks
//	          (a fresh container) is brought back by the Restorer, from
//	          where it was published, so that what follows compares with it
//	fetch     HTTP with retries for what is worth retrying (5xx, 408,
//	          network errors), none for what is not (401, 403, 429), and
//	          an idle deadline that cuts a stalled transfer
//	stage     into a temporary file beside its destination
//	validate  internal/geo opens the database for its role, internal/cloud
//	          parses the ranges; older, empty or sharply shrunken data is
//	          refused unless forced
//	install   fsync, rename over the destination, fsync the directory:
//	          a server only ever sees the old file or the new one whole
//	publish   every Publisher is told (a Redis publisher sits here)
//	record    the State says what is installed, so that the next run,
//	          in a fresh container too, downloads nothing that is not new
//
// One Loader run holds a Locker (a flock on a file in the data directory)
// for its whole length, so two loaders never write one data set at once.
package loader

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"
)

// Config is what a Loader needs besides the request of one run.
type Config struct {
	// DataDir holds the lock and the state file (and, by default, the
	// data sets). Required.
	DataDir string
	// Logger receives progress and warnings; nil discards.
	Logger *slog.Logger
	// HTTP configures downloads.
	HTTP HTTPConfig
	// Publishers are told of every data set after it is installed in
	// the data directory, in order. A Redis publisher goes here.
	Publishers []Publisher
	// State keeps what is installed; nil: a JSON file in DataDir
	// (StateFileName).
	State StateStore
	// Restorer brings back a data set the State records but the data
	// directory lacks (a fresh container); nil: none, it is fetched
	// again.
	Restorer Restorer
	// Lock keeps two loaders from writing at once; nil: a flock on
	// DataDir/LockFileName.
	Lock Locker
	// LockWait is how long to wait for another loader to finish;
	// 0: 2 minutes.
	LockWait time.Duration
	// Now is the clock (for the Azure file's date); nil: time.Now.
	Now func() time.Time
}

// ErrLocked is wrapped when another loader holds the lock for longer
// than Config.LockWait.
var ErrLocked = errors.New("another loader is running")

// File names in the data directory.
const (
	StateFileName = "loader-state.json"
	LockFileName  = "loader.lock"
)

// Loader refreshes data sets. Its methods may be called one after
// another; each takes the lock for its own length. Close it when done.
type Loader struct {
	dir      string
	log      *slog.Logger
	http     *fetcher
	pub      []Publisher
	state    StateStore
	restorer Restorer
	lock     Locker
	lockWait time.Duration
	now      func() time.Time
}

// New checks cfg and returns a Loader ready to run.
func New(cfg Config) (*Loader, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("loader: no data directory given")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f, err := newFetcher(cfg.HTTP, log)
	if err != nil {
		return nil, err
	}
	l := &Loader{
		dir:      cfg.DataDir,
		log:      log,
		http:     f,
		pub:      cfg.Publishers,
		state:    cfg.State,
		restorer: cfg.Restorer,
		lock:     cfg.Lock,
		lockWait: cmp.Or(cfg.LockWait, 2*time.Minute),
		now:      cfg.Now,
	}
	if l.state == nil {
		l.state = FileState{Path: filepath.Join(cfg.DataDir, StateFileName)}
	}
	if l.lock == nil {
		l.lock = FileLock{Path: filepath.Join(cfg.DataDir, LockFileName)}
	}
	if l.now == nil {
		l.now = time.Now
	}
	return l, nil
}

// Close releases the idle connections of the HTTP client (and the
// goroutines that keep them).
func (l *Loader) Close() { l.http.close() }

// begin takes the lock, loads the state and clears what an interrupted
// run left behind in dirs. The returned function releases the lock.
func (l *Loader) begin(ctx context.Context, dirs []string) (State, func(), error) {
	if err := os.MkdirAll(l.dir, 0o755); err != nil {
		return State{}, nil, fmt.Errorf("creating the data directory: %w", err)
	}
	lctx, cancel := context.WithTimeout(ctx, l.lockWait)
	defer cancel()
	unlock, err := l.lock.Lock(lctx)
	if err != nil {
		return State{}, nil, err
	}
	release := func() {
		if err := unlock(); err != nil {
			l.log.Warn("releasing the loader lock", "err", err)
		}
	}
	st, err := l.state.Load(ctx)
	if err != nil {
		release()
		return State{}, nil, err
	}
	for _, d := range dirs {
		removeStale(d, l.log)
	}
	return st, release, nil
}

// record saves the state after an install, saying what to expect if it
// cannot.
func (l *Loader) record(ctx context.Context, st State) error {
	if err := l.state.Save(ctx, st); err != nil {
		return fmt.Errorf("the data is installed, but recording it failed, so the next run will fetch it again: %w", err)
	}
	return nil
}
