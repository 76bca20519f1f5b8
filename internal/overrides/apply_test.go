package overrides

import (
	"context"
	"net/netip"
	"testing"

	"github.com/reghost/reghost/internal/policy"
	"github.com/reghost/reghost/internal/rules"
	"github.com/reghost/reghost/internal/store"
)

func newService(t *testing.T, st store.Store) (*Service, *policy.Engine) {
	t.Helper()
	e, err := policy.New(policy.Config{Registries: []rules.Registry{
		{Name: "k8s", URL: "https://k8s.example", Default: true},
		{Name: "hub", URL: "https://hub.example"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(t.Context(), Config{Store: st, Engine: e})
	if err != nil {
		t.Fatal(err)
	}
	return s, e
}

func openBolt(t *testing.T) *store.Bolt {
	t.Helper()
	st, err := store.OpenBolt(t.TempDir(), store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func ovr(id, prefix, registry string) *rules.Override {
	return &rules.Override{ID: id, Match: rules.Match{CIDR: netip.MustParsePrefix(prefix)}, Registries: []string{registry}}
}

// A run of changes that queued while the engine compiled is applied as
// one: the last write to each override and each drain wins.
func TestApplyAllCoalesces(t *testing.T) {
	t.Parallel()
	s, e := newService(t, openBolt(t))
	v := s.Version()
	next := func(c store.Change) store.Change { v.N++; c.Version = v; return c }
	batch := []store.Change{
		next(store.Change{Override: ovr("a", "192.0.2.0/24", "hub")}),
		next(store.Change{Override: ovr("b", "198.51.100.0/24", "hub")}),
		next(store.Change{Deleted: "a"}),
		next(store.Change{Override: ovr("c", "203.0.113.0/24", "hub")}),
		next(store.Change{Drain: &store.Drain{Registry: "hub"}}),
		next(store.Change{Override: ovr("b", "198.51.100.0/24", "k8s")}),
		next(store.Change{Undrained: "hub"}),
		next(store.Change{Deleted: "c"}),
		next(store.Change{Override: ovr("c", "203.0.113.0/25", "hub")}),
	}
	if err := s.applyAll(t.Context(), batch); err != nil {
		t.Fatal(err)
	}
	if s.Version() != v {
		t.Errorf("version %s after the batch, want %s", s.Version(), v)
	}
	for ip, want := range map[string]string{
		"192.0.2.1":     "k8s", // a: created, then deleted
		"198.51.100.1":  "k8s", // b: replaced
		"203.0.113.1":   "hub", // c: deleted, then created again
		"203.0.113.200": "k8s", // ... as a /25
	} {
		if d := e.Choose(netip.MustParseAddr(ip)); d.Registry != want {
			t.Errorf("%s goes to %s (%s), want %s", ip, d.Registry, d.Reason, want)
		}
	}
	if len(s.drains) != 0 {
		t.Errorf("drains %v, want none: hub was undrained after its drain", s.drains)
	}
	// Changes applied already are skipped; one that leaves a gap reloads
	// what the store holds (nothing: these changes were never in it).
	if err := s.applyAll(t.Context(), batch[:3]); err != nil || s.Version() != v {
		t.Fatalf("changes applied already: %v, version %s", err, s.Version())
	}
}

// slowLoad is a store whose Load waits until released, so that a write
// of the server's own can land while a reload is under way.
type slowLoad struct {
	store.Store
	started, release chan struct{}
}

func (s *slowLoad) Load(ctx context.Context) (store.State, error) {
	st, err := s.Store.Load(ctx)
	s.started <- struct{}{}
	<-s.release
	return st, err
}

// A reload that reads the store before this server's own write lands
// is older than what is applied: that is no store gone back, and nothing
// is reported. A store behind what was applied before it was read is.
func TestReloadOlderThanOwnWrite(t *testing.T) {
	t.Parallel()
	st := openBolt(t)
	s, e := newService(t, st)
	slow := &slowLoad{Store: st, started: make(chan struct{}), release: make(chan struct{})}
	s.store = slow
	done := make(chan error, 1)
	go func() { done <- s.reload(t.Context()) }()
	<-slow.started
	if _, _, err := s.Create(t.Context(), "alice", *ovr("mine", "192.0.2.0/24", "hub")); err != nil {
		t.Fatal(err)
	}
	close(slow.release)
	if err := <-done; err != nil {
		t.Errorf("a reload older than this server's own write: %v", err)
	}
	if err := s.StoreError(); err != nil {
		t.Errorf("StoreError = %v after a reload older than a write of its own", err)
	}
	if d := e.Choose(netip.MustParseAddr("192.0.2.1")); d.Registry != "hub" {
		t.Errorf("the write was undone by the older reload: %+v", d)
	}
	// The store behind what was applied before the reload: went back.
	s.store = st
	s.mu.Lock()
	s.version.N += 5
	s.mu.Unlock()
	if err := s.reload(t.Context()); err == nil {
		t.Error("a store behind what was applied before it was read: no error")
	}
}
