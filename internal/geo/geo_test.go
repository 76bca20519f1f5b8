package geo_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/maxmind/mmdbwriter/mmdbtype"
	"github.com/reghost/reghost/internal/geo"
	"github.com/reghost/reghost/internal/geo/geotest"
)

// MaxMind's official test databases (testdata/maxmind) and the generated
// fixtures (testdata/geo); see testdata/README.md.
const (
	maxmindDir      = "../../testdata/maxmind/"
	fixtureDir      = "../../testdata/geo/"
	officialASN     = maxmindDir + "GeoLite2-ASN-Test.mmdb"
	officialGeoLite = maxmindDir + "GeoLite2-Country-Test.mmdb"
	officialGeoIP   = maxmindDir + "GeoIP2-Country-Test.mmdb"
	officialCity    = maxmindDir + "GeoLite2-City-Test.mmdb"
)

func open(t testing.TB, cfg geo.Config) *geo.DB {
	t.Helper()
	d, err := geo.Open(cfg)
	if err != nil {
		t.Fatalf("Open(%+v): %v", cfg, err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

type asnWant struct {
	asn uint32
	org string
	ok  bool
}

type countryWant struct {
	country, continent string
	ok                 bool
}

func checkASN(t *testing.T, d *geo.DB, addr string, want asnWant) {
	t.Helper()
	a := parseAddr(t, addr)
	asn, org, ok := d.ASN(a)
	if got := (asnWant{asn, org, ok}); got != want {
		t.Errorf("ASN(%s) = %d, %q, %v; want %d, %q, %v", addr, asn, org, ok, want.asn, want.org, want.ok)
	}
}

func checkCountry(t *testing.T, d *geo.DB, addr string, want countryWant) {
	t.Helper()
	a := parseAddr(t, addr)
	country, continent, ok := d.Country(a)
	if got := (countryWant{country, continent, ok}); got != want {
		t.Errorf("Country(%s) = %q, %q, %v; want %q, %q, %v", addr, country, continent, ok, want.country, want.continent, want.ok)
	}
}

func parseAddr(t *testing.T, s string) netip.Addr {
	if s == "" {
		return netip.Addr{}
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestLookupOfficialMaxMind(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		addr    string
		asn     asnWant
		country countryWant
	}{
		{"Google IPv4", "1.0.0.1", asnWant{15169, "Google Inc.", true}, countryWant{}},
		{"AT&T", "12.81.92.1", asnWant{7018, "AT&T Services", true}, countryWant{}},
		{"Sweden", "89.160.20.112", asnWant{29518, "Bredband2 AB", true}, countryWant{"SE", "EU", true}},
		{"United Kingdom", "81.2.69.142", asnWant{}, countryWant{"GB", "EU", true}},
		{"ASN without organisation", "216.160.83.56", asnWant{209, "", true}, countryWant{"US", "NA", true}},
		{"Ziggo IPv6", "2001:1c00::1", asnWant{9143, "Ziggo B.V.", true}, countryWant{}},
		{"Japan IPv6", "2001:218::1", asnWant{}, countryWant{"JP", "AS", true}},
		{"Germany IPv6", "2a02:d180::1", asnWant{}, countryWant{"DE", "EU", true}},
		{"IPv4-mapped", "::ffff:1.0.0.1", asnWant{15169, "Google Inc.", true}, countryWant{}},
		{"IPv4-mapped country", "::ffff:89.160.20.112", asnWant{29518, "Bredband2 AB", true}, countryWant{"SE", "EU", true}},
		{"6to4 alias", "2002:59a0:1470::1", asnWant{29518, "Bredband2 AB", true}, countryWant{"SE", "EU", true}},
		{"Teredo alias", "2001:0:100:1::", asnWant{15169, "Google Inc.", true}, countryWant{}},
		{"IPv4-compatible", "::1.0.0.1", asnWant{15169, "Google Inc.", true}, countryWant{}},
		{"IPv4-compatible country", "::89.160.20.112", asnWant{29518, "Bredband2 AB", true}, countryWant{"SE", "EU", true}},
		{"not in the data", "8.8.8.8", asnWant{}, countryWant{}},
		{"private", "10.0.0.1", asnWant{}, countryWant{}},
		{"loopback IPv6", "::1", asnWant{}, countryWant{}},
		{"invalid address", "", asnWant{}, countryWant{}},
	}
	for _, countryDB := range []string{officialGeoLite, officialGeoIP, officialCity} {
		t.Run(filepath.Base(countryDB), func(t *testing.T) {
			t.Parallel()
			d := open(t, geo.Config{ASN: officialASN, Country: countryDB})
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					checkASN(t, d, tt.addr, tt.asn)
					checkCountry(t, d, tt.addr, tt.country)
				})
			}
		})
	}
}

func TestLookupGeneratedFixtures(t *testing.T) {
	t.Parallel()
	type lookup struct {
		addr    string
		asn     *asnWant
		country *countryWant
	}
	tests := []struct {
		name    string
		cfg     geo.Config
		schemas []string // DataSets()[i].Schema
		lookups []lookup
	}{
		{
			name:    "flat country, continent derived",
			cfg:     geo.Config{Country: fixtureDir + geotest.FlatCountry},
			schemas: []string{geo.SchemaFlat},
			lookups: []lookup{
				{addr: "89.160.20.112", country: &countryWant{"SE", "EU", true}},
				{addr: "216.160.83.56", country: &countryWant{"US", "NA", true}},
				{addr: "2001:218::1", country: &countryWant{"JP", "AS", true}},
				{addr: "200.160.1.1", country: &countryWant{"BR", "SA", true}},
				{addr: "1.0.0.1", country: &countryWant{"AU", "OC", true}},
				{addr: "41.40.0.1", country: &countryWant{"EG", "AF", true}},
				{addr: "185.121.170.1", country: &countryWant{"AQ", "AN", true}},
				{addr: "2c0f:f248::1", country: &countryWant{"ZA", "AF", true}},
				{addr: "2800:3f0::1", country: &countryWant{"AR", "SA", true}},  // stored lower case
				{addr: "2403:6200::1", country: &countryWant{"TH", "AS", true}}, // continent_code given
				{addr: "2a0e:97c0::1", country: &countryWant{"XK", "EU", true}},
				{addr: "2001:4860:4860::8888", country: &countryWant{"CA", "NA", true}}, // the /48 inside the US /32
				{addr: "2001:4860:1::1", country: &countryWant{"US", "NA", true}},
				{addr: "::ffff:81.2.69.142", country: &countryWant{"GB", "EU", true}},
				{addr: "8.8.8.8", country: &countryWant{}},
			},
		},
		{
			name:    "flat ASN with string and numeric asn",
			cfg:     geo.Config{ASN: fixtureDir + geotest.FlatASN},
			schemas: []string{geo.SchemaFlat},
			lookups: []lookup{
				{addr: "8.8.8.8", asn: &asnWant{15169, "Google LLC", true}},
				{addr: "1.1.1.1", asn: &asnWant{13335, "Cloudflare, Inc.", true}},
				{addr: "9.9.9.9", asn: &asnWant{19281, "Quad9", true}},
				{addr: "2606:4700::1111", asn: &asnWant{13335, "Cloudflare, Inc.", true}},
				{addr: "89.160.20.112", asn: &asnWant{29518, "Bredband2 AB", true}},
				{addr: "100.0.0.1", asn: &asnWant{4200000001, "Private use 32-bit", true}},
				{addr: "198.41.200.1", asn: &asnWant{}}, // asn "not-a-number"
				{addr: "203.0.114.1", asn: &asnWant{}},  // as_name only
				{addr: "81.2.69.142", asn: &asnWant{}},
			},
		},
		{
			name:    "DB-IP country lite",
			cfg:     geo.Config{Country: fixtureDir + geotest.DBIPCountry},
			schemas: []string{geo.SchemaMaxMind},
			lookups: []lookup{
				{addr: "89.160.20.112", country: &countryWant{"SE", "EU", true}},
				{addr: "1.0.0.1", country: &countryWant{"AU", "OC", true}},
				{addr: "2001:218::1", country: &countryWant{"JP", "AS", true}},
				{addr: "2800:3f0::1", country: &countryWant{"AR", "SA", true}},
				{addr: "8.8.8.8", country: &countryWant{}},
			},
		},
		{
			name:    "ipinfo lite: one file for both roles",
			cfg:     geo.Config{ASN: fixtureDir + geotest.IPinfoLite, Country: fixtureDir + geotest.IPinfoLite},
			schemas: []string{geo.SchemaFlat, geo.SchemaFlat},
			lookups: []lookup{
				{addr: "8.8.8.8", asn: &asnWant{15169, "Google LLC", true}, country: &countryWant{"US", "NA", true}},
				{addr: "89.160.20.112", asn: &asnWant{29518, "Bredband2 AB", true}, country: &countryWant{"SE", "EU", true}},
				{addr: "2001:218::1", asn: &asnWant{2914, "NTT America, Inc.", true}, country: &countryWant{"JP", "AS", true}},
				{addr: "1.1.1.1", asn: &asnWant{}, country: &countryWant{}},
			},
		},
		{
			name:    "City without continent, registered country fallback",
			cfg:     geo.Config{Country: fixtureDir + geotest.CityNoContinent},
			schemas: []string{geo.SchemaMaxMind},
			lookups: []lookup{
				{addr: "89.160.20.112", country: &countryWant{"SE", "EU", true}},
				{addr: "2a02:d180::1", country: &countryWant{"DE", "EU", true}},
				{addr: "175.16.199.1", country: &countryWant{"CN", "AS", true}},
				{addr: "202.196.224.1", country: &countryWant{"PH", "AS", true}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := open(t, tt.cfg)
			sets := d.DataSets()
			if len(sets) != len(tt.schemas) {
				t.Fatalf("DataSets() = %+v, want %d entries", sets, len(tt.schemas))
			}
			for i, ds := range sets {
				if ds.Schema != tt.schemas[i] || !ds.Loaded || ds.Err != "" {
					t.Errorf("DataSets()[%d] = %+v, want schema %q, loaded, no error", i, ds, tt.schemas[i])
				}
			}
			for _, l := range tt.lookups {
				if l.asn != nil {
					checkASN(t, d, l.addr, *l.asn)
				}
				if l.country != nil {
					checkCountry(t, d, l.addr, *l.country)
				}
			}
		})
	}
}

func TestDataSets(t *testing.T) {
	t.Parallel()
	d := open(t, geo.Config{ASN: officialASN, Country: officialCity})
	sets := d.DataSets()
	if len(sets) != 2 {
		t.Fatalf("DataSets() = %+v, want 2", sets)
	}
	want := []struct {
		kind, dbType string
		networks     int
		records      int
	}{
		{"asn", "GeoLite2-ASN", 412, 101},
		{"country", "GeoLite2-City", 242, 55},
	}
	for i, w := range want {
		ds := sets[i]
		if ds.Kind != w.kind || ds.DatabaseType != w.dbType || ds.Networks != w.networks || ds.Records != w.records ||
			ds.Schema != geo.SchemaMaxMind || !ds.Loaded || ds.Err != "" || ds.BuildTime.IsZero() || ds.LoadedAt.IsZero() {
			t.Errorf("DataSets()[%d] = %+v, want kind %s, type %s, %d networks, %d records, maxmind, loaded",
				i, ds, w.kind, w.dbType, w.networks, w.records)
		}
	}
	if sets[0].File != officialASN || sets[1].File != officialCity {
		t.Errorf("files = %q, %q", sets[0].File, sets[1].File)
	}
}

// The load is logged in words an operator reads: which database, and
// how long it took, not enum and nanosecond numbers.
func TestLoadLogged(t *testing.T) {
	t.Parallel()
	var logged bytes.Buffer
	open(t, geo.Config{ASN: officialASN, Country: officialCity, Logger: slog.New(slog.NewJSONHandler(&logged, nil))})
	kinds := map[string]bool{}
	for line := range strings.Lines(logged.String()) {
		var l struct {
			Msg, Kind, File, Took string
		}
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		if l.Msg != "geo: database loaded" {
			continue
		}
		if _, err := time.ParseDuration(l.Took); err != nil {
			t.Errorf("took %q is not a duration: %s", l.Took, line)
		}
		kinds[l.Kind] = true
	}
	if !kinds["asn"] || !kinds["country"] || len(kinds) != 2 {
		t.Errorf("kinds logged %v, want asn and country:\n%s", kinds, logged.String())
	}
}

func TestOpenRefusesUselessDatabase(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	official, err := os.ReadFile(officialASN)
	if err != nil {
		t.Fatal(err)
	}
	custom := filepath.Join(dir, "custom.mmdb")
	if err := geotest.Write(custom, geotest.Options("Example-Custom"), map[string]mmdbtype.DataType{
		"1.0.0.0/24": mmdbtype.Map{"connection": mmdbtype.String("fast")},
	}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		cfg    geo.Config
		noData bool     // errors.Is(err, geo.ErrNoData)
		want   []string // substrings of the error
	}{
		{
			name: "anonymous-IP database as country", cfg: geo.Config{Country: fixtureDir + geotest.AnonymousIP}, noData: true,
			want: []string{"geo: country database ../../testdata/geo/anonymous-ip.mmdb refused", `database type "GeoIP2-Anonymous-IP" holds no country data`},
		},
		{
			name: "anonymous-IP database as ASN", cfg: geo.Config{ASN: fixtureDir + geotest.AnonymousIP}, noData: true,
			want: []string{"geo: asn database ../../testdata/geo/anonymous-ip.mmdb refused", `"GeoIP2-Anonymous-IP" holds no asn data`},
		},
		{
			name: "country database as ASN", cfg: geo.Config{ASN: officialGeoLite}, noData: true,
			want: []string{officialGeoLite, "has autonomous_system_number or asn", "is this the country database?"},
		},
		{
			name: "ASN database as country", cfg: geo.Config{ASN: officialASN, Country: officialASN}, noData: true,
			want: []string{"geo: country database " + officialASN + " refused", "is this the ASN database?"},
		},
		{
			name: "unknown type without geo data", cfg: geo.Config{Country: custom}, noData: true,
			want: []string{custom, `database type "Example-Custom": none of its 1 records has country.iso_code`},
		},
		{
			name: "not an mmdb file", cfg: geo.Config{ASN: write("random.mmdb", []byte("this is not a MaxMind database\n"))},
			want: []string{"random.mmdb refused: not a readable MaxMind DB file"},
		},
		{
			name: "empty file", cfg: geo.Config{ASN: write("empty.mmdb", nil)},
			want: []string{"empty.mmdb refused: not a readable MaxMind DB file: file is empty"},
		},
		{
			name: "truncated file", cfg: geo.Config{ASN: write("truncated.mmdb", official[:len(official)/2])},
			want: []string{"truncated.mmdb refused: not a readable MaxMind DB file"},
		},
		{
			name: "corrupt search tree", cfg: geo.Config{ASN: write("corrupt.mmdb", corruptTree(official))},
			want: []string{"corrupt.mmdb refused: failed verification"},
		},
		{
			name: "directory", cfg: geo.Config{Country: dir},
			want: []string{"geo: country database " + dir + " refused: it is a directory, not an .mmdb file"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d, err := geo.Open(tt.cfg)
			if err == nil {
				d.Close()
				t.Fatalf("Open(%+v) succeeded, want an error", tt.cfg)
			}
			if errors.Is(err, geo.ErrNoData) != tt.noData {
				t.Errorf("errors.Is(%v, ErrNoData) = %v, want %v", err, !tt.noData, tt.noData)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// corruptTree overwrites the start of the search tree with pointers past
// its end: the header and metadata still parse, the tree does not.
func corruptTree(db []byte) []byte {
	out := append([]byte(nil), db...)
	for i := 0; i < 6*64; i++ {
		out[i] = 0xff
	}
	return out
}

func TestMissingDatabase(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	asnPath := filepath.Join(dir, "asn.mmdb")
	d := open(t, geo.Config{ASN: asnPath, Country: officialGeoLite})

	if asn, org, ok := d.ASN(netip.MustParseAddr("1.0.0.1")); ok {
		t.Errorf("ASN of a missing database = %d, %q, true", asn, org)
	}
	checkCountry(t, d, "89.160.20.112", countryWant{"SE", "EU", true})
	sets := d.DataSets()
	if want := "geo: asn database " + asnPath + ": file does not exist"; sets[0].Loaded || sets[0].Err != want || sets[0].Kind != "asn" || sets[0].File != asnPath {
		t.Errorf("DataSets()[0] = %+v, want not loaded with error %q", sets[0], want)
	}
	if !sets[1].Loaded || sets[1].Err != "" {
		t.Errorf("DataSets()[1] = %+v, want loaded", sets[1])
	}
	if err := d.Reload(); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Reload() = %v, want fs.ErrNotExist", err)
	}
}

func TestClose(t *testing.T) {
	t.Parallel()
	d, err := geo.Open(geo.Config{ASN: officialASN, Country: officialGeoLite})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Errorf("second Close() = %v", err)
	}
	if _, _, ok := d.ASN(netip.MustParseAddr("1.0.0.1")); ok {
		t.Error("ASN after Close answered")
	}
	if _, _, ok := d.Country(netip.MustParseAddr("89.160.20.112")); ok {
		t.Error("Country after Close answered")
	}
	if err := d.Reload(); !errors.Is(err, geo.ErrClosed) {
		t.Errorf("Reload after Close = %v, want ErrClosed", err)
	}
}

func TestNothingConfigured(t *testing.T) {
	t.Parallel()
	d := open(t, geo.Config{})
	if _, _, ok := d.ASN(netip.MustParseAddr("1.0.0.1")); ok {
		t.Error("ASN answered without a database")
	}
	if _, _, ok := d.Country(netip.MustParseAddr("1.0.0.1")); ok {
		t.Error("Country answered without a database")
	}
	if sets := d.DataSets(); len(sets) != 0 {
		t.Errorf("DataSets() = %+v, want none", sets)
	}
	if err := d.Reload(); err != nil {
		t.Errorf("Reload() = %v", err)
	}
}

func TestLookupsDoNotAllocate(t *testing.T) {
	d := open(t, geo.Config{ASN: officialASN, Country: officialCity})
	addrs := []netip.Addr{
		netip.MustParseAddr("1.0.0.1"),
		netip.MustParseAddr("89.160.20.112"),
		netip.MustParseAddr("::ffff:89.160.20.112"),
		netip.MustParseAddr("2001:218::1"),
		netip.MustParseAddr("8.8.8.8"),
		{},
	}
	for _, a := range addrs {
		if n := testing.AllocsPerRun(1000, func() { d.ASN(a) }); n != 0 {
			t.Errorf("ASN(%v) allocates %v times", a, n)
		}
		if n := testing.AllocsPerRun(1000, func() { d.Country(a) }); n != 0 {
			t.Errorf("Country(%v) allocates %v times", a, n)
		}
	}
	if n := testing.AllocsPerRun(1000, func() { geo.ContinentOf("se") }); n != 0 {
		t.Errorf("ContinentOf allocates %v times", n)
	}
}
