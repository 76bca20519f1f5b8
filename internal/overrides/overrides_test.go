package overrides_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reghost/reghost/internal/logtest"
	"github.com/reghost/reghost/internal/overrides"
	"github.com/reghost/reghost/internal/policy"
	"github.com/reghost/reghost/internal/rules"
	"github.com/reghost/reghost/internal/store"
)

var now = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

type env struct {
	store  *store.Bolt
	engine *policy.Engine
	svc    *overrides.Service
}

func newEnv(t *testing.T) *env {
	t.Helper()
	st, err := store.OpenBolt(t.TempDir(), store.BoltOptions{})
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

// eventually waits for the engine to send ip to want.
func (e *env) eventually(t *testing.T, what, ip, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for e.where(ip) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s goes to %s, want %s", what, ip, e.where(ip), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Every write takes effect in the engine before it returns, and answers
// with the store's version.
func TestWritesApplyBeforeReturning(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	v0 := e.svc.Version()
	o, v, err := e.svc.Create(ctx, "alice", cidr("", "192.0.2.0/24", "hub"))
	if err != nil || !v0.Next(v) {
		t.Fatalf("Create: %s after %s, %v", v, v0, err)
	}
	if !strings.HasPrefix(o.ID, "ovr-") || !o.CreatedAt.Equal(now) || o.CreatedBy != "alice" {
		t.Errorf("defaults: %+v", o)
	}
	if got := e.where("192.0.2.1"); got != "hub" {
		t.Errorf("after Create: %s", got)
	}
	// A replacement keeps created_at and created_by it leaves out.
	o2, created, _, err := e.svc.Put(ctx, "bob", cidr(o.ID, "198.51.100.0/24", "hub"))
	if err != nil || created || !o2.CreatedAt.Equal(now) || o2.CreatedBy != "alice" {
		t.Errorf("Put: %+v created=%v %v", o2, created, err)
	}
	if a, b := e.where("192.0.2.1"), e.where("198.51.100.1"); a != "k8s" || b != "hub" {
		t.Errorf("after Put: old prefix %s, new prefix %s", a, b)
	}
	if _, created, _, err := e.svc.Put(ctx, "bob", cidr("new", "203.0.113.0/24", "hub")); err != nil || !created {
		t.Errorf("Put of a new ID: created=%v %v", created, err)
	}
	if _, err := e.svc.Delete(ctx, "bob", o.ID); err != nil {
		t.Errorf("Delete: %v", err)
	}
	if got := e.where("198.51.100.1"); got != "k8s" {
		t.Errorf("after Delete: %s", got)
	}
	if _, err := e.svc.Drain(ctx, "carol", "hub", "maintenance"); err != nil {
		t.Fatal(err)
	}
	if got := e.where("203.0.113.1"); got != "k8s" {
		t.Errorf("hub drained: %s", got)
	}
	if d := e.svc.Drains(); len(d) != 1 || d[0].By != "carol" || d[0].Note != "maintenance" || !d[0].At.Equal(now) {
		t.Errorf("drains: %+v", d)
	}
	if _, err := e.svc.Drain(ctx, "carol", "nonesuch", ""); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("drain of an unknown registry: %v, want ErrNotFound", err)
	}
	v, err = e.svc.Undrain(ctx, "carol", "hub")
	if err != nil || e.where("203.0.113.1") != "hub" {
		t.Errorf("undrain: %v; 203.0.113.1 goes to %s", err, e.where("203.0.113.1"))
	}
	if e.svc.Version() != v {
		t.Errorf("applied version %s, want %s", e.svc.Version(), v)
	}
	if a, err := e.svc.Audit(ctx, 10); err != nil || len(a) != 6 || a[0].Who != "carol" || a[5].Who != "alice" {
		t.Errorf("audit: %+v, %v", a, err)
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
	if v, _ := e.store.Version(ctx); v.N != 0 {
		t.Errorf("invalid overrides reached the store: version %s", v)
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

// Replace validates every override before anything is written, and
// applies the whole set at once.
func TestReplace(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	if _, _, err := e.svc.Create(ctx, "alice", cidr("old", "192.0.2.0/24", "hub")); err != nil {
		t.Fatal(err)
	}
	bad := []rules.Override{cidr("a", "198.51.100.0/24", "hub"), cidr("b", "203.0.113.0/24", "nope")}
	if _, err := e.svc.Replace(ctx, "bob", bad); err == nil || !strings.Contains(err.Error(), "overrides[1] (b)") {
		t.Errorf("Replace with a bad override: %v", err)
	}
	if e.where("192.0.2.1") != "hub" {
		t.Error("a refused Replace changed what is applied")
	}
	dup := []rules.Override{cidr("a", "198.51.100.0/24", "hub"), cidr("a", "203.0.113.0/24", "hub")}
	if _, err := e.svc.Replace(ctx, "bob", dup); err == nil {
		t.Error("Replace with a duplicate ID succeeded")
	}
	v, err := e.svc.Replace(ctx, "bob", []rules.Override{cidr("", "198.51.100.0/24", "hub")})
	if err != nil {
		t.Fatal(err)
	}
	if a, b := e.where("192.0.2.1"), e.where("198.51.100.1"); a != "k8s" || b != "hub" || e.svc.Version() != v {
		t.Errorf("after Replace: old %s, new %s, version %s (want %s)", a, b, e.svc.Version(), v)
	}
}

// PrepareSet refuses what Replace refuses, with the same error naming
// the override at fault, and otherwise returns the set as Replace would
// store it, changing nothing: not the store, not the engine, not the
// caller's slice.
func TestPrepareSet(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	if _, _, err := e.svc.Create(ctx, "alice", cidr("old", "192.0.2.0/24", "hub")); err != nil {
		t.Fatal(err)
	}
	v0 := e.svc.Version()
	for name, ovs := range map[string][]rules.Override{
		"unknown registry": {cidr("a", "198.51.100.0/24", "hub"), cidr("b", "203.0.113.0/24", "nope")},
		"duplicate id":     {cidr("a", "198.51.100.0/24", "hub"), cidr("b", "203.0.113.0/24", "hub"), cidr("a", "203.0.113.0/24", "hub")},
	} {
		_, perr := overrides.PrepareSet(e.engine, now, "bob", ovs)
		_, rerr := e.svc.Replace(ctx, "bob", ovs)
		if _, ok := errors.AsType[*overrides.ValidationError](perr); !ok || rerr == nil || perr.Error() != rerr.Error() {
			t.Errorf("%s: PrepareSet %v, Replace %v", name, perr, rerr)
		}
		if ie, ok := errors.AsType[*overrides.ItemError](perr); !ok || ie.Index != len(ovs)-1 {
			t.Errorf("%s: %v names no override, or the wrong one", name, perr)
		}
	}
	in := []rules.Override{cidr("", "198.51.100.0/24", "hub"), cidr("kept", "203.0.113.0/24", "k8s")}
	in[1].CreatedBy, in[1].CreatedAt = "carol", now.Add(-time.Hour)
	in[1].ExpiresAt = now.Add(-time.Minute) // expired: a listed set holds those still kept
	got, err := overrides.PrepareSet(e.engine, now, "bob", in)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(got[0].ID, "ovr-") || got[0].CreatedBy != "bob" || !got[0].CreatedAt.Equal(now) {
		t.Errorf("defaults: %+v", got[0])
	}
	if got[1].CreatedBy != "carol" || !got[1].CreatedAt.Equal(now.Add(-time.Hour)) {
		t.Errorf("given values not kept: %+v", got[1])
	}
	if in[0].ID != "" || in[0].CreatedBy != "" {
		t.Errorf("the caller's slice was changed: %+v", in[0])
	}
	st, err := e.store.Load(ctx)
	if err != nil || st.Version != v0 || len(st.Overrides) != 1 || e.svc.Version() != v0 || e.where("198.51.100.1") != "k8s" {
		t.Errorf("PrepareSet changed something: store %s with %d overrides, engine at %s", st.Version, len(st.Overrides), e.svc.Version())
	}
}

// Writes that did not come through this service (another replica's)
// reach the engine through the store's changes; a write of its own
// after one it has not seen brings that one along.
func TestOtherWritersApply(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { e.svc.Run(ctx) })
	defer func() { cancel(); wg.Wait() }()

	if _, err := e.store.Put(ctx, "elsewhere", cidr("elsewhere", "192.0.2.0/24", "hub")); err != nil {
		t.Fatal(err)
	}
	e.eventually(t, "another writer's override", "192.0.2.1", "hub")
	if _, err := e.store.Drain(ctx, "elsewhere", store.Drain{Registry: "hub"}); err != nil {
		t.Fatal(err)
	}
	e.eventually(t, "another writer's drain", "192.0.2.1", "k8s")
	if _, err := e.store.Replace(ctx, "elsewhere", []rules.Override{cidr("x", "198.51.100.0/24", "k8s")}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for v, _ := e.store.Version(ctx); e.svc.Version() != v; {
		if time.Now().After(deadline) {
			t.Fatalf("another writer's Replace was not applied: %s, store at %s", e.svc.Version(), v)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	// Nobody listens now: an outside write is seen by the next write of
	// the service's own.
	if _, err := e.store.Undrain(t.Context(), "elsewhere", "hub"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.svc.Create(t.Context(), "alice", cidr("mine", "203.0.113.0/24", "hub")); err != nil {
		t.Fatal(err)
	}
	if got := e.where("203.0.113.1"); got != "hub" {
		t.Errorf("after a write that followed an unseen undrain: %s", got)
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

// failingWrites is a real store whose Create fails while fail is set, as
// a full disk or a lost Redis would make it.
type failingWrites struct {
	store.Store
	fail atomic.Bool
}

var errDiskFull = fmt.Errorf("%w: disk full", store.ErrUnavailable)

func (f *failingWrites) Create(ctx context.Context, who string, o rules.Override) (store.Version, error) {
	if f.fail.Load() {
		return store.Version{}, errDiskFull
	}
	return f.Store.Create(ctx, who, o)
}

// A failed write is logged at ERROR once, not once a write, and reported
// until a write succeeds, which is logged too.
func TestStoreErrorUntilAWriteWorks(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	st := &failingWrites{Store: e.store}
	var logs logtest.Buffer
	svc, err := overrides.New(t.Context(), overrides.Config{Store: st, Engine: e.engine, Now: func() time.Time { return now },
		Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	st.fail.Store(true)
	for _, p := range []string{"192.0.2.0/24", "198.51.100.0/24"} {
		if _, _, err := svc.Create(t.Context(), "alice", cidr("", p, "hub")); !errors.Is(err, errDiskFull) {
			t.Fatalf("Create while writes fail: %v", err)
		}
	}
	if err := svc.StoreError(); !errors.Is(err, errDiskFull) {
		t.Errorf("StoreError = %v, want the write's error", err)
	}
	if n := strings.Count(logs.String(), `"level":"ERROR","msg":"the override store failed; changes are not being saved","err":"store: unavailable: disk full"`); n != 1 {
		t.Errorf("%d ERROR lines for two failed writes, want 1:\n%s", n, logs.String())
	}
	if e.where("192.0.2.1") != "k8s" {
		t.Error("an override that was not stored decides")
	}

	st.fail.Store(false)
	if _, _, err := svc.Create(t.Context(), "alice", cidr("", "192.0.2.0/24", "hub")); err != nil {
		t.Fatal(err)
	}
	if err := svc.StoreError(); err != nil {
		t.Errorf("StoreError after a write worked = %v", err)
	}
	if !strings.Contains(logs.String(), `"level":"INFO","msg":"the override store works again"`) {
		t.Errorf("no line saying the store works again:\n%s", logs.String())
	}
}

// An override dated in the future would beat every newer one with the
// same match for ever: beyond a small clock skew it is refused.
func TestCreatedAtInTheFuture(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	o := cidr("", "192.0.2.0/24", "hub")
	o.CreatedAt = now.Add(time.Hour)
	if _, _, err := e.svc.Create(t.Context(), "alice", o); err == nil || !strings.HasPrefix(err.Error(), "created_at: ") {
		t.Errorf("created_at an hour ahead: %v", err)
	}
	o.CreatedAt = now.Add(time.Minute) // another machine's clock
	if _, _, err := e.svc.Create(t.Context(), "alice", o); err != nil {
		t.Errorf("created_at a minute ahead: %v", err)
	}
}

// Expired overrides stop deciding at once, and are removed from the
// store once they have been expired for longer than the retention.
func TestRemoveExpired(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	old, soon, live := cidr("old", "192.0.2.0/24", "hub"), cidr("soon", "198.51.100.0/24", "hub"), cidr("live", "203.0.113.0/24", "hub")
	old.ExpiresAt, soon.ExpiresAt = now.Add(time.Minute), now.Add(2*time.Minute)
	for _, o := range []rules.Override{old, soon, live} {
		if _, _, err := e.svc.Create(ctx, "alice", o); err != nil {
			t.Fatal(err)
		}
	}
	later := now.Add(overrides.DefaultExpiredRetention + 90*time.Second) // old expired beyond the retention, soon not yet
	svc, err := overrides.New(ctx, overrides.Config{Store: e.store, Engine: e.engine, Now: func() time.Time { return later }})
	if err != nil {
		t.Fatal(err)
	}
	svc.RemoveExpired(ctx)
	st, _ := e.store.Load(ctx)
	if ids := []string{}; len(st.Overrides) != 2 || st.Overrides[0].ID != "live" || st.Overrides[1].ID != "soon" {
		for _, o := range st.Overrides {
			ids = append(ids, o.ID)
		}
		t.Errorf("after removing the expired: %v, want live and soon", ids)
	}
	if a, _ := e.store.Audit(ctx, 1); len(a) != 1 || a[0].Who != overrides.Expirer || a[0].ID != "old" {
		t.Errorf("audit: %+v", a)
	}
	svc.RemoveExpired(ctx) // nothing more to do, and no error
	if v, _ := e.store.Version(ctx); v != svc.Version() {
		t.Errorf("a second pass changed the store: %s, applied %s", v, svc.Version())
	}
}
