package store_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reghost/reghost/internal/rules"
	"github.com/reghost/reghost/internal/store"
)

func ov(id string, registries ...string) rules.Override {
	return rules.Override{
		ID:         id,
		Match:      rules.Match{Country: "SE"},
		Registries: registries,
	}
}

func open(t testing.TB, path string) *store.File {
	t.Helper()
	s, err := store.OpenFile(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// reopen closes s and opens its file again.
func reopen(t testing.TB, s *store.File, path string) *store.File {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return open(t, path)
}

func list(t testing.TB, s store.Store) ([]rules.Override, uint64) {
	t.Helper()
	got, v, err := s.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return got, v
}

func TestFileWrites(t *testing.T) {
	t.Parallel()
	a := ov("a", "eu")
	b := ov("b", "us", "eu")
	a2 := ov("a", "us")
	a2.Note = "moved"
	c := ov("c", "ap")
	tests := []struct {
		name    string
		op      func(context.Context, store.Store) (uint64, error)
		wantErr string // exact message; "" for success
		wantIs  error
		want    []rules.Override // List after the op
		wantV   uint64           // version after the op
	}{
		{
			name: "put creates",
			op:   func(ctx context.Context, s store.Store) (uint64, error) { return s.Put(ctx, c) },
			want: []rules.Override{a, b, c}, wantV: 3,
		},
		{
			name: "put replaces",
			op:   func(ctx context.Context, s store.Store) (uint64, error) { return s.Put(ctx, a2) },
			want: []rules.Override{a2, b}, wantV: 3,
		},
		{
			name: "create",
			op:   func(ctx context.Context, s store.Store) (uint64, error) { return s.Create(ctx, c) },
			want: []rules.Override{a, b, c}, wantV: 3,
		},
		{
			name:    "create conflict",
			op:      func(ctx context.Context, s store.Store) (uint64, error) { return s.Create(ctx, a2) },
			wantErr: `store: override already exists: "a"`, wantIs: store.ErrConflict,
			want: []rules.Override{a, b}, wantV: 2,
		},
		{
			name: "delete",
			op:   func(ctx context.Context, s store.Store) (uint64, error) { return s.Delete(ctx, "a") },
			want: []rules.Override{b}, wantV: 3,
		},
		{
			name:    "delete not found",
			op:      func(ctx context.Context, s store.Store) (uint64, error) { return s.Delete(ctx, "zz") },
			wantErr: `store: override not found: "zz"`, wantIs: store.ErrNotFound,
			want: []rules.Override{a, b}, wantV: 2,
		},
		{
			name:    "put empty id",
			op:      func(ctx context.Context, s store.Store) (uint64, error) { return s.Put(ctx, ov("", "eu")) },
			wantErr: "store: override id is empty",
			want:    []rules.Override{a, b}, wantV: 2,
		},
		{
			name:    "create empty id",
			op:      func(ctx context.Context, s store.Store) (uint64, error) { return s.Create(ctx, ov("", "eu")) },
			wantErr: "store: override id is empty",
			want:    []rules.Override{a, b}, wantV: 2,
		},
		{
			name: "put unencodable",
			op: func(ctx context.Context, s store.Store) (uint64, error) {
				o := ov("c", "eu")
				o.ExpiresAt = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
				return s.Put(ctx, o)
			},
			wantErr: `store: override "c": json: error calling MarshalJSON for type time.Time: Time.MarshalJSON: year outside of range [0,9999]`,
			want:    []rules.Override{a, b}, wantV: 2,
		},
		{
			name: "cancelled context",
			op: func(ctx context.Context, s store.Store) (uint64, error) {
				ctx, cancel := context.WithCancel(ctx)
				cancel()
				return s.Put(ctx, c)
			},
			wantErr: "context canceled", wantIs: context.Canceled,
			want: []rules.Override{a, b}, wantV: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			path := filepath.Join(t.TempDir(), "overrides.json")
			s := open(t, path)
			for _, o := range []rules.Override{b, a} {
				if _, err := s.Put(ctx, o); err != nil {
					t.Fatal(err)
				}
			}
			v, err := tt.op(ctx, s)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("err = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || err.Error() != tt.wantErr):
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			case tt.wantIs != nil && !errors.Is(err, tt.wantIs):
				t.Fatalf("err = %v, want errors.Is %v", err, tt.wantIs)
			case err == nil && v != tt.wantV:
				t.Errorf("returned version %d, want %d", v, tt.wantV)
			}
			got, gotV := list(t, s)
			if !reflect.DeepEqual(got, tt.want) || gotV != tt.wantV {
				t.Errorf("List = %v at version %d, want %v at version %d", got, gotV, tt.want, tt.wantV)
			}
			got, gotV = list(t, reopen(t, s, path))
			if !reflect.DeepEqual(got, tt.want) || gotV != tt.wantV {
				t.Errorf("reopened: List = %v at version %d, want %v at version %d", got, gotV, tt.want, tt.wantV)
			}
		})
	}
}

func TestFileGet(t *testing.T) {
	t.Parallel()
	full := rules.Override{
		ID:         "full",
		Match:      rules.Match{CIDR: netip.MustParsePrefix("2001:db8::/32")},
		Registries: []string{"eu", "us"},
		ExpiresAt:  time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC),
		Note:       "all fields <&>",
		CreatedBy:  "admin",
		CreatedAt:  time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	}
	path := filepath.Join(t.TempDir(), "overrides.json")
	s := open(t, path)
	if _, err := s.Put(t.Context(), full); err != nil {
		t.Fatal(err)
	}
	s = reopen(t, s, path) // everything survives the file
	tests := []struct {
		id      string
		want    rules.Override
		wantErr string
	}{
		{id: "full", want: full},
		{id: "missing", wantErr: `store: override not found: "missing"`},
		{id: "", wantErr: `store: override not found: ""`},
		{id: "FULL", wantErr: `store: override not found: "FULL"`},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			t.Parallel()
			got, err := s.Get(t.Context(), tt.id)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr || !errors.Is(err, store.ErrNotFound) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Get = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestFileReturnsCopies(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := open(t, filepath.Join(t.TempDir(), "overrides.json"))
	in := ov("a", "eu", "us")
	if _, err := s.Put(ctx, in); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, ov("b", "ap")); err != nil {
		t.Fatal(err)
	}
	in.Registries[0] = "changed-after-put"
	got, _ := s.Get(ctx, "a")
	got.Registries[1] = "changed-after-get"
	all, _ := list(t, s)
	all[0].Registries[0] = "changed-after-list"
	all[0].Registries = append(all[0].Registries, "appended") // must not reach b's registries
	all, _ = list(t, s)
	want := []rules.Override{ov("a", "eu", "us"), ov("b", "ap")}
	if !reflect.DeepEqual(all, want) {
		t.Fatalf("List = %v, want %v", all, want)
	}
	all[0].Registries = append(all[0].Registries, "appended")
	if all[1].Registries[0] != "ap" {
		t.Fatalf("append to one override's registries changed the next: %v", all[1].Registries)
	}
}

func TestFileVersionPersists(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "sub", "dir", "overrides.json")
	s := open(t, path) // creates the directories and an empty store
	if v, err := s.Version(ctx); err != nil || v != 0 {
		t.Fatalf("new store Version = %d, %v; want 0", v, err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("open did not create the file: %v", err)
	}
	for i := range 3 {
		if _, err := s.Put(ctx, ov(fmt.Sprint(i), "eu")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Delete(ctx, "1"); err != nil {
		t.Fatal(err)
	}
	s = reopen(t, s, path)
	if v, err := s.Version(ctx); err != nil || v != 4 {
		t.Fatalf("reopened Version = %d, %v; want 4", v, err)
	}
	if v, err := s.Put(ctx, ov("x", "eu")); err != nil || v != 5 {
		t.Fatalf("Put after reopen = %d, %v; want 5", v, err)
	}
}

func TestFileFormat(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "overrides.json")
	s := open(t, path)
	check := func(want string) {
		t.Helper()
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != want {
			t.Fatalf("file:\n%s\nwant:\n%s", got, want)
		}
	}
	check("{\n  \"version\": 0,\n  \"overrides\": []\n}\n")
	o := ov("b", "eu")
	o.Note = "<b>"
	if _, err := s.Put(ctx, o); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, rules.Override{ID: "a", Match: rules.Match{ASN: 64512}, Registries: []string{"us"}}); err != nil {
		t.Fatal(err)
	}
	check(`{
  "version": 2,
  "overrides": [
    {"id":"a","match":{"asn":64512},"registries":["us"]},
    {"id":"b","match":{"country":"SE"},"registries":["eu"],"note":"<b>"}
  ]
}
`)
}

// recv waits for a value or the close of ch.
func recv(t *testing.T, ch <-chan uint64) (uint64, bool) {
	t.Helper()
	select {
	case v, ok := <-ch:
		return v, ok
	case <-time.After(5 * time.Second):
		t.Fatal("nothing received from Changes in 5s")
		return 0, false
	}
}

func TestFileChanges(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := open(t, filepath.Join(t.TempDir(), "overrides.json"))

	subCtx, cancel := context.WithCancel(ctx)
	ch := s.Changes(subCtx)
	other := s.Changes(ctx)
	if _, err := s.Put(ctx, ov("a", "eu")); err != nil {
		t.Fatal(err)
	}
	if v, ok := recv(t, ch); !ok || v != 1 {
		t.Fatalf("received %d, %v; want 1", v, ok)
	}
	// A reader that does not keep up gets the latest version only, and
	// the writers never wait for it.
	for _, id := range []string{"b", "c", "d"} {
		if _, err := s.Put(ctx, ov(id, "eu")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if v, ok := recv(t, ch); !ok || v != 5 {
		t.Fatalf("received %d, %v; want the latest, 5", v, ok)
	}
	select {
	case v := <-ch:
		t.Fatalf("received %d after the latest version", v)
	default:
	}
	// Failed writes notify nothing.
	if _, err := s.Delete(ctx, "a"); !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
	cancel()
	if v, ok := recv(t, ch); ok {
		t.Fatalf("received %d after cancel; want the channel closed", v)
	}
	if v, ok := recv(t, other); !ok || v != 5 {
		t.Fatalf("other subscriber received %d, %v; want 5", v, ok)
	}

	done, cancelDone := context.WithCancel(ctx)
	cancelDone()
	if v, ok := recv(t, s.Changes(done)); ok {
		t.Fatalf("Changes(done ctx) received %d; want closed", v)
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if v, ok := recv(t, other); ok {
		t.Fatalf("received %d after Close; want the channel closed", v)
	}
	if v, ok := recv(t, s.Changes(ctx)); ok {
		t.Fatalf("Changes after Close received %d; want closed", v)
	}
}

func TestFileConcurrentWrites(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "overrides.json")
	s := open(t, path)

	// A subscriber reading along sees versions only go up, and ends on
	// the last one.
	const writers, perWriter = 50, 4
	const wantV = writers * (perWriter + 2) // puts, one replace, one delete
	watch := s.Changes(ctx)
	watched := make(chan error, 1)
	go func() {
		var last uint64
		for v := range watch {
			if v <= last {
				watched <- fmt.Errorf("version %d after %d", v, last)
				return
			}
			if last = v; v == wantV {
				watched <- nil
				return
			}
		}
		watched <- fmt.Errorf("channel closed at version %d", last)
	}()

	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				if _, err := s.Create(ctx, ov(fmt.Sprintf("w%02d-%d", w, i), "eu")); err != nil {
					t.Error(err)
				}
				if _, _, err := s.List(ctx); err != nil {
					t.Error(err)
				}
			}
			if _, err := s.Put(ctx, ov(fmt.Sprintf("w%02d-0", w), "us")); err != nil {
				t.Error(err)
			}
			if _, err := s.Delete(ctx, fmt.Sprintf("w%02d-1", w)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	select {
	case err := <-watched:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("subscriber never saw the last version")
	}

	got, v := list(t, s)
	if len(got) != writers*(perWriter-1) || v != wantV {
		t.Fatalf("%d overrides at version %d; want %d at %d", len(got), v, writers*(perWriter-1), wantV)
	}
	for _, o := range got {
		if strings.HasSuffix(o.ID, "-0") && o.Registries[0] != "us" {
			t.Errorf("%s: registries %v; want the replacement", o.ID, o.Registries)
		}
	}
	again, againV := list(t, reopen(t, s, path))
	if !reflect.DeepEqual(again, got) || againV != v {
		t.Fatalf("reopened: %d overrides at version %d; want the same %d at %d", len(again), againV, len(got), v)
	}
}

func TestFileOpenCorrupt(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		data string
		want string // the error after "store: <path>: "
	}{
		{
			name: "syntax",
			data: "{\n  \"version\": 3,\n  \"overrides\": [}\n}\n",
			want: "line 3, column 18 (byte 35): invalid JSON: invalid character '}' looking for beginning of value",
		},
		{
			name: "truncated",
			data: "{\n  \"version\": 3,\n  \"overrides\": [",
			want: "line 3, column 17 (byte 34): invalid JSON: file ends early (truncated?)",
		},
		{
			name: "wrong type",
			data: `{"version": "3", "overrides": []}`,
			want: "line 1, column 16 (byte 15): json: cannot unmarshal string into Go struct field fileData.version of type uint64",
		},
		{
			name: "bad prefix",
			data: `{"version": 1, "overrides": [{"id": "a", "match": {"cidr": "10.0.0.0/33"}}]}`,
			want: `invalid store file: netip.ParsePrefix("10.0.0.0/33"): prefix length out of range`,
		},
		{
			name: "unknown field",
			data: `{"version": 1, "overrides": [], "extra": true}`,
			want: `invalid store file: json: unknown field "extra"`,
		},
		{
			name: "trailing data",
			data: `{"version": 1, "overrides": []} {}`,
			want: "line 1, column 34 (byte 33): data after the end of the store object",
		},
		{
			name: "empty file",
			data: "",
			want: "file is empty",
		},
		{
			name: "empty id",
			data: `{"version": 1, "overrides": [{"id": "a"}, {"id": ""}]}`,
			want: "overrides[1]: empty id",
		},
		{
			name: "duplicate id",
			data: `{"version": 2, "overrides": [{"id": "b"}, {"id": "a"}, {"id": "b"}]}`,
			want: `override id "b" appears more than once`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "overrides.json")
			if err := os.WriteFile(path, []byte(tt.data), 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := store.OpenFile(path, nil)
			want := "store: " + path + ": " + tt.want + "; fix or move the file aside (reghost never replaces an unreadable store)"
			if err == nil {
				s.Close()
				t.Fatalf("OpenFile succeeded; want %q", want)
			}
			if err.Error() != want {
				t.Fatalf("err = %q\nwant  %q", err, want)
			}
			if got, _ := os.ReadFile(path); string(got) != tt.data {
				t.Fatalf("the corrupt file was changed to %q", got)
			}
			// The failed open released its lock: a fixed file opens.
			if err := os.WriteFile(path, []byte(`{"version": 7}`), 0o600); err != nil {
				t.Fatal(err)
			}
			if v, err := open(t, path).Version(t.Context()); err != nil || v != 7 {
				t.Fatalf("fixed file: Version = %d, %v; want 7", v, err)
			}
		})
	}
}

func TestFileOpenUnreadable(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "overrides.json")
	if err := os.Mkdir(path, 0o750); err != nil {
		t.Fatal(err)
	}
	_, err := store.OpenFile(path, nil)
	want := "store: reading " + path + ": read " + path + ": is a directory"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %q", err, want)
	}
}

func TestFileWriteFailure(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		sabotage func(t *testing.T, path string)
		wantErr  string // after "store: unavailable: writing <path>: "
		// repair, if set, undoes sabotage, and a write must then succeed.
		repair func(t *testing.T, path string)
	}{
		{
			name: "temp path is a directory",
			sabotage: func(t *testing.T, path string) {
				if err := os.Mkdir(path+".tmp", 0o750); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: "open {path}.tmp: is a directory",
			repair: func(t *testing.T, path string) {
				if err := os.Remove(path + ".tmp"); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "directory removed",
			sabotage: func(t *testing.T, path string) {
				if err := os.RemoveAll(filepath.Dir(path)); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: "open {path}.tmp: no such file or directory",
		},
	}
	writes := []struct {
		name string
		op   func(context.Context, store.Store) (uint64, error)
	}{
		{"put", func(ctx context.Context, s store.Store) (uint64, error) { return s.Put(ctx, ov("a", "changed")) }},
		{"create", func(ctx context.Context, s store.Store) (uint64, error) { return s.Create(ctx, ov("c", "eu")) }},
		{"delete", func(ctx context.Context, s store.Store) (uint64, error) { return s.Delete(ctx, "b") }},
	}
	for _, tt := range tests {
		for _, w := range writes {
			t.Run(tt.name+"/"+w.name, func(t *testing.T) {
				t.Parallel()
				ctx := t.Context()
				path := filepath.Join(t.TempDir(), "data", "overrides.json")
				s := open(t, path)
				for _, o := range []rules.Override{ov("a", "eu"), ov("b", "us")} {
					if _, err := s.Put(ctx, o); err != nil {
						t.Fatal(err)
					}
				}
				before, beforeV := list(t, s)
				tt.sabotage(t, path)
				changes := s.Changes(ctx)

				_, err := w.op(ctx, s)
				want := "store: unavailable: writing " + path + ": " +
					strings.ReplaceAll(tt.wantErr, "{path}", path) + "; the change was not saved"
				if err == nil || err.Error() != want || !errors.Is(err, store.ErrUnavailable) {
					t.Fatalf("err = %v\nwant  %q", err, want)
				}
				after, afterV := list(t, s)
				if !reflect.DeepEqual(after, before) || afterV != beforeV {
					t.Fatalf("after a failed write: %v at %d; want %v at %d", after, afterV, before, beforeV)
				}
				select {
				case v := <-changes:
					t.Fatalf("a failed write notified version %d", v)
				default:
				}
				if tt.repair == nil {
					return
				}
				tt.repair(t, path)
				if v, err := w.op(ctx, s); err != nil || v != beforeV+1 {
					t.Fatalf("write after repair = %d, %v; want %d", v, err, beforeV+1)
				}
			})
		}
	}
}

func TestFileLocked(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "overrides.json")
	first := open(t, path)
	_, err := store.OpenFile(path, nil)
	want := "store: locked by another process: " + path + ".lock is held; is another reghost running with the same data directory?"
	if err == nil || err.Error() != want || !errors.Is(err, store.ErrLocked) {
		t.Fatalf("second OpenFile: err = %v\nwant %q", err, want)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	open(t, path) // the lock is released on Close
}

func TestFileClosed(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := open(t, filepath.Join(t.TempDir(), "overrides.json"))
	if _, err := s.Put(ctx, ov("a", "eu")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	calls := map[string]func() error{
		"List":    func() error { _, _, err := s.List(ctx); return err },
		"Get":     func() error { _, err := s.Get(ctx, "a"); return err },
		"Put":     func() error { _, err := s.Put(ctx, ov("b", "eu")); return err },
		"Create":  func() error { _, err := s.Create(ctx, ov("b", "eu")); return err },
		"Delete":  func() error { _, err := s.Delete(ctx, "a"); return err },
		"Version": func() error { _, err := s.Version(ctx); return err },
	}
	for name, call := range calls {
		if err := call(); err == nil || err.Error() != "store: unavailable: store is closed" || !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s after Close: err = %v", name, err)
		}
	}
}

// benchStore opens a store holding n overrides, written straight to the
// file so that setting up does not take n fsyncs.
func benchStore(b *testing.B, n int) *store.File {
	b.Helper()
	path := filepath.Join(b.TempDir(), "overrides.json")
	var sb strings.Builder
	fmt.Fprintf(&sb, `{"version": %d, "overrides": [`, n)
	for i := range n {
		if i > 0 {
			sb.WriteString(",\n")
		}
		fmt.Fprintf(&sb, `{"id":"override-%05d","match":{"cidr":"10.%d.%d.0/24"},"registries":["eu","us"],"note":"benchmark","created_by":"bench","created_at":"2026-01-02T03:04:05Z"}`,
			i, i/256, i%256)
	}
	sb.WriteString("]}")
	if err := os.WriteFile(path, []byte(sb.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	return open(b, path)
}

func BenchmarkFilePut10k(b *testing.B) {
	s := benchStore(b, 10_000)
	ctx := b.Context()
	o := ov("", "eu", "us")
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		o.ID = fmt.Sprintf("override-%05d", i%10_000) // replace: the size stays 10k
		if _, err := s.Put(ctx, o); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkFileList10k(b *testing.B) {
	s := benchStore(b, 10_000)
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		got, _, err := s.List(ctx)
		if err != nil || len(got) != 10_000 {
			b.Fatal(len(got), err)
		}
	}
}
