package cloud

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reghost/reghost/internal/logtest"
)

// awsRanges is an AWS ranges file publishing prefix in us-east-2.
func awsRanges(prefix string) []byte {
	return fmt.Appendf(nil, `{"syncToken": "1", "createDate": "2026-11-30-00-00-00", "prefixes": [{"ip_prefix": %q, "region": "us-east-2", "service": "AMAZON", "network_border_group": "us-east-2"}], "ipv6_prefixes": []}`, prefix)
}

func gcpRanges(prefix string) []byte {
	return fmt.Appendf(nil, `{"syncToken": "1", "creationTime": "2026-11-30T00:00:00", "prefixes": [{"ipv4Prefix": %q, "service": "Google Cloud", "scope": "europe-west1"}]}`, prefix)
}

// write puts data at path by renaming a new file over it, as the loader
// does.
func write(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// provider returns where s's table puts ip: "aws/us-east-2", or "".
func providerOf(s *Set, ip string) string {
	p, r, ok := s.Table().Cloud(netip.MustParseAddr(ip))
	if !ok {
		return ""
	}
	return p + "/" + r
}

func dataSet(t *testing.T, s *Set, provider string) DataSet {
	t.Helper()
	for _, ds := range s.DataSets() {
		if ds.Provider == provider {
			return ds
		}
	}
	t.Fatalf("no data set for %s in %+v", provider, s.DataSets())
	return DataSet{}
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := filepath.Join(dir, "gcp.json")
	write(t, bad, []byte("{"))
	for name, files := range map[string]map[string]string{
		"unknown provider": {"cloudflare": "x.json"},
		"bad file":         {"gcp": bad},
	} {
		if _, err := Open(Config{Files: files}); err == nil {
			t.Errorf("%s: Open succeeded", name)
		}
	}
}

// A file missing at start leaves its provider inactive and says so; it
// is picked up when it appears, and a bad replacement is refused with
// the last good ranges serving.
func TestSetFileAppearsAndGoesBad(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	aws := filepath.Join(dir, "aws.json")
	var changes atomic.Int32
	s, err := Open(Config{Files: map[string]string{"aws": aws}, OnChange: func(*Table) { changes.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	if ds := dataSet(t, s, "aws"); ds.Loaded || !strings.Contains(ds.Err, "does not exist") {
		t.Errorf("missing file: %+v", ds)
	}
	write(t, aws, awsRanges("198.51.100.0/24"))
	if err := s.check(false); err != nil {
		t.Fatal(err)
	}
	if got := providerOf(s, "198.51.100.7"); got != "aws/us-east-2" {
		t.Errorf("after the file appeared: %q", got)
	}
	if ds := dataSet(t, s, "aws"); !ds.Loaded || ds.Err != "" || ds.Records != 1 {
		t.Errorf("loaded: %+v", ds)
	}
	write(t, aws, []byte("{"))
	if err := s.check(false); err == nil {
		t.Error("a bad file was not refused")
	}
	if got := providerOf(s, "198.51.100.7"); got != "aws/us-east-2" {
		t.Errorf("after a bad file: %q", got)
	}
	if ds := dataSet(t, s, "aws"); !ds.Loaded || !strings.Contains(ds.Err, "aws") {
		t.Errorf("bad file: %+v", ds)
	}
	if n := changes.Load(); n != 2 {
		t.Errorf("OnChange called %d times, want 2 (at open, when the file appeared)", n)
	}
}

// After start, files that go bad, vanish or are replaced keeping their
// modification time are handled as operators expect: the last good
// ranges serve until a good file is back, each error is logged once, and
// a replacement is noticed by its size too.
func TestSetFileGoneAndBack(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	aws := filepath.Join(dir, "aws.json")
	write(t, aws, awsRanges("198.51.100.0/24"))
	var logged logtest.Buffer
	s, err := Open(Config{Files: map[string]string{"aws": aws}, Logger: slog.New(slog.NewJSONHandler(&logged, nil))})
	if err != nil {
		t.Fatal(err)
	}
	aside := filepath.Join(dir, "aside.json")
	if err := os.Rename(aws, aside); err != nil {
		t.Fatal(err)
	}
	const gone = "is gone; the ranges loaded from it keep serving"
	for range 5 {
		if err := s.check(false); err == nil || !strings.Contains(err.Error(), gone) {
			t.Fatalf("file gone: %v", err)
		}
	}
	if n := strings.Count(logged.String(), gone); n != 1 {
		t.Errorf("the vanished file was logged %d times, want once:\n%s", n, logged.String())
	}
	if got := providerOf(s, "198.51.100.7"); got != "aws/us-east-2" {
		t.Errorf("file gone: %q", got)
	}
	// Back as it was: the error clears.
	if err := os.Rename(aside, aws); err != nil {
		t.Fatal(err)
	}
	if err := s.check(false); err != nil {
		t.Fatal(err)
	}
	if ds := dataSet(t, s, "aws"); ds.Err != "" {
		t.Errorf("the file is back, the error is not gone: %+v", ds)
	}
	// Other ranges, the same modification time, as cp -p leaves it:
	// noticed by the size.
	fi, err := os.Stat(aws)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(aws, awsRanges("203.0.113.0/25"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(aws, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	if err := s.check(false); err != nil {
		t.Fatal(err)
	}
	if got, old := providerOf(s, "203.0.113.7"), providerOf(s, "198.51.100.7"); got != "aws/us-east-2" || old != "" {
		t.Errorf("replaced keeping its time: new prefix %q, old prefix %q", got, old)
	}
}

// One provider's bad file does not keep another's new file out.
func TestSetProvidersLoadOnTheirOwn(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	aws, gcp := filepath.Join(dir, "aws.json"), filepath.Join(dir, "gcp.json")
	write(t, aws, awsRanges("198.51.100.0/24"))
	write(t, gcp, gcpRanges("192.0.2.0/24"))
	s, err := Open(Config{Files: map[string]string{"aws": aws, "gcp": gcp}})
	if err != nil {
		t.Fatal(err)
	}
	write(t, aws, []byte(`{"syncToken": "2"`))
	write(t, gcp, gcpRanges("203.0.113.0/24"))
	if err := s.check(false); err == nil || !strings.Contains(err.Error(), "aws") {
		t.Errorf("check = %v, want the aws file's error", err)
	}
	if got := providerOf(s, "203.0.113.1"); got != "gcp/europe-west1" {
		t.Errorf("gcp's new file: %q", got)
	}
	if got := providerOf(s, "198.51.100.1"); got != "aws/us-east-2" {
		t.Errorf("aws's last good file: %q", got)
	}
	if ds := dataSet(t, s, "gcp"); ds.Err != "" || !ds.Loaded {
		t.Errorf("gcp: %+v", ds)
	}
}

// Readers never wait for a load in progress.
func TestSetReadersDoNotWaitForLoads(t *testing.T) {
	t.Parallel()
	aws := filepath.Join(t.TempDir(), "aws.json")
	write(t, aws, awsRanges("198.51.100.0/24"))
	s, err := Open(Config{Files: map[string]string{"aws": aws}})
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock() // as a load does
	defer s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.DataSets()
		_ = s.Table()
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("DataSets and Table wait for a load")
	}
}
