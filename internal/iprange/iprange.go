// Package iprange answers "which value holds for this IPv4 address" from a
// flat table of address ranges, for prefix sets that are built once and read
// on every request: GeoIP networks, cloud ranges, CIDR rules and overrides.
//
// A prefix trie reads a node on each of several levels, each a likely cache
// miss on a server whose caches the network stack keeps evicting. Here the
// IPv4 space is cut into contiguous ranges, each with one value, the most
// specific prefix covering it winning; a lookup reads one entry of an
// index by the address's top bits (16 for a large table, fewer for a small
// one, so that its index stays in cache) and then, nearly always, one
// cache line of ranges. A Table's arrays live off the Go heap
// (internal/offheap), on huge pages when they fill one.
package iprange

import (
	"cmp"
	"fmt"
	"math"
	"math/bits"
	"net/netip"
	"runtime"
	"slices"

	"github.com/reghost/reghost/internal/offheap"
)

// None is the value of addresses no prefix covers. It cannot be added.
const None = math.MaxUint32

// Table maps IPv4 addresses to values. The zero Table holds nothing. Use
// a Table through the pointer Build returns, never a copy: its memory is
// freed when that Table becomes unreachable.
type Table struct {
	// ents holds each range as its first address in the high 32 bits and
	// its value in the low 32, in ascending order, ents[0] starting at
	// 0.0.0.0; neighbours never have equal values. One array rather than
	// two keeps a range's start and value in the same cache line.
	ents []uint64
	// idx[h] is the range holding the address h<<shift, and its last
	// entry the last range: the range holding ip lies in
	// ents[idx[ip>>shift] : idx[ip>>shift+1]+1].
	idx   []uint32
	shift uint8 // 32 minus the index's bits; 32 for one block
}

// Lookup returns the value of the most specific prefix holding ip, an
// IPv4 address as a big-endian number; ok is false when none does.
func (t *Table) Lookup(ip uint32) (v uint32, ok bool) {
	if t == nil || len(t.idx) == 0 {
		return None, false
	}
	hi := ip >> t.shift
	ents := t.ents[t.idx[hi] : t.idx[hi+1]+1]
	// ents[0] starts at or before ip: find the last entry that does.
	key := uint64(ip)<<32 | math.MaxUint32
	i, j := 1, len(ents)
	for i < j {
		m := int(uint(i+j) >> 1)
		if ents[m] <= key {
			i = m + 1
		} else {
			j = m
		}
	}
	v = uint32(ents[i-1])
	runtime.KeepAlive(t) // ents is t's memory: see offheap
	return v, v != None
}

// Touch reads the first memory a lookup of ip reads, and returns
// something derived from it that means nothing. A caller about to look an
// address up in several tables touches them all first and then looks up:
// the cache misses of the tables then overlap rather than follow one
// another. The caller must use the result (a comparison will do), or the
// compiler drops the reads.
func (t *Table) Touch(ip uint32) uint64 {
	if t == nil || len(t.idx) == 0 {
		return 0
	}
	v := t.ents[t.idx[ip>>t.shift]]
	runtime.KeepAlive(t)
	return v
}

// LookupAddr is Lookup for an IPv4 address; any other answers nothing.
func (t *Table) LookupAddr(a netip.Addr) (uint32, bool) {
	if !a.Is4() {
		return None, false
	}
	return t.Lookup(Uint32(a))
}

// Len is the number of ranges, gaps included.
func (t *Table) Len() int {
	if t == nil {
		return 0
	}
	return len(t.ents)
}

// Uint32 returns an IPv4 address as a big-endian number.
func Uint32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// Builder collects prefixes for a Table. Prefixes may come in any order
// and nest; the most specific prefix holding an address gives its value,
// and of equal prefixes the one added last.
type Builder struct {
	ps []prefix
}

type prefix struct {
	start uint32
	bits  uint8
	seq   uint32 // order added, for equal prefixes
	v     uint32
}

// Add adds an IPv4 prefix (host bits are ignored) with its value.
func (b *Builder) Add(p netip.Prefix, v uint32) error {
	if !p.IsValid() || !p.Addr().Is4() {
		return fmt.Errorf("%s is not an IPv4 network", p)
	}
	if v == None {
		return fmt.Errorf("value %d for %s is out of range", v, p)
	}
	b.ps = append(b.ps, prefix{start: Uint32(p.Masked().Addr()), bits: uint8(p.Bits()), seq: uint32(len(b.ps)), v: v})
	return nil
}

// Build returns the table of what was added. The Builder may be reused.
func (b *Builder) Build() *Table {
	// Enclosing prefixes sort before what they enclose: by start, then
	// shortest first, then in the order added.
	slices.SortFunc(b.ps, func(x, y prefix) int {
		return cmp.Or(cmp.Compare(x.start, y.start), cmp.Compare(x.bits, y.bits), cmp.Compare(x.seq, y.seq))
	})
	w := writer{ents: make([]uint64, 0, 2*len(b.ps)+1)}
	w.set(0, None)
	// open holds the prefixes enclosing the current address, innermost
	// last. A prefix's value holds from its start; where it ends, the
	// value of the prefix around it holds again.
	type span struct {
		end uint64 // first address after the prefix
		v   uint32
	}
	var open []span
	closeUntil := func(at uint64) {
		for len(open) > 0 && open[len(open)-1].end <= at {
			end := open[len(open)-1].end
			open = open[:len(open)-1]
			v := uint32(None)
			if len(open) > 0 {
				v = open[len(open)-1].v
			}
			if end < 1<<32 {
				w.set(uint32(end), v)
			}
		}
	}
	for _, p := range b.ps {
		closeUntil(uint64(p.start))
		open = append(open, span{end: uint64(p.start) + 1<<(32-p.bits), v: p.v})
		w.set(p.start, p.v)
	}
	closeUntil(1 << 32)

	t := new(Table)
	t.ents = offheap.Copy(t, w.ents)
	// About four ranges a block, at most 2^16 blocks: 256 KiB of index
	// for the largest tables, a few bytes for a handful of CIDR rules.
	idxBits := min(bits.Len(uint(len(t.ents)/4)), 16)
	t.shift = uint8(32 - idxBits)
	blocks := 1 << idxBits
	t.idx = offheap.Make[uint32](t, blocks+1)
	i := 0
	for h := range blocks {
		for i+1 < len(t.ents) && uint64(t.ents[i+1]>>32) <= uint64(h)<<t.shift {
			i++
		}
		t.idx[h] = uint32(i)
	}
	t.idx[blocks] = uint32(len(t.ents) - 1)
	return t
}

// writer appends ranges, each at or after the previous one's start.
type writer struct{ ents []uint64 }

// set makes v the value from start on.
func (w *writer) set(start, v uint32) {
	n := len(w.ents)
	if n > 0 && uint32(w.ents[n-1]>>32) == start {
		// A prefix starting where another starts or ends replaces the
		// range that would have begun there.
		w.ents = w.ents[:n-1]
		n--
	}
	if n > 0 && uint32(w.ents[n-1]) == v {
		return // joined with the range before
	}
	w.ents = append(w.ents, uint64(start)<<32|uint64(v))
}
