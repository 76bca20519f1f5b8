package geotest

import (
	"path/filepath"

	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// Fixture files written by WriteFixtures (committed under testdata/geo).
const (
	FlatCountry     = "flat-country.mmdb"      // ip-location-db layout: country_code only
	FlatASN         = "flat-asn.mmdb"          // ipinfo layout: asn as "AS15169", "13335" or a number; as_name
	DBIPCountry     = "dbip-country-lite.mmdb" // DB-IP Lite layout (MaxMind-compatible)
	IPinfoLite      = "ipinfo-lite.mmdb"       // ipinfo Lite layout: ASN and country in one file
	AnonymousIP     = "anonymous-ip.mmdb"      // GeoIP2-Anonymous-IP: neither ASN nor country
	CityNoContinent = "city-no-continent.mmdb" // City-like records without continent
)

// WriteFixtures writes the small fixture databases into dir. The files are
// deterministic: regenerating them gives the same bytes.
func WriteFixtures(dir string) error {
	str := func(s string) mmdbtype.String { return mmdbtype.String(s) }
	en := func(s string) mmdbtype.Map { return mmdbtype.Map{"en": str(s)} }
	steps := []func() error{
		func() error {
			return WriteFlatCountry(filepath.Join(dir, FlatCountry), map[string]CountryRecord{
				"89.160.20.0/24":      {Country: "SE"},
				"81.2.69.0/24":        {Country: "GB"},
				"216.160.83.0/24":     {Country: "US"},
				"1.0.0.0/24":          {Country: "AU"},
				"200.160.0.0/20":      {Country: "BR"},
				"41.32.0.0/12":        {Country: "EG"},
				"185.121.168.0/22":    {Country: "AQ"},
				"2001:218::/32":       {Country: "JP"},
				"2a02:d180::/29":      {Country: "DE"},
				"2c0f:f248::/32":      {Country: "ZA"},
				"2800:3f0::/32":       {Country: "ar"}, // lower case, as some exports have it
				"2403:6200::/32":      {Country: "TH", Continent: "AS"},
				"2a0e:97c0::/29":      {Country: "XK"},
				"2001:4860::/32":      {Country: "US"},
				"2001:4860:4860::/48": {Country: "CA"}, // more specific than the /32
			})
		},
		func() error {
			return Write(filepath.Join(dir, FlatASN), Options("reghost-test-flat-asn"), map[string]mmdbtype.DataType{
				"8.8.8.0/24":      mmdbtype.Map{"asn": str("AS15169"), "as_name": str("Google LLC"), "as_domain": str("google.com")},
				"1.1.1.0/24":      mmdbtype.Map{"asn": str("13335"), "as_name": str("Cloudflare, Inc.")},
				"9.9.9.0/24":      mmdbtype.Map{"asn": mmdbtype.Uint32(19281), "as_name": str("Quad9")},
				"2606:4700::/32":  mmdbtype.Map{"asn": str("AS13335"), "as_name": str("Cloudflare, Inc.")},
				"89.160.20.0/24":  mmdbtype.Map{"asn": str("as29518"), "as_name": str("Bredband2 AB")},
				"100.0.0.0/24":    mmdbtype.Map{"asn": str("AS4200000001"), "as_name": str("Private use 32-bit")},
				"198.41.128.0/17": mmdbtype.Map{"asn": str("not-a-number"), "as_name": str("Broken row")},
				"203.0.114.0/24":  mmdbtype.Map{"as_name": str("Name without number")},
			})
		},
		func() error {
			country := func(iso, name string, eu bool) mmdbtype.Map {
				return mmdbtype.Map{
					"geoname_id": mmdbtype.Uint32(countryGeonameID(iso)), "iso_code": str(iso),
					"is_in_european_union": mmdbtype.Bool(eu), "names": en(name),
				}
			}
			continent := func(code string) mmdbtype.Map {
				return mmdbtype.Map{"code": str(code), "geoname_id": mmdbtype.Uint32(continentGeonameID[code]), "names": en(continentNames[code])}
			}
			o := Options("DBIP-Country-Lite")
			o.Description = map[string]string{"en": "reghost test data in the layout of DB-IP's IP to Country Lite"}
			return Write(filepath.Join(dir, DBIPCountry), o, map[string]mmdbtype.DataType{
				"89.160.20.0/24": mmdbtype.Map{"continent": continent("EU"), "country": country("SE", "Sweden", true)},
				"1.0.0.0/24":     mmdbtype.Map{"continent": continent("OC"), "country": country("AU", "Australia", false)},
				"2001:218::/32":  mmdbtype.Map{"continent": continent("AS"), "country": country("JP", "Japan", false)},
				"2800:3f0::/32":  mmdbtype.Map{"continent": continent("SA"), "country": country("AR", "Argentina", false)},
			})
		},
		func() error {
			o := Options("ipinfo lite.mmdb")
			o.Description = map[string]string{"en": "reghost test data in the layout of ipinfo's IPinfo Lite"}
			row := func(asn, asName, domain, cc, country, cont, continent string) mmdbtype.Map {
				return mmdbtype.Map{
					"asn": str(asn), "as_name": str(asName), "as_domain": str(domain),
					"country_code": str(cc), "country": str(country),
					"continent_code": str(cont), "continent": str(continent),
				}
			}
			return Write(filepath.Join(dir, IPinfoLite), o, map[string]mmdbtype.DataType{
				"8.8.8.0/24":     row("AS15169", "Google LLC", "google.com", "US", "United States", "NA", "North America"),
				"89.160.20.0/24": row("AS29518", "Bredband2 AB", "bredband2.com", "SE", "Sweden", "EU", "Europe"),
				"2001:218::/32":  row("AS2914", "NTT America, Inc.", "gin.ntt.net", "JP", "Japan", "AS", "Asia"),
			})
		},
		func() error {
			return Write(filepath.Join(dir, AnonymousIP), Options("GeoIP2-Anonymous-IP"), map[string]mmdbtype.DataType{
				"1.2.0.0/16":     mmdbtype.Map{"is_anonymous": mmdbtype.Bool(true), "is_anonymous_vpn": mmdbtype.Bool(true)},
				"81.2.69.0/24":   mmdbtype.Map{"is_anonymous": mmdbtype.Bool(true), "is_tor_exit_node": mmdbtype.Bool(true)},
				"2a02:d180::/29": mmdbtype.Map{"is_anonymous": mmdbtype.Bool(true), "is_hosting_provider": mmdbtype.Bool(true)},
			})
		},
		func() error {
			city := func(name, cc string, lat, lon float64, sub string) mmdbtype.Map {
				return mmdbtype.Map{
					"city":         mmdbtype.Map{"names": en(name)},
					"country":      mmdbtype.Map{"iso_code": str(cc), "names": en(cc)},
					"location":     mmdbtype.Map{"latitude": mmdbtype.Float64(lat), "longitude": mmdbtype.Float64(lon), "accuracy_radius": mmdbtype.Uint16(50)},
					"subdivisions": mmdbtype.Slice{mmdbtype.Map{"iso_code": str(sub), "names": en(sub)}},
				}
			}
			return Write(filepath.Join(dir, CityNoContinent), Options("reghost-test-City"), map[string]mmdbtype.DataType{
				"89.160.20.0/24":  city("Linköping", "SE", 58.4167, 15.6167, "E"),
				"2a02:d180::/29":  city("Berlin", "DE", 52.5244, 13.4105, "BE"),
				"175.16.199.0/24": city("Changchun", "CN", 43.88, 125.3228, "22"),
				// No location country: the registered country is used.
				"202.196.224.0/20": mmdbtype.Map{"registered_country": mmdbtype.Map{"iso_code": str("PH"), "names": en("Philippines")}},
			})
		},
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}
