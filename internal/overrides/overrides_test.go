package overrides_test

import (
	"context"
	"errors"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reghost/reghost/internal/overrides"
	"github.com/reghost/reghost/internal/policy"
	"github.com/reghost/reghost/internal/rules"
	"github.com/reghost/reghost/internal/store"
)

var now = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

type env struct {
	store  *store.File
	engine *policy.Engine
	svc    *overrides.Service
}

func newEnv(t *testing.T) *env {
	t.Helper()
	st, err := store.OpenFile(filepath.Join(t.TempDir(), "overrides.json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e, err := policy.New(policy.Config{Registries: []rules.Registry{
		{Name: "k8s", URL: "https://k8s.example", Default: true},
		{Name: "hub", URL: "https://hub.example"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := overrides.New(t.Context(), overrides.Config{Store: st, Engine: e, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return &env{st, e, svc}
}

func cidr(id, prefix, registry string) rules.Override {
	return rules.Override{ID: id, Match: rules.Match{CIDR: netip.MustParsePrefix(prefix)}, Registries: []string{registry}}
}

// where returns the registry the engine sends ip to.
func (e *env) where(ip string) string { return e.engine.Choose(netip.MustParseAddr(ip)).Registry }

// Every write takes effect in the engine before it returns, and answers
// with the store's version.
func TestWritesApplyBeforeReturning(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	o, v, err := e.svc.Create(ctx, "alice", cidr("", "192.0.2.0/24", "hub"))
	if err != nil || v != 1 {
		t.Fatalf("Create: v%d, %v", v, err)
	}
	if !strings.HasPrefix(o.ID, "ovr-") || !o.CreatedAt.Equal(now) || o.CreatedBy != "alice" {
		t.Errorf("defaults: %+v", o)
	}
	if got := e.where("192.0.2.1"); got != "hub" {
		t.Errorf("after Create: %s", got)
	}
	// A replacement keeps created_at and created_by it leaves out.
	o2, created, v, err := e.svc.Put(ctx, "bob", cidr(o.ID, "198.51.100.0/24", "hub"))
	if err != nil || created || v != 2 || !o2.CreatedAt.Equal(now) || o2.CreatedBy != "alice" {
		t.Errorf("Put: %+v created=%v v%d %v", o2, created, v, err)
	}
	if a, b := e.where("192.0.2.1"), e.where("198.51.100.1"); a != "k8s" || b != "hub" {
		t.Errorf("after Put: old prefix %s, new prefix %s", a, b)
	}
	if _, created, _, err := e.svc.Put(ctx, "bob", cidr("new", "203.0.113.0/24", "hub")); err != nil || !created {
		t.Errorf("Put of a new ID: created=%v %v", created, err)
	}
	if v, err := e.svc.Delete(ctx, "bob", o.ID); err != nil || v != 4 {
		t.Errorf("Delete: v%d %v", v, err)
	}
	if got := e.where("198.51.100.1"); got != "k8s" {
		t.Errorf("after Delete: %s", got)
	}
	if e.svc.Version() != 4 {
		t.Errorf("applied version %d, want 4", e.svc.Version())
	}
}

func TestValidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	for name, tc := range map[string]struct {
		o     rules.Override
		field string
	}{
		"unknown registry": {cidr("a", "192.0.2.0/24", "nope"), "registries"},
		"expired":          {rules.Override{Match: rules.Match{Country: "SE"}, Registries: []string{"hub"}, ExpiresAt: now.Add(-time.Minute)}, "expires_at"},
		"bad country":      {rules.Override{Match: rules.Match{Country: "se"}, Registries: []string{"hub"}}, "match.country"},
	} {
		_, _, err := e.svc.Create(ctx, "alice", tc.o)
		ve, ok := errors.AsType[*overrides.ValidationError](err)
		if !ok || !strings.HasPrefix(ve.Error(), tc.field) {
			t.Errorf("%s: %v, want a validation error on %s", name, err, tc.field)
		}
	}
	if _, v, _ := e.st(); v != 0 {
		t.Errorf("invalid overrides reached the store: version %d", v)
	}
	if _, _, _, err := e.svc.Put(ctx, "alice", cidr("", "192.0.2.0/24", "hub")); err == nil {
		t.Error("Put without an ID succeeded")
	}
	if _, _, err := e.svc.Create(ctx, "alice", cidr("dup", "192.0.2.0/24", "hub")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.svc.Create(ctx, "alice", cidr("dup", "192.0.2.0/24", "hub")); !errors.Is(err, store.ErrConflict) {
		t.Errorf("Create of an existing ID: %v, want ErrConflict", err)
	}
}

func (e *env) st() ([]rules.Override, uint64, error) { return e.store.List(context.Background()) }

// Writes that did not come through this service (another replica's)
// reach the engine through the store's notifications; a write of its own
// after one of those applies the whole set, not just its own change.
func TestOtherWritersApply(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { e.svc.Run(ctx) })
	defer func() { cancel(); wg.Wait() }()

	if _, err := e.store.Put(ctx, cidr("elsewhere", "192.0.2.0/24", "hub")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for e.where("192.0.2.1") != "hub" {
		if time.Now().After(deadline) {
			t.Fatal("another writer's change never reached the engine")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	// Nobody listens now: a second outside write is seen by the next
	// write of the service's own.
	if _, err := e.store.Put(t.Context(), cidr("unseen", "198.51.100.0/24", "hub")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.svc.Create(t.Context(), "alice", cidr("mine", "203.0.113.0/24", "hub")); err != nil {
		t.Fatal(err)
	}
	if a, b := e.where("198.51.100.1"), e.where("203.0.113.1"); a != "hub" || b != "hub" {
		t.Errorf("after a write that followed an unseen one: unseen %s, mine %s", a, b)
	}
}

// A failing store is reported until a call succeeds.
func TestStoreError(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if err := e.store.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.svc.Create(t.Context(), "alice", cidr("", "192.0.2.0/24", "hub")); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Create on a closed store: %v", err)
	}
	if err := e.svc.StoreError(); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("StoreError = %v, want the store's error", err)
	}
}
