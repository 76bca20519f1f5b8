package iprange

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"testing"

	"github.com/gaissmai/bart"

	"github.com/reghost/reghost/internal/policy/policytest"
)

func TestTable(t *testing.T) {
	t.Parallel()
	type net struct {
		p string
		v uint32
	}
	type want struct {
		addr string
		v    uint32 // None: no prefix holds it
	}
	tests := []struct {
		name   string
		nets   []net
		ranges int // gaps and joined neighbours included
		want   []want
	}{
		{
			name:   "empty",
			ranges: 1,
			want:   []want{{"0.0.0.0", None}, {"10.1.2.3", None}, {"255.255.255.255", None}},
		},
		{
			name:   "one network over everything",
			nets:   []net{{"0.0.0.0/0", 3}},
			ranges: 1,
			want:   []want{{"0.0.0.0", 3}, {"128.0.0.0", 3}, {"255.255.255.255", 3}},
		},
		{
			name:   "halves, equal values joined",
			nets:   []net{{"128.0.0.0/1", 3}, {"0.0.0.0/1", 3}},
			ranges: 1,
			want:   []want{{"0.0.0.0", 3}, {"127.255.255.255", 3}, {"128.0.0.0", 3}, {"255.255.255.255", 3}},
		},
		{
			name: "first and last address, gaps, /32s, value 0",
			nets: []net{
				{"255.255.255.255/32", 8},
				{"0.0.0.0/32", 1},
				{"1.0.0.0/24", 2},
				{"1.0.1.0/24", 2}, // adjacent, same value: joined
				{"1.0.2.0/23", 3},
				{"1.0.4.7/32", 4},
				{"1.0.4.8/32", 5},
				{"10.0.0.0/8", 0},
				{"11.2.0.0/15", 7}, // two /16 blocks, one range
			},
			// 0/32 1, gap, 1.0.0.0-1.0.1.255 2, 1.0.2.0/23 3, gap,
			// 1.0.4.7 4, 1.0.4.8 5, gap, 10/8 0, gap, 11.2/15 7, gap, last 8.
			ranges: 13,
			want: []want{
				{"0.0.0.0", 1}, {"0.0.0.1", None}, {"1.0.0.0", 2}, {"1.0.1.255", 2}, {"1.0.2.0", 3},
				{"1.0.3.255", 3}, {"1.0.4.0", None}, {"1.0.4.7", 4}, {"1.0.4.8", 5}, {"1.0.4.9", None},
				{"9.255.255.255", None}, {"10.0.0.0", 0}, {"10.255.255.255", 0}, {"11.1.255.255", None},
				{"11.2.0.0", 7}, {"11.3.255.255", 7}, {"11.4.0.0", None}, {"255.255.255.254", None},
				{"255.255.255.255", 8},
			},
		},
		{
			name: "nested: the most specific wins, the enclosing value resumes after it",
			nets: []net{
				{"10.0.0.0/8", 1},
				{"10.1.0.0/16", 2},
				{"10.1.2.0/24", 3},
				{"10.1.2.128/25", 4}, // ends where 10.1.2.0/24 ends
				{"10.0.0.0/16", 5},   // starts where 10.0.0.0/8 starts
				{"10.255.255.255/32", 6},
				{"0.0.0.0/0", 9},
			},
			want: []want{
				{"9.255.255.255", 9}, {"10.0.0.0", 5}, {"10.0.255.255", 5}, {"10.1.0.0", 2}, {"10.1.2.0", 3},
				{"10.1.2.127", 3}, {"10.1.2.128", 4}, {"10.1.2.255", 4}, {"10.1.3.0", 2}, {"10.2.0.0", 1},
				{"10.255.255.254", 1}, {"10.255.255.255", 6}, {"11.0.0.0", 9}, {"255.255.255.255", 9},
			},
		},
		{
			name: "equal prefixes: the last added wins; host bits ignored",
			nets: []net{{"192.0.2.0/24", 1}, {"192.0.2.7/24", 2}},
			want: []want{{"192.0.2.0", 2}, {"192.0.2.255", 2}, {"192.0.3.0", None}},
		},
		{
			name: "many ranges in one /16 block",
			nets: func() []net {
				var n []net
				for i := range 256 {
					n = append(n, net{netip.AddrFrom4([4]byte{192, 168, byte(i), 0}).String() + "/24", uint32(i % 2)})
				}
				return n
			}(),
			ranges: 258,
			want:   []want{{"192.167.255.255", None}, {"192.168.0.0", 0}, {"192.168.1.0", 1}, {"192.168.128.255", 0}, {"192.168.255.255", 1}, {"192.169.0.0", None}},
		},
	}
	for _, tt := range tests {
		var b Builder
		for _, n := range tt.nets {
			if err := b.Add(netip.MustParsePrefix(n.p), n.v); err != nil {
				t.Fatalf("%s: Add(%s): %v", tt.name, n.p, err)
			}
		}
		tab := b.Build()
		if tt.ranges != 0 && tab.Len() != tt.ranges {
			t.Errorf("%s: %d ranges, want %d", tt.name, tab.Len(), tt.ranges)
		}
		for _, w := range tt.want {
			v, ok := tab.LookupAddr(netip.MustParseAddr(w.addr))
			if v != w.v || ok != (w.v != None) {
				t.Errorf("%s: lookup(%s) = %d, %v, want %d", tt.name, w.addr, v, ok, w.v)
			}
		}
	}
}

func TestAddRefuses(t *testing.T) {
	var b Builder
	for _, p := range []netip.Prefix{{}, netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("::ffff:1.2.3.0/120")} {
		if err := b.Add(p, 1); err == nil {
			t.Errorf("Add(%v) = nil, want an error", p)
		}
	}
	if err := b.Add(netip.MustParsePrefix("1.0.0.0/8"), None); err == nil {
		t.Errorf("Add(None) = nil, want an error")
	}
	if n := b.Build().Len(); n != 1 {
		t.Errorf("%d ranges after refusals, want the one empty range", n)
	}
	var zero *Table
	if v, ok := zero.Lookup(1); ok || v != None {
		t.Errorf("nil table: %d, %v", v, ok)
	}
	if _, ok := (&Table{}).LookupAddr(netip.MustParseAddr("2001:db8::1")); ok {
		t.Errorf("IPv6 address found in an IPv4 table")
	}
}

// TestMatchesPrefixTable adds random, nested and overlapping prefixes,
// some duplicated and some at the very ends of the address space, to a
// Table and to a bart prefix table, and checks that both answer the same
// at every prefix's edges, just outside them, and at random addresses.
func TestMatchesPrefixTable(t *testing.T) {
	t.Parallel()
	matchesPrefixTable(t, 1, 32, func() testTable { return new(test4) })
}

// TestTable6MatchesPrefixTable is TestMatchesPrefixTable for IPv6, with
// prefixes of every length from ::/0 to /128s.
func TestTable6MatchesPrefixTable(t *testing.T) {
	t.Parallel()
	matchesPrefixTable(t, 3, 128, func() testTable { return new(test6) })
}

// testTable is a table's builder as matchesPrefixTable uses it: build
// returns the table's lookup and a check of its layout.
type testTable interface {
	Add(netip.Prefix, uint32) error
	build() (lookup func(netip.Addr) (uint32, bool), check func() error)
}

type test4 struct{ Builder }

func (b *test4) build() (func(netip.Addr) (uint32, bool), func() error) {
	tab := b.Build()
	return tab.LookupAddr, func() error {
		for i := 1; i < len(tab.ents); i++ {
			if tab.ents[i]>>32 <= tab.ents[i-1]>>32 || uint32(tab.ents[i]) == uint32(tab.ents[i-1]) {
				return fmt.Errorf("ranges %d and %d out of order or not joined", i-1, i)
			}
		}
		return nil
	}
}

type test6 struct{ Builder6 }

func (b *test6) build() (func(netip.Addr) (uint32, bool), func() error) {
	tab := b.Build()
	return tab.Lookup, func() error {
		for i := 1; i < len(tab.ents); i++ {
			x, y := tab.ents[i-1], tab.ents[i]
			if (u128{y.hi, tab.los[y.lo]}).compare(u128{x.hi, tab.los[x.lo]}) <= 0 || x.v == y.v {
				return fmt.Errorf("ranges %d and %d out of order or not joined", i-1, i)
			}
		}
		return nil
	}
}

// matchesPrefixTable runs the comparison with bart for addresses of
// width bits (32 or 128).
func matchesPrefixTable(t *testing.T, seed uint64, width int, newTable func() testTable) {
	rng := rand.New(rand.NewPCG(seed, seed+1))
	max := u128{}.last(width)
	// addr and number convert between addresses and numbers.
	addr, number := from128, addr128
	if width == 32 {
		addr = func(a u128) netip.Addr {
			return netip.AddrFrom4([4]byte{byte(a.lo >> 24), byte(a.lo >> 16), byte(a.lo >> 8), byte(a.lo)})
		}
		number = func(a netip.Addr) u128 { return u128{0, uint64(Uint32(a))} }
	}
	// random returns an address, clustered towards the bottom of each
	// quarter of the space so that prefixes nest.
	random := func() u128 {
		if width == 32 {
			return u128{0, uint64(uint32(rng.IntN(4))<<30 | rng.Uint32()>>uint(2+rng.IntN(30)))}
		}
		return u128{uint64(rng.IntN(4))<<62 | rng.Uint64()>>uint(2+rng.IntN(62)), rng.Uint64() >> uint(rng.IntN(64))}
	}
	for round := range 300 {
		tab := newTable()
		trie := new(bart.Table[uint32])
		var probes []netip.Addr
		n := 1 + rng.IntN([]int{4, 50, 2000}[round%3])
		values := 1 + rng.IntN(5)
		for range n {
			var a u128
			switch rng.IntN(6) {
			case 0:
			case 1:
				a = max
			default:
				a = random()
			}
			p := netip.PrefixFrom(addr(a), rng.IntN(width+1)).Masked()
			v := uint32(rng.IntN(values))
			if err := tab.Add(p, v); err != nil {
				t.Fatal(err)
			}
			trie.Insert(p, v) // a later equal prefix replaces the earlier one
			last := addr(number(p.Addr()).last(width - p.Bits()))
			probes = append(probes, p.Addr(), p.Addr().Prev(), last, last.Next())
		}
		for range 200 {
			probes = append(probes, addr(u128{rng.Uint64() & max.hi, rng.Uint64() & max.lo}))
		}
		lookup, check := tab.build()
		for _, a := range probes {
			if !a.IsValid() {
				continue // before the first address or after the last
			}
			want, wantOK := trie.Lookup(a)
			if got, ok := lookup(a); ok != wantOK || ok && got != want {
				t.Fatalf("round %d (%d prefixes): lookup(%s) = %d, %v; prefix table says %d, %v", round, n, a, got, ok, want, wantOK)
			}
		}
		if err := check(); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}
}

func BenchmarkLookup(b *testing.B) {
	rng := rand.New(rand.NewPCG(5, 6))
	var bl Builder
	for i := range 400_000 {
		ip := rng.Uint32()
		a := netip.AddrFrom4([4]byte{byte(ip >> 24), byte(ip >> 16), byte(ip >> 8), byte(ip)})
		_ = bl.Add(netip.PrefixFrom(a, 16+rng.IntN(9)).Masked(), uint32(i))
	}
	tab := bl.Build()
	ips := make([]uint32, 1<<16)
	for i := range ips {
		ips[i] = rng.Uint32()
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		tab.Lookup(ips[i&(len(ips)-1)])
	}
}

// Touch must be safe wherever Lookup is, and read the two ends of the
// block Lookup searches: its result is the two ranges (start<<32 | value)
// XORed.
func TestTouch(t *testing.T) {
	var zero *Table
	if zero.Touch(1) != 0 || (&Table{}).Touch(1) != 0 {
		t.Errorf("Touch of an empty table read something")
	}
	entry := func(start string, v uint32) uint64 {
		return uint64(Uint32(netip.MustParseAddr(start)))<<32 | uint64(v)
	}
	// A table of three ranges is one block, from the first to the last.
	var b Builder
	_ = b.Add(netip.MustParsePrefix("10.0.0.0/8"), 7)
	tab := b.Build()
	if got, want := tab.Touch(10<<24), entry("0.0.0.0", None)^entry("11.0.0.0", None); got != want {
		t.Errorf("Touch(10.0.0.0) in a one-block table = %#x, want %#x: the ranges at 0.0.0.0 and 11.0.0.0", got, want)
	}
	// With a /24 in every /16, blocks are /16s: 10.0.0.0/16's search
	// runs from the range of 10.0.0.0/24, over the gap after it, to the
	// range starting the next block, at 10.1.0.0.
	b = Builder{}
	for h := range 1 << 16 {
		_ = b.Add(netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(h >> 8), byte(h), 0, 0}), 24), uint32(h))
	}
	tab = b.Build()
	if got, want := tab.Touch(10<<24|5), entry("10.0.0.0", 10<<8)^entry("10.1.0.0", 10<<8|1); got != want {
		t.Errorf("Touch(10.0.0.5) = %#x, want %#x: the ranges at 10.0.0.0 and 10.1.0.0", got, want)
	}
	_ = tab.Touch(0)
	_ = tab.Touch(^uint32(0))
}

// The index grows with the table, two to four ranges a block, to 2^18
// blocks at most.
func TestIndexSize(t *testing.T) {
	for _, c := range []struct{ prefixes, blocks int }{{0, 1}, {1, 1}, {8, 8}, {1000, 512}, {1 << 16, 1 << 16}, {1 << 18, 1 << 18}, {1 << 19, 1 << 18}} {
		var b Builder
		for i := range c.prefixes {
			_ = b.Add(netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(i >> 12), byte(i >> 4), byte(i << 4), 0}), 24), uint32(i))
		}
		tab := b.Build()
		if got := len(tab.idx) - 1; got != c.blocks {
			t.Errorf("%d prefixes (%d ranges): %d index blocks, want %d", c.prefixes, tab.Len(), got, c.blocks)
		}
	}
}

// A table's ranges are off the Go heap, so that they do not raise the
// collector's goal.
func TestTableLivesOffTheHeap(t *testing.T) {
	var b Builder
	for i := range 200_000 {
		_ = b.Add(netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(i >> 12), byte(i >> 4), byte(i << 4), 0}), 24), uint32(i))
	}
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	heap0 := heap()
	tab := b.Build()
	if grew := int64(heap() - heap0); grew > 64<<10 {
		t.Errorf("the heap grew by %d bytes for a table of %d ranges", grew, tab.Len())
	}
	if v, ok := tab.Lookup(uint32(10)<<24 | 5); !ok || v != 10<<12 {
		t.Errorf("lookup after collections = %d, %v", v, ok)
	}
}

func from128(a u128) netip.Addr {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], a.hi)
	binary.BigEndian.PutUint64(b[8:], a.lo)
	return netip.AddrFrom16(b)
}

func TestTable6(t *testing.T) {
	var b Builder6
	for _, c := range []struct {
		p string
		v uint32
	}{{"2001:db8::/32", 1}, {"2001:db8:1::/48", 2}, {"2001:db8:1::1/128", 3}, {"::ffff:0:0/96", 4}} {
		if err := b.Add(netip.MustParsePrefix(c.p), c.v); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Add(netip.MustParsePrefix("10.0.0.0/8"), 1); err == nil {
		t.Errorf("Builder6 took an IPv4 prefix")
	}
	if err := b.Add(netip.MustParsePrefix("2001::/16"), None); err == nil {
		t.Errorf("Builder6 took the value None")
	}
	tab := b.Build()
	for _, c := range []struct {
		addr string
		v    uint32
		ok   bool
	}{
		{"2001:db8::", 1, true}, {"2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", 1, true},
		{"2001:db8:1::", 2, true}, {"2001:db8:1::1", 3, true}, {"2001:db8:1::2", 2, true},
		{"2001:db9::", None, false}, {"::", None, false}, {"ffff::", None, false},
		{"::ffff:10.0.0.1", 4, true}, {"10.0.0.1", None, false},
	} {
		if v, ok := tab.Lookup(netip.MustParseAddr(c.addr)); v != c.v || ok != c.ok {
			t.Errorf("Lookup(%s) = %d, %v; want %d, %v", c.addr, v, ok, c.v, c.ok)
		}
	}
	var zero *Table6
	if _, ok := zero.Lookup(netip.MustParseAddr("2001:db8::")); ok || zero.Len() != 0 {
		t.Errorf("a nil Table6 found something")
	}
	if _, ok := (&Table6{}).Lookup(netip.MustParseAddr("2001:db8::")); ok {
		t.Errorf("the zero Table6 found something")
	}
}

// A Table6 is off the Go heap: a few objects however many prefixes.
func TestTable6LivesOffTheHeap(t *testing.T) {
	var b Builder6
	for i := range 100_000 {
		a := netip.AddrFrom16([16]byte{0x20, 0x01, byte(i >> 16), byte(i >> 8), byte(i)})
		_ = b.Add(netip.PrefixFrom(a, 48), uint32(i))
	}
	var tab *Table6
	objects, bytes := policytest.Retained(func() any { tab = b.Build(); return tab })
	// A Table6 is 6 or 7 heap objects. The limit leaves room for what
	// the test process itself allocates meanwhile (once 14 objects, 0
	// bytes, in a full ./scripts/test run), and is still far below the
	// tens of thousands of a prefix trie of this size.
	if objects > 32 || bytes > 64<<10 {
		t.Errorf("a table of %d ranges holds %d heap objects, %d bytes", tab.Len(), objects, bytes)
	}
	if v, ok := tab.Lookup(netip.MustParseAddr("2001:5::1")); !ok || v != 5<<8 {
		t.Errorf("lookup after collections = %d, %v", v, ok)
	}
}

// BenchmarkLookup6 looks up random addresses in a table of 200,000
// random /32 to /48 prefixes under 2000::/3, as GeoIP's IPv6 networks
// are; bart is the baseline.
func BenchmarkLookup6(b *testing.B) {
	rng := rand.New(rand.NewPCG(7, 8))
	var bl Builder6
	trie := new(bart.Table[uint32])
	for i := range 200_000 {
		a := from128(u128{0x2000<<48 | rng.Uint64()>>3, 0})
		p := netip.PrefixFrom(a, 32+rng.IntN(17)).Masked()
		_ = bl.Add(p, uint32(i))
		trie.Insert(p, uint32(i))
	}
	tab := bl.Build()
	addrs := make([]netip.Addr, 1<<16)
	for i := range addrs {
		addrs[i] = from128(u128{0x2000<<48 | rng.Uint64()>>3, rng.Uint64()})
	}
	b.Run("Table6", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			tab.Lookup(addrs[i&(len(addrs)-1)])
		}
	})
	b.Run("bart", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			trie.Lookup(addrs[i&(len(addrs)-1)])
		}
	})
}

// Networks crowded into a few prefixes, as IPv6 networks are, get nested
// index nodes, and lookups through them answer as bart does.
func TestTable6NestedIndex(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	var b Builder6
	trie := new(bart.Table[uint32])
	var probes []netip.Addr
	add := func(p netip.Prefix, v uint32) {
		if err := b.Add(p, v); err != nil {
			t.Fatal(err)
		}
		trie.Insert(p, v)
		probes = append(probes, p.Addr(), p.Addr().Prev(), from128(addr128(p.Addr()).last(128-p.Bits())).Next())
	}
	// A few /32s, each with thousands of /48s and /64s, some with /128s
	// that share their high 64 bits, and a few networks elsewhere.
	for c := range 4 {
		base := u128{0x2001_0db8_0000_0000 + uint64(c)<<32, 0}
		add(netip.PrefixFrom(from128(base), 32), uint32(c))
		for i := range 3000 {
			bits := 48 + 16*rng.IntN(2)
			a := u128{base.hi | rng.Uint64()>>32, 0}
			add(netip.PrefixFrom(from128(a), bits).Masked(), uint32(10+i%7))
			if i%100 == 0 {
				add(netip.PrefixFrom(from128(u128{a.hi, rng.Uint64()}), 128), 99)
			}
		}
	}
	add(netip.MustParsePrefix("2c0f::/16"), 5)
	add(netip.MustParsePrefix("::/0"), 6)
	tab := b.Build()
	if len(tab.nodes) < 3 {
		t.Errorf("%d ranges crowded into 4 /32s have %d index nodes, want nested ones", tab.Len(), len(tab.nodes))
	}
	for range 20_000 {
		probes = append(probes, from128(u128{0x2001_0db8_0000_0000 + rng.Uint64()>>30, rng.Uint64()}))
	}
	for _, a := range probes {
		if !a.IsValid() {
			continue
		}
		want, wantOK := trie.Lookup(a)
		if got, ok := tab.Lookup(a); got != want || ok != wantOK {
			t.Fatalf("Lookup(%s) = %d, %v; bart says %d, %v", a, got, ok, want, wantOK)
		}
	}
	// No block a lookup ends in holds more than crowded ranges, unless
	// their starts differ only in the low 64 bits.
	for ni, n := range tab.nodes {
		for h := n.at; h < n.at+1<<(64-n.shift); h++ {
			blk := tab.blocks[h]
			if blk.node == 0 && tab.blocks[h+1].first-blk.first+1 > crowded+1 && n.shift != 64 {
				t.Errorf("node %d, block %d: %d ranges and no node", ni, h-n.at, tab.blocks[h+1].first-blk.first+1)
			}
		}
	}
}
