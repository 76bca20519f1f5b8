package iprange

import (
	"encoding/binary"
	"net/netip"
	"runtime"
)

// Table6 maps IPv6 addresses to values, as Table does IPv4 ones, from
// ranges over the 128-bit space. It replaces a prefix trie whose nodes,
// tens of thousands of small objects for a GeoIP database or a set of
// overrides, the collector marked on every cycle; a Table6 is a few
// arrays off the Go heap. The zero Table6 holds nothing. Use a Table6
// through the pointer Build returns, never a copy.
//
// IPv6 networks are far from evenly spread: nearly all are in 2000::/4,
// and there in a few registries' blocks. So the index is nested: a node
// indexes the addresses whose top bits are those all its ranges share,
// by the bits after them, and a block of the index that still holds
// many ranges has a node of its own, one level down, until a block
// holds a few ranges, which a binary search finds in a cache line or
// two.
type Table6 struct {
	// ents is as Table's, with a range's start split: its high 64 bits
	// in the entry and, for the few ranges not starting on a /64, its
	// low 64 bits in los, so that an entry is 16 bytes.
	ents   []range6
	los    []uint64 // los[0] is 0
	nodes  []node6  // nodes[0] is the root
	blocks []block6
}

// range6 is a range's value and first address: hi, and los[lo].
type range6 struct {
	hi uint64
	v  uint32
	lo uint32
}

// node6 indexes ents[first:last+1], the ranges holding a part of the
// space: a prefix, or all of it for the root. Below the addresses whose
// top skip bits are base, ents[first] holds; above them, ents[last].
// Its blocks are blocks[at : at+2^bits+1], by the bits after skip.
type node6 struct {
	base        uint64
	first, last uint32
	at          uint32
	skip, shift uint8 // shift is 64 minus the bits
}

// block6 is the range holding a block's first address and, for a block
// of many ranges, the node that indexes it (0 when none: the root is no
// block's node).
type block6 struct{ first, node uint32 }

// Lookup returns the value of the most specific prefix holding a; ok is
// false when none does or a is not an IPv6 address. IPv4-mapped
// addresses are IPv6 addresses here: unmap them first to look them up as
// IPv4.
func (t *Table6) Lookup(a netip.Addr) (v uint32, ok bool) {
	if t == nil || len(t.nodes) == 0 || !a.Is6() {
		return None, false
	}
	b := a.As16()
	hi, lo := binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
	n := &t.nodes[0]
	for {
		if top := hi >> (64 - n.skip); top != n.base {
			i := n.last
			if top < n.base {
				i = n.first
			}
			v = t.ents[i].v
			runtime.KeepAlive(t)
			return v, v != None
		}
		h := n.at + uint32(hi<<n.skip>>n.shift)
		if c := t.blocks[h].node; c != 0 {
			n = &t.nodes[c]
			continue
		}
		ents := t.ents[t.blocks[h].first : t.blocks[h+1].first+1]
		// ents[0] starts at or before a: find the last entry that does.
		i, j := 1, len(ents)
		for i < j {
			m := int(uint(i+j) >> 1)
			if e := &ents[m]; e.hi < hi || e.hi == hi && t.los[e.lo] <= lo {
				i = m + 1
			} else {
				j = m
			}
		}
		v = ents[i-1].v
		runtime.KeepAlive(t) // ents is t's memory: see offheap
		return v, v != None
	}
}

// Len is the number of ranges, gaps included.
func (t *Table6) Len() int {
	if t == nil {
		return 0
	}
	return len(t.ents)
}
