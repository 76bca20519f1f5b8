// Package iprange answers "which value holds for this address" from a
// flat table of address ranges, for prefix sets that are built once and read
// on every request: GeoIP networks, cloud ranges, CIDR rules and overrides.
// Table holds IPv4 ranges, Table6 IPv6 ones.
//
// A prefix trie reads a node on each of several levels, each a likely cache
// miss on a server whose caches the network stack keeps evicting. Here the
// IPv4 space is cut into contiguous ranges, each with one value, the most
// specific prefix covering it winning; a lookup reads one entry of an
// index by the address's top bits (up to 18: two to four ranges a block)
// and then, nearly always, one cache line of ranges. A Table's arrays
// live off the Go heap (internal/offheap), on huge pages when they fill
// one.
package iprange

import (
	"math"
	"net/netip"
	"runtime"
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

// Touch reads the memory a lookup of ip reads, and returns something
// derived from it that means nothing. A caller about to look an address
// up in several tables touches them all first and then looks up: the
// cache misses of the tables then overlap rather than follow one
// another. The caller must use the result (a comparison will do), or the
// compiler drops the reads.
//
// It reads the index entry and the first and last ranges the lookup
// searches: a block of two to four ranges (see indexBits) spans one
// cache line or two, so the binary search then finds its lines read.
// Reading the first range only, lookups still missed 1.29 times a
// decision after warming (bench/misses), against 0.62; decisions that
// each wait for the one before (BenchmarkChooseChained) took 8% less.
func (t *Table) Touch(ip uint32) uint64 {
	if t == nil || len(t.idx) == 0 {
		return 0
	}
	hi := ip >> t.shift
	v := t.ents[t.idx[hi]] ^ t.ents[t.idx[hi+1]]
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
