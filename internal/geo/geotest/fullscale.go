package geotest

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
	"golang.org/x/text/language"
	"golang.org/x/text/language/display"
)

// Full-scale database files, in the cache directory.
const (
	FullScaleASN     = "GeoLite2-ASN-FullScale.mmdb"
	FullScaleCountry = "GeoLite2-Country-FullScale.mmdb"

	// fullScaleVersion names the cache folder; bump it when the generator
	// changes so that stale files are not reused.
	fullScaleVersion = "fullscale-v1"
)

// Shape of the full-scale data, close to GeoLite2's: about 430,000
// networks per database, most IPv4 with a realistic share of IPv6,
// 70,000 ASNs whose network counts follow a long-tailed distribution, and
// every ISO country, clustered in runs as RIR allocations are.
const (
	ipv4Keep     = 0.85   // share of the /19 blocks of public IPv4 space holding a network
	ipv6Networks = 45_000 // IPv6 networks
	distinctASNs = 70_000
)

// FullScaleDir is where FullScale keeps its files: $REGHOST_CACHE_DIR if set,
// else the user cache directory, under reghost/fullscale-v1.
func FullScaleDir() (string, error) {
	if dir := os.Getenv("REGHOST_CACHE_DIR"); dir != "" {
		return filepath.Join(dir, fullScaleVersion), nil
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory (set REGHOST_CACHE_DIR): %w", err)
	}
	return filepath.Join(dir, "reghost", fullScaleVersion), nil
}

// FullScale returns the paths of a full-scale ASN database and a full-scale
// Country database (over 400,000 networks each), generating them on first
// use into FullScaleDir and reusing them afterwards. The data is synthetic
// and deterministic.
func FullScale(tb testing.TB) (asnPath, countryPath string) {
	tb.Helper()
	dir, err := FullScaleDir()
	if err != nil {
		tb.Fatal(err)
	}
	asnPath, countryPath = filepath.Join(dir, FullScaleASN), filepath.Join(dir, FullScaleCountry)
	if exists(asnPath) && exists(countryPath) {
		return asnPath, countryPath
	}
	start := time.Now()
	if _, _, err := GenerateFullScale(dir); err != nil {
		tb.Fatalf("generating full-scale databases: %v", err)
	}
	tb.Logf("generated full-scale databases in %s: %s", dir, time.Since(start).Round(time.Millisecond))
	return asnPath, countryPath
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil || !errors.Is(err, fs.ErrNotExist)
}

// GenerateFullScale writes the full-scale databases into dir (created if
// needed), replacing any there, and returns their paths.
func GenerateFullScale(dir string) (asnPath, countryPath string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	nets := fullScaleNetworks()
	asnPath, countryPath = filepath.Join(dir, FullScaleASN), filepath.Join(dir, FullScaleCountry)
	if err := writeFullScaleASN(asnPath, nets); err != nil {
		return "", "", fmt.Errorf("%s: %w", asnPath, err)
	}
	if err := writeFullScaleCountry(countryPath, nets); err != nil {
		return "", "", fmt.Errorf("%s: %w", countryPath, err)
	}
	return asnPath, countryPath, nil
}

// network is one generated network with the indexes of its data.
type network struct {
	prefix     netip.Prefix
	asn        int // index into the ASN list
	country    int // index into countries()
	registered int // -1: same as country
}

// fullScaleNetworks lays out the networks. Both databases use the same
// networks, as GeoLite2's ASN and Country databases roughly do.
func fullScaleNetworks() []network {
	rng := rand.New(rand.NewPCG(0x5eed, 0x1e9))
	countries := countries()
	var nets []network

	// IPv4: one network in most /19 blocks of public unicast space, /19 to
	// /24 wide, at an aligned random place in the block.
	reserved := []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("100.64.0.0/10"),
		netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("169.254.0.0/16"),
		netip.MustParsePrefix("172.16.0.0/12"), netip.MustParsePrefix("192.0.0.0/24"),
		netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("192.88.99.0/24"),
		netip.MustParsePrefix("192.168.0.0/16"), netip.MustParsePrefix("198.18.0.0/15"),
		netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("203.0.113.0/24"),
	}
	lengths := []int{24, 24, 24, 24, 24, 23, 23, 22, 22, 21, 20, 19}
	country, runLeft := 0, 0
	pickCountry := countryPicker(rng, countries)
	for block := uint32(1) << 11; block < 224<<11; block++ {
		blockPrefix := netip.PrefixFrom(v4(block<<13), 19)
		if overlapsAny(blockPrefix, reserved) || rng.Float64() >= ipv4Keep {
			continue
		}
		bits := lengths[rng.IntN(len(lengths))]
		slot := rng.Uint32N(1 << (bits - 19))
		start := block<<13 | slot<<(32-bits)
		if runLeft == 0 {
			country, runLeft = pickCountry(), 1+rng.IntN(60)
		}
		runLeft--
		nets = append(nets, network{prefix: netip.PrefixFrom(v4(start), bits), country: country, registered: registered(rng, len(countries))})
	}

	// IPv6: /32 allocations (some narrower) handed out in order within each
	// RIR's /12, with gaps.
	rirs := []struct {
		base      netip.Addr
		weight    int
		continent string
	}{
		{netip.MustParseAddr("2400::"), 30, "AS"},
		{netip.MustParseAddr("2600::"), 25, "NA"},
		{netip.MustParseAddr("2800::"), 8, "SA"},
		{netip.MustParseAddr("2a00::"), 32, "EU"},
		{netip.MustParseAddr("2c00::"), 5, "AF"},
	}
	next := make([]uint32, len(rirs))
	byContinent := map[string][]int{}
	for i, c := range countries {
		byContinent[c.continent] = append(byContinent[c.continent], i)
	}
	v6lengths := []int{32, 32, 32, 32, 29, 36, 40, 44, 48, 48}
	for range ipv6Networks {
		w := rng.IntN(100)
		r := 0
		for ; w >= rirs[r].weight; r++ {
			w -= rirs[r].weight
		}
		next[r] += 1 + uint32(rng.IntN(4))
		idx := next[r] &^ 7 // room for a /29
		next[r] = idx + 8
		b := rirs[r].base.As16()
		b[1] |= byte(idx >> 16)
		b[2] = byte(idx >> 8)
		b[3] = byte(idx)
		bits := v6lengths[rng.IntN(len(v6lengths))]
		if bits > 32 {
			b[4], b[5] = byte(rng.IntN(256)), byte(rng.IntN(256))
		}
		p, _ := netip.AddrFrom16(b).Prefix(bits)
		pool := byContinent[rirs[r].continent]
		if rirs[r].continent == "AS" && rng.IntN(8) == 0 {
			pool = byContinent["OC"]
		}
		nets = append(nets, network{prefix: p, country: pool[rng.IntN(len(pool))], registered: -1})
	}

	// ASNs: every one of distinctASNs holds at least one network; the rest
	// follow a Zipf distribution, as a few large networks hold most blocks.
	order := rng.Perm(len(nets))
	zipf := rand.NewZipf(rng, 1.07, 4, distinctASNs-1)
	for i, n := range order {
		if i < distinctASNs {
			nets[n].asn = i
		} else {
			nets[n].asn = int(zipf.Uint64())
		}
	}
	return nets
}

func v4(u uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(u >> 24), byte(u >> 16), byte(u >> 8), byte(u)})
}

func overlapsAny(p netip.Prefix, list []netip.Prefix) bool {
	for _, q := range list {
		if p.Overlaps(q) {
			return true
		}
	}
	return false
}

// registered is a different registered country for about 2% of networks.
func registered(rng *rand.Rand, n int) int {
	if rng.IntN(50) == 0 {
		return rng.IntN(n)
	}
	return -1
}

// countryPicker returns every country once in a shuffled order, then
// countries weighted by a rough share of address space.
func countryPicker(rng *rand.Rand, countries []countryInfo) func() int {
	heavy := map[string]int{"US": 300, "CN": 80, "JP": 40, "DE": 30, "GB": 30, "KR": 25, "BR": 20, "FR": 20, "CA": 15, "IT": 12, "AU": 10, "NL": 10, "RU": 10, "IN": 10}
	var weighted []int
	for i, c := range countries {
		w := heavy[c.iso]
		if w == 0 {
			w = 1
		}
		for range w {
			weighted = append(weighted, i)
		}
	}
	first := rng.Perm(len(countries))
	return func() int {
		if len(first) > 0 {
			i := first[0]
			first = first[1:]
			return i
		}
		return weighted[rng.IntN(len(weighted))]
	}
}

type countryInfo struct{ iso, continent string }

// countries lists the ISO 3166-1 alpha-2 countries CLDR knows, with their
// CLDR continent (Antarctica as AN, as MaxMind has it).
func countries() []countryInfo {
	groups := []struct{ m49, continent string }{
		{"AQ", "AN"}, {"002", "AF"}, {"142", "AS"}, {"150", "EU"},
		{"005", "SA"}, {"019", "NA"}, {"009", "OC"},
	}
	var out []countryInfo
	for a := 'A'; a <= 'Z'; a++ {
		for b := 'A'; b <= 'Z'; b++ {
			iso := string([]rune{a, b})
			r, err := language.ParseRegion(iso)
			if err != nil || !r.IsCountry() || r.String() != iso {
				continue
			}
			for _, g := range groups {
				if language.MustParseRegion(g.m49).Contains(r) {
					out = append(out, countryInfo{iso, g.continent})
					break
				}
			}
		}
	}
	return out
}

var regionNames = display.English.Regions()

func countryName(iso string) string {
	r, err := language.ParseRegion(iso)
	if err != nil {
		return iso
	}
	return regionNames.Name(r)
}

func writeFullScaleASN(path string, nets []network) error {
	rng := rand.New(rand.NewPCG(0xa5, 0x0f))
	asns := make([]uint32, distinctASNs)
	seen := map[uint32]bool{}
	for i := range asns {
		for {
			var n uint32
			if rng.IntN(3) == 0 {
				n = 131072 + rng.Uint32N(300_000) // 32-bit ASNs
			} else {
				n = 1 + rng.Uint32N(64_000)
			}
			if !seen[n] {
				seen[n], asns[i] = true, n
				break
			}
		}
	}
	recs := make([]mmdbtype.DataType, distinctASNs)
	for i, n := range asns {
		recs[i] = maxmindASN(ASNRecord{ASN: n, Org: orgName(rng)})
	}
	tree, err := mmdbwriter.New(fullScaleOptions("GeoLite2-ASN"))
	if err != nil {
		return err
	}
	for _, n := range nets {
		if err := tree.Insert(ipNet(n.prefix), recs[n.asn]); err != nil {
			return fmt.Errorf("inserting %s: %w", n.prefix, err)
		}
	}
	return WriteTree(path, tree)
}

func writeFullScaleCountry(path string, nets []network) error {
	countries := countries()
	type key struct{ country, registered int }
	recs := map[key]mmdbtype.DataType{}
	tree, err := mmdbwriter.New(fullScaleOptions("GeoLite2-Country"))
	if err != nil {
		return err
	}
	for _, n := range nets {
		k := key{n.country, n.registered}
		rec, ok := recs[k]
		if !ok {
			c := countries[n.country]
			reg := c.iso
			if n.registered >= 0 {
				reg = countries[n.registered].iso
			}
			rec = maxmindCountry(CountryRecord{Country: c.iso, Continent: c.continent, Registered: reg})
			recs[k] = rec
		}
		if err := tree.Insert(ipNet(n.prefix), rec); err != nil {
			return fmt.Errorf("inserting %s: %w", n.prefix, err)
		}
	}
	return WriteTree(path, tree)
}

func fullScaleOptions(databaseType string) mmdbwriter.Options {
	o := Options(databaseType)
	o.Description = map[string]string{"en": "reghost synthetic full-scale test data (not real GeoIP data), generated by internal/geo/geotest"}
	return o
}

var (
	orgStems = strings.Fields("Vor Tel Net Lum Kar Bel Sky Nord Ost Sur Astra Orion Delta Quant Vex Zen Hel Mira Cor Alp Tera Giga Nova Ruta Sol Lin Mar Kos Ter Pax")
	orgMids  = strings.Fields("ix ona eta ara com link wave net tel ica ora una eon ium is a o")
	orgKinds = []string{"Telecom", "Networks", "Broadband", "Cloud", "Hosting", "Internet", "Communications", "Data Center", "Fiber", "Mobile", "Online", "Systems"}
	orgForms = []string{"LLC", "Ltd", "GmbH", "S.A.", "B.V.", "Inc.", "AB", "Pty Ltd", "JSC", "Co., Ltd.", "S.r.l.", "SAS", "Sp. z o.o.", "Oy", "AS"}
)

func orgName(rng *rand.Rand) string {
	return orgStems[rng.IntN(len(orgStems))] + orgMids[rng.IntN(len(orgMids))] + " " +
		orgKinds[rng.IntN(len(orgKinds))] + " " + orgForms[rng.IntN(len(orgForms))]
}
