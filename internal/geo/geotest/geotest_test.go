package geotest_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/reghost/reghost/internal/geo/geotest"
)

// TestFixturesUpToDate regenerates the committed fixtures and compares them
// byte for byte: a change to WriteFixtures must come with regenerated files
// (go run ./tools/mmdbgen -out testdata/geo).
func TestFixturesUpToDate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := geotest.WriteFixtures(dir); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{
		geotest.FlatCountry, geotest.FlatASN, geotest.DBIPCountry,
		geotest.IPinfoLite, geotest.AnonymousIP, geotest.CityNoContinent,
	} {
		fresh, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		committed, err := os.ReadFile(filepath.Join("../../../testdata/geo", name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(fresh, committed) {
			t.Errorf("testdata/geo/%s is stale: run go run ./tools/mmdbgen -out testdata/geo", name)
		}
	}
	if matches, _ := filepath.Glob(filepath.Join(dir, "*")); len(matches) != 6 {
		t.Errorf("WriteFixtures wrote %v; update the list here and testdata/README.md", matches)
	}
}
