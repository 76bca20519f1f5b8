package geo

import (
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gaissmai/bart"
	"github.com/oschwald/maxminddb-golang/v2"
)

func TestParseASN(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want uint64
	}{
		{"AS15169", 15169}, {"as15169", 15169}, {"15169", 15169}, {" AS13335 ", 13335},
		{"AS4294967295", 4294967295}, {"AS4294967296", 0}, {"AS", 0}, {"", 0},
		{"ASN15169", 0}, {"AS-1", 0}, {"AS1.5", 0}, {"Google", 0},
	}
	for _, tt := range tests {
		if got := parseASN(tt.in); got != tt.want {
			t.Errorf("parseASN(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

// TestReadSurvivesTruncation truncates a mapped database while it is
// being opened and before it is indexed: reading the mapping faults, and
// readFile must return an error instead of letting SIGBUS kill the
// process. (A fault while opening did kill it: maxminddb reads the
// mapping to find the metadata, before the guard was up.)
func TestReadSurvivesTruncation(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../../testdata/maxmind/GeoLite2-ASN-Test.mmdb")
	if err != nil {
		t.Fatal(err)
	}
	for name, faultWhileOpening := range map[string]bool{"before indexing": false, "while opening": true} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "asn.mmdb")
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			open := func(path string) (*maxminddb.Reader, error) {
				r, err := maxminddb.Open(path)
				if err != nil {
					return nil, err
				}
				if err := os.Truncate(path, 0); err != nil {
					t.Error(err)
				}
				if faultWhileOpening {
					var rec map[string]any
					_ = r.Lookup(netip.MustParseAddr("1.128.0.1")).Decode(&rec) // reads the mapping: faults
					t.Error("reading a truncated mapping did not fault")
				}
				return r, nil
			}
			h, err := readFile(path, kindASN, open)
			if err == nil || !strings.Contains(err.Error(), "the file changed while it was being read") {
				t.Fatalf("readFile() = %v, %v; want the fault reported", h, err)
			}
		})
	}
}

// TestMergerMatchesPlainTable inserts random ordered, non-overlapping
// networks with few distinct values both through the merger and one by one,
// and checks that both tables answer the same everywhere that matters.
func TestMergerMatchesPlainTable(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 50 {
		var nets []entry
		// Adjacent networks inside 10.0.0.0/16 and 2001:db8::/48, split at
		// random depths, so that many siblings share a value.
		var split func(p netip.Prefix, max int)
		split = func(p netip.Prefix, max int) {
			if p.Bits() < max && rng.IntN(4) != 0 {
				lo, _ := p.Addr().Prefix(p.Bits() + 1)
				hi := netip.PrefixFrom(lastOf(lo).Next(), p.Bits()+1)
				split(lo, max)
				split(hi, max)
				return
			}
			if rng.IntN(6) == 0 {
				return // a hole without data
			}
			nets = append(nets, entry{p, uint32(rng.IntN(3))})
		}
		split(netip.MustParsePrefix("10.0.0.0/16"), 28)
		split(netip.MustParsePrefix("2001:db8::/48"), 60)

		merged, plain := new(bart.Table[uint32]), new(bart.Table[uint32])
		m := merger{out: insertInto(merged)}
		for _, e := range nets {
			if err := m.push(e.p, e.v); err != nil {
				t.Fatal(err)
			}
			plain.Insert(e.p, e.v)
		}
		m.flush()
		if m.inserted > len(nets) {
			t.Fatalf("round %d: %d networks became %d", round, len(nets), m.inserted)
		}
		for _, e := range nets {
			for _, a := range []netip.Addr{e.p.Addr(), lastOf(e.p), e.p.Addr().Prev(), lastOf(e.p).Next()} {
				mv, mok := merged.Lookup(a)
				pv, pok := plain.Lookup(a)
				if mv != pv || mok != pok {
					t.Fatalf("round %d: Lookup(%s) = %d, %v merged, %d, %v plain", round, a, mv, mok, pv, pok)
				}
			}
		}
	}
	// Out of order is an error, not a wrong table.
	m := merger{out: insertInto(new(bart.Table[uint32]))}
	if err := m.push(netip.MustParsePrefix("10.0.1.0/24"), 1); err != nil {
		t.Fatal(err)
	}
	if err := m.push(netip.MustParsePrefix("10.0.0.0/24"), 1); err == nil || !strings.Contains(err.Error(), "out of order") {
		t.Errorf("push out of order = %v, want an error", err)
	}
}

// insertInto is a merger's out that inserts into a prefix table.
func insertInto(t *bart.Table[uint32]) func(netip.Prefix, uint32) error {
	return func(p netip.Prefix, v uint32) error {
		t.Insert(p, v)
		return nil
	}
}

func lastOf(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func TestMergerJoinsSiblings(t *testing.T) {
	t.Parallel()
	tbl := new(bart.Table[uint32])
	m := merger{out: insertInto(tbl)}
	for _, e := range []struct {
		p string
		v uint32
	}{
		{"1.0.0.0/25", 1}, {"1.0.0.128/26", 1}, {"1.0.0.192/26", 1}, // -> 1.0.0.0/24
		{"1.0.1.0/24", 1},                    // -> 1.0.0.0/23
		{"1.0.2.0/24", 2}, {"1.0.3.0/24", 1}, // different values: kept
		{"2001:db8::/33", 1}, {"2001:db8:8000::/33", 1}, // -> 2001:db8::/32
	} {
		if err := m.push(netip.MustParsePrefix(e.p), e.v); err != nil {
			t.Fatal(err)
		}
	}
	m.flush()
	var got []string
	for p := range tbl.All() {
		got = append(got, p.String())
	}
	slices.Sort(got)
	want := []string{"1.0.0.0/23", "1.0.2.0/24", "1.0.3.0/24", "2001:db8::/32"}
	if !slices.Equal(got, want) {
		t.Errorf("table holds %v, want %v", got, want)
	}
}

// DataSets never waits for a load in progress: /readyz and the admin
// API read it while a database of millions of networks is indexed.
func TestDataSetsDoNotWaitForLoads(t *testing.T) {
	d, err := Open(Config{ASN: "../../testdata/maxmind/GeoLite2-ASN-Test.mmdb"})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	d.asn.mu.Lock() // as a load does
	defer d.asn.mu.Unlock()
	done := make(chan []DataSet)
	go func() { done <- d.DataSets() }()
	select {
	case ds := <-done:
		if len(ds) != 1 || !ds[0].Loaded {
			t.Errorf("data sets %+v", ds)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("DataSets waits for a load")
	}
}
