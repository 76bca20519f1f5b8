package geo

import (
	"fmt"
	"net/netip"

	"github.com/reghost/reghost/internal/iprange"
)

// noData is the value of addresses without data. No table value can be
// it: ASN values index the distinct records, country values pack two code
// indexes below numCodes.
const noData = iprange.None

// IPv4 answers come from a flat range table (iprange) rather than a prefix
// trie: one cache line of index and, nearly always, one of ranges, where a
// trie reads several levels of nodes, and two pointer-free slices that the
// collector never scans.

// range4Builder checks that the IPv4 networks of a search-tree walk come
// in address order without overlapping, as they must, and collects them
// for the range table.
type range4Builder struct {
	b    iprange.Builder
	next uint64 // first address not covered yet; 1<<32 when all are
	last netip.Prefix
}

// add adds a network and its value.
func (b *range4Builder) add(p netip.Prefix, v uint32) error {
	if !p.Addr().Is4() {
		return fmt.Errorf("walking the search tree: %s is not an IPv4 network", p)
	}
	if v == noData {
		return fmt.Errorf("walking the search tree: value %d for %s is out of range", v, p)
	}
	p = p.Masked()
	lo := uint64(iprange.Uint32(p.Addr()))
	if b.last.IsValid() && lo < b.next {
		return fmt.Errorf("walking the search tree: network %s after %s is out of order", p, b.last)
	}
	b.next = lo + 1<<(32-p.Bits())
	b.last = p
	return b.b.Add(p, v)
}

// finish returns the table. Addresses no network covered answer fill if
// hasFill is set (an IPv6 network over the whole IPv4 tree), else nothing.
func (b *range4Builder) finish(fill uint32, hasFill bool) (*iprange.Table, error) {
	if hasFill {
		// Added last but least specific, it holds only in the gaps.
		if err := b.b.Add(netip.PrefixFrom(netip.IPv4Unspecified(), 0), fill); err != nil {
			return nil, err
		}
	}
	return b.b.Build(), nil
}
