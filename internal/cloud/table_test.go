package cloud

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func TestNewTable(t *testing.T) {
	t.Parallel()
	first := []Range{
		{"aws", "us-east-1", "EC2", mustPrefix("10.0.0.0/8")},
		{"aws", "GLOBAL", "AMAZON", mustPrefix("10.1.0.0/16")},
		{"aws", "dup-in-set", "", mustPrefix("10.0.0.0/8")},
		{"aws", "host-bits", "", netip.PrefixFrom(netip.MustParseAddr("10.2.3.4"), 24)},
		{"aws", "invalid", "", netip.Prefix{}},
		{"aws", "mapped", "", mustPrefix("::ffff:10.9.0.0/112")},
	}
	second := []Range{
		{"gcp", "europe-west1", "", mustPrefix("10.0.0.0/8")}, // same prefix: the first set wins
		{"gcp", "europe-west4", "", mustPrefix("10.1.2.0/24")},
		{"gcp", "us-central1", "", mustPrefix("2001:db8::/32")},
	}
	tab := NewTable(first, second)
	if got, want := tab.Len(), 6; got != want {
		t.Errorf("Len() = %d, want %d", got, want)
	}
	counts := tab.Counts()
	if counts["aws"] != 4 || counts["gcp"] != 2 || len(counts) != 2 {
		t.Errorf("Counts() = %v, want aws:4 gcp:2", counts)
	}
	counts["aws"] = 99 // a copy: the table is not changed
	if tab.Counts()["aws"] != 4 {
		t.Error("Counts() returned the table's own map")
	}
	tests := []struct {
		addr, provider, region string
	}{
		{"10.200.0.1", "aws", "us-east-1"},
		{"10.1.200.1", "aws", "GLOBAL"},
		{"10.1.2.3", "gcp", "europe-west4"}, // most specific wins across providers
		{"10.2.3.200", "aws", "host-bits"},
		{"10.9.0.1", "aws", "mapped"},
		{"::ffff:10.1.2.3", "gcp", "europe-west4"},
		{"2001:db8::1", "gcp", "us-central1"},
		{"2001:db9::1", "", ""},
		{"192.0.2.1", "", ""},
	}
	for _, tc := range tests {
		provider, region, ok := tab.Cloud(netip.MustParseAddr(tc.addr))
		if provider != tc.provider || region != tc.region || ok != (tc.provider != "") {
			t.Errorf("Cloud(%s) = %q, %q, %v; want %q, %q", tc.addr, provider, region, ok, tc.provider, tc.region)
		}
	}
	if _, ok := tab.Lookup(netip.Addr{}); ok {
		t.Error("Lookup(zero Addr) matched")
	}
}

func TestNilAndEmptyTable(t *testing.T) {
	t.Parallel()
	for name, tab := range map[string]*Table{"nil": nil, "empty": NewTable()} {
		addr := netip.MustParseAddr("3.5.140.1")
		if r, ok := tab.Lookup(addr); ok {
			t.Errorf("%s: Lookup = %+v", name, r)
		}
		if p, r, ok := tab.Cloud(addr); ok {
			t.Errorf("%s: Cloud = %q, %q", name, p, r)
		}
		if tab.Len() != 0 || len(tab.Counts()) != 0 {
			t.Errorf("%s: Len = %d, Counts = %v", name, tab.Len(), tab.Counts())
		}
	}
}

func TestCloudDoesNotAllocate(t *testing.T) {
	tab := loadedTable(t)
	addrs := benchAddrs()
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		tab.Cloud(addrs[i%len(addrs)])
		i++
	})
	if allocs != 0 {
		t.Errorf("Cloud: %v allocs per call, want 0", allocs)
	}
	allocs = testing.AllocsPerRun(1000, func() {
		tab.Lookup(addrs[i%len(addrs)])
		i++
	})
	if allocs != 0 {
		t.Errorf("Lookup: %v allocs per call, want 0", allocs)
	}
}

func TestLoad(t *testing.T) {
	t.Parallel()
	before := time.Now()
	tab, datasets, err := Load(snapshots)
	if err != nil {
		t.Fatal(err)
	}
	if len(datasets) != len(Providers()) {
		t.Fatalf("got %d data sets, want %d", len(datasets), len(Providers()))
	}
	want := map[string]string{
		"aws":          "createDate=2026-08-22-15-17-05 syncToken=1787411825",
		"gcp":          "creationTime=2026-01-29T12:12:51.194698 syncToken=1769717571194",
		"azure":        "changeNumber=363 cloud=Public",
		"oracle":       "last_updated_timestamp=2025-07-21T07:13:25.457838",
		"digitalocean": "",
	}
	total := 0
	for i, ds := range datasets {
		if ds.Provider != Providers()[i] {
			t.Errorf("data set %d is %s, want %s (Providers order)", i, ds.Provider, Providers()[i])
		}
		if ds.File != snapshots[ds.Provider] || ds.Published != want[ds.Provider] {
			t.Errorf("%s: file %q, published %q; want %q, %q", ds.Provider, ds.File, ds.Published, snapshots[ds.Provider], want[ds.Provider])
		}
		info, err := os.Stat(ds.File)
		if err != nil {
			t.Fatal(err)
		}
		if !ds.ModTime.Equal(info.ModTime()) || ds.LoadedAt.Before(before) {
			t.Errorf("%s: mod time %v (file %v), loaded at %v", ds.Provider, ds.ModTime, info.ModTime(), ds.LoadedAt)
		}
		indep := independent(t, ds.Provider)
		if ds.Records != len(indep) || ds.IPv4+ds.IPv6 != ds.Records || ds.IPv4 == 0 {
			t.Errorf("%s: records %d (%d IPv4 + %d IPv6), independent decode has %d", ds.Provider, ds.Records, ds.IPv4, ds.IPv6, len(indep))
		}
		total += ds.Records
	}
	// No two providers publish the same prefix in these snapshots, so the
	// table holds every record.
	if tab.Len() != total {
		t.Errorf("table has %d prefixes, data sets %d", tab.Len(), total)
	}
	for p, n := range tab.Counts() {
		t.Logf("%s: %d prefixes in the table", p, n)
	}
}

func TestLoadEmpty(t *testing.T) {
	t.Parallel()
	tab, datasets, err := Load(nil)
	if err != nil || tab == nil || tab.Len() != 0 || len(datasets) != 0 {
		t.Errorf("Load(nil) = %v, %v, %v; want an empty table", tab, datasets, err)
	}
}

func TestLoadErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := filepath.Join(dir, "gcp.json")
	if err := os.WriteFile(bad, []byte(`{"syncToken": "1", "creationTime": "x", "prefixes": [{"ipv4Prefix": "34.35.0/16", "service": "s", "scope": "r"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.json")
	tests := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"unknown provider", map[string]string{"aws": snapshots["aws"], "cloudflare": "x.json"},
			`unknown cloud provider "cloudflare"; known: aws, gcp, azure, oracle, digitalocean`},
		{"bad file among good ones", map[string]string{"aws": snapshots["aws"], "gcp": bad, "azure": snapshots["azure"]},
			bad + `: gcp: prefixes[0].ipv4Prefix: netip.ParsePrefix("34.35.0/16"): ParseAddr("34.35.0"): IPv4 address too short`},
		{"missing file", map[string]string{"oracle": missing},
			`oracle: open ` + missing + `: no such file or directory`},
		{"no file name", map[string]string{"oracle": ""}, `oracle: no file given`},
		{"wrong file for provider", map[string]string{"aws": snapshots["gcp"]},
			snapshots["gcp"] + `: aws: missing top-level key "createDate"; is this an AWS ip-ranges.json file?`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tab, datasets, err := Load(tc.files)
			if err == nil || err.Error() != tc.want {
				t.Errorf("error\n got: %v\nwant: %s", err, tc.want)
			}
			if tab != nil || datasets != nil {
				t.Errorf("got a table (%d) and %d data sets with the error", tab.Len(), len(datasets))
			}
		})
	}
}

// benchAddrs is a mix of addresses in each provider's ranges, IPv4 and
// IPv6, and of addresses in none (the common case for most clients).
func benchAddrs() []netip.Addr {
	var addrs []netip.Addr
	for _, s := range strings.Fields(`3.5.140.1 99.77.162.1 99.77.188.1 2406:daba:f000::1 34.35.0.1
		2600:1900:8000::1 4.175.0.1 9.160.0.1 2603:1020:200::1 129.80.0.1 5.101.96.1 2400:6180:0:d0::1
		::ffff:3.5.140.1 192.0.2.1 81.2.69.142 89.160.20.112 2001:db8::1 2a02:d180::1`) {
		addrs = append(addrs, netip.MustParseAddr(s))
	}
	return addrs
}

func BenchmarkLookup(b *testing.B) {
	tab := loadedTable(b)
	addrs := benchAddrs()
	b.Run("Cloud", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			tab.Cloud(addrs[i%len(addrs)])
			i++
		}
	})
	b.Run("Lookup", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			tab.Lookup(addrs[i%len(addrs)])
			i++
		}
	})
	for _, a := range []string{"99.77.162.1", "2406:daba:f000::1", "192.0.2.1"} {
		addr := netip.MustParseAddr(a)
		b.Run("Cloud/"+a, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				tab.Cloud(addr)
			}
		})
	}
}

func BenchmarkParse(b *testing.B) {
	for _, provider := range Providers() {
		data := readSnapshot(b, provider)
		parse := parserFunc(b, provider)
		b.Run(provider, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			var n int
			for b.Loop() {
				ranges, err := parse(strings.NewReader(string(data)))
				if err != nil {
					b.Fatal(err)
				}
				n = len(ranges)
			}
			b.ReportMetric(float64(n), "prefixes")
		})
	}
}

func BenchmarkLoad(b *testing.B) {
	b.ReportAllocs()
	var n int
	for b.Loop() {
		tab, _, err := Load(snapshots)
		if err != nil {
			b.Fatal(err)
		}
		n = tab.Len()
	}
	b.ReportMetric(float64(n), "prefixes")
}

func ExampleTable_Cloud() {
	tab, _, err := Load(map[string]string{"aws": "../../testdata/cloud/aws-ip-ranges.json"})
	if err != nil {
		fmt.Println(err)
		return
	}
	// 99.77.162.0/24 (us-east-2) lies inside 99.77.128.0/18 (GLOBAL):
	// the more specific prefix wins.
	provider, region, ok := tab.Cloud(netip.MustParseAddr("99.77.162.1"))
	fmt.Println(provider, region, ok)
	// Output: aws us-east-2 true
}
