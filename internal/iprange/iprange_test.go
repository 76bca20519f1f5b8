package iprange

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/gaissmai/bart"
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
	rng := rand.New(rand.NewPCG(1, 2))
	addr := func(a uint32) netip.Addr {
		return netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)})
	}
	// random returns an address, clustered towards the bottom of each
	// quarter of the space so that prefixes nest.
	random := func() uint32 { return uint32(rng.IntN(4))<<30 | rng.Uint32()>>uint(2+rng.IntN(30)) }
	for round := range 150 {
		var b Builder
		trie := new(bart.Table[uint32])
		var probes []netip.Addr
		n := 1 + rng.IntN([]int{4, 50, 2000}[round%3])
		values := 1 + rng.IntN(5)
		for range n {
			var a uint32
			switch rng.IntN(6) {
			case 0:
			case 1:
				a = ^uint32(0)
			default:
				a = random()
			}
			p := netip.PrefixFrom(addr(a), rng.IntN(33)).Masked()
			v := uint32(rng.IntN(values))
			if err := b.Add(p, v); err != nil {
				t.Fatal(err)
			}
			trie.Insert(p, v) // a later equal prefix replaces the earlier one
			last := addr(Uint32(p.Addr()) | uint32(1<<(32-p.Bits())-1))
			probes = append(probes, p.Addr(), p.Addr().Prev(), last, last.Next())
		}
		for range 200 {
			probes = append(probes, addr(rng.Uint32()))
		}
		tab := b.Build()
		for _, a := range probes {
			if !a.IsValid() || !a.Is4() {
				continue // before the first address or after the last
			}
			want, wantOK := trie.Lookup(a)
			if got, ok := tab.LookupAddr(a); ok != wantOK || ok && got != want {
				t.Fatalf("round %d (%d prefixes): lookup(%s) = %d, %v; prefix table says %d, %v", round, n, a, got, ok, want, wantOK)
			}
		}
		for i := 1; i < len(tab.ents); i++ {
			if tab.ents[i]>>32 <= tab.ents[i-1]>>32 || uint32(tab.ents[i]) == uint32(tab.ents[i-1]) {
				t.Fatalf("round %d: ranges %d and %d out of order or not joined", round, i-1, i)
			}
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
