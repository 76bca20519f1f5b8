package datasync

import (
	"fmt"
	"os"
	"slices"

	"github.com/reghost/reghost/internal/cloud"
	"github.com/reghost/reghost/internal/geo"
)

// Targets are the data sets a server's config names, each with the
// server's own check: GeoIP databases by role (asn, country), cloud
// ranges by provider. An empty path is no target.
func Targets(asn, country string, ranges map[string]string) []Target {
	var out []Target
	for _, g := range []struct{ role, path string }{{"asn", asn}, {"country", country}} {
		if g.path != "" {
			out = append(out, Target{Name: "geoip/" + g.role, Path: g.path, Check: CheckGeoIP(g.role)})
		}
	}
	for _, provider := range cloud.Providers() {
		if path := ranges[provider]; path != "" {
			out = append(out, Target{Name: "cloud/" + provider, Path: path, Check: CheckCloud(provider)})
		}
	}
	return slices.Clip(out)
}

// CheckGeoIP is the check of a GeoIP database for role ("asn" or
// "country"): internal/geo opens it for that role as the server does
// (it reads and verifies the whole file, and refuses one with nothing
// for the role).
func CheckGeoIP(role string) func(path string) error {
	return func(path string) error {
		cfg := geo.Config{}
		if role == "asn" {
			cfg.ASN = path
		} else {
			cfg.Country = path
		}
		db, err := geo.Open(cfg)
		if err != nil {
			return err
		}
		defer db.Close()
		sets := db.DataSets()
		if len(sets) != 1 || !sets[0].Loaded || sets[0].Kind != role {
			return fmt.Errorf("it does not load as the %s database", role)
		}
		return nil
	}
}

// CheckCloud is the check of a provider's ranges file: internal/cloud's
// parser for that provider, which refuses a truncated file, another
// provider's, or one without prefixes.
func CheckCloud(provider string) func(path string) error {
	return func(path string) error {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		_, _, err = cloud.ParseFile(provider, f)
		return err
	}
}
