package geo_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reghost/reghost/internal/geo"
	"github.com/reghost/reghost/internal/geo/geotest"
)

// run starts d.Run with a short debounce and the given poll interval, and
// stops it when the test ends.
func run(t *testing.T, d *geo.DB, poll time.Duration) {
	t.Helper()
	geo.SetWatchTimings(d, 20*time.Millisecond, poll)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run() = %v", err)
		}
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// asnVersion is an ASN database whose answers say which version it is: 256
// IPv4 /16s and 16 IPv6 /16s, with org names of different lengths per
// version so that data offsets differ between versions too.
func asnVersion(v int) map[string]geotest.ASNRecord {
	nets := map[string]geotest.ASNRecord{}
	for x := range 256 {
		nets[fmt.Sprintf("1.%d.0.0/16", x)] = asnRecord(v, x)
	}
	for x := range 16 {
		nets[fmt.Sprintf("2a0%x::/16", x)] = asnRecord(v, 256+x)
	}
	return nets
}

func asnRecord(v, x int) geotest.ASNRecord {
	return geotest.ASNRecord{ASN: uint32(v*1000 + x + 1), Org: fmt.Sprintf("version %d network %d%s", v, x, strings.Repeat("!", v*3+x%5))}
}

// countryVersion 0 is Sweden in the MaxMind layout, version 1 Japan in the
// flat layout (continent derived).
func writeCountryVersion(t *testing.T, path string, v int) {
	t.Helper()
	nets := map[string]geotest.CountryRecord{}
	for _, n := range []string{"1.0.0.0/8", "2a00::/12"} {
		nets[n] = [...]geotest.CountryRecord{{Country: "SE", Continent: "EU"}, {Country: "JP"}}[v]
	}
	write := [...]func(string, map[string]geotest.CountryRecord) error{geotest.WriteCountry, geotest.WriteFlatCountry}[v]
	if err := write(path, nets); err != nil {
		t.Fatal(err)
	}
}

var countryAnswers = [2][2]string{{"SE", "EU"}, {"JP", "AS"}}

// versionOf says which version answered for 1.x.0.0/16 (or 2a0x::/16 as
// x=256+...): 0, 1, or -1 for an answer that is neither.
func versionOf(x int, asn uint32, org string) int {
	for v := range 2 {
		if r := asnRecord(v, x); r.ASN == asn && r.Org == org {
			return v
		}
	}
	return -1
}

func TestRunLoadsDatabaseThatAppears(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	asnPath := filepath.Join(dir, "sub", "asn.mmdb") // the directory does not exist yet either
	d := open(t, geo.Config{ASN: asnPath})
	run(t, d, 200*time.Millisecond) // the directory is watched once a poll finds it
	if _, _, ok := d.ASN(netip.MustParseAddr("1.2.3.4")); ok {
		t.Fatal("ASN answered before the database exists")
	}
	if err := os.Mkdir(filepath.Dir(asnPath), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := geotest.WriteASN(asnPath, asnVersion(0)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the new database to serve", func() bool {
		asn, _, ok := d.ASN(netip.MustParseAddr("1.2.3.4"))
		return ok && asn == asnRecord(0, 2).ASN
	})
	if ds := d.DataSets()[0]; !ds.Loaded || ds.Err != "" || ds.Networks != 256+16 {
		t.Errorf("DataSets()[0] = %+v", ds)
	}
}

func TestRunReloadsReplacedDatabase(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		replace func(t *testing.T, dir, path, src string)
	}{
		{"renamed over", func(t *testing.T, _, path, src string) {
			if err := geotest.ReplaceFile(path, src); err != nil {
				t.Fatal(err)
			}
		}},
		{"written in place", func(t *testing.T, _, path, src string) {
			data, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"symlink to a file geoipupdate replaces in another directory", func(t *testing.T, dir, _, src string) {
			if err := geotest.ReplaceFile(filepath.Join(dir, "geoip", "GeoLite2-ASN.mmdb"), src); err != nil {
				t.Fatal(err)
			}
		}},
		{"Kubernetes volume symlink swap", func(t *testing.T, dir, _, src string) {
			// A ConfigMap or Secret volume: asn.mmdb -> ..data/asn.mmdb,
			// ..data -> ..<timestamp>; an update swaps ..data.
			version := filepath.Join(dir, "..v2")
			if err := os.Mkdir(version, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := geotest.ReplaceFile(filepath.Join(version, "asn.mmdb"), src); err != nil {
				t.Fatal(err)
			}
			tmp := filepath.Join(dir, "..data_tmp")
			if err := os.Symlink("..v2", tmp); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := filepath.Join(dir, "asn.mmdb")
			if strings.Contains(tt.name, "geoipupdate") {
				target := filepath.Join(dir, "geoip", "GeoLite2-ASN.mmdb")
				if err := os.Mkdir(filepath.Dir(target), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := geotest.WriteASN(target, asnVersion(0)); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(target, path); err != nil {
					t.Fatal(err)
				}
			} else if strings.Contains(tt.name, "Kubernetes") {
				v1 := filepath.Join(dir, "..v1")
				if err := os.Mkdir(v1, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := geotest.WriteASN(filepath.Join(v1, "asn.mmdb"), asnVersion(0)); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink("..v1", filepath.Join(dir, "..data")); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(filepath.Join("..data", "asn.mmdb"), path); err != nil {
					t.Fatal(err)
				}
			} else if err := geotest.WriteASN(path, asnVersion(0)); err != nil {
				t.Fatal(err)
			}
			src := filepath.Join(t.TempDir(), "v1.mmdb")
			if err := geotest.WriteASN(src, asnVersion(1)); err != nil {
				t.Fatal(err)
			}
			d := open(t, geo.Config{ASN: path})
			run(t, d, time.Hour) // file system events only
			checkASN(t, d, "1.7.0.1", asnWant{asnRecord(0, 7).ASN, asnRecord(0, 7).Org, true})
			tt.replace(t, dir, path, src)
			waitFor(t, "version 1 to serve", func() bool {
				asn, org, _ := d.ASN(netip.MustParseAddr("1.7.0.1"))
				return versionOf(7, asn, org) == 1
			})
		})
	}
}

// TestHotReloadUnderLoad replaces both databases over and over, alternating
// two versions and once with corrupt files, while lookups run in a loop:
// every lookup must get a complete answer from one of the two versions, the
// corrupt files must be refused with the previous ones still serving, and
// no file may stay mapped.
func TestHotReloadUnderLoad(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	src := t.TempDir()
	asnPath, countryPath := filepath.Join(dir, "asn.mmdb"), filepath.Join(dir, "country.mmdb")
	var asnSrc, countrySrc [2]string
	for v := range 2 {
		asnSrc[v] = filepath.Join(src, fmt.Sprintf("asn-%d.mmdb", v))
		countrySrc[v] = filepath.Join(src, fmt.Sprintf("country-%d.mmdb", v))
		if err := geotest.WriteASN(asnSrc[v], asnVersion(v)); err != nil {
			t.Fatal(err)
		}
		writeCountryVersion(t, countrySrc[v], v)
	}
	goodASN, err := os.ReadFile(asnSrc[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range [][2]string{{asnPath, asnSrc[0]}, {countryPath, countrySrc[0]}} {
		if err := geotest.ReplaceFile(p[0], p[1]); err != nil {
			t.Fatal(err)
		}
	}
	d := open(t, geo.Config{ASN: asnPath, Country: countryPath})
	run(t, d, time.Hour)

	// Lookups in a loop; any wrong or missing answer is a failure.
	var (
		stop      atomic.Bool
		lookups   atomic.Int64
		bad       atomic.Int64
		firstBad  atomic.Value
		wg        sync.WaitGroup
		reportBad = func(format string, args ...any) {
			if bad.Add(1) == 1 {
				firstBad.Store(fmt.Sprintf(format, args...))
			}
		}
	)
	for g := range 6 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for !stop.Load() {
				x := rng.IntN(256 + 16)
				var addr netip.Addr
				if x < 256 {
					addr = netip.AddrFrom4([4]byte{1, byte(x), byte(rng.IntN(256)), byte(rng.IntN(256))})
				} else {
					addr = netip.AddrFrom16([16]byte{0x2a, byte(x - 256), 15: byte(rng.IntN(256))})
				}
				if rng.IntN(4) == 0 && addr.Is4() {
					addr = netip.AddrFrom16(addr.As16()) // IPv4-mapped
				}
				asn, org, ok := d.ASN(addr)
				if !ok || versionOf(x, asn, org) < 0 {
					reportBad("ASN(%s) = %d, %q, %v", addr, asn, org, ok)
				}
				country, continent, ok := d.Country(addr)
				if !ok || ([2]string{country, continent} != countryAnswers[0] && [2]string{country, continent} != countryAnswers[1]) {
					reportBad("Country(%s) = %q, %q, %v", addr, country, continent, ok)
				}
				lookups.Add(1)
			}
		})
	}
	// The admin API and an operator's forced reloads, at the same time.
	wg.Go(func() {
		for !stop.Load() {
			_ = d.DataSets()
			_ = d.Reload()
			time.Sleep(3 * time.Millisecond)
		}
	})

	serving := func(v int) func() bool {
		return func() bool {
			asn, org, _ := d.ASN(netip.MustParseAddr("1.9.9.9"))
			country, _, _ := d.Country(netip.MustParseAddr("1.9.9.9"))
			return versionOf(9, asn, org) == v && country == countryAnswers[v][0]
		}
	}
	const rounds = 16
	for i := range rounds {
		v := (i + 1) % 2
		if err := geotest.ReplaceFile(asnPath, asnSrc[v]); err != nil {
			t.Fatal(err)
		}
		if err := geotest.ReplaceFile(countryPath, countrySrc[v]); err != nil {
			t.Fatal(err)
		}
		waitFor(t, fmt.Sprintf("round %d: version %d to serve", i, v), serving(v))

		if i == rounds/2 {
			// Corrupt replacements: a truncated ASN file and a country
			// file whose search tree is garbage.
			if err := geotest.ReplaceBytes(asnPath, goodASN[:len(goodASN)/3]); err != nil {
				t.Fatal(err)
			}
			goodCountry, err := os.ReadFile(countrySrc[v])
			if err != nil {
				t.Fatal(err)
			}
			if err := geotest.ReplaceBytes(countryPath, corruptTree(goodCountry)); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the corrupt files to be refused", func() bool {
				sets := d.DataSets()
				return strings.Contains(sets[0].Err, "refused") && strings.Contains(sets[1].Err, "refused")
			})
			for _, ds := range d.DataSets() {
				if !ds.Loaded {
					t.Errorf("%s: not loaded after a refused replacement: %+v", ds.Kind, ds)
				}
			}
			time.Sleep(50 * time.Millisecond) // lookups keep running against the previous files
			if !serving(v)() {
				t.Errorf("after the corrupt files, version %d is no longer serving", v)
			}
		}
	}
	stop.Store(true)
	wg.Wait()

	if n := bad.Load(); n > 0 {
		t.Errorf("%d of %d lookups were wrong; first: %s", n, lookups.Load(), firstBad.Load())
	}
	t.Logf("%d lookups during %d replacements of each database", lookups.Load(), rounds)
	for _, ds := range d.DataSets() {
		if !ds.Loaded || ds.Err != "" {
			t.Errorf("%s: %+v, want loaded without error", ds.Kind, ds)
		}
	}
	// Files are unmapped once indexed, refused ones included.
	if maps, err := os.ReadFile("/proc/self/maps"); err == nil {
		for _, line := range strings.Split(string(maps), "\n") {
			if strings.Contains(line, dir) {
				t.Errorf("still mapped: %s", line)
			}
		}
	}
}

// TestRewrittenInPlace truncates and rewrites a database that is serving,
// as copying a new file over it with cp does. Lookups keep their answers
// (they never read the file), the empty file is refused, and the rewritten
// one is loaded.
func TestRewrittenInPlace(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "asn.mmdb")
	if err := geotest.WriteASN(path, asnVersion(0)); err != nil {
		t.Fatal(err)
	}
	next := filepath.Join(t.TempDir(), "next.mmdb")
	if err := geotest.WriteASN(next, asnVersion(1)); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(next)
	if err != nil {
		t.Fatal(err)
	}
	d := open(t, geo.Config{ASN: path})
	v0 := asnWant{asnRecord(0, 7).ASN, asnRecord(0, 7).Org, true}
	checkASN(t, d, "1.7.0.1", v0)

	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	checkASN(t, d, "1.7.0.1", v0)
	if err := d.Reload(); err == nil || !strings.Contains(err.Error(), "file is empty") {
		t.Errorf("Reload() of the truncated file = %v, want it refused as empty", err)
	}
	checkASN(t, d, "1.7.0.1", v0)

	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := d.Reload(); err != nil {
		t.Fatal(err)
	}
	checkASN(t, d, "1.7.0.1", asnWant{asnRecord(1, 7).ASN, asnRecord(1, 7).Org, true})
}
