// Command mmdbgen writes the generated .mmdb test databases.
//
//	go run ./tools/mmdbgen -out testdata/geo          # the small committed fixtures
//	go run ./tools/mmdbgen -fullscale /tmp/fullscale  # the two full-scale databases (about 15 MB each)
//
// The fixtures are described in testdata/README.md; both sets come from
// internal/geo/geotest and are byte-for-byte reproducible.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/reghost/reghost/internal/geo/geotest"
)

func main() { os.Exit(run()) }

func run() int {
	out := flag.String("out", "", "write the small fixture databases into this directory")
	full := flag.String("fullscale", "", "write the full-scale ASN and Country databases into this directory")
	flag.Parse()
	if *out == "" && *full == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: mmdbgen [-out DIR] [-fullscale DIR]")
		flag.PrintDefaults()
		return 2
	}
	if *out != "" {
		if err := os.MkdirAll(*out, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, "mmdbgen:", err)
			return 1
		}
		if err := geotest.WriteFixtures(*out); err != nil {
			fmt.Fprintln(os.Stderr, "mmdbgen: writing fixtures:", err)
			return 1
		}
		matches, _ := filepath.Glob(filepath.Join(*out, "*.mmdb"))
		for _, m := range matches {
			report(m)
		}
	}
	if *full != "" {
		start := time.Now()
		asn, country, err := geotest.GenerateFullScale(*full)
		if err != nil {
			fmt.Fprintln(os.Stderr, "mmdbgen: writing full-scale databases:", err)
			return 1
		}
		fmt.Printf("generated full-scale databases in %s\n", time.Since(start).Round(time.Millisecond))
		report(asn)
		report(country)
	}
	return 0
}

func report(path string) {
	if fi, err := os.Stat(path); err == nil {
		fmt.Printf("%10d  %s\n", fi.Size(), path)
	}
}
