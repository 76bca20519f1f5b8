// Package traffic keeps what the admin page shows of this replica's
// recent decisions: per-minute counts over the last hour, by registry
// and by reason kind, and a bounded sample of the client addresses seen,
// for previewing what a change would move. It is held in memory only:
// nothing is written anywhere, and a restart starts empty.
//
// Record is on every request's path, so it is built to cost about as
// much as an uncontended atomic add or two (see BenchmarkRecord):
//
//   - It does not read the clock. Run keeps a coarse clock (the current
//     minute), read with one atomic load; a recorder that is not running
//     reads time itself, which is correct but slower.
//   - Counters are spread over shards picked at random (the runtime's
//     per-thread generator), so that cores seldom write the same cache
//     line, and readers sum the shards.
//   - The sample is reservoir sampling (Vitter's algorithm R) per shard
//     and per five-minute window, in fixed slots written under a
//     per-slot sequence lock: no allocation, no mutex.
//
// Figures are approximate by design: an increment that races with the
// recycling of its minute's slot (once a minute per shard) may be lost.
// They are for people looking at a page, not for accounting; the
// Prometheus counters are the exact ones.
package traffic

import (
	"cmp"
	"context"
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"
)

// Kinds are the reason kinds counted: the part of a decision's reason
// before ':'. Anything else counts as "other".
var Kinds = []string{"cidr", "asn", "cloud", "country", "continent", "default", "fallback", "other"}

const (
	// Minutes is how far back counts go.
	Minutes = 60
	// windowMinutes is how long one sample window is. The sample of the
	// last hour is the union of the windows that lie in it, so a window
	// that is partly outside it makes the sample reach a little further.
	windowMinutes = 5
	windows       = Minutes/windowMinutes + 1 // a full hour of windows, and the current one
	shards        = 8
	kindOther     = 7
)

// Config is what New needs.
type Config struct {
	// Registries are the names of the configured registries. Decisions
	// for any other name are counted as "other".
	Registries []string
	// SampleSize is about how many client addresses the last hour's
	// sample holds; 2,000.
	SampleSize int
	// Now is the clock; nil: time.Now.
	Now func() time.Time
}

// Recorder counts decisions and samples client addresses. It is safe for
// concurrent use.
type Recorder struct {
	regs  []string
	now   func() time.Time
	clock atomic.Int64 // the current Unix minute, kept by Run; 0 when it is not running
	// perWindow is how many addresses one shard keeps of one window.
	perWindow int
	// width is the number of counters a minute has: Kinds, then the
	// registries, then "other".
	width  int
	shards [shards]shard
}

type shard struct {
	minutes [Minutes]atomic.Int64 // the Unix minute whose counts each slot holds
	counts  []atomic.Uint64       // Minutes × width
	windows [windows]window
	_       [64]byte // keeps the next shard's hot words off this one's last cache line
}

type window struct {
	id    atomic.Int64  // Unix minute / windowMinutes, +1 so that 0 means none
	seen  atomic.Uint64 // addresses offered to this window
	slots []slot
}

// slot holds one sampled address under a sequence lock: seq is odd
// while a writer is at it, and a reader that sees it change reads again.
type slot struct {
	seq    atomic.Uint32
	window atomic.Int64 // the window id it was written in
	hi, lo atomic.Uint64
}

// New returns a Recorder for the registries.
func New(cfg Config) *Recorder {
	size := cmp.Or(cfg.SampleSize, 2000)
	r := &Recorder{
		regs:      append([]string(nil), cfg.Registries...),
		now:       cfg.Now,
		perWindow: max(1, (size+shards*(windows-1)-1)/(shards*(windows-1))),
	}
	if r.now == nil {
		r.now = time.Now
	}
	r.width = len(Kinds) + len(r.regs) + 1
	for i := range r.shards {
		s := &r.shards[i]
		s.counts = make([]atomic.Uint64, Minutes*r.width)
		for w := range s.windows {
			s.windows[w].slots = make([]slot, r.perWindow)
		}
	}
	return r
}

// Run keeps the coarse clock Record reads, until ctx is done.
func (r *Recorder) Run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		r.clock.Store(unixMinute(r.now()))
		select {
		case <-ctx.Done():
			r.clock.Store(0)
			return
		case <-t.C:
		}
	}
}

func unixMinute(t time.Time) int64 { return t.Unix() / 60 }

// Record counts one decision: the client it was for (the zero Addr when
// there was none), its reason ("cidr:10.0.0.0/8", "default",
// "fallback:unhealthy") and its registry.
func (r *Recorder) Record(addr netip.Addr, reason, registry string) {
	m := r.clock.Load()
	if m == 0 {
		m = unixMinute(r.now())
	}
	s := &r.shards[rand.Uint32()%shards]
	i := m % Minutes
	if got := s.minutes[i].Load(); got != m {
		if got > m || !s.minutes[i].CompareAndSwap(got, m) {
			return // the slot holds a later minute (the clock went back), or another writer just recycled it
		}
		for j := range r.width {
			s.counts[int(i)*r.width+j].Store(0)
		}
	}
	row := s.counts[int(i)*r.width : int(i+1)*r.width]
	row[kindIndex(reason)].Add(1)
	row[len(Kinds)+r.regIndex(registry)].Add(1)
	if addr.IsValid() {
		s.sample(m/windowMinutes+1, addr, r.perWindow)
	}
}

// kindIndex is the index in Kinds of reason's kind.
func kindIndex(reason string) int {
	kind := reason
	if i := strings.IndexByte(reason, ':'); i >= 0 {
		kind = reason[:i]
	}
	switch kind {
	case "cidr":
		return 0
	case "asn":
		return 1
	case "cloud":
		return 2
	case "country":
		return 3
	case "continent":
		return 4
	case "default":
		return 5
	case "fallback":
		return 6
	}
	return kindOther
}

// regIndex is the registry's index, or len(regs) for "other". A scan:
// there are a handful of registries, and the engine hands out the same
// strings every time, so each comparison is a length and a pointer.
func (r *Recorder) regIndex(name string) int {
	for i, n := range r.regs {
		if n == name {
			return i
		}
	}
	return len(r.regs)
}

// sample offers addr to the window's reservoir (algorithm R: the n-th
// address replaces a random one of k slots with probability k/n, so that
// every address offered is equally likely to be held).
func (s *shard) sample(id int64, addr netip.Addr, k int) {
	w := &s.windows[id%windows]
	if got := w.id.Load(); got != id {
		if got > id || !w.id.CompareAndSwap(got, id) {
			return
		}
		w.seen.Store(0)
	}
	n := w.seen.Add(1)
	j := n - 1
	if n > uint64(k) {
		if j = rand.Uint64N(n); j >= uint64(k) {
			return
		}
	}
	w.slots[j].store(id, addr)
}

func (sl *slot) store(id int64, addr netip.Addr) {
	seq := sl.seq.Load()
	if seq&1 == 1 || !sl.seq.CompareAndSwap(seq, seq+1) {
		return // another writer has the slot: one of the two is kept, as if chosen
	}
	b := addr.As16()
	sl.window.Store(id)
	sl.hi.Store(binary.BigEndian.Uint64(b[:8]))
	sl.lo.Store(binary.BigEndian.Uint64(b[8:]))
	sl.seq.Store(seq + 2)
}

func (sl *slot) load() (id int64, addr netip.Addr, ok bool) {
	for range 4 {
		seq := sl.seq.Load()
		if seq&1 == 1 {
			continue
		}
		id, hi, lo := sl.window.Load(), sl.hi.Load(), sl.lo.Load()
		if sl.seq.Load() == seq {
			var b [16]byte
			binary.BigEndian.PutUint64(b[:8], hi)
			binary.BigEndian.PutUint64(b[8:], lo)
			return id, netip.AddrFrom16(b).Unmap(), seq != 0
		}
	}
	return 0, netip.Addr{}, false
}
