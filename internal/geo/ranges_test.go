package geo

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gaissmai/bart"
	"github.com/maxmind/mmdbwriter/mmdbtype"
	"github.com/oschwald/maxminddb-golang/v2"

	"github.com/reghost/reghost/internal/geo/geotest"
)

// TestRange4 checks what geo adds to the range table: networks must come
// in the walk's order, and an IPv6 network over the whole IPv4 tree fills
// the gaps. The table itself is tested in internal/iprange.
func TestRange4(t *testing.T) {
	t.Parallel()
	type want struct {
		addr string
		v    uint32
		ok   bool
	}
	tests := []struct {
		name   string
		nets   []entry
		fill   uint32
		filled bool
		ranges int
		want   []want
	}{
		{
			name:   "empty",
			ranges: 1,
			want:   []want{{"0.0.0.0", 0, false}, {"255.255.255.255", 0, false}},
		},
		{
			name:   "empty, filled by an IPv6 network over all of IPv4",
			fill:   7,
			filled: true,
			ranges: 1,
			want:   []want{{"0.0.0.0", 7, true}, {"255.255.255.255", 7, true}},
		},
		{
			name: "gaps filled",
			nets: []entry{
				{netip.MustParsePrefix("1.0.0.0/24"), 2},
				{netip.MustParsePrefix("1.0.1.0/24"), 9},
				{netip.MustParsePrefix("1.0.2.0/24"), 2},
			},
			fill:   2,
			filled: true,
			// fill, 1.0.0.0/24 2 joined with the fill before it; 1.0.1.0/24
			// 9; then 2 up to the end.
			ranges: 3,
			want:   []want{{"0.0.0.0", 2, true}, {"1.0.0.255", 2, true}, {"1.0.1.0", 9, true}, {"1.0.1.255", 9, true}, {"1.0.2.0", 2, true}, {"255.255.255.255", 2, true}},
		},
		{
			name:   "gaps without a fill",
			nets:   []entry{{netip.MustParsePrefix("10.0.0.0/8"), 0}},
			ranges: 3,
			want:   []want{{"9.255.255.255", 0, false}, {"10.0.0.0", 0, true}, {"11.0.0.0", 0, false}},
		},
	}
	for _, tt := range tests {
		var b range4Builder
		for _, n := range tt.nets {
			if err := b.add(n.p, n.v); err != nil {
				t.Fatalf("%s: add(%s): %v", tt.name, n.p, err)
			}
		}
		r, err := b.finish(tt.fill, tt.filled)
		if err != nil {
			t.Fatal(err)
		}
		if r.Len() != tt.ranges {
			t.Errorf("%s: %d ranges, want %d", tt.name, r.Len(), tt.ranges)
		}
		for _, w := range tt.want {
			if v, ok := r.LookupAddr(netip.MustParseAddr(w.addr)); v != w.v && w.ok || ok != w.ok {
				t.Errorf("%s: lookup(%s) = %d, %v, want %d, %v", tt.name, w.addr, v, ok, w.v, w.ok)
			}
		}
	}

	// Out of order, overlapping and foreign networks are errors.
	for _, bad := range [][]string{
		{"1.0.1.0/24", "1.0.0.0/24"},
		{"1.0.0.0/16", "1.0.1.0/24"},
		{"1.0.0.0/24", "1.0.0.0/24"},
		{"0.0.0.0/0", "255.255.255.255/32"},
		{"2001:db8::/32"},
	} {
		var b range4Builder
		var err error
		for _, p := range bad {
			if err = b.add(netip.MustParsePrefix(p), 1); err != nil {
				break
			}
		}
		if err == nil || !strings.Contains(err.Error(), "walking the search tree") {
			t.Errorf("adding %v = %v, want an error", bad, err)
		}
	}
	var b range4Builder
	if err := b.add(netip.MustParsePrefix("1.0.0.0/8"), noData); err == nil {
		t.Errorf("adding the noData value = nil, want an error")
	}
}

// TestRange4MatchesPlainTable builds random ordered, non-overlapping IPv4
// networks, some at the very ends of the address space, both into a range4
// (through the merger, as index does) and one by one into a bart table, and
// checks that both answer the same at every network's edges, just outside
// them, at the /16 block edges, and at random addresses.
func TestRange4MatchesPlainTable(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	for round := range 200 {
		var nets []entry
		values := 1 + rng.IntN(4)
		maxBits := []int{8, 16, 24, 32}[rng.IntN(4)]
		edgy := round%2 == 1
		var split func(p netip.Prefix)
		split = func(p netip.Prefix) {
			// Split shallowly and then deeper at random, so that a round
			// holds both wide and narrow networks in a few regions.
			// The first and last addresses are where off-by-ones hide: in
			// half the rounds, the networks around them are split down
			// to the narrowest.
			edge := edgy && (p.Addr() == netip.IPv4Unspecified() || lastOf(p) == netip.AddrFrom4([4]byte{255, 255, 255, 255}))
			if p.Bits() < maxBits && (p.Bits() < 2 || edge || rng.IntN(8) != 0) {
				lo, _ := p.Addr().Prefix(p.Bits() + 1)
				hi := netip.PrefixFrom(lastOf(lo).Next(), p.Bits()+1)
				if rng.IntN(3) == 0 || p.Bits() < 4 || edge {
					split(lo)
					split(hi)
				} else if rng.IntN(2) == 0 {
					split(lo)
					nets = append(nets, entry{hi, uint32(rng.IntN(values))})
				} else {
					nets = append(nets, entry{lo, uint32(rng.IntN(values))})
					split(hi)
				}
				return
			}
			if rng.IntN(5) == 0 {
				return // a hole without data
			}
			nets = append(nets, entry{p, uint32(rng.IntN(values))})
		}
		if round == 0 {
			nets = []entry{{netip.MustParsePrefix("0.0.0.0/0"), 5}}
		} else {
			split(netip.MustParsePrefix("0.0.0.0/0"))
		}

		plain := new(bart.Table[uint32])
		var b range4Builder
		m := merger{out: b.add} // which refuses anything but IPv4
		for _, e := range nets {
			if err := m.push(e.p, e.v); err != nil {
				t.Fatal(err)
			}
			plain.Insert(e.p, e.v)
		}
		if err := m.flush(); err != nil {
			t.Fatal(err)
		}
		r, err := b.finish(0, false)
		if err != nil {
			t.Fatal(err)
		}

		check := func(a netip.Addr) {
			if !a.IsValid() || !a.Is4() {
				return
			}
			rv, rok := r.LookupAddr(a)
			pv, pok := plain.Lookup(a)
			if rok != pok || rok && rv != pv {
				t.Fatalf("round %d (%d networks): lookup(%s) = %d, %v; bart answers %d, %v", round, len(nets), a, rv, rok, pv, pok)
			}
		}
		for _, e := range nets {
			for _, a := range []netip.Addr{e.p.Addr(), lastOf(e.p), e.p.Addr().Prev(), lastOf(e.p).Next()} {
				check(a)
			}
		}
		for h := range 1 << 16 {
			a := uint32(h) << 16
			check(netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), 0, 0}))
			check(netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), 255, 255}))
		}
		for range 2000 {
			a := rng.Uint32()
			check(netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)}))
		}
	}
}

// TestIPv4TreeUnderIPv6Network opens a database whose whole IPv4 tree lies
// inside one IPv6 network (::/64): maxminddb reports only that IPv6
// network, and IPv4 lookups must still answer its value, as maxminddb's own
// lookups do.
func TestIPv4TreeUnderIPv6Network(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "asn.mmdb")
	opts := geotest.Options("GeoLite2-ASN")
	opts.IncludeReservedNetworks = true
	opts.DisableIPv4Aliasing = true
	rec := func(asn uint32) mmdbtype.DataType {
		return mmdbtype.Map{"autonomous_system_number": mmdbtype.Uint32(asn)}
	}
	if err := geotest.Write(path, opts, map[string]mmdbtype.DataType{
		"::/64":         rec(64),
		"2001:db8::/32": rec(32),
	}); err != nil {
		t.Fatal(err)
	}
	asnAsMaxMind(t, path, "0.0.0.0", "1.2.3.4", "255.255.255.255", "::1", "::ffff:1.2.3.4", "2001:db8::1", "2001:db9::1")
}

// asnAsMaxMind checks that the ASN database at path answers each address
// as maxminddb's own lookup does.
func asnAsMaxMind(t *testing.T, path string, addrs ...string) {
	t.Helper()
	h, _, err := openHandle(path, kindASN)
	if err != nil {
		t.Fatal(err)
	}
	r, err := maxminddb.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, s := range addrs {
		a := netip.MustParseAddr(s)
		var want struct {
			ASN uint32 `maxminddb:"autonomous_system_number"`
		}
		if err := r.Lookup(a).Decode(&want); err != nil {
			t.Fatal(err)
		}
		v, ok := h.value(a)
		got := uint32(0)
		if ok {
			got = h.asn[v].asn
		}
		if got != want.ASN || ok != (want.ASN != 0) {
			t.Errorf("value(%s) = ASN %d, %v; maxminddb decodes %d", s, got, ok, want.ASN)
		}
	}
}

// TestAliasesAsMaxMind checks the IPv6 forms of IPv4 addresses (6to4,
// Teredo, IPv4-compatible ::a.b.c.d) against maxminddb, in a database
// whose writer aliased 6to4 and Teredo to the IPv4 tree and in one whose
// writer did not, with data of its own in 2002::/16 that is the same
// record as an IPv4 network's: telling the two apart by comparing one
// address's record took the second for aliased.
func TestAliasesAsMaxMind(t *testing.T) {
	t.Parallel()
	rec := func(asn uint32) mmdbtype.DataType {
		return mmdbtype.Map{"autonomous_system_number": mmdbtype.Uint32(asn)}
	}
	addrs := []string{"1.0.0.1", "8.8.8.8", "2002:100:1::1", "2002:808:808::1", "2001:0:808:808::", "2001:0:100:1::",
		"::8.8.8.8", "::1.0.0.1", "::1", "::", "2001:db8::1"}
	for _, aliasing := range []bool{true, false} {
		t.Run(fmt.Sprintf("aliasing=%v", aliasing), func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "asn.mmdb")
			opts := geotest.Options("GeoLite2-ASN")
			opts.DisableIPv4Aliasing = !aliasing
			nets := map[string]mmdbtype.DataType{"1.0.0.0/24": rec(1), "8.8.8.0/24": rec(2)}
			if !aliasing {
				nets["2002::/16"] = rec(1)
			}
			if err := geotest.Write(path, opts, nets); err != nil {
				t.Fatal(err)
			}
			asnAsMaxMind(t, path, addrs...)
		})
	}
}
