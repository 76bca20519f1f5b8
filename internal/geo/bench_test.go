package geo_test

import (
	"math/rand/v2"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/oschwald/maxminddb-golang/v2"

	"github.com/reghost/reghost/internal/geo"
	"github.com/reghost/reghost/internal/geo/geotest"
)

// sampleAddrs returns n addresses spread over the networks of a database
// (one in 32 of them a miss), in a shuffled order so that lookups do not walk
// the tree in memory order.
func sampleAddrs(tb testing.TB, path string, n int) []netip.Addr {
	tb.Helper()
	r, err := maxminddb.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer r.Close()
	var prefixes []netip.Prefix
	for res := range r.Networks() {
		prefixes = append(prefixes, res.Prefix())
	}
	rng := rand.New(rand.NewPCG(7, 7))
	addrs := make([]netip.Addr, n)
	for i := range addrs {
		if i%32 == 0 {
			addrs[i] = netip.AddrFrom4([4]byte{10, byte(i), byte(i >> 8), 1}) // private: a miss
			continue
		}
		p := prefixes[rng.IntN(len(prefixes))]
		b := p.Addr().As16()
		for bit := p.Bits() + 96*btoi(p.Addr().Is4()); bit < 128; bit++ {
			if rng.IntN(2) == 1 {
				b[bit/8] |= 0x80 >> (bit % 8)
			}
		}
		a := netip.AddrFrom16(b)
		if p.Addr().Is4() {
			a = a.Unmap()
		}
		addrs[i] = a
	}
	return addrs
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// BenchmarkLookup measures lookups in the full-scale databases (430,000
// networks each), next to what maxminddb alone costs for the tree walk and
// for decoding a record per lookup (the approach this package avoids).
func BenchmarkLookup(b *testing.B) {
	asnPath, countryPath := geotest.FullScale(b)
	d := open(b, geo.Config{ASN: asnPath, Country: countryPath})
	addrs := sampleAddrs(b, asnPath, 1<<16)
	const mask = 1<<16 - 1

	// A working set that fits in the CPU caches, as a busy server's recent
	// clients mostly do; the cold ones below walk random paths through
	// 15 MB of search tree and are bound by memory latency.
	b.Run("ASN+Country/warm-1k", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			d.ASN(addrs[i&1023])
			d.Country(addrs[i&1023])
		}
	})
	b.Run("ASN", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			d.ASN(addrs[i&mask])
		}
	})
	b.Run("Country", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			d.Country(addrs[i&mask])
		}
	})
	b.Run("ASN+Country", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			d.ASN(addrs[i&mask])
			d.Country(addrs[i&mask])
		}
	})
	var v6 []netip.Addr
	for _, a := range addrs {
		if a.Is6() {
			v6 = append(v6, a)
		}
	}
	b.Run("ASN+Country/IPv6", func(b *testing.B) {
		if len(v6) == 0 {
			b.Fatal("the full-scale sample holds no IPv6 addresses")
		}
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			d.ASN(v6[i%len(v6)])
			d.Country(v6[i%len(v6)])
		}
	})
	b.Run("ASN+Country/parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for i := rand.IntN(mask); pb.Next(); i++ {
				d.ASN(addrs[i&mask])
				d.Country(addrs[i&mask])
			}
		})
	})

	r, err := maxminddb.Open(countryPath)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	b.Run("baseline/maxminddb-tree-walk-warm-1k", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			_ = r.Lookup(addrs[i&1023]).Offset()
		}
	})
	b.Run("baseline/maxminddb-tree-walk", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			_ = r.Lookup(addrs[i&mask]).Offset()
		}
	})
	b.Run("baseline/maxminddb-decode-struct", func(b *testing.B) {
		var rec struct {
			Country struct {
				ISOCode string `maxminddb:"iso_code"`
			} `maxminddb:"country"`
			Continent struct {
				Code string `maxminddb:"code"`
			} `maxminddb:"continent"`
		}
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			_ = r.Lookup(addrs[i&mask]).Decode(&rec)
		}
	})
}

// BenchmarkOpen measures opening (mapping, verifying and indexing) both
// full-scale databases.
func BenchmarkOpen(b *testing.B) {
	asnPath, countryPath := geotest.FullScale(b)
	b.ReportAllocs()
	for b.Loop() {
		d, err := geo.Open(geo.Config{ASN: asnPath, Country: countryPath})
		if err != nil {
			b.Fatal(err)
		}
		d.Close()
	}
}

// TestFullScale opens the full-scale databases, logs how long that takes,
// and checks lookups against decoding each record with maxminddb.
func TestFullScale(t *testing.T) {
	if testing.Short() {
		t.Skip("full-scale databases are large; skipped with -short")
	}
	asnPath, countryPath := geotest.FullScale(t)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	d := open(t, geo.Config{ASN: asnPath, Country: countryPath})
	took := time.Since(start)
	runtime.GC()
	runtime.ReadMemStats(&after)
	t.Logf("heap held by both indexes: %d MB, %d objects", (after.HeapAlloc-before.HeapAlloc)>>20,
		after.HeapObjects-min(before.HeapObjects, after.HeapObjects))
	for _, ds := range d.DataSets() {
		t.Logf("%s: %d networks, %d records", ds.File, ds.Networks, ds.Records)
		if ds.Networks < 400_000 {
			t.Errorf("%s: %d networks, want at least 400,000", ds.File, ds.Networks)
		}
	}
	t.Logf("opened both full-scale databases in %s", took.Round(time.Millisecond))

	asnReader, err := maxminddb.Open(asnPath)
	if err != nil {
		t.Fatal(err)
	}
	defer asnReader.Close()
	countryReader, err := maxminddb.Open(countryPath)
	if err != nil {
		t.Fatal(err)
	}
	defer countryReader.Close()
	var asnRec struct {
		ASN uint32 `maxminddb:"autonomous_system_number"`
		Org string `maxminddb:"autonomous_system_organization"`
	}
	var countryRec struct {
		Country struct {
			ISOCode string `maxminddb:"iso_code"`
		} `maxminddb:"country"`
		Continent struct {
			Code string `maxminddb:"code"`
		} `maxminddb:"continent"`
	}
	var addrs []netip.Addr
	for i, a := range sampleAddrs(t, asnPath, 20_000) {
		addrs = append(addrs, a)
		if a.Is4() && i%8 == 0 {
			// The 6to4 and Teredo aliases of the IPv4 tree.
			b := a.As4()
			addrs = append(addrs,
				netip.AddrFrom16([16]byte{0x20, 0x02, b[0], b[1], b[2], b[3], 15: 1}),
				netip.AddrFrom16([16]byte{0x20, 0x01, 0, 0, b[0], b[1], b[2], b[3], 15: 1}))
		}
	}
	for _, a := range addrs {
		asnRec.ASN, asnRec.Org = 0, ""
		countryRec.Country.ISOCode, countryRec.Continent.Code = "", ""
		if err := asnReader.Lookup(a).Decode(&asnRec); err != nil {
			t.Fatal(err)
		}
		if err := countryReader.Lookup(a).Decode(&countryRec); err != nil {
			t.Fatal(err)
		}
		asn, org, ok := d.ASN(a)
		if asn != asnRec.ASN || org != asnRec.Org || ok != (asnRec.ASN != 0) {
			t.Fatalf("ASN(%s) = %d, %q, %v; maxminddb decodes %+v", a, asn, org, ok, asnRec)
		}
		country, continent, ok := d.Country(a)
		if country != countryRec.Country.ISOCode || continent != countryRec.Continent.Code || ok != (country != "") {
			t.Fatalf("Country(%s) = %q, %q, %v; maxminddb decodes %+v", a, country, continent, ok, countryRec)
		}
	}
}
