package loader

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// A staged file is renamed into place whole; every failure on the way
// removes the temporary file.
func TestStageAndInstall(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dest := filepath.Join(dir, "sub", "data.json")
	s, err := stage(dest, strings.NewReader("new"), 100)
	if err != nil {
		t.Fatal(err)
	}
	if names := dirNames(t, filepath.Dir(dest)); len(names) != 1 || !strings.Contains(names[0], tmpMarker) {
		t.Fatalf("staged as %q", names)
	}
	if err := s.install(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(dest); string(b) != "new" {
		t.Fatalf("installed %q", b)
	}
	if fi, _ := os.Stat(dest); fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v", fi.Mode())
	}
	if names := dirNames(t, filepath.Dir(dest)); len(names) != 1 {
		t.Errorf("left %q", names)
	}

	// Over the limit: nothing staged.
	if _, err := stage(dest, strings.NewReader("too long"), 3); err == nil {
		t.Error("a file over the limit was staged")
	}
	// The rename fails (the destination is a non-empty directory).
	blocked := filepath.Join(dir, "blocked")
	os.MkdirAll(filepath.Join(blocked, "x"), 0o755)
	s, err = stage(blocked, strings.NewReader("x"), 10)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.install(); err == nil {
		t.Error("installed over a directory")
	}
	if names := dirNames(t, dir); strings.Join(names, " ") != "blocked sub" {
		t.Errorf("after failures the directory holds %q", names)
	}
	if names := dirNames(t, filepath.Dir(dest)); len(names) != 1 {
		t.Errorf("after failures %q", names)
	}
}

// What an interrupted run left behind is removed by the next one, and
// nothing else is.
func TestRemoveStale(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, n := range []string{".GeoLite2-ASN.mmdb" + tmpMarker + "123", "GeoLite2-ASN.mmdb", ".hidden", "x" + tmpMarker} {
		os.WriteFile(filepath.Join(dir, n), nil, 0o644)
	}
	removeStale(dir, slog.New(slog.DiscardHandler))
	if names := dirNames(t, dir); strings.Join(names, " ") != ".hidden GeoLite2-ASN.mmdb x"+tmpMarker {
		t.Errorf("left %q", names)
	}
}

// The state survives a round trip; a corrupt or foreign file is an empty
// state (everything is fetched once more), not an error.
func TestFileState(t *testing.T) {
	t.Parallel()
	fs := FileState{Path: filepath.Join(t.TempDir(), StateFileName)}
	st, err := fs.Load(t.Context())
	if err != nil || len(st.Sets) != 0 {
		t.Fatalf("missing file: %+v, %v", st, err)
	}
	at := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	st.Sets["geoip/asn"] = SetState{File: "/d/GeoLite2-ASN.mmdb", SHA256: "ab", Release: "20261201", InstalledAt: at}
	if err := fs.Save(t.Context(), st); err != nil {
		t.Fatal(err)
	}
	got, err := fs.Load(t.Context())
	if err != nil || got.Sets["geoip/asn"].Release != "20261201" || !got.Sets["geoip/asn"].InstalledAt.Equal(at) {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	for _, bad := range []string{"{", `{"version": 99, "sets": {"geoip/asn": {}}}`, "null"} {
		os.WriteFile(fs.Path, []byte(bad), 0o644)
		if st, err := fs.Load(t.Context()); err != nil || len(st.Sets) != 0 {
			t.Errorf("%q: %+v, %v", bad, st, err)
		}
	}
}

// The lock excludes a second holder until released, and a waiter gives
// up when its context ends.
func TestFileLock(t *testing.T) {
	t.Parallel()
	l := FileLock{Path: filepath.Join(t.TempDir(), LockFileName)}
	unlock, err := l.Lock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 150*time.Millisecond)
	defer cancel()
	if _, err := l.Lock(ctx); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Lock: %v, want ErrLocked", err)
	}
	if err := unlock(); err != nil {
		t.Fatal(err)
	}
	unlock2, err := l.Lock(t.Context())
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	unlock2()
}
