package iprange

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"net/netip"
	"slices"

	"github.com/reghost/reghost/internal/offheap"
)

// Builder collects prefixes for a Table. Prefixes may come in any order
// and nest; the most specific prefix holding an address gives its value,
// and of equal prefixes the one added last.
type Builder struct{ b builder }

// Add adds an IPv4 prefix (host bits are ignored) with its value.
func (b *Builder) Add(p netip.Prefix, v uint32) error {
	if !p.IsValid() || !p.Addr().Is4() {
		return fmt.Errorf("%s is not an IPv4 network", p)
	}
	return b.b.add(p, u128{0, uint64(Uint32(p.Masked().Addr()))}, 32, v)
}

// Build returns the table of what was added. The Builder may be reused.
func (b *Builder) Build() *Table {
	rs := b.b.ranges(u128{0, math.MaxUint32})
	t := new(Table)
	t.ents = offheap.Make[uint64](t, len(rs))
	for i, r := range rs {
		t.ents[i] = r.start.lo<<32 | uint64(r.v)
	}
	idxBits := indexBits(len(rs))
	t.shift = uint8(32 - idxBits)
	t.idx = index(t, rs, idxBits, func(block uint64) u128 { return u128{0, block << t.shift} })
	return t
}

// Builder6 collects IPv6 prefixes for a Table6, as Builder does IPv4 ones.
type Builder6 struct{ b builder }

// Add adds an IPv6 prefix (host bits are ignored) with its value.
func (b *Builder6) Add(p netip.Prefix, v uint32) error {
	if !p.IsValid() || !p.Addr().Is6() {
		return fmt.Errorf("%s is not an IPv6 network", p)
	}
	return b.b.add(p, addr128(p.Masked().Addr()), 128, v)
}

// Build returns the table of what was added. The Builder6 may be reused.
func (b *Builder6) Build() *Table6 {
	rs := b.b.ranges(u128{math.MaxUint64, math.MaxUint64})
	t := new(Table6)
	t.ents = offheap.Make[range6](t, len(rs))
	for i, r := range rs {
		t.ents[i] = range6{hi: r.start.hi, lo: r.start.lo, v: r.v}
	}
	// The index covers the part of the space where the ranges after the
	// first (at ::) start, the bits they all share skipped: IPv6
	// networks are mostly in 2000::/4, where the top 16 bits alone would
	// leave most blocks empty and a few long.
	idxBits := indexBits(len(rs))
	if n := len(rs); n > 1 {
		t.skip = uint8(min(bits.LeadingZeros64(rs[1].start.hi^rs[n-1].start.hi), 64-idxBits))
		t.base = rs[1].start.hi >> (64 - t.skip)
	}
	t.shift = uint8(64 - idxBits)
	t.idx = index(t, rs, idxBits, func(block uint64) u128 {
		return u128{t.base<<(64-t.skip) | block<<(t.shift-t.skip), 0}
	})
	return t
}

// indexBits sizes a table's index: about four ranges a block, at most
// 2^16 blocks (256 KiB of index for the largest tables, a few bytes for a
// handful of CIDR rules).
func indexBits(ranges int) int { return min(bits.Len(uint(ranges/4)), 16) }

// index returns, for each of 2^bits blocks, the range holding the block's
// first address, first(block), and the last range after them.
func index[O any](owner *O, rs []rng, bits int, first func(block uint64) u128) []uint32 {
	blocks := 1 << bits
	idx := offheap.Make[uint32](owner, blocks+1)
	i := 0
	for h := range blocks {
		at := first(uint64(h))
		for i+1 < len(rs) && rs[i+1].start.compare(at) <= 0 {
			i++
		}
		idx[h] = uint32(i)
	}
	idx[blocks] = uint32(len(rs) - 1)
	return idx
}

// u128 is an address as a number: an IPv4 address in the low 32 bits.
type u128 struct{ hi, lo uint64 }

func addr128(a netip.Addr) u128 {
	b := a.As16()
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

func (a u128) compare(b u128) int { return cmp.Or(cmp.Compare(a.hi, b.hi), cmp.Compare(a.lo, b.lo)) }

// last returns the last address of the network at a with host host bits.
func (a u128) last(host int) u128 {
	switch {
	case host >= 128:
		return u128{math.MaxUint64, math.MaxUint64}
	case host >= 64:
		return u128{a.hi | (1<<(host-64) - 1), math.MaxUint64}
	}
	return u128{a.hi, a.lo | (1<<host - 1)}
}

// next returns the address after a; ok is false after the last one.
func (a u128) next() (n u128, ok bool) {
	n = u128{a.hi, a.lo + 1}
	if n.lo == 0 {
		n.hi++
		return n, n.hi != 0
	}
	return n, true
}

// builder turns nested prefixes into ranges, for IPv4 and IPv6 alike.
type builder struct{ ps []prefix }

type prefix struct {
	start, last u128
	seq         uint32 // order added, for equal prefixes
	v           uint32
}

// rng is a range: from start until the next range's start, v holds.
type rng struct {
	start u128
	v     uint32
}

func (b *builder) add(p netip.Prefix, start u128, width int, v uint32) error {
	if v == None {
		return fmt.Errorf("value %d for %s is out of range", v, p)
	}
	b.ps = append(b.ps, prefix{start: start, last: start.last(width - p.Bits()), seq: uint32(len(b.ps)), v: v})
	return nil
}

// ranges returns the ranges of the address space up to spaceLast, the
// first starting at zero, in ascending order, neighbours never with equal
// values.
func (b *builder) ranges(spaceLast u128) []rng {
	// Enclosing prefixes sort before what they enclose: by start, then
	// widest first, then in the order added.
	slices.SortFunc(b.ps, func(x, y prefix) int {
		return cmp.Or(x.start.compare(y.start), y.last.compare(x.last), cmp.Compare(x.seq, y.seq))
	})
	rs := make([]rng, 0, 2*len(b.ps)+1)
	// set makes v the value from start on.
	set := func(start u128, v uint32) {
		n := len(rs)
		if n > 0 && rs[n-1].start == start {
			// A prefix starting where another starts or ends replaces
			// the range that would have begun there.
			rs = rs[:n-1]
			n--
		}
		if n > 0 && rs[n-1].v == v {
			return // joined with the range before
		}
		rs = append(rs, rng{start, v})
	}
	set(u128{}, None)
	// open holds the prefixes enclosing the current address, innermost
	// last. A prefix's value holds from its start; after its last
	// address, the value of the prefix around it holds again.
	var open []prefix
	closeBefore := func(at u128, all bool) {
		for len(open) > 0 && (all || open[len(open)-1].last.compare(at) < 0) {
			end := open[len(open)-1].last
			open = open[:len(open)-1]
			v := uint32(None)
			if len(open) > 0 {
				v = open[len(open)-1].v
			}
			if after, ok := end.next(); ok && after.compare(spaceLast) <= 0 {
				set(after, v)
			}
		}
	}
	for _, p := range b.ps {
		closeBefore(p.start, false)
		open = append(open, p)
		set(p.start, p.v)
	}
	closeBefore(u128{}, true)
	return rs
}
