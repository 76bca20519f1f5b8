package policy_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"testing"

	"github.com/reghost/reghost/internal/cloud"
	"github.com/reghost/reghost/internal/geo"
	"github.com/reghost/reghost/internal/geo/geotest"
	"github.com/reghost/reghost/internal/policy"
	"github.com/reghost/reghost/internal/policy/policytest"
	"github.com/reghost/reghost/internal/rules"
)

// Full-scale data: generated ASN and Country databases of over 400,000
// networks each (cached, see geotest.FullScale), every cloud snapshot in
// testdata/cloud, the example config's rules, and overrides by the
// hundred thousand.

type fullScale struct {
	geo   *geo.DB
	cloud *cloud.Table
	addrs []netip.Addr
}

func loadFullScale(b testing.TB) *fullScale {
	b.Helper()
	asnPath, countryPath := geotest.FullScale(b)
	db, err := geo.Open(geo.Config{ASN: asnPath, Country: countryPath})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	files := map[string]string{}
	for _, p := range rules.Clouds {
		files[p] = map[string]string{
			"aws":          "../../testdata/cloud/aws-ip-ranges.json",
			"gcp":          "../../testdata/cloud/gcp-cloud.json",
			"azure":        "../../testdata/cloud/azure-servicetags.json",
			"oracle":       "../../testdata/cloud/oracle-public-ip-ranges.json",
			"digitalocean": "../../testdata/cloud/digitalocean-geofeed.csv",
		}[p]
	}
	table, _, err := cloud.Load(files)
	if err != nil {
		b.Fatal(err)
	}
	// Addresses as a busy redirector sees them: mostly random public IPv4,
	// a share of IPv6, a share from cloud ranges.
	rng := rand.New(rand.NewPCG(1, 2))
	fs := &fullScale{geo: db, cloud: table}
	var cloudAddrs []netip.Addr
	for _, p := range []string{"99.77.162.1", "3.5.140.1", "34.34.0.1", "20.38.0.1", "129.146.0.1", "2600:1f14::1"} {
		cloudAddrs = append(cloudAddrs, netip.MustParseAddr(p))
	}
	for i := 0; i < 1<<14; i++ {
		switch r := rng.IntN(10); {
		case r < 7:
			fs.addrs = append(fs.addrs, netip.AddrFrom4([4]byte{byte(1 + rng.IntN(222)), byte(rng.IntN(256)), byte(rng.IntN(256)), byte(rng.IntN(256))}))
		case r < 9:
			var a [16]byte
			a[0], a[1] = 0x20, byte(rng.IntN(16))
			for j := 2; j < 16; j++ {
				a[j] = byte(rng.IntN(256))
			}
			fs.addrs = append(fs.addrs, netip.AddrFrom16(a))
		default:
			fs.addrs = append(fs.addrs, cloudAddrs[rng.IntN(len(cloudAddrs))])
		}
	}
	return fs
}

func benchRegistries() []rules.Registry {
	return []rules.Registry{
		{Name: "k8s", URL: "https://us-west1-docker.pkg.dev/k8s-artifacts-prod/images", Default: true},
		{Name: "aws-us-east-2", URL: "https://prod-registry-k8s-io-us-east-2.s3.dualstack.us-east-2.amazonaws.com"},
		{Name: "hub", URL: "https://registry-1.docker.io"},
	}
}

func benchRules() []rules.Rule {
	return []rules.Rule{
		{Match: rules.Match{CIDR: netip.MustParsePrefix("192.168.0.0/24")}, Registries: []string{"hub"}},
		{Match: rules.Match{ASN: 15169}, Registries: []string{"hub", "k8s"}},
		{Match: rules.Match{Cloud: "aws", Region: "us-east-2"}, Registries: []string{"aws-us-east-2"}},
		{Match: rules.Match{Cloud: "gcp"}, Registries: []string{"k8s"}},
		{Match: rules.Match{Country: "SE"}, Registries: []string{"hub"}},
		{Match: rules.Match{Continent: "EU"}, Registries: []string{"k8s"}},
	}
}

func overrides(n int) []rules.Override {
	return policytest.Overrides(n, []string{"hub", "k8s", "aws-us-east-2"})
}

func newBenchEngine(b testing.TB, fs *fullScale, n int) *policy.Engine {
	b.Helper()
	e, err := policy.New(policy.Config{
		Registries: benchRegistries(),
		Rules:      benchRules(),
		Sources:    policy.Sources{ASN: fs.geo, Country: fs.geo, Cloud: fs.cloud},
	})
	if err != nil {
		b.Fatal(err)
	}
	// Duplicate CIDRs and ASNs chain; they are still valid overrides.
	if err := e.SetOverrides(overrides(n)); err != nil {
		b.Fatal(err)
	}
	return e
}

// BenchmarkDecide is the hot path: one decision and its redirect URL.
// Target: under 1µs and at most 2 allocations, flat from 10 to 1,000,000
// overrides. BenchmarkLookupsOnly, the raw fact lookups the engine builds
// on, is the baseline for the ratio reported in docs/performance.md.
func BenchmarkDecide(b *testing.B) {
	fs := loadFullScale(b)
	for _, n := range []int{10, 1_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("overrides=%d", n), func(b *testing.B) {
			e := newBenchEngine(b, fs, n)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				d, err := e.Decide(fs.addrs[i&(len(fs.addrs)-1)], "/v2/pause/manifests/3.9", "")
				if err != nil || d.Location == "" {
					b.Fatal(d, err)
				}
				i++
			}
		})
	}
}

// BenchmarkChooseChained is Choose as a busy server makes it: over a
// million random IPv4 addresses, so that the tables' lines are rarely in
// the core's caches, one decision after another. The next address
// depends on the decision before (on which rule matched, through a
// branch the processor may guess), and a decision is longer than the
// processor looks ahead, so consecutive decisions' misses overlap far
// less than in a loop of independent lookups.
func BenchmarkChooseChained(b *testing.B) {
	fs := loadFullScale(b)
	e := newBenchEngine(b, fs, 100_000)
	rng := rand.New(rand.NewPCG(5, 6))
	addrs := make([]netip.Addr, 1<<20)
	for i := range addrs {
		addrs[i] = netip.AddrFrom4([4]byte{byte(1 + rng.IntN(222)), byte(rng.IntN(256)), byte(rng.IntN(256)), byte(rng.IntN(256))})
	}
	i := 0
	for b.Loop() {
		d := e.Choose(addrs[i&(len(addrs)-1)])
		i += 1 + len(d.Reason)&1
	}
}

func BenchmarkLookupsOnly(b *testing.B) {
	fs := loadFullScale(b)
	b.ReportAllocs()
	i := 0
	var sink uint32
	for b.Loop() {
		a := fs.addrs[i&(len(fs.addrs)-1)]
		asn, _, _ := fs.geo.ASN(a)
		cc, _, _ := fs.geo.Country(a)
		p, _, _ := fs.cloud.Cloud(a)
		sink += asn + uint32(len(cc)+len(p))
		i++
	}
	_ = sink
}

// BenchmarkCompileOverrides is the time and memory to compile 1,000,000
// overrides into a snapshot; retained-MB is the snapshot's live heap.
func BenchmarkCompileOverrides(b *testing.B) {
	fs := loadFullScale(b)
	ovs := overrides(1_000_000)
	e := newBenchEngine(b, fs, 0)
	b.ReportAllocs()
	var before, after runtime.MemStats
	for b.Loop() {
		if err := e.SetOverrides(nil); err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		runtime.ReadMemStats(&before)
		if err := e.SetOverrides(ovs); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.StartTimer()
	}
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "retained-MB")
}

// TestDecideAllocs holds the allocation budget without timing anything:
// a decision allocates its redirect URL and nothing else.
func TestDecideAllocs(t *testing.T) {
	db, err := geo.Open(geo.Config{ASN: "../../testdata/maxmind/GeoLite2-ASN-Test.mmdb", Country: "../../testdata/maxmind/GeoLite2-Country-Test.mmdb"})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	table, _, err := cloud.Load(map[string]string{"aws": "../../testdata/cloud/aws-ip-ranges.json"})
	if err != nil {
		t.Fatal(err)
	}
	e, err := policy.New(policy.Config{Registries: benchRegistries(), Rules: benchRules(),
		Sources: policy.Sources{ASN: db, Country: db, Cloud: table}})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.SetOverrides(overrides(1000)); err != nil {
		t.Fatal(err)
	}
	for _, ip := range []string{"89.160.20.112", "1.0.0.1", "99.77.162.1", "2a02:d180::1", "8.8.8.8", "192.168.0.1"} {
		addr := netip.MustParseAddr(ip)
		if n := testing.AllocsPerRun(100, func() { e.Decide(addr, "/v2/pause/manifests/3.9", "n=1") }); n > 1 {
			t.Errorf("Decide(%s) allocates %.0f times, want at most 1", ip, n)
		}
		if n := testing.AllocsPerRun(100, func() { e.Choose(addr) }); n != 0 {
			t.Errorf("Choose(%s) allocates %.0f times, want 0", ip, n)
		}
	}
}
