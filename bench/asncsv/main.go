// Command asncsv writes an ASN .mmdb, in GeoLite2-ASN's layout, from
// ip-location-db's ASN CSV files (first address, last address, number,
// organisation), for measuring reghost with a real, full-size ASN
// database: bench/realdata fetches the CSVs from npm and runs this.
//
//	go run ./bench/asncsv -out asn.mmdb asn-ipv4.csv asn-ipv6.csv
package main

import (
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

func main() { os.Exit(run()) }

func run() int {
	out := flag.String("out", "", "the .mmdb to write")
	flag.Parse()
	if *out == "" || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: asncsv -out FILE.mmdb asn-ipv4.csv [asn-ipv6.csv ...]")
		return 2
	}
	if err := write(*out, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "asncsv:", err)
		return 1
	}
	return 0
}

func write(out string, inputs []string) error {
	tree, err := mmdbwriter.New(mmdbwriter.Options{
		DatabaseType:            "GeoLite2-ASN",
		Description:             map[string]string{"en": "ip-location-db ASN data, converted by reghost's bench/asncsv"},
		Languages:               []string{"en"},
		IPVersion:               6,
		RecordSize:              28,
		IncludeReservedNetworks: true,
		DisableIPv4Aliasing:     true,
		BuildEpoch:              time.Now().Unix(),
	})
	if err != nil {
		return err
	}
	for _, in := range inputs {
		if err := insert(tree, in); err != nil {
			return fmt.Errorf("%s: %w", in, err)
		}
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if _, err := tree.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func insert(tree *mmdbwriter.Tree, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.FieldsPerRecord = 4
	for line := 1; ; line++ {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		start, end := net.ParseIP(rec[0]), net.ParseIP(rec[1])
		asn, err := strconv.ParseUint(rec[2], 10, 32)
		if start == nil || end == nil || err != nil {
			return fmt.Errorf("line %d: %q", line, rec)
		}
		v := mmdbtype.Map{"autonomous_system_number": mmdbtype.Uint32(asn), "autonomous_system_organization": mmdbtype.String(rec[3])}
		if err := tree.InsertRange(start, end, v); err != nil {
			return fmt.Errorf("line %d: %w", line, err)
		}
	}
}
