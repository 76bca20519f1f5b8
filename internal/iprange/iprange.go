// Package iprange answers "which value holds for this IPv4 address" from a
// flat table of address ranges, for the large prefix sets that are built
// once and read on every request: GeoIP networks and cloud ranges. IPv6
// prefixes go into bart tables instead (github.com/gaissmai/bart), whose
// multibit trie suits the sparse 128-bit space.
//
// The IPv4 space is cut into contiguous ranges, each with one value, the
// most specific prefix covering it winning. A lookup reads one entry of an
// index by the address's top bits (two to four ranges a block) and then
// binary-searches a cache line or two of ranges: for the GeoIP databases
// that is about four times faster than walking the MaxMind search tree,
// and a Table is two pointer-free slices, which the collector never scans.
package iprange

import (
	"math"
	"net/netip"
)

// None is the value of addresses no prefix covers. It cannot be added.
const None = math.MaxUint32

// Table maps IPv4 addresses to values. The zero Table, and a nil *Table,
// hold nothing. A Table is never changed once built, so any number of
// goroutines may read it.
type Table struct {
	// ents holds each range as its first address in the high 32 bits and
	// its value in the low 32, in ascending order, ents[0] starting at
	// 0.0.0.0; neighbours never have equal values. One slice rather than
	// two keeps a range's start and value in the same cache line.
	ents []uint64
	// idx[h] is the range holding the address h<<shift, and its last
	// entry the last range: the range holding ip lies in
	// ents[idx[ip>>shift] : idx[ip>>shift+1]+1].
	idx   []uint32
	shift uint8 // 32 minus the index's bits
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
	return v, v != None
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

// Bytes is the memory the table holds.
func (t *Table) Bytes() int {
	if t == nil {
		return 0
	}
	return 8*cap(t.ents) + 4*cap(t.idx)
}

// Uint32 returns an IPv4 address as a big-endian number.
func Uint32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}
