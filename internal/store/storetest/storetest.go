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
	t.Run("Replace", func(t *testing.T) { testReplace(t, h) })
	t.Run("Drains", func(t *testing.T) { testDrains(t, h) })
	t.Run("Audit", func(t *testing.T) { testAudit(t, h) })
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

const who = "storetest"

func testCRUD(t *testing.T, h Harness) {
	ctx := t.Context()
	s := open(t, h)
	if st, err := s.Load(ctx); err != nil || len(st.Overrides) != 0 || len(st.Drains) != 0 {
		t.Fatalf("a new store: %+v, %v; want nothing in it", st, err)
	}
	v0, err := s.Version(ctx)
	if err != nil {
		t.Fatal(err)
	}
	versions := []store.Version{v0}
	wrote := func(op string, v store.Version, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", op, err)
		}
		if last := versions[len(versions)-1]; !last.Next(v) {
			t.Fatalf("%s: version %s after %s; every write bumps it by one", op, v, last)
		}
		versions = append(versions, v)
	}
	last := func() store.Version { return versions[len(versions)-1] }
	b, a := Override("b", 2), Override("a", 1)
	v, err := s.Create(ctx, who, b)
	wrote("create b", v, err)
	v, err = s.Create(ctx, who, a)
	wrote("create a", v, err)
	if _, err := s.Create(ctx, who, Override("a", 9)); !errors.Is(err, store.ErrConflict) {
		t.Errorf("create of an existing ID: %v, want ErrConflict", err)
	}
	if _, err := s.Create(ctx, who, Override("", 3)); err == nil {
		t.Error("create with an empty ID succeeded")
	}
	if _, err := s.Put(ctx, who, Override("", 3)); err == nil {
		t.Error("put with an empty ID succeeded")
	}
	if v, _ := s.Version(ctx); v != last() {
		t.Errorf("failed writes moved the version to %s from %s", v, last())
	}
	got, err := s.Get(ctx, "a")
	if err != nil || !reflect.DeepEqual(got, a) {
		t.Errorf("get a: %+v, %v; want %+v", got, err, a)
	}
	a2 := Override("a", 7)
	v, err = s.Put(ctx, who, a2)
	wrote("put a (replace)", v, err)
	v, err = s.Put(ctx, who, Override("c", 3))
	wrote("put c (create)", v, err)
	if got, _ := s.Get(ctx, "a"); !reflect.DeepEqual(got, a2) {
		t.Errorf("get a after put: %+v, want %+v", got, a2)
	}
	st, err := s.Load(ctx)
	if err != nil || st.Version != last() {
		t.Fatalf("load: version %s, %v; want %s", st.Version, err, last())
	}
	if ids := idsOf(st.Overrides); !slices.Equal(ids, []string{"a", "b", "c"}) {
		t.Errorf("load: %v, want a, b, c sorted by ID", ids)
	}
	v, err = s.Delete(ctx, who, "b")
	wrote("delete b", v, err)
	if _, err := s.Get(ctx, "b"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("get after delete: %v, want ErrNotFound", err)
	}
	if _, err := s.Delete(ctx, who, "b"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("delete again: %v, want ErrNotFound", err)
	}
	if v, err := s.Version(ctx); err != nil || v != last() {
		t.Errorf("version %s, %v; want %s", v, err, last())
	}
}

// Replace swaps the whole set in one step, in a new epoch, and keeps the
// drains.
func testReplace(t *testing.T, h Harness) {
	ctx := t.Context()
	s := open(t, h)
	for i := range 3 {
		if _, err := s.Put(ctx, who, Override(fmt.Sprintf("old-%d", i), i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Drain(ctx, who, store.Drain{Registry: "hub", By: who}); err != nil {
		t.Fatal(err)
	}
	before, _ := s.Version(ctx)
	var next []rules.Override
	for i := range 500 {
		next = append(next, Override(fmt.Sprintf("new-%03d", i), i))
	}
	v, err := s.Replace(ctx, who, next)
	if err != nil {
		t.Fatal(err)
	}
	if v.Epoch == before.Epoch {
		t.Errorf("Replace: version %s after %s, want a new epoch", v, before)
	}
	st, err := s.Load(ctx)
	if err != nil || st.Version != v || len(st.Overrides) != 500 || st.Overrides[0].ID != "new-000" || len(st.Drains) != 1 {
		t.Errorf("after Replace: %d overrides (first %v), %d drains, version %s, %v", len(st.Overrides), idsOf(st.Overrides[:min(1, len(st.Overrides))]), len(st.Drains), st.Version, err)
	}
	if _, err := s.Replace(ctx, who, []rules.Override{Override("dup", 1), Override("dup", 2)}); err == nil {
		t.Error("Replace with a duplicate ID succeeded")
	}
	if v2, err := s.Put(ctx, who, Override("after", 1)); err != nil || !v.Next(v2) {
		t.Errorf("a write after Replace: %s, %v; want the write after %s", v2, err, v)
	}
	if v3, err := s.Replace(ctx, who, nil); err != nil || v3.Epoch <= v.Epoch {
		t.Errorf("Replace with nothing: %s, %v", v3, err)
	} else if st, _ := s.Load(ctx); len(st.Overrides) != 0 {
		t.Errorf("Replace with nothing left %d overrides", len(st.Overrides))
	}
}

func testDrains(t *testing.T, h Harness) {
	ctx := t.Context()
	s := open(t, h)
	at := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	d := store.Drain{Registry: "eu", By: "alice", At: at, Note: "maintenance"}
	if _, err := s.Drain(ctx, who, d); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Drain(ctx, who, store.Drain{Registry: "us", By: "bob", At: at}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Drain(ctx, who, store.Drain{}); err == nil {
		t.Error("a drain without a registry succeeded")
	}
	st, err := s.Load(ctx)
	if err != nil || len(st.Drains) != 2 || !reflect.DeepEqual(st.Drains[0], d) || st.Drains[1].Registry != "us" {
		t.Errorf("drains: %+v, %v; want eu then us", st.Drains, err)
	}
	if _, err := s.Undrain(ctx, who, "eu"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Undrain(ctx, who, "eu"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("undrain again: %v, want ErrNotFound", err)
	}
	if st, _ := s.Load(ctx); len(st.Drains) != 1 || st.Drains[0].Registry != "us" {
		t.Errorf("after undrain: %+v", st.Drains)
	}
}

// Every write is in the audit trail, newest first, with who made it and
// what was there before and after.
func testAudit(t *testing.T, h Harness) {
	ctx := t.Context()
	s := open(t, h)
	steps := []struct {
		op, id string
		write  func() (store.Version, error)
	}{
		{store.OpCreate, "a", func() (store.Version, error) { return s.Create(ctx, "alice", Override("a", 1)) }},
		{store.OpReplace, "a", func() (store.Version, error) { return s.Put(ctx, "bob", Override("a", 2)) }},
		{store.OpDrain, "eu", func() (store.Version, error) { return s.Drain(ctx, "carol", store.Drain{Registry: "eu"}) }},
		{store.OpUndrain, "eu", func() (store.Version, error) { return s.Undrain(ctx, "dave", "eu") }},
		{store.OpDelete, "a", func() (store.Version, error) { return s.Delete(ctx, "erin", "a") }},
		{store.OpReplaceAll, "", func() (store.Version, error) { return s.Replace(ctx, "frank", []rules.Override{Override("z", 3)}) }},
	}
	var versions []store.Version
	for _, st := range steps {
		v, err := st.write()
		if err != nil {
			t.Fatalf("%s: %v", st.op, err)
		}
		versions = append(versions, v)
	}
	if _, err := s.Create(ctx, "mallory", Override("z", 3)); err == nil {
		t.Fatal("a conflicting create succeeded")
	}
	got, err := s.Audit(ctx, 100)
	if err != nil || len(got) != len(steps) {
		t.Fatalf("audit: %d entries, %v; want %d (a failed write leaves none)", len(got), err, len(steps))
	}
	for i, e := range got {
		st, who := steps[len(steps)-1-i], []string{"alice", "bob", "carol", "dave", "erin", "frank"}[len(steps)-1-i]
		if e.Op != st.op || e.ID != st.id || e.Who != who || e.Version != versions[len(steps)-1-i] || e.At.IsZero() {
			t.Errorf("audit[%d] = %s %q by %s at %s (%s); want %s %q by %s at %s", i, e.Op, e.ID, e.Who, e.Version, e.At, st.op, st.id, who, versions[len(steps)-1-i])
		}
	}
	if replaced := got[len(got)-2]; replaced.Op == store.OpReplace && (replaced.Before == nil || replaced.After == nil) {
		t.Errorf("a replacement's entry lacks before or after: %s / %s", replaced.Before, replaced.After)
	}
	if deleted := got[1]; deleted.Before == nil || len(deleted.After) != 0 && string(deleted.After) != "null" {
		t.Errorf("a deletion's entry: before %s, after %s", deleted.Before, deleted.After)
	}
	if two, _ := s.Audit(ctx, 2); len(two) != 2 || two[0].Op != store.OpReplaceAll {
		t.Errorf("Audit(2): %+v", two)
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
		if _, err := s.Put(ctx, who, o); err != nil {
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
				var v store.Version
				var err error
				if i%2 == 0 {
					v, err = s.Create(ctx, who, o)
				} else {
					v, err = s.Put(ctx, who, o)
				}
				if err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
				mu.Lock()
				if v.Epoch != v0.Epoch {
					t.Errorf("a write changed the epoch: %s after %s", v, v0)
				}
				versions = append(versions, v.N)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.Sort(versions)
	for i, v := range versions {
		if v != v0.N+uint64(i)+1 {
			t.Fatalf("versions after %s: %v; want each of %d..%d once", v0, versions, v0.N+1, v0.N+writers*each)
		}
	}
	st, err := s.Load(ctx)
	if err != nil || len(st.Overrides) != writers*each || st.Version.N != v0.N+writers*each {
		t.Errorf("load: %d overrides at version %s, %v; want %d at %d", len(st.Overrides), st.Version, err, writers*each, v0.N+writers*each)
	}
}

// Changes delivers every write with what it changed, in order; a slow
// reader is told to reload rather than left behind, and the channel
// closes when its context ends or the store closes.
func testChanges(t *testing.T, h Harness) {
	s := open(t, h)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ch := s.Changes(ctx)
	// A subscription may take a moment to be in place (Redis): write
	// until a notification comes.
	deadline := time.After(10 * time.Second)
	for i := 0; ; i++ {
		v, err := s.Put(t.Context(), who, Override(fmt.Sprintf("first-%d", i), i))
		if err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-ch:
			if got.Version != v || got.Override == nil || got.Override.ID != fmt.Sprintf("first-%d", i) {
				t.Fatalf("notified of %+v after writing %s", got, v)
			}
		case <-time.After(100 * time.Millisecond):
			continue
		case <-deadline:
			t.Fatal("no notification within 10 s of writing")
		}
		break
	}
	// Each kind of write, read as it comes: what it changed, in order.
	next := func(what string, v store.Version, check func(store.Change) bool) {
		t.Helper()
		select {
		case c := <-ch:
			if c.Version != v || !check(c) {
				t.Errorf("%s at %s: notified %+v", what, v, c)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s at %s: no notification", what, v)
		}
	}
	v, _ := s.Delete(t.Context(), who, "first-0")
	next("delete", v, func(c store.Change) bool { return c.Deleted == "first-0" })
	v, _ = s.Drain(t.Context(), who, store.Drain{Registry: "eu"})
	next("drain", v, func(c store.Change) bool { return c.Drain != nil && c.Drain.Registry == "eu" })
	v, _ = s.Undrain(t.Context(), who, "eu")
	next("undrain", v, func(c store.Change) bool { return c.Undrained == "eu" })
	v, _ = s.Replace(t.Context(), who, []rules.Override{Override("x", 1)})
	next("replace", v, func(c store.Change) bool { return c.Whole() })

	// Many writes, not read meanwhile: the latest version arrives, and
	// any gap is a Whole change, never a silent skip.
	var last store.Version
	for i := range 300 {
		v, err := s.Put(t.Context(), who, Override(fmt.Sprintf("burst-%d", i), i))
		if err != nil {
			t.Fatal(err)
		}
		last = v
	}
	timeout := time.After(10 * time.Second)
	prev := v
	for got := (store.Change{}); got.Version != last; {
		select {
		case got = <-ch:
			if !prev.Next(got.Version) && !got.Whole() {
				t.Fatalf("after %s came %s without a Whole change to say what was missed", prev, got.Version)
			}
			prev = got.Version
		case <-timeout:
			t.Fatalf("the latest version %s was never notified (last seen %s)", last, prev)
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
		if _, err := s.Put(ctx, who, Override(fmt.Sprintf("r%d", i), i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Delete(ctx, who, "r2"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Drain(ctx, who, store.Drain{Registry: "eu"}); err != nil {
		t.Fatal(err)
	}
	want, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s = h.Reopen(t, s)
	defer s.Close()
	got, err := s.Load(ctx)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("after reopening: %+v, %v; want %+v", got, err, want)
	}
	if v, err := s.Put(ctx, who, Override("after", 9)); err != nil || !want.Version.Next(v) {
		t.Errorf("a write after reopening: version %s, %v; want the one after %s", v, err, want.Version)
	}
	if a, err := s.Audit(ctx, 100); err != nil || len(a) != 8 {
		t.Errorf("the audit trail after reopening: %d entries, %v; want 8", len(a), err)
	}
}

// Stored data that no longer decodes is refused, never read as an empty
// set: serving no overrides would silently undo every one of them.
func testCorrupt(t *testing.T, h Harness) {
	s := h.Open(t)
	if _, err := s.Put(t.Context(), who, Override("x", 1)); err != nil {
		t.Fatal(err)
	}
	s, err := h.Corrupt(t, s)
	if err != nil {
		t.Logf("refused at open: %v", err)
		return
	}
	defer s.Close()
	if st, err := s.Load(t.Context()); err == nil {
		t.Errorf("a corrupt store loaded %d overrides and no error", len(st.Overrides))
	}
}

func testUnavailable(t *testing.T, h Harness) {
	ctx := t.Context()
	s := open(t, h)
	if _, err := s.Put(ctx, who, Override("x", 1)); err != nil {
		t.Fatal(err)
	}
	h.Break(t, s)
	calls := map[string]func() error{
		"Load":    func() error { _, err := s.Load(ctx); return err },
		"Get":     func() error { _, err := s.Get(ctx, "x"); return err },
		"Put":     func() error { _, err := s.Put(ctx, who, Override("y", 2)); return err },
		"Create":  func() error { _, err := s.Create(ctx, who, Override("z", 3)); return err },
		"Delete":  func() error { _, err := s.Delete(ctx, who, "x"); return err },
		"Replace": func() error { _, err := s.Replace(ctx, who, nil); return err },
		"Drain":   func() error { _, err := s.Drain(ctx, who, store.Drain{Registry: "eu"}); return err },
		"Undrain": func() error { _, err := s.Undrain(ctx, who, "eu"); return err },
		"Version": func() error { _, err := s.Version(ctx); return err },
		"Audit":   func() error { _, err := s.Audit(ctx, 1); return err },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s on a broken store: %v, want ErrUnavailable", name, err)
		} else if strings.TrimSpace(err.Error()) == "" {
			t.Errorf("%s: an empty error message", name)
		}
	}
}
