package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/maxmind/mmdbwriter/mmdbtype"

	"github.com/reghost/reghost/internal/geo"
	"github.com/reghost/reghost/internal/loader/loadertest"
)

var (
	built1 = time.Date(2026, 11, 27, 6, 0, 0, 0, time.UTC)
	built2 = time.Date(2026, 12, 1, 6, 0, 0, 0, time.UTC)
)

// geoipSetup is a fake MaxMind with one release of each default edition,
// an empty data directory, and the arguments and environment to fetch
// from one into the other.
type geoipSetup struct {
	mm   *loadertest.MaxMind
	dir  string
	env  map[string]string
	args []string
	asn  []byte // the ASN database of the first release
}

func newGeoIPSetup(t *testing.T) *geoipSetup {
	t.Helper()
	s := &geoipSetup{mm: loadertest.NewMaxMind(t), dir: t.TempDir()}
	s.asn = loadertest.ASNDB(t, built1, "Google LLC")
	s.mm.Publish("GeoLite2-ASN", loadertest.Release{Date: "20261127", Archive: loadertest.Archive(t, "GeoLite2-ASN", "20261127", s.asn)})
	s.mm.Publish("GeoLite2-Country", loadertest.Release{Date: "20261127",
		Archive: loadertest.Archive(t, "GeoLite2-Country", "20261127", loadertest.CountryDB(t, built1, "US"))})
	s.env = map[string]string{"MAXMIND_ACCOUNT_ID": s.mm.AccountID, "MAXMIND_LICENSE_KEY": s.mm.LicenseKey}
	s.args = []string{"geoip", "--data-dir", s.dir, "--base-url", s.mm.URL, "--retry-wait", "10ms", "--idle-timeout", "5s"}
	return s
}

func (s *geoipSetup) run(t *testing.T, extra ...string) result {
	t.Helper()
	return runLoader(t, s.env, append(append([]string{}, s.args...), extra...)...)
}

// An install downloads each edition once, checked against its .sha256,
// with the credentials sent to MaxMind and not to the storage host the
// archive is redirected to; a second run finds the same release with one
// HEAD per edition and downloads nothing.
func TestGeoIPInstallThenNothingNew(t *testing.T) {
	t.Parallel()
	s := newGeoIPSetup(t)
	r := s.run(t)
	r.want(t, exitOK)
	got, err := os.ReadFile(filepath.Join(s.dir, "GeoLite2-ASN.mmdb"))
	if err != nil || !bytes.Equal(got, s.asn) {
		t.Fatalf("GeoLite2-ASN.mmdb is not the published database (err %v)", err)
	}
	if _, err := os.Stat(filepath.Join(s.dir, "GeoLite2-Country.mmdb")); err != nil {
		t.Fatal(err)
	}
	for _, want := range []struct {
		prefix string
		n      int
	}{{"HEAD", 2}, {"GET GeoLite2-ASN tar.gz.sha256", 1}, {"GET GeoLite2-ASN tar.gz", 2}, {"STORAGE", 2}} {
		if n := s.mm.Count(want.prefix); n != want.n {
			t.Errorf("%d requests %q, want %d; all: %q", n, want.prefix, want.n, s.mm.Requests())
		}
	}
	auths := s.mm.StorageAuthorization()
	if len(auths) != 2 {
		t.Fatalf("storage saw %d requests, want 2", len(auths))
	}
	for _, a := range auths {
		if a != "" {
			t.Errorf("the storage host the archive was redirected to received Authorization %q", a)
		}
	}
	if !strings.Contains(r.stdout, "geoip/asn  installed  GeoLite2-ASN") || !strings.Contains(r.stdout, "release 20261127") {
		t.Errorf("report:\n%s", r.stdout)
	}
	if names := names(t, s.dir); strings.Join(names, " ") != "GeoLite2-ASN.mmdb GeoLite2-Country.mmdb loader-state.json" {
		t.Errorf("data directory holds %q", names)
	}

	before := snapDir(t, s.dir)
	requests := len(s.mm.Requests())
	r = s.run(t, "--output", "json")
	r.want(t, exitOK)
	if reqs := s.mm.Requests()[requests:]; strings.Join(reqs, ",") != "HEAD GeoLite2-ASN tar.gz,HEAD GeoLite2-Country tar.gz" {
		t.Errorf("an unchanged release cost %q, want one HEAD per edition", reqs)
	}
	untouched(t, s.dir, before)
	var rep struct {
		GeoIP []struct{ Action, Release string }
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || len(rep.GeoIP) != 2 || rep.GeoIP[0].Action != "unchanged" || rep.GeoIP[1].Action != "unchanged" {
		t.Errorf("JSON report (%v):\n%s", err, r.stdout)
	}

	// A new release is installed; the state says which.
	asn2 := loadertest.ASNDB(t, built2, "Google LLC 2")
	s.mm.Publish("GeoLite2-ASN", loadertest.Release{Date: "20261201", Archive: loadertest.Archive(t, "GeoLite2-ASN", "20261201", asn2)})
	s.run(t, "--edition", "GeoLite2-ASN").want(t, exitOK)
	if got, _ := os.ReadFile(filepath.Join(s.dir, "GeoLite2-ASN.mmdb")); !bytes.Equal(got, asn2) {
		t.Error("the new release is not installed")
	}
	state, _ := os.ReadFile(filepath.Join(s.dir, "loader-state.json"))
	if !strings.Contains(string(state), `"release": "20261201"`) {
		t.Errorf("state does not record the new release:\n%s", state)
	}
}

// A data directory that persists but a loader in a fresh container: the
// state file alone says nothing is new. A file changed by hand is not
// taken for the release, and is fetched again.
func TestGeoIPStateInDataDir(t *testing.T) {
	t.Parallel()
	s := newGeoIPSetup(t)
	s.run(t, "--edition", "GeoLite2-ASN").want(t, exitOK)
	gets := s.mm.Count("GET")
	s.run(t, "--edition", "GeoLite2-ASN").want(t, exitOK)
	if n := s.mm.Count("GET"); n != gets {
		t.Fatalf("%d GETs for an unchanged release", n-gets)
	}
	if err := os.WriteFile(filepath.Join(s.dir, "GeoLite2-ASN.mmdb"), []byte("edited by hand"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.run(t, "--edition", "GeoLite2-ASN").want(t, exitOK)
	if got, _ := os.ReadFile(filepath.Join(s.dir, "GeoLite2-ASN.mmdb")); !bytes.Equal(got, s.asn) {
		t.Error("a file changed by hand was taken for the installed release")
	}
}

// Every way a download can be wrong is refused with a message saying
// what, a non-zero exit, and the installed databases untouched (bytes and
// modification time) with no temporary file left behind.
func TestGeoIPRefusals(t *testing.T) {
	t.Parallel()
	const next = "20261201"
	good := func(t *testing.T) []byte { return loadertest.ASNDB(t, built2, "Google LLC 2") }
	archive := func(t *testing.T, mmdb []byte) []byte { return loadertest.Archive(t, "GeoLite2-ASN", next, mmdb) }
	sha := func(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }
	tests := []struct {
		name  string
		setup func(t *testing.T, mm *loadertest.MaxMind)
		args  []string
		want  string
		// requests that must have been made for the new release, exactly
		count map[string]int
	}{
		{name: "bad checksum", setup: func(t *testing.T, mm *loadertest.MaxMind) {
			mm.Publish("GeoLite2-ASN", loadertest.Release{Date: next, Archive: archive(t, good(t)), SHA256: strings.Repeat("ab", 32)})
		}, want: "checksum mismatch"},
		{name: "truncated archive", setup: func(t *testing.T, mm *loadertest.MaxMind) {
			a := archive(t, good(t))
			a = a[:len(a)/2]
			mm.Publish("GeoLite2-ASN", loadertest.Release{Date: next, Archive: a, SHA256: sha(a)})
		}, want: "truncated"},
		{name: "path outside the archive", setup: func(t *testing.T, mm *loadertest.MaxMind) {
			mm.Publish("GeoLite2-ASN", loadertest.Release{Date: next, Archive: loadertest.TarGz(t,
				loadertest.Entry{Name: "GeoLite2-ASN_" + next + "/../../GeoLite2-ASN.mmdb", Body: good(t)})})
		}, want: `points outside the archive's directory`},
		{name: "absolute path", setup: func(t *testing.T, mm *loadertest.MaxMind) {
			mm.Publish("GeoLite2-ASN", loadertest.Release{Date: next, Archive: loadertest.TarGz(t,
				loadertest.Entry{Name: "/var/lib/GeoLite2-ASN.mmdb", Body: good(t)})})
		}, want: `points outside the archive's directory`},
		{name: "no database in the archive", setup: func(t *testing.T, mm *loadertest.MaxMind) {
			mm.Publish("GeoLite2-ASN", loadertest.Release{Date: next, Archive: loadertest.TarGz(t,
				loadertest.Entry{Name: "GeoLite2-ASN_" + next + "/LICENSE.txt", Body: []byte("x")})})
		}, want: "holds no GeoLite2-ASN.mmdb"},
		{name: "wrong kind of database", setup: func(t *testing.T, mm *loadertest.MaxMind) {
			mm.Publish("GeoLite2-ASN", loadertest.Release{Date: next, Archive: archive(t, loadertest.CountryDB(t, built2, "SE"))})
		}, want: "is this the country database?"},
		{name: "another edition's database", setup: func(t *testing.T, mm *loadertest.MaxMind) {
			db := loadertest.DB(t, "GeoIP2-ISP", built2, map[string]mmdbtype.DataType{
				"8.8.8.0/24":     mmdbtype.Map{"autonomous_system_number": mmdbtype.Uint32(15169)},
				"2001:4860::/32": mmdbtype.Map{"autonomous_system_number": mmdbtype.Uint32(15169)},
			})
			mm.Publish("GeoLite2-ASN", loadertest.Release{Date: next, Archive: archive(t, db)})
		}, want: `holds a "GeoIP2-ISP" database, not GeoLite2-ASN`},
		{name: "not a database", setup: func(t *testing.T, mm *loadertest.MaxMind) {
			mm.Publish("GeoLite2-ASN", loadertest.Release{Date: next, Archive: archive(t, []byte("this is not an mmdb file"))})
		}, want: "not a readable MaxMind DB file"},
		{name: "older than installed", setup: func(t *testing.T, mm *loadertest.MaxMind) {
			mm.Publish("GeoLite2-ASN", loadertest.Release{Date: next, Archive: archive(t, loadertest.ASNDB(t, built1.Add(-time.Hour), "x"))})
		}, want: "refusing to go back"},
		{name: "probe address unknown", setup: func(t *testing.T, mm *loadertest.MaxMind) {
			db := loadertest.DB(t, "GeoLite2-ASN", built2, map[string]mmdbtype.DataType{
				"1.1.1.0/24": mmdbtype.Map{"autonomous_system_number": mmdbtype.Uint32(13335)},
			})
			mm.Publish("GeoLite2-ASN", loadertest.Release{Date: next, Archive: archive(t, db)})
		}, want: "no asn data for the probe address 8.8.8.8"},
		{name: "401 bad credentials", setup: func(t *testing.T, mm *loadertest.MaxMind) {
			mm.Publish("GeoLite2-ASN", loadertest.Release{Date: next, Archive: archive(t, good(t))})
		}, args: []string{"--license-key", "wrong-key-000"}, want: "check the account ID and license key",
			count: map[string]int{"HEAD": 1, "GET": 0}},
		{name: "403", setup: func(t *testing.T, mm *loadertest.MaxMind) {
			mm.Publish("GeoLite2-ASN", loadertest.Release{Date: next, Archive: archive(t, good(t))})
			mm.FailWith("HEAD", http.StatusForbidden, 0)
		}, want: "may not have this edition", count: map[string]int{"HEAD": 1, "GET": 0}},
		{name: "429 daily limit, not retried", setup: func(t *testing.T, mm *loadertest.MaxMind) {
			mm.Publish("GeoLite2-ASN", loadertest.Release{Date: next, Archive: archive(t, good(t))})
			mm.FailWith("GET", http.StatusTooManyRequests, 0)
		}, want: "daily download limit", count: map[string]int{"HEAD": 1, "GET": 1, "STORAGE": 0}},
		{name: "500 retried, then given up", setup: func(t *testing.T, mm *loadertest.MaxMind) {
			mm.Publish("GeoLite2-ASN", loadertest.Release{Date: next, Archive: archive(t, good(t))})
			mm.FailWith("STORAGE", http.StatusInternalServerError, 0)
		}, args: []string{"--retries", "2"}, want: "gave up after 3 attempts",
			count: map[string]int{"HEAD": 1, "GET GeoLite2-ASN tar.gz.sha256": 1, "STORAGE": 3}},
		{name: "stalled transfer", setup: func(t *testing.T, mm *loadertest.MaxMind) {
			mm.Publish("GeoLite2-ASN", loadertest.Release{Date: next, Archive: archive(t, good(t))})
			mm.Stall(true)
		}, args: []string{"--idle-timeout", "300ms", "--retries", "1"}, want: "stalled: nothing received for 300ms",
			count: map[string]int{"STORAGE": 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newGeoIPSetup(t)
			s.run(t, "--edition", "GeoLite2-ASN").want(t, exitOK)
			before := snapDir(t, s.dir)
			start := len(s.mm.Requests())
			tt.setup(t, s.mm)
			args := append([]string{"--edition", "GeoLite2-ASN"}, tt.args...)
			r := s.run(t, args...)
			r.want(t, exitFail, tt.want)
			untouched(t, s.dir, before)
			for prefix, n := range tt.count {
				got := 0
				for _, req := range s.mm.Requests()[start:] {
					if strings.HasPrefix(req, prefix) {
						got++
					}
				}
				if got != n {
					t.Errorf("%d requests %q, want %d; all: %q", got, prefix, n, s.mm.Requests()[start:])
				}
			}
		})
	}
}

// A 500 that passes is retried, and the run succeeds.
func TestGeoIPRetriesServerErrors(t *testing.T) {
	t.Parallel()
	s := newGeoIPSetup(t)
	s.mm.FailWith("HEAD", http.StatusInternalServerError, 1)
	s.mm.FailWith("STORAGE", http.StatusServiceUnavailable, 1)
	s.run(t, "--edition", "GeoLite2-ASN").want(t, exitOK, "trying again")
	if n := s.mm.Count("HEAD"); n != 2 {
		t.Errorf("%d HEADs, want 2 (one retry)", n)
	}
	if n := s.mm.Count("STORAGE"); n != 2 {
		t.Errorf("%d archive downloads, want 2 (one retry)", n)
	}
}

// A 401 stops the run: the next edition would be refused the same way.
func TestGeoIPUnauthorizedStopsEarly(t *testing.T) {
	t.Parallel()
	s := newGeoIPSetup(t)
	s.env["MAXMIND_LICENSE_KEY"] = "wrong-key-000"
	r := s.run(t)
	r.want(t, exitFail, "HTTP 401")
	if reqs := s.mm.Requests(); len(reqs) != 1 {
		t.Errorf("requests %q, want one HEAD", reqs)
	}
	if !strings.Contains(r.stdout, "geoip/country  failed") || !strings.Contains(r.stdout, "not tried") {
		t.Errorf("report:\n%s", r.stdout)
	}
}

// --force installs an older database.
func TestGeoIPForceOlder(t *testing.T) {
	t.Parallel()
	s := newGeoIPSetup(t)
	s.run(t, "--edition", "GeoLite2-ASN").want(t, exitOK)
	old := loadertest.ASNDB(t, built1.Add(-time.Hour), "older")
	s.mm.Publish("GeoLite2-ASN", loadertest.Release{Date: "20261201", Archive: loadertest.Archive(t, "GeoLite2-ASN", "20261201", old)})
	s.run(t, "--edition", "GeoLite2-ASN", "--force").want(t, exitOK, "installing an older database (forced)")
	if got, _ := os.ReadFile(filepath.Join(s.dir, "GeoLite2-ASN.mmdb")); !bytes.Equal(got, old) {
		t.Error("--force did not install the older database")
	}
}

// --dry-run asks with a HEAD only, and writes nothing.
func TestGeoIPDryRun(t *testing.T) {
	t.Parallel()
	s := newGeoIPSetup(t)
	r := s.run(t, "--dry-run")
	r.want(t, exitOK)
	if got := s.mm.Requests(); len(got) != 2 || s.mm.Count("HEAD") != 2 {
		t.Errorf("dry run made requests %q, want two HEADs", got)
	}
	if names := names(t, s.dir); len(names) != 0 {
		t.Errorf("dry run wrote %q", names)
	}
	if !strings.Contains(r.stdout, "geoip/asn  new") {
		t.Errorf("report:\n%s", r.stdout)
	}
}

// Credentials come from flags, a file (trimmed) or the environment; none
// is bad usage.
func TestGeoIPCredentials(t *testing.T) {
	t.Parallel()
	s := newGeoIPSetup(t)
	keyFile := filepath.Join(t.TempDir(), "key")
	os.WriteFile(keyFile, []byte("  "+s.mm.LicenseKey+"\n"), 0o600)

	r := runLoader(t, nil, append(append([]string{}, s.args...), "--account-id", s.mm.AccountID, "--license-key-file", keyFile, "--dry-run")...)
	r.want(t, exitOK)
	r = runLoader(t, nil, append(append([]string{}, s.args...), "--dry-run")...)
	r.want(t, exitUsage, "no MaxMind credentials")
	r = runLoader(t, nil, append(append([]string{}, s.args...), "--account-id", "1", "--license-key", "k", "--license-key-file", keyFile)...)
	r.want(t, exitUsage, "not both")
	r = runLoader(t, nil, append(append([]string{}, s.args...), "--account-id", "1", "--license-key-file", filepath.Join(t.TempDir(), "missing"))...)
	r.want(t, exitUsage, "--license-key-file")
}

// A local database is installed the same way, and checked for its role.
func TestGeoIPFromFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	src := "../../testdata/maxmind/GeoLite2-ASN-Test.mmdb"
	want, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	r := runLoader(t, nil, "geoip", "--data-dir", dir, "--from-file", src, "--kind", "asn")
	r.want(t, exitOK)
	if got, _ := os.ReadFile(filepath.Join(dir, "GeoLite2-ASN.mmdb")); !bytes.Equal(got, want) {
		t.Fatal("the local database is not installed")
	}
	db, err := geo.Open(geo.Config{ASN: filepath.Join(dir, "GeoLite2-ASN.mmdb")})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	before := snapDir(t, dir)
	r = runLoader(t, nil, "geoip", "--data-dir", dir, "--from-file", src, "--kind", "country")
	r.want(t, exitFail, "is this the ASN database?")
	r = runLoader(t, nil, "geoip", "--data-dir", dir, "--from-file", src, "--kind", "asn", "--probe", "8.8.8.8")
	r.want(t, exitFail, "probe address 8.8.8.8")
	untouched(t, dir, before)
	runLoader(t, nil, "geoip", "--data-dir", dir, "--from-file", src).want(t, exitUsage, "--kind")
	runLoader(t, nil, "geoip", "--data-dir", dir, "--from-file", filepath.Join(dir, "missing.mmdb"), "--kind", "asn").want(t, exitFail, "no such file")
}

// On a terminal a download draws a progress bar.
func TestGeoIPProgressBar(t *testing.T) {
	t.Parallel()
	s := newGeoIPSetup(t)
	var stdout, stderr bytes.Buffer
	c := cli{stdout: &stdout, stderr: &stderr, getenv: func(k string) string { return s.env[k] }, terminal: true, ctx: t.Context()}
	if code := c.run(append(s.args, "--edition", "GeoLite2-ASN")); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "GeoLite2-ASN_20261127.tar.gz") || !strings.Contains(stderr.String(), "100%") {
		t.Errorf("no progress bar on the terminal:\n%q", stderr.String())
	}
}
