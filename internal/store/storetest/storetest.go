// Package storetest is the conformance suite every store.Store runs: what
// the overrides service and the admin API rely on, checked the same way
// for the embedded store and for Redis.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reghost/reghost/internal/rules"
	"github.com/reghost/reghost/internal/store"
)

// Harness is how the suite reaches one implementation.
type Harness struct {
	// Open returns a new, empty store for one test; the store is the
	// test's to close.
	Open func(t *testing.T) store.Store
	// Reopen closes s and opens what it stored again, as a restart does.
	Reopen func(t *testing.T, s store.Store) store.Store
	// Corrupt damages what s stored (s is closed first if need be) so
	// that it no longer decodes, and returns the store opened again, or
	// the error opening it gave.
	Corrupt func(t *testing.T, s store.Store) (store.Store, error)
	// Break makes s unable to serve (closed, its server stopped); every
	// call after must fail with store.ErrUnavailable.
	Break func(t *testing.T, s store.Store)
}

// Run runs the whole suite as subtests of t.
func Run(t *testing.T, h Harness) {
	t.Run("CreateGetPutDelete", func(t *testing.T) { testCRUD(t, h) })
	t.Run("RoundTrip", func(t *testing.T) { testRoundTrip(t, h) })
	t.Run("ConcurrentWriters", func(t *testing.T) { testConcurrentWriters(t, h) })
	t.Run("Changes", func(t *testing.T) { testChanges(t, h) })
	t.Run("Reopen", func(t *testing.T) { testReopen(t, h) })
	t.Run("CorruptRefused", func(t *testing.T) { testCorrupt(t, h) })
	t.Run("Unavailable", func(t *testing.T) { testUnavailable(t, h) })
}

// Override returns a valid override with the ID, matching the /24 of
// 10.x.y.0 numbered by n.
func Override(id string, n int) rules.Override {
	return rules.Override{
		ID:         id,
		Match:      rules.Match{CIDR: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(n >> 8), byte(n), 0}), 24)},
		Registries: []string{"hub"},
		CreatedAt:  time.Date(2026, 12, 1, 12, 0, 0, n, time.UTC),
		CreatedBy:  "storetest",
	}
}

func open(t *testing.T, h Harness) store.Store {
	t.Helper()
	s := h.Open(t)
	t.Cleanup(func() { s.Close() })
	return s
}

func testCRUD(t *testing.T, h Harness) {
	ctx := t.Context()
	s := open(t, h)
	if ovs, v, err := s.List(ctx); err != nil || len(ovs) != 0 {
		t.Fatalf("a new store: %d overrides at version %d, %v; want none", len(ovs), v, err)
	}
	v0, err := s.Version(ctx)
	if err != nil {
		t.Fatal(err)
	}
	versions := []uint64{v0}
	wrote := func(op string, v uint64, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", op, err)
		}
		if last := versions[len(versions)-1]; v != last+1 {
			t.Fatalf("%s: version %d after %d; every write bumps it by one", op, v, last)
		}
		versions = append(versions, v)
	}
	b, a := Override("b", 2), Override("a", 1)
	v, err := s.Create(ctx, b)
	wrote("create b", v, err)
	v, err = s.Create(ctx, a)
	wrote("create a", v, err)
	if _, err := s.Create(ctx, Override("a", 9)); !errors.Is(err, store.ErrConflict) {
		t.Errorf("create of an existing ID: %v, want ErrConflict", err)
	}
	if _, err := s.Create(ctx, Override("", 3)); err == nil {
		t.Error("create with an empty ID succeeded")
	}
	if _, err := s.Put(ctx, Override("", 3)); err == nil {
		t.Error("put with an empty ID succeeded")
	}
	got, err := s.Get(ctx, "a")
	if err != nil || !reflect.DeepEqual(got, a) {
		t.Errorf("get a: %+v, %v; want %+v", got, err, a)
	}
	a2 := Override("a", 7)
	v, err = s.Put(ctx, a2)
	wrote("put a (replace)", v, err)
	v, err = s.Put(ctx, Override("c", 3))
	wrote("put c (create)", v, err)
	if got, _ := s.Get(ctx, "a"); !reflect.DeepEqual(got, a2) {
		t.Errorf("get a after put: %+v, want %+v", got, a2)
	}
	ovs, lv, err := s.List(ctx)
	if err != nil || lv != versions[len(versions)-1] {
		t.Fatalf("list: version %d, %v; want %d", lv, err, versions[len(versions)-1])
	}
	if ids := idsOf(ovs); !slices.Equal(ids, []string{"a", "b", "c"}) {
		t.Errorf("list: %v, want a, b, c sorted by ID", ids)
	}
	v, err = s.Delete(ctx, "b")
	wrote("delete b", v, err)
	if _, err := s.Get(ctx, "b"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("get after delete: %v, want ErrNotFound", err)
	}
	if _, err := s.Delete(ctx, "b"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("delete again: %v, want ErrNotFound", err)
	}
	if v, err := s.Version(ctx); err != nil || v != versions[len(versions)-1] {
		t.Errorf("version %d, %v; want %d", v, err, versions[len(versions)-1])
	}
}

// Every field comes back as it went in: times to the nanosecond and with
// their instant, IPv6 prefixes, expiry, notes.
func testRoundTrip(t *testing.T, h Harness) {
	ctx := t.Context()
	s := open(t, h)
	want := []rules.Override{
		{ID: "v6", Match: rules.Match{CIDR: netip.MustParsePrefix("2001:db8:1::/48")}, Registries: []string{"hub", "k8s"},
			ExpiresAt: time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC), Note: "a note with \"quotes\" and é", CreatedBy: "someone",
			CreatedAt: time.Date(2026, 12, 1, 12, 0, 0, 123456789, time.UTC)},
		{ID: "asn", Match: rules.Match{ASN: 4294967295}, Registries: []string{"k8s"}, CreatedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
		{ID: "region", Match: rules.Match{Cloud: "aws", Region: "us-east-2"}, Registries: []string{"k8s"}},
		{ID: "country", Match: rules.Match{Country: "SE"}, Registries: []string{"k8s"}},
		{ID: "continent", Match: rules.Match{Continent: "EU"}, Registries: []string{"k8s"}},
	}
	for _, o := range want {
		if _, err := s.Put(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	for _, o := range want {
		got, err := s.Get(ctx, o.ID)
		if err != nil || !reflect.DeepEqual(got, o) || !got.CreatedAt.Equal(o.CreatedAt) {
			t.Errorf("get %s: %+v, %v; want %+v", o.ID, got, err, o)
		}
	}
}

func idsOf(ovs []rules.Override) []string {
	ids := make([]string, len(ovs))
	for i, o := range ovs {
		ids[i] = o.ID
	}
	return ids
}

// Writers at once lose nothing, and each write gets a version of its
// own: the versions are the ones after the start, each once.
func testConcurrentWriters(t *testing.T, h Harness) {
	ctx := t.Context()
	s := open(t, h)
	v0, err := s.Version(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const writers, each = 8, 25
	var (
		mu       sync.Mutex
		versions []uint64
		wg       sync.WaitGroup
	)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				o := Override(fmt.Sprintf("w%d-%02d", w, i), w*each+i)
				var v uint64
				var err error
				if i%2 == 0 {
					v, err = s.Create(ctx, o)
				} else {
					v, err = s.Put(ctx, o)
				}
				if err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
				mu.Lock()
				versions = append(versions, v)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.Sort(versions)
	for i, v := range versions {
		if v != v0+uint64(i)+1 {
			t.Fatalf("versions after %d: %v; want each of %d..%d once", v0, versions, v0+1, v0+writers*each)
		}
	}
	ovs, v, err := s.List(ctx)
	if err != nil || len(ovs) != writers*each || v != v0+writers*each {
		t.Errorf("list: %d overrides at version %d, %v; want %d at %d", len(ovs), v, err, writers*each, v0+writers*each)
	}
}

// Changes delivers the version after every write, coalescing for a slow
// reader but never losing the latest, and closes when its context ends
// or the store closes.
func testChanges(t *testing.T, h Harness) {
	s := open(t, h)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ch := s.Changes(ctx)
	// A subscription may take a moment to be in place (Redis): write
	// until a notification comes.
	var last uint64
	deadline := time.After(10 * time.Second)
	for i := 0; ; i++ {
		v, err := s.Put(t.Context(), Override(fmt.Sprintf("first-%d", i), i))
		if err != nil {
			t.Fatal(err)
		}
		last = v
		select {
		case got := <-ch:
			if got > v {
				t.Fatalf("notified of version %d after writing %d", got, v)
			}
		case <-time.After(100 * time.Millisecond):
			continue
		case <-deadline:
			t.Fatal("no notification within 10 s of writing")
		}
		break
	}
	// Many writes, not read meanwhile: the latest version arrives.
	for i := range 20 {
		v, err := s.Put(t.Context(), Override(fmt.Sprintf("burst-%d", i), i))
		if err != nil {
			t.Fatal(err)
		}
		last = v
	}
	timeout := time.After(10 * time.Second)
	for got := uint64(0); got < last; {
		select {
		case got = <-ch:
		case <-timeout:
			t.Fatalf("the latest version %d was never notified (last seen %d)", last, got)
		}
	}
	cancel()
	for range ch {
		// drain what came before the cancellation
	}
	closed := s.Changes(t.Context())
	s.Close()
	select {
	case _, ok := <-closed:
		for ok {
			_, ok = <-closed
		}
	case <-time.After(10 * time.Second):
		t.Error("a Changes channel stayed open after Close")
	}
}

// What was stored is there after a restart, at the same version.
func testReopen(t *testing.T, h Harness) {
	ctx := t.Context()
	s := h.Open(t)
	for i := range 5 {
		if _, err := s.Put(ctx, Override(fmt.Sprintf("r%d", i), i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Delete(ctx, "r2"); err != nil {
		t.Fatal(err)
	}
	want, wantV, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s = h.Reopen(t, s)
	defer s.Close()
	got, v, err := s.List(ctx)
	if err != nil || v != wantV || !reflect.DeepEqual(got, want) {
		t.Errorf("after reopening: %v at version %d, %v; want %v at %d", idsOf(got), v, err, idsOf(want), wantV)
	}
	if v, err := s.Put(ctx, Override("after", 9)); err != nil || v != wantV+1 {
		t.Errorf("a write after reopening: version %d, %v; want %d", v, err, wantV+1)
	}
}

// Stored data that no longer decodes is refused, never read as an empty
// set: serving no overrides would silently undo every one of them.
func testCorrupt(t *testing.T, h Harness) {
	s := h.Open(t)
	if _, err := s.Put(t.Context(), Override("x", 1)); err != nil {
		t.Fatal(err)
	}
	s, err := h.Corrupt(t, s)
	if err != nil {
		t.Logf("refused at open: %v", err)
		return
	}
	defer s.Close()
	if ovs, _, err := s.List(t.Context()); err == nil {
		t.Errorf("a corrupt store listed %d overrides and no error", len(ovs))
	}
}

func testUnavailable(t *testing.T, h Harness) {
	ctx := t.Context()
	s := open(t, h)
	if _, err := s.Put(ctx, Override("x", 1)); err != nil {
		t.Fatal(err)
	}
	h.Break(t, s)
	calls := map[string]func() error{
		"List":    func() error { _, _, err := s.List(ctx); return err },
		"Get":     func() error { _, err := s.Get(ctx, "x"); return err },
		"Put":     func() error { _, err := s.Put(ctx, Override("y", 2)); return err },
		"Create":  func() error { _, err := s.Create(ctx, Override("z", 3)); return err },
		"Delete":  func() error { _, err := s.Delete(ctx, "x"); return err },
		"Version": func() error { _, err := s.Version(ctx); return err },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s on a broken store: %v, want ErrUnavailable", name, err)
		} else if strings.TrimSpace(err.Error()) == "" {
			t.Errorf("%s: an empty error message", name)
		}
	}
}
