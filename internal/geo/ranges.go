package geo

import (
	"encoding/binary"
	"fmt"
	"math"
	"net/netip"
)

// noData is the value of a range4 without data. No table value can be it:
// ASN values index the distinct records, country values pack two code
// indexes below numCodes.
const noData = math.MaxUint32

// range4 answers IPv4 lookups, which are most of the traffic, from a flat
// range table instead of a prefix trie.
//
// The IPv4 space is cut into contiguous ranges, each with one value (noData
// for a gap), neighbours with equal values joined: starts holds the first
// address of each range in ascending order, starts[0] being 0.0.0.0, and
// vals the value of each. idx[h] is the range holding the address h<<16,
// and idx[65536] the last range, so the range holding ip lies between
// idx[ip>>16] and idx[ip>>16+1], both included; a binary search there finds
// it. For a /16 block that holds few ranges (nearly all of them) that is one
// cache line of idx, one of starts and one of vals, where a bart lookup
// reads bitsets, rank tables and child arrays on each of several levels.
//
// Nor does it hold a pointer: its three slices are allocated as pointer-free
// memory, which the garbage collector never has to scan, while the prefix
// tries it replaces were tens of megabytes of nodes the collector marked on
// every cycle.
type range4 struct {
	idx    []uint32 // 1<<16 + 1 entries
	starts []uint32
	vals   []uint32
}

// lookup returns the value of the range holding ip; ok is false in a gap.
func (r *range4) lookup(ip uint32) (uint32, bool) {
	hi := ip >> 16
	lo, up := r.idx[hi], r.idx[hi+1]
	// starts[lo] <= ip: find the last start <= ip in starts[lo:up+1].
	starts := r.starts[lo : up+1]
	i, j := 1, len(starts)
	for i < j {
		m := int(uint(i+j) >> 1)
		if starts[m] <= ip {
			i = m + 1
		} else {
			j = m
		}
	}
	v := r.vals[int(lo)+i-1]
	return v, v != noData
}

// range4Builder turns IPv4 networks, added in address order without
// overlapping, into a range4.
type range4Builder struct {
	starts, vals []uint32
	next         uint64 // first address not covered yet; 1<<32 when all are
	last         netip.Prefix
}

// add appends a network and its value, and the gap before it if any.
func (b *range4Builder) add(p netip.Prefix, v uint32) error {
	if !p.Addr().Is4() {
		return fmt.Errorf("walking the search tree: %s is not an IPv4 network", p)
	}
	if v == noData {
		return fmt.Errorf("walking the search tree: value %d for %s is out of range", v, p)
	}
	p = p.Masked()
	lo := uint64(binary.BigEndian.Uint32(p.Addr().AsSlice()))
	if b.last.IsValid() && lo < b.next {
		return fmt.Errorf("walking the search tree: network %s after %s is out of order", p, b.last)
	}
	if lo > b.next {
		b.push(uint32(b.next), noData)
	}
	b.push(uint32(lo), v)
	b.next = lo + 1<<(32-p.Bits())
	b.last = p
	return nil
}

func (b *range4Builder) push(start, v uint32) {
	if n := len(b.vals); n > 0 && b.vals[n-1] == v {
		return
	}
	b.starts = append(b.starts, start)
	b.vals = append(b.vals, v)
}

// finish returns the index. Addresses no network covered answer fill if
// hasFill is set (an IPv6 network over the whole IPv4 tree), else nothing.
func (b *range4Builder) finish(fill uint32, hasFill bool) *range4 {
	if b.next < 1<<32 {
		b.push(uint32(b.next), noData)
	}
	r := &range4{
		idx:    make([]uint32, 1<<16+1),
		starts: make([]uint32, 0, len(b.starts)),
		vals:   make([]uint32, 0, len(b.vals)),
	}
	for i, s := range b.starts {
		v := b.vals[i]
		if v == noData && hasFill {
			v = fill
		}
		if n := len(r.vals); n > 0 && r.vals[n-1] == v {
			continue
		}
		r.starts = append(r.starts, s)
		r.vals = append(r.vals, v)
	}
	// idx[h] is the last range starting at or before h<<16.
	i := 0
	for h := range 1 << 16 {
		for i+1 < len(r.starts) && r.starts[i+1] <= uint32(h)<<16 {
			i++
		}
		r.idx[h] = uint32(i)
	}
	r.idx[1<<16] = uint32(len(r.starts) - 1)
	return r
}
