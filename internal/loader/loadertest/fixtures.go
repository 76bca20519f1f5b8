package loadertest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/maxmind/mmdbwriter/mmdbtype"

	"github.com/reghost/reghost/internal/geo/geotest"
)

// ASNDB is a GeoLite2-ASN database built at built, covering the default
// probe addresses (8.8.8.8, 2001:4860:4860::8888) and 1.1.1.1; org names
// the AS of 8.8.8.0/24, so that tests can tell two databases apart.
func ASNDB(t testing.TB, built time.Time, org string) []byte {
	t.Helper()
	asn := func(n uint32, org string) mmdbtype.Map {
		return mmdbtype.Map{"autonomous_system_number": mmdbtype.Uint32(n), "autonomous_system_organization": mmdbtype.String(org)}
	}
	return writeDB(t, "GeoLite2-ASN", built, map[string]mmdbtype.DataType{
		"8.8.8.0/24":     asn(15169, org),
		"1.1.1.0/24":     asn(13335, "Cloudflare, Inc."),
		"2001:4860::/32": asn(15169, org),
	})
}

// CountryDB is a GeoLite2-Country database built at built, covering the
// default probe addresses; 8.8.8.0/24 is in country (a code such as "US").
func CountryDB(t testing.TB, built time.Time, country string) []byte {
	t.Helper()
	c := func(code, continent string) mmdbtype.Map {
		return mmdbtype.Map{
			"country":   mmdbtype.Map{"iso_code": mmdbtype.String(code)},
			"continent": mmdbtype.Map{"code": mmdbtype.String(continent)},
		}
	}
	return writeDB(t, "GeoLite2-Country", built, map[string]mmdbtype.DataType{
		"8.8.8.0/24":     c(country, "NA"),
		"1.1.1.0/24":     c("AU", "OC"),
		"2001:4860::/32": c("US", "NA"),
	})
}

// DB writes any records as a database of type dbType built at built.
func DB(t testing.TB, dbType string, built time.Time, nets map[string]mmdbtype.DataType) []byte {
	t.Helper()
	return writeDB(t, dbType, built, nets)
}

func writeDB(t testing.TB, dbType string, built time.Time, nets map[string]mmdbtype.DataType) []byte {
	t.Helper()
	opts := geotest.Options(dbType)
	opts.BuildEpoch = built.Unix()
	path := filepath.Join(t.TempDir(), dbType+".mmdb")
	if err := geotest.Write(path, opts, nets); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Entry is one member of a test archive.
type Entry struct {
	Name     string
	Body     []byte
	Type     byte // tar.TypeReg when 0
	Linkname string
}

// Archive is a MaxMind-shaped tar.gz: <edition>_<date>/ holding
// COPYRIGHT.txt, LICENSE.txt and <edition>.mmdb.
func Archive(t testing.TB, edition, date string, mmdb []byte) []byte {
	t.Helper()
	dir := edition + "_" + date + "/"
	return TarGz(t,
		Entry{Name: dir, Type: tar.TypeDir},
		Entry{Name: dir + "COPYRIGHT.txt", Body: []byte("Database and Contents Copyright (c) MaxMind, Inc.\n")},
		Entry{Name: dir + "LICENSE.txt", Body: []byte("Use of this MaxMind product is governed by MaxMind's GeoLite2 End User License Agreement.\n")},
		Entry{Name: dir + edition + ".mmdb", Body: mmdb},
	)
}

// TarGz builds a tar.gz of the entries, in order.
func TarGz(t testing.TB, entries ...Entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		typ := e.Type
		if typ == 0 {
			typ = tar.TypeReg
		}
		hdr := &tar.Header{Name: e.Name, Typeflag: typ, Linkname: e.Linkname, Mode: 0o644, ModTime: time.Unix(1767225600, 0)}
		if typ == tar.TypeReg {
			hdr.Size = int64(len(e.Body))
		}
		if typ == tar.TypeDir {
			hdr.Mode = 0o755
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			if _, err := tw.Write(e.Body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
