package traffic

import (
	"context"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// clock is a settable clock for tests.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock { c := &clock{}; c.set(t); return c }
func (c *clock) set(t time.Time)  { c.ns.Store(t.UnixNano()) }
func (c *clock) add(d time.Duration) {
	c.ns.Add(int64(d))
}
func (c *clock) now() time.Time { return time.Unix(0, c.ns.Load()).UTC() }

var t0 = time.Date(2030, 1, 2, 3, 4, 0, 0, time.UTC)

func TestCountsByKindAndRegistry(t *testing.T) {
	t.Parallel()
	c := newClock(t0)
	r := New(Config{Registries: []string{"k8s", "aws"}, Now: c.now})
	a := netip.MustParseAddr("192.0.2.1")
	r.Record(a, "cidr:192.0.2.0/24", "aws")
	r.Record(a, "cloud:aws/us-east-2", "aws")
	r.Record(a, "default", "k8s")
	c.add(time.Minute)
	r.Record(a, "fallback:unhealthy", "k8s")
	r.Record(netip.Addr{}, "weird", "gone") // another kind, another registry: "other"

	s := r.Snapshot(c.now())
	if len(s.Minutes) != Minutes {
		t.Fatalf("%d minutes, want %d", len(s.Minutes), Minutes)
	}
	if got, want := s.Registries, []string{"k8s", "aws", "other"}; !slices.Equal(got, want) {
		t.Fatalf("Registries = %v, want %v", got, want)
	}
	last, prev := s.Minutes[Minutes-1], s.Minutes[Minutes-2]
	if !last.Start.Equal(t0.Add(time.Minute)) || !prev.Start.Equal(t0) {
		t.Errorf("minute starts %v, %v; want %v, %v", prev.Start, last.Start, t0, t0.Add(time.Minute))
	}
	check := func(name string, m Minute, total uint64, kinds map[string]uint64, regs []uint64) {
		t.Helper()
		if m.Total != total {
			t.Errorf("%s: total %d, want %d", name, m.Total, total)
		}
		for i, k := range Kinds {
			if m.ByKind[i] != kinds[k] {
				t.Errorf("%s: kind %s = %d, want %d", name, k, m.ByKind[i], kinds[k])
			}
		}
		if !slices.Equal(m.ByRegistry, regs) {
			t.Errorf("%s: by registry %v, want %v", name, m.ByRegistry, regs)
		}
	}
	check("first minute", prev, 3, map[string]uint64{"cidr": 1, "cloud": 1, "default": 1}, []uint64{1, 2, 0})
	check("second minute", last, 2, map[string]uint64{"fallback": 1, "other": 1}, []uint64{1, 0, 1})
	total, byKind, byReg := s.Totals()
	if total != 5 || byKind[0] != 1 || !slices.Equal(byReg, []uint64{2, 2, 1}) {
		t.Errorf("Totals = %d, %v, %v", total, byKind, byReg)
	}
}

// A minute older than an hour is gone, and its slot counts afresh when
// the clock comes round to it again.
func TestOldMinutesDropOut(t *testing.T) {
	t.Parallel()
	c := newClock(t0)
	r := New(Config{Registries: []string{"k8s"}, Now: c.now})
	for range 10 {
		r.Record(netip.Addr{}, "default", "k8s")
	}
	c.add(59 * time.Minute)
	if total, _, _ := r.Snapshot(c.now()).Totals(); total != 10 {
		t.Fatalf("59 minutes on: total %d, want 10", total)
	}
	c.add(time.Minute)
	if total, _, _ := r.Snapshot(c.now()).Totals(); total != 0 {
		t.Fatalf("an hour on: total %d, want 0", total)
	}
	r.Record(netip.Addr{}, "asn:1", "k8s") // the same slot as t0's minute
	s := r.Snapshot(c.now())
	if total, byKind, _ := s.Totals(); total != 1 || byKind[1] != 1 {
		t.Fatalf("recycled slot: total %d by kind %v, want 1 asn", total, byKind)
	}
}

func TestSampleKeepsEveryAddressUntilFull(t *testing.T) {
	t.Parallel()
	c := newClock(t0)
	r := New(Config{Registries: []string{"k8s"}, Now: c.now})
	var want []netip.Addr
	for i := range 10 {
		a := netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})
		want = append(want, a)
		r.Record(a, "default", "k8s")
	}
	v6 := netip.MustParseAddr("2001:db8::7")
	want = append(want, v6)
	r.Record(v6, "default", "k8s")
	r.Record(netip.Addr{}, "fallback:no-address", "k8s") // no address: not sampled
	got := r.Sample(c.now())
	slices.SortFunc(got, netip.Addr.Compare)
	slices.SortFunc(want, netip.Addr.Compare)
	if !slices.Equal(got, want) {
		t.Fatalf("Sample = %v\nwant %v", got, want)
	}
	c.add(66 * time.Minute)
	if got := r.Sample(c.now()); len(got) != 0 {
		t.Fatalf("more than an hour later: %d addresses sampled, want none", len(got))
	}
}

// The sample stays bounded however much is recorded, and represents the
// requests: a tenth of them from one network is about a tenth of it.
func TestSampleIsBoundedAndUniform(t *testing.T) {
	t.Parallel()
	c := newClock(t0)
	r := New(Config{Registries: []string{"k8s"}, SampleSize: 2000, Now: c.now})
	const n = 200_000
	for i := range n {
		if i%1000 == 0 {
			c.add(18 * time.Second) // an hour over the whole run
		}
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		if i%10 == 0 {
			a = netip.AddrFrom4([4]byte{172, 16, byte(i >> 8), byte(i)})
		}
		r.Record(a, "default", "k8s")
	}
	got := r.Sample(c.now())
	if len(got) < 1800 || len(got) > 2200 {
		t.Fatalf("sample of %d addresses, want about 2000", len(got))
	}
	in := 0
	for _, a := range got {
		if a.As4()[0] == 172 {
			in++
		}
	}
	if share := float64(in) / float64(len(got)); share < 0.07 || share > 0.13 {
		t.Errorf("%.3f of the sample from a network with 0.1 of the requests", share)
	}
}

func TestRunKeepsTheClock(t *testing.T) {
	t.Parallel()
	c := newClock(t0)
	r := New(Config{Registries: []string{"k8s"}, Now: c.now})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	for r.clock.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	if got := r.clock.Load(); got != unixMinute(t0) {
		t.Errorf("clock = %d, want %d", got, unixMinute(t0))
	}
	cancel()
	<-done
	if got := r.clock.Load(); got != 0 {
		t.Errorf("clock after Run = %d, want 0 (Record reads time itself)", got)
	}
}

// Record is on every request: it must not allocate.
func TestRecordDoesNotAllocate(t *testing.T) {
	r := New(Config{Registries: []string{"k8s", "aws"}})
	r.clock.Store(unixMinute(time.Now()))
	a := netip.MustParseAddr("2001:db8::1")
	if n := testing.AllocsPerRun(1000, func() { r.Record(a, "cloud:aws/us-east-2", "aws") }); n != 0 {
		t.Fatalf("Record allocates %v times", n)
	}
}

// Readers and writers at once, for the race detector: every read sees
// whole addresses, never a mix of two.
func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	r := New(Config{Registries: []string{"k8s"}, SampleSize: 50})
	addrs := []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::2")}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				r.Record(addrs[(i+w)%2], "default", "k8s")
			}
		})
	}
	for range 200 {
		for _, a := range r.Sample(time.Now()) {
			if !slices.Contains(addrs, a) {
				t.Errorf("sampled %v, never recorded", a)
			}
		}
		r.Snapshot(time.Now())
	}
	close(stop)
	wg.Wait()
}

func BenchmarkRecord(b *testing.B) {
	r := New(Config{Registries: []string{"k8s", "aws-us-east-2", "hub", "mirror"}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx)
	for r.clock.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	a := netip.MustParseAddr("203.0.113.9")
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r.Record(a, "cloud:aws/us-east-2", "aws-us-east-2")
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				r.Record(a, "country:SE", "mirror")
			}
		})
	})
}
