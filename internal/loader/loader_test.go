package loader

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/reghost/reghost/internal/cloud"
	"github.com/reghost/reghost/internal/loader/loadertest"
)

// recorder is a Publisher that remembers what it was told, and fails
// when told to.
type recorder struct {
	got  []Installed
	fail error
}

func (r *recorder) Publish(_ context.Context, in Installed) error {
	if r.fail != nil {
		return r.fail
	}
	// The file is in place when a publisher is called.
	if _, err := os.Stat(in.File); err != nil {
		return err
	}
	r.got = append(r.got, in)
	return nil
}

func newTestLoader(t *testing.T, dir string, pub ...Publisher) *Loader {
	t.Helper()
	l, err := New(Config{DataDir: dir, Publishers: pub, HTTP: HTTPConfig{RetryWait: time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l
}

// Publishers are told of every install, after the file is in place, with
// what a Redis publisher needs; one that fails fails the run and leaves
// the data set unrecorded, so the next run installs and publishes again.
func TestPublishers(t *testing.T) {
	t.Parallel()
	mm := loadertest.NewMaxMind(t)
	built := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	db := loadertest.ASNDB(t, built, "Google LLC")
	mm.Publish("GeoLite2-ASN", loadertest.Release{Date: "20261201", Archive: loadertest.Archive(t, "GeoLite2-ASN", "20261201", db)})
	dir := t.TempDir()
	req := GeoIPRequest{BaseURL: mm.URL, AccountID: mm.AccountID, LicenseKey: mm.LicenseKey,
		Editions: []Edition{{ID: "GeoLite2-ASN", Role: RoleASN, Dest: filepath.Join(dir, "asn.mmdb")}},
		Probes:   []netip.Addr{netip.MustParseAddr("8.8.8.8")}}

	failing := &recorder{fail: errors.New("redis: connection refused")}
	_, err := newTestLoader(t, dir, failing).GeoIP(t.Context(), req)
	if err == nil || !strings.Contains(err.Error(), "publishing it failed") || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("err %v", err)
	}
	st, _ := FileState{filepath.Join(dir, StateFileName)}.Load(t.Context())
	if _, ok := st.Sets["geoip/asn"]; ok {
		t.Error("a data set whose publishing failed was recorded")
	}

	rec := &recorder{}
	rep, err := newTestLoader(t, dir, rec).GeoIP(t.Context(), req)
	if err != nil || rep.Results[0].Action != ActionInstalled {
		t.Fatalf("%+v, %v", rep, err)
	}
	if len(rec.got) != 1 {
		t.Fatalf("published %d times", len(rec.got))
	}
	in := rec.got[0]
	if in.Set.String() != "geoip/asn" || in.Version != "20261201" || !in.BuildTime.Equal(built) || in.Size != int64(len(db)) ||
		in.File != filepath.Join(dir, "asn.mmdb") || strings.Contains(in.Source, mm.LicenseKey) || in.InstalledAt.IsZero() {
		t.Errorf("published %+v", in)
	}
	if sum, _ := fileSHA256(in.File); sum != in.SHA256 {
		t.Error("published SHA-256 is not the file's")
	}
	// Nothing new: nothing published.
	if _, err := newTestLoader(t, dir, rec).GeoIP(t.Context(), req); err != nil || len(rec.got) != 1 {
		t.Errorf("an unchanged release was published again (%v)", err)
	}
}

// The providers' stamps are read from the real files and order them.
func TestStamps(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		provider, file string
		serial         uint64
		at             time.Time
	}{
		{"aws", "aws-ip-ranges.json", 1787411825, time.Date(2026, 8, 22, 15, 17, 5, 0, time.UTC)},
		{"gcp", "gcp-cloud.json", 1769717571194, time.Date(2026, 1, 29, 12, 12, 51, 194698000, time.UTC)},
		{"azure", "azure-servicetags.json", 363, time.Time{}},
		{"oracle", "oracle-public-ip-ranges.json", 0, time.Date(2025, 7, 21, 7, 13, 25, 457838000, time.UTC)},
		{"digitalocean", "digitalocean-geofeed.csv", 0, time.Time{}},
	} {
		ranges, s, err := cloud.ParseFile(tt.provider, bytes.NewReader(loadertest.Snapshot(t, tt.file)))
		if err != nil || len(ranges) == 0 {
			t.Fatalf("%s: %d ranges, %v", tt.provider, len(ranges), err)
		}
		if s.Provider != tt.provider || s.Serial != tt.serial || !s.Time.Equal(tt.at) {
			t.Errorf("%s: stamp %+v", tt.provider, s)
		}
		if back := cloud.ParseStamp(tt.provider, s.Published); back != s {
			t.Errorf("%s: ParseStamp(%q) = %+v, want %+v", tt.provider, s.Published, back, s)
		}
		c, ok := s.Compare(s)
		if want := !s.IsZero(); ok != want || c != 0 {
			t.Errorf("%s: compare with itself: %d, %v", tt.provider, c, ok)
		}
	}
	older := cloud.ParseStamp("azure", "changeNumber=362 cloud=Public")
	newer := cloud.ParseStamp("azure", "changeNumber=363 cloud=Public")
	if c, ok := older.Compare(newer); !ok || c != -1 {
		t.Errorf("362 vs 363: %d, %v", c, ok)
	}
	if _, ok := older.Compare(cloud.ParseStamp("aws", "syncToken=1")); ok {
		t.Error("stamps of two providers compared")
	}
	if _, ok := cloud.ParseStamp("oracle", "last_updated_timestamp=garbage").Compare(cloud.ParseStamp("oracle", "last_updated_timestamp=2025-07-21T07:13:25.457838")); ok {
		t.Error("an unreadable stamp compared")
	}
}

func TestEditionRole(t *testing.T) {
	t.Parallel()
	for id, want := range map[string]string{
		"GeoLite2-ASN": RoleASN, "GeoIP2-ISP": RoleASN, "GeoLite2-Country": RoleCountry, "GeoLite2-City": RoleCountry,
		"GeoIP2-Enterprise": RoleCountry, "GeoIP2-Anonymous-IP": "", "../GeoLite2-ASN": "", "": "",
	} {
		if got, _ := EditionRole(id); got != want {
			t.Errorf("EditionRole(%q) = %q, want %q", id, got, want)
		}
	}
}
