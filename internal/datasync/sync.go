package datasync

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// Target is one data set a server reads from a file.
type Target struct {
	Name string // geoip/asn, cloud/aws, …: the name it is published under
	Path string // the file the server reads, as its config names it
	// Check is the server's own check of a candidate file (CheckGeoIP,
	// CheckCloud); one it refuses is never installed.
	Check func(path string) error
}

// SyncerConfig configures a Syncer.
type SyncerConfig struct {
	Client  *Client // required
	Targets []Target
	// Poll is how often Redis is looked at besides the messages, which
	// pub/sub may lose; 30 s.
	Poll time.Duration
	// Installed is told of every data set installed, after the rename
	// (the cloud ranges are checked at once rather than at their next
	// poll); nil: nobody.
	Installed func(name string)
	// Logger; nil discards.
	Logger *slog.Logger
	// Registerer takes reghost_dataset_sync_total; nil: none.
	Registerer prometheus.Registerer
}

// Syncer keeps a server's data set files as Redis holds them. For each
// target whose published SHA-256 is not its file's, it fetches the
// content into a temporary file beside the target, checks its size and
// SHA-256, runs the target's Check, and renames it over the file: the
// server's file watchers then swap it in. What is corrupt or invalid is
// refused, logged as an error and counted, and the file on disk keeps
// serving; that version is not fetched again, a newer one is.
type Syncer struct {
	c         *Client
	targets   []*target
	poll      time.Duration
	installed func(string)
	log       *slog.Logger
	total     *prometheus.CounterVec

	mu sync.Mutex // serialises Sync; guards the targets' fields but problem

	problemsMu sync.Mutex // guards every target's problem
}

type target struct {
	Target
	file    fileState // the file as last hashed
	refused string    // the ID of the version refused; "" none
	logged  string    // the failure last logged, not to log it every poll
	problem string    // for readiness; "" when in step with Redis
}

// NewSyncer checks cfg and removes what an interrupted sync left in the
// targets' directories.
func NewSyncer(cfg SyncerConfig) (*Syncer, error) {
	if cfg.Client == nil {
		return nil, errors.New("datasync: no client")
	}
	s := &Syncer{c: cfg.Client, poll: cmp.Or(cfg.Poll, 30*time.Second), installed: cfg.Installed, log: cfg.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	var err error
	if s.total, err = newSyncTotal(cfg.Registerer); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, t := range cfg.Targets {
		if err := checkName(t.Name); err != nil {
			return nil, err
		}
		if t.Path == "" || t.Check == nil || seen[t.Name] {
			return nil, fmt.Errorf("datasync: target %s: a path and a check, once each", t.Name)
		}
		seen[t.Name] = true
		s.targets = append(s.targets, &target{Target: t})
		removeStale(t.Path, s.log)
	}
	return s, nil
}

// Sync brings every target in step with Redis once, and returns the
// errors of those it could not (refused versions included).
func (s *Syncer) Sync(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, t := range s.targets {
		if err := s.syncOne(ctx, t); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", t.Name, err))
		}
	}
	return errors.Join(errs...)
}

// errInvalid is wrapped when the target's Check refuses a fetched file.
var errInvalid = errors.New("refused by the server's checks")

func (s *Syncer) syncOne(ctx context.Context, t *target) error {
	for attempt := 0; ; attempt++ {
		p, ok, err := s.c.Current(ctx, t.Name)
		switch {
		case errors.Is(err, ErrCorrupt):
			return s.refuse(t, "pointer", err)
		case err != nil:
			return s.failed(t, err)
		case !ok:
			s.inStep(t) // nothing published: the file is the operator's
			return nil
		}
		if sum, _ := t.file.sha256(t.Path); sum == p.SHA256 {
			s.inStep(t)
			return nil
		}
		if p.ID == t.refused {
			return errors.New(t.problem)
		}
		start := time.Now()
		err = s.install(ctx, t, p)
		switch {
		case err == nil:
			s.total.WithLabelValues(t.Name, resultInstalled).Inc()
			s.log.Info("data set fetched from Redis and installed", "set", t.Name, "file", t.Path, "version", p.Version,
				"id", p.ID, "size", p.Size, "took", time.Since(start).Round(time.Millisecond).String())
			s.inStep(t)
			if s.installed != nil {
				s.installed(t.Name)
			}
			return nil
		case errors.Is(err, errChunkGone) && attempt < 2:
			// Replaced while it was fetched, and expired? Then the new
			// version is the one to fetch.
			if q, ok, qerr := s.c.Current(ctx, t.Name); qerr == nil && ok && q.ID != p.ID {
				continue
			}
			return s.refuse(t, p.ID, err)
		case errors.Is(err, ErrCorrupt), errors.Is(err, errInvalid):
			return s.refuse(t, p.ID, err)
		default:
			return s.failed(t, err)
		}
	}
}

// inStep notes a target as Redis holds it.
func (s *Syncer) inStep(t *target) {
	if t.logged != "" {
		s.log.Info("data set in step with Redis again", "set", t.Name)
	}
	t.logged, t.refused = "", ""
	s.setProblem(t, "")
}

// refuse notes a version that must not serve: corrupt in Redis, or
// refused by the checks. The file on disk keeps serving, and the
// version is not fetched again.
func (s *Syncer) refuse(t *target, id string, err error) error {
	msg := fmt.Sprintf("refused the version in Redis (%v); the file on disk keeps serving", err)
	if t.refused == id && t.logged == msg {
		return errors.New(msg) // a pointer that does not decode, seen again
	}
	t.refused = id
	s.setProblem(t, msg)
	s.total.WithLabelValues(t.Name, resultRefused).Inc()
	if t.logged != msg {
		t.logged = msg
		s.log.Error("data set in Redis refused; the file on disk keeps serving", "set", t.Name, "file", t.Path, "err", err)
	}
	return errors.New(msg)
}

// failed notes a failure worth trying again: Redis, the disk.
func (s *Syncer) failed(t *target, err error) error {
	msg := fmt.Sprintf("not in step with Redis: %v", err)
	s.setProblem(t, msg)
	s.total.WithLabelValues(t.Name, resultFailed).Inc()
	if t.logged != msg {
		t.logged = msg
		s.log.Warn("data set not fetched from Redis; trying again at the next look", "set", t.Name, "file", t.Path, "err", err)
	}
	return err
}

func (s *Syncer) setProblem(t *target, p string) {
	s.problemsMu.Lock()
	defer s.problemsMu.Unlock()
	t.problem = p
}

// Problems lists the targets not in step with Redis and why, for
// /readyz. It never waits for a sync.
func (s *Syncer) Problems() []string {
	s.problemsMu.Lock()
	defer s.problemsMu.Unlock()
	var out []string
	for _, t := range s.targets {
		if t.problem != "" {
			out = append(out, t.Name+": "+t.problem)
		}
	}
	return out
}

// Run follows Redis until ctx is done: it syncs at every message on the
// data channel, at every (re)subscription (what was published meanwhile
// is lost), and every Poll.
func (s *Syncer) Run(ctx context.Context) {
	kick := make(chan struct{}, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { s.listen(ctx, kick) })
	tick := time.NewTicker(s.poll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-kick:
		}
		_ = s.Sync(ctx) // each failure is logged and kept for Problems
	}
}

// listen keeps a subscription to the data channel, and kicks a sync at
// every message and (re)subscription.
func (s *Syncer) listen(ctx context.Context, kick chan<- struct{}) {
	wake := func() {
		select {
		case kick <- struct{}{}:
		default: // one is pending already
		}
	}
	ps := s.c.rdb.Subscribe(ctx, s.c.keys.channel())
	// A receive waits for its timeout whatever ctx says; closing the
	// subscription ends it.
	stop := context.AfterFunc(ctx, func() { ps.Close() })
	defer stop()
	defer ps.Close()
	for ctx.Err() == nil {
		msg, err := ps.ReceiveTimeout(ctx, s.poll)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() {
				// Silence: a ping finds a dead connection, which go-redis
				// then replaces, subscribing again.
				_ = ps.Ping(ctx)
				continue
			}
			select { // go-redis reconnects at the next receive; not in a tight loop
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				wake()
			}
		case *redis.Message:
			wake()
		}
	}
}
