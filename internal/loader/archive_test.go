package loader

import (
	"archive/tar"
	"bytes"
	"strings"
	"testing"

	"github.com/reghost/reghost/internal/loader/loadertest"
)

func TestExtractMMDB(t *testing.T) {
	t.Parallel()
	db := []byte("pretend this is an mmdb")
	e := loadertest.Entry{Name: "GeoLite2-ASN_20261201/GeoLite2-ASN.mmdb", Body: db}
	tests := []struct {
		name    string
		archive []byte
		maxDB   int64
		want    string // error; "" for success
	}{
		{"MaxMind layout", loadertest.Archive(t, "GeoLite2-ASN", "20261201", db), 1 << 20, ""},
		{"at the top", loadertest.TarGz(t, loadertest.Entry{Name: "GeoLite2-ASN.mmdb", Body: db}), 1 << 20, ""},
		{"parent directory", loadertest.TarGz(t, loadertest.Entry{Name: "../GeoLite2-ASN.mmdb", Body: db}), 1 << 20, "points outside"},
		{"dot-dot inside", loadertest.TarGz(t, e, loadertest.Entry{Name: "a/../../etc/passwd", Body: db}), 1 << 20, "points outside"},
		{"absolute", loadertest.TarGz(t, loadertest.Entry{Name: "/GeoLite2-ASN.mmdb", Body: db}), 1 << 20, "points outside"},
		{"backslash", loadertest.TarGz(t, loadertest.Entry{Name: `..\GeoLite2-ASN.mmdb`, Body: db}), 1 << 20, "points outside"},
		{"symlink", loadertest.TarGz(t, loadertest.Entry{Name: "GeoLite2-ASN.mmdb", Type: tar.TypeSymlink, Linkname: "/etc/passwd"}), 1 << 20, "not a regular file"},
		{"hard link", loadertest.TarGz(t, loadertest.Entry{Name: "x/GeoLite2-ASN.mmdb", Type: tar.TypeLink, Linkname: "x/LICENSE.txt"}), 1 << 20, "not a regular file"},
		{"twice", loadertest.TarGz(t, e, loadertest.Entry{Name: "other/GeoLite2-ASN.mmdb", Body: db}), 1 << 20, "twice"},
		{"missing", loadertest.TarGz(t, loadertest.Entry{Name: "GeoLite2-City.mmdb", Body: db}), 1 << 20, "holds no GeoLite2-ASN.mmdb (it holds GeoLite2-City.mmdb)"},
		{"over the cap", loadertest.TarGz(t, e), 10, "over the cap of 10"},
		{"truncated", loadertest.Archive(t, "GeoLite2-ASN", "20261201", db)[:60], 1 << 20, "truncated"},
		{"not gzip", []byte("PK\x03\x04 a zip file"), 1 << 20, "not a gzip archive"},
		{"empty", nil, 1 << 20, "truncated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			n, err := extractMMDB(bytes.NewReader(tt.archive), "GeoLite2-ASN", &out, tt.maxDB, 1<<20)
			if tt.want == "" {
				if err != nil || n != int64(len(db)) || !bytes.Equal(out.Bytes(), db) {
					t.Fatalf("got %d bytes, %v", n, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// An archive that decompresses to far more than its caps is refused
// before it fills the disk.
func TestExtractMMDBBomb(t *testing.T) {
	t.Parallel()
	big := bytes.Repeat([]byte{0}, 2<<20) // compresses to a few KiB
	a := loadertest.TarGz(t, loadertest.Entry{Name: "padding.bin", Body: big}, loadertest.Entry{Name: "GeoLite2-ASN.mmdb", Body: []byte("x")})
	_, err := extractMMDB(bytes.NewReader(a), "GeoLite2-ASN", &bytes.Buffer{}, 1<<10, 1<<20)
	if err == nil || !strings.Contains(err.Error(), "decompresses to more than") {
		t.Fatalf("err %v", err)
	}
}
