package iprange

import (
	"encoding/binary"
	"net/netip"
	"runtime"
)

// Table6 maps IPv6 addresses to values, as Table does IPv4 ones, from
// ranges over the 128-bit space indexed by the top bits. It replaces a
// prefix trie whose nodes, tens of thousands of small objects for a
// GeoIP database or a set of overrides, the collector marked on every
// cycle; a Table6 is two arrays off the Go heap. The zero Table6 holds
// nothing. Use a Table6 through the pointer Build returns, never a copy.
type Table6 struct {
	ents []range6
	// The index covers the addresses whose top skip bits are base, where
	// every range but the first starts: below them ents[0] holds, above
	// them the last range. idx is as Table's, by the next 64-shift bits.
	idx         []uint32
	base        uint64
	skip, shift uint8
}

// range6 is a range's first address and its value.
type range6 struct {
	hi, lo uint64
	v      uint32
}

// Lookup returns the value of the most specific prefix holding a; ok is
// false when none does or a is not an IPv6 address. IPv4-mapped
// addresses are IPv6 addresses here: unmap them first to look them up as
// IPv4.
func (t *Table6) Lookup(a netip.Addr) (v uint32, ok bool) {
	if t == nil || len(t.idx) == 0 || !a.Is6() {
		return None, false
	}
	b := a.As16()
	hi, lo := binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
	if top := hi >> (64 - t.skip); top != t.base {
		v = t.ents[len(t.ents)-1].v
		if top < t.base {
			v = t.ents[0].v
		}
		runtime.KeepAlive(t)
		return v, v != None
	}
	h := hi << t.skip >> t.shift
	ents := t.ents[t.idx[h] : t.idx[h+1]+1]
	// ents[0] starts at or before a: find the last entry that does.
	i, j := 1, len(ents)
	for i < j {
		m := int(uint(i+j) >> 1)
		if e := &ents[m]; e.hi < hi || e.hi == hi && e.lo <= lo {
			i = m + 1
		} else {
			j = m
		}
	}
	v = ents[i-1].v
	runtime.KeepAlive(t) // ents is t's memory: see offheap
	return v, v != None
}

// Len is the number of ranges, gaps included.
func (t *Table6) Len() int {
	if t == nil {
		return 0
	}
	return len(t.ents)
}
