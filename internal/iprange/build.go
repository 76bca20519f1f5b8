package iprange

import (
	"cmp"
	"fmt"
	"math/bits"
	"net/netip"
	"slices"
)

// Builder collects prefixes for a Table. Prefixes may come in any order
// and nest; the most specific prefix holding an address gives its value,
// and of equal prefixes the one added last.
type Builder struct{ ps []prefix }

// prefix is an added network as the addresses from start to last, both
// included; uint64 so that the address after the last one, 2^32, is a
// number too.
type prefix struct {
	start, last uint64
	seq         uint32 // order added, for equal prefixes
	v           uint32
}

// Add adds an IPv4 prefix (host bits are ignored) with its value.
func (b *Builder) Add(p netip.Prefix, v uint32) error {
	switch {
	case !p.IsValid() || !p.Addr().Is4():
		return fmt.Errorf("%s is not an IPv4 network", p)
	case v == None:
		return fmt.Errorf("value %d for %s is out of range", v, p)
	}
	start := uint64(Uint32(p.Masked().Addr()))
	b.ps = append(b.ps, prefix{start: start, last: start | (1<<(32-p.Bits()) - 1), seq: uint32(len(b.ps)), v: v})
	return nil
}

// Build returns the table of what was added. The Builder may be reused.
func (b *Builder) Build() *Table {
	rs := b.ranges()
	t := &Table{ents: make([]uint64, len(rs))}
	for i, r := range rs {
		t.ents[i] = r.start<<32 | uint64(r.v)
	}
	// Two to four ranges a block, so that a block's ranges nearly always
	// share a cache line, and at most 2^18 blocks (1 MiB of index, which
	// GeoIP tables of half a million ranges and more fill).
	idxBits := min(bits.Len(uint(len(rs)/4)), 18)
	t.shift = uint8(32 - idxBits)
	blocks := 1 << idxBits
	t.idx = make([]uint32, blocks+1)
	i := 0
	for h := range blocks {
		at := uint64(h) << t.shift
		for i+1 < len(rs) && rs[i+1].start <= at {
			i++
		}
		t.idx[h] = uint32(i)
	}
	t.idx[blocks] = uint32(len(rs) - 1)
	return t
}

// rng is a range: from start until the next range's start, v holds.
type rng struct {
	start uint64
	v     uint32
}

// ranges returns the ranges of the IPv4 space, the first starting at
// zero, in ascending order, neighbours never with equal values.
func (b *Builder) ranges() []rng {
	// Enclosing prefixes sort before what they enclose: by start, then
	// widest first, then in the order added.
	slices.SortFunc(b.ps, func(x, y prefix) int {
		return cmp.Or(cmp.Compare(x.start, y.start), cmp.Compare(y.last, x.last), cmp.Compare(x.seq, y.seq))
	})
	rs := make([]rng, 0, 2*len(b.ps)+1)
	// set makes v the value from start on.
	set := func(start uint64, v uint32) {
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
	set(0, None)
	// open holds the prefixes enclosing the current address, innermost
	// last. A prefix's value holds from its start; after its last
	// address, the value of the prefix around it holds again.
	var open []prefix
	closeBefore := func(at uint64, all bool) {
		for len(open) > 0 && (all || open[len(open)-1].last < at) {
			end := open[len(open)-1].last
			open = open[:len(open)-1]
			v := uint32(None)
			if len(open) > 0 {
				v = open[len(open)-1].v
			}
			if end < 1<<32-1 {
				set(end+1, v)
			}
		}
	}
	for _, p := range b.ps {
		closeBefore(p.start, false)
		open = append(open, p)
		set(p.start, p.v)
	}
	closeBefore(0, true)
	return rs
}
