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
	idxBits := indexBits(len(rs), maxIndexBits4)
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
	los := []uint64{0}
	for i, r := range rs {
		t.ents[i] = range6{hi: r.start.hi, v: r.v}
		if r.start.lo != 0 {
			t.ents[i].lo = uint32(len(los))
			los = append(los, r.start.lo)
		}
	}
	t.los = offheap.Copy(t, los)
	ix := index6{rs: rs}
	ix.node(0, len(rs)-1)
	t.nodes = offheap.Copy(t, ix.nodes)
	t.blocks = offheap.Copy(t, ix.blocks)
	return t
}

// crowded is how many ranges a block of a Table6's index may hold before
// it gets a node of its own.
const crowded = 16

// index6 builds a Table6's nested index.
type index6 struct {
	rs     []rng
	nodes  []node6
	blocks []block6
}

// node adds the node of rs[first:last+1], and under it a node for each
// block that is crowded, and returns its index.
func (ix *index6) node(first, last int) uint32 {
	rs := ix.rs
	n := node6{first: uint32(first), last: uint32(last), at: uint32(len(ix.blocks))}
	// The bits that the starts of all ranges but the first share (rs
	// is in order, so those of the second and the last), and as many
	// after them as size the index to about four ranges a block.
	skip := 64
	if last > first {
		skip = bits.LeadingZeros64(rs[first+1].start.hi ^ rs[last].start.hi)
		n.base = rs[first+1].start.hi >> (64 - skip)
	}
	idxBits := min(indexBits(last-first+1, maxIndexBits6), 64-skip)
	n.skip, n.shift = uint8(skip), uint8(64-idxBits)
	// blockAt is the first address of block h.
	blockAt := func(h int) u128 {
		return u128{n.base<<(64-skip) | uint64(h)<<(64-skip-idxBits), 0}
	}
	id := uint32(len(ix.nodes))
	ix.nodes = append(ix.nodes, n)
	blocks := 1 << idxBits
	i := first
	for h := range blocks {
		at := blockAt(h)
		for i < last && rs[i+1].start.compare(at) <= 0 {
			i++
		}
		ix.blocks = append(ix.blocks, block6{first: uint32(i)})
	}
	ix.blocks = append(ix.blocks, block6{first: uint32(last)})
	if idxBits == 0 {
		return id // the ranges' starts differ only in their low 64 bits
	}
	for h := range blocks {
		b := int(n.at) + h
		lo, hi := int(ix.blocks[b].first), int(ix.blocks[b+1].first)
		if h+1 < blocks && rs[hi].start == blockAt(h+1) {
			hi-- // it starts the next block
		}
		if hi-lo+1 > crowded {
			// Each block holds fewer ranges than the node, since the
			// node's first index bit is the first its ranges differ in.
			c := ix.node(lo, hi)
			ix.blocks[b].node = c
		}
	}
	return id
}

// indexBits sizes an index: two to four ranges a block, so that a
// block's ranges nearly always share a cache line, and at most
// 2^maxBits blocks.
func indexBits(ranges, maxBits int) int { return min(bits.Len(uint(ranges/4)), maxBits) }

const (
	// maxIndexBits4 allows a Table 1 MiB of index, which tables of
	// half a million ranges and more take: the full-scale GeoIP ones
	// have 750,000. At 2^16
	// blocks (256 KiB) they held nine ranges a block, over two or three
	// cache lines, and lookups missed the lines after the first, which
	// Touch had read, one after another: bench/misses counted 2.4 such
	// misses a decision, and 1.3 at 2^18, for 0.5 more in Touch, where
	// they overlap.
	maxIndexBits4 = 18
	// maxIndexBits6 is less: a Table6 block of many ranges gets a node
	// of its own instead, and its blocks are twice an IPv4 index entry.
	maxIndexBits6 = 16
)

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
