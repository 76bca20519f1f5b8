package cloud

import (
	"maps"
	"net/netip"

	"github.com/gaissmai/bart"

	"github.com/reghost/reghost/internal/iprange"
)

// Table answers which published range holds an address. It is built whole
// by NewTable or Load and never changed afterwards, so any number of
// goroutines may use it, and a new one replaces it by swapping a pointer.
// A nil *Table holds nothing.
type Table struct {
	// v4 and v6 map each IPv4 and IPv6 prefix, respectively, to its
	// index in ranges: a flat range table and a prefix table. A small
	// value keeps both small; the Range is read only on a hit.
	v4      *iprange.Table
	v6      *bart.Table[uint32]
	ranges  []Range
	counts  map[string]int
	regions map[[2]string]bool // (provider, region) pairs published
}

// NewTable builds a Table from sets of ranges, one Range per prefix.
// When a prefix occurs more than once, within a set or across sets, the
// first occurrence wins: pass the sets in order of trust. Load passes them
// in the order of Providers. Prefixes are masked; invalid ones are ignored.
func NewTable(sets ...[]Range) *Table {
	n := 0
	for _, s := range sets {
		n += len(s)
	}
	t := &Table{ranges: make([]Range, 0, n), counts: make(map[string]int), regions: make(map[[2]string]bool)}
	seen := make(map[netip.Prefix]bool, n)
	var v4 iprange.Builder
	v6 := new(bart.Table[uint32])
	for _, s := range sets {
		for _, r := range s {
			r.Prefix = normalizePrefix(r.Prefix)
			if !r.Prefix.IsValid() || seen[r.Prefix] {
				continue
			}
			seen[r.Prefix] = true
			i := uint32(len(t.ranges))
			if r.Prefix.Addr().Is4() {
				_ = v4.Add(r.Prefix, i) // cannot fail: an IPv4 prefix, an index below None
			} else {
				v6.Insert(r.Prefix, i)
			}
			t.ranges = append(t.ranges, r)
			t.counts[r.Provider]++
			t.regions[[2]string{r.Provider, r.Region}] = true
		}
	}
	t.v4, t.v6 = v4.Build(), v6
	return t
}

// index returns the index in ranges of the most specific prefix holding
// addr.
func (t *Table) index(addr netip.Addr) (uint32, bool) {
	addr = addr.Unmap()
	if addr.Is4() {
		return t.v4.Lookup(iprange.Uint32(addr))
	}
	return t.v6.Lookup(addr)
}

// Lookup returns the range with the longest prefix that holds addr: the
// most specific one, so an AWS regional prefix beats the GLOBAL one around
// it. An IPv4-mapped IPv6 address is looked up as IPv4.
func (t *Table) Lookup(addr netip.Addr) (Range, bool) {
	if t == nil {
		return Range{}, false
	}
	i, ok := t.index(addr)
	if !ok {
		return Range{}, false
	}
	return t.ranges[i], true
}

// Cloud is Lookup for the decision engine, which needs only the provider
// and the region. It does not allocate.
func (t *Table) Cloud(addr netip.Addr) (provider, region string, ok bool) {
	if t == nil {
		return "", "", false
	}
	i, ok := t.index(addr)
	if !ok {
		return "", "", false
	}
	r := &t.ranges[i]
	return r.Provider, r.Region, true
}

// HasRegion reports whether the table holds ranges of the provider's
// region; loaded is false when it holds none of the provider's at all,
// and so cannot tell.
func (t *Table) HasRegion(provider, region string) (has, loaded bool) {
	if t == nil {
		return false, false
	}
	return t.regions[[2]string{provider, region}], t.counts[provider] > 0
}

// Len returns the number of prefixes in the table.
func (t *Table) Len() int {
	if t == nil {
		return 0
	}
	return len(t.ranges)
}

// Counts returns how many prefixes of each provider the table holds,
// after duplicates across providers were dropped. The map is a copy.
func (t *Table) Counts() map[string]int {
	if t == nil {
		return map[string]int{}
	}
	return maps.Clone(t.counts)
}
