package store_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/reghost/reghost/internal/logtest"
	"github.com/reghost/reghost/internal/rules"
	"github.com/reghost/reghost/internal/store"
	"github.com/reghost/reghost/internal/store/storetest"
)

func openBolt(t testing.TB, dir string, opts store.BoltOptions) *store.Bolt {
	t.Helper()
	s, err := store.OpenBolt(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// A database file removed while the store is open (rm -rf data/*, a
// cleanup job) is written again from the open database: nothing is lost
// at the next restart, an ERROR says what happened, and Health reports
// it. Before, every override was gone after a restart, without a word.
func TestBoltFileRemovedWhileOpen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var logged logtest.Buffer
	s := openBolt(t, dir, store.BoltOptions{CheckInterval: 20 * time.Millisecond, Logger: slog.New(slog.NewJSONHandler(&logged, nil))})
	ctx := t.Context()
	for i := range 3 {
		if _, err := s.Put(ctx, "alice", storetest.Override(fmt.Sprintf("o%d", i), i)); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, store.BoltFile)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the file to be written again", func() bool { _, err := os.Stat(path); return err == nil && s.Health() != nil })
	if !strings.Contains(logged.String(), `"level":"ERROR","msg":"the store's database file was removed while in use`) {
		t.Errorf("no ERROR logged:\n%s", logged.String())
	}
	if err := s.Health(); err == nil || !strings.Contains(err.Error(), "was removed") {
		t.Errorf("Health = %v, want it to say the file was removed", err)
	}
	// Writes go on, to the new file.
	if _, err := s.Put(ctx, "alice", storetest.Override("after", 9)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2 := openBolt(t, dir, store.BoltOptions{})
	st, err := s2.Load(ctx)
	if err != nil || len(st.Overrides) != 4 {
		t.Errorf("after a restart: %d overrides, %v; want 4", len(st.Overrides), err)
	}
}

// A start that finds the database missing where a store was kept
// refuses, naming the file and how to start empty on purpose; doing so
// starts empty.
func TestBoltMissingFileRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openBolt(t, dir, store.BoltOptions{})
	if _, err := s.Put(t.Context(), "alice", storetest.Override("x", 1)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := os.Remove(filepath.Join(dir, store.BoltFile)); err != nil {
		t.Fatal(err)
	}
	_, err := store.OpenBolt(dir, store.BoltOptions{})
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, store.BoltFile)+" is missing") ||
		!strings.Contains(err.Error(), "to start with an empty store on purpose") {
		t.Fatalf("opening a store whose file is gone: %v", err)
	}
	if err := os.Remove(filepath.Join(dir, ".reghost-store")); err != nil {
		t.Fatal(err)
	}
	s = openBolt(t, dir, store.BoltOptions{})
	if st, err := s.Load(t.Context()); err != nil || len(st.Overrides) != 0 {
		t.Errorf("started empty on purpose: %+v, %v", st, err)
	}
}

// A second process cannot open a store in use, whatever is deleted
// around it: bbolt locks the database file itself.
func TestBoltLocked(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	openBolt(t, dir, store.BoltOptions{})
	if err := os.Remove(filepath.Join(dir, ".reghost-store")); err != nil {
		t.Fatal(err)
	}
	if _, err := store.OpenBolt(dir, store.BoltOptions{}); !errors.Is(err, store.ErrLocked) {
		t.Errorf("a second open: %v, want ErrLocked", err)
	}
}

// The JSON file of earlier versions is migrated, at its version, and
// kept beside as .migrated.
func TestBoltMigratesTheJSONFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	legacy := `{
  "version": 7,
  "overrides": [
    {"id":"a","match":{"country":"SE"},"registries":["hub"],"created_at":"2026-11-01T08:00:00Z"},
    {"id":"b","match":{"cidr":"10.0.0.0/8"},"registries":["hub","k8s"]}
  ]
}
`
	if err := os.WriteFile(filepath.Join(dir, "overrides.json"), []byte(legacy), 0o600); err != nil {
		t.Fatal(err)
	}
	s := openBolt(t, dir, store.BoltOptions{})
	st, err := s.Load(t.Context())
	if err != nil || len(st.Overrides) != 2 || st.Version != (store.Version{Epoch: 1, N: 7}) || st.Overrides[1].Match.CIDR.String() != "10.0.0.0/8" {
		t.Errorf("migrated: %+v, %v", st, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "overrides.json.migrated")); err != nil {
		t.Errorf("the JSON file was not kept: %v", err)
	}
	// A broken JSON file is refused, not migrated as nothing.
	dir2 := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir2, "overrides.json"), []byte(legacy[:40]), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := store.OpenBolt(dir2, store.BoltOptions{}); err == nil || !strings.Contains(err.Error(), "overrides.json") {
		t.Errorf("a truncated JSON file: %v", err)
	}
}

// A database file cut short (a full disk, a bad copy) is refused at
// open with an error that says so; bbolt would otherwise read past the
// end of its mapping and kill the process with SIGBUS.
func TestBoltTruncatedRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openBolt(t, dir, store.BoltOptions{})
	for i := range 50 {
		if _, err := s.Put(t.Context(), "alice", storetest.Override(fmt.Sprintf("o%d", i), i)); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	path := filepath.Join(dir, store.BoltFile)
	if err := os.Truncate(path, int64(2*os.Getpagesize()+100)); err != nil {
		t.Fatal(err)
	}
	if _, err := store.OpenBolt(dir, store.BoltOptions{}); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("a truncated database: %v", err)
	} else {
		t.Log(err)
	}
}

// The audit trail keeps its last AuditLimit entries.
func TestBoltAuditCapped(t *testing.T) {
	t.Parallel()
	s := openBolt(t, t.TempDir(), store.BoltOptions{AuditLimit: 5})
	for i := range 12 {
		if _, err := s.Put(t.Context(), fmt.Sprintf("w%d", i), storetest.Override("x", i)); err != nil {
			t.Fatal(err)
		}
	}
	a, err := s.Audit(t.Context(), 100)
	if err != nil || len(a) != 5 || a[0].Who != "w11" || a[4].Who != "w7" {
		t.Errorf("audit: %d entries, first %v, %v", len(a), a, err)
	}
}

// writer writes overrides one by one, or replaces the whole set with
// 100,000 and then writes one by one, printing each version that a write
// returned, until it is killed (TestMain runs it).
func writer(dir string, replace bool) int {
	s, err := store.OpenBolt(dir, store.BoltOptions{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx := context.Background()
	if replace {
		fmt.Println("replacing")
		v, err := s.Replace(ctx, "writer", bulk(100_000))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Println("replaced", v.Epoch, v.N)
	}
	for i := 0; ; i++ {
		v, err := s.Put(ctx, "writer", storetest.Override(fmt.Sprintf("w%06d", i), i))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Println("wrote", fmt.Sprintf("w%06d", i), v.Epoch, v.N)
	}
}

func bulk(n int) []rules.Override {
	ovs := make([]rules.Override, n)
	for i := range ovs {
		ovs[i] = storetest.Override(fmt.Sprintf("bulk-%06d", i), i)
	}
	return ovs
}

// kill -9 loses no write that returned, mid-way through writes one by
// one or through a bulk replace of 100,000: after it, the store opens
// and holds every write it answered, and a replace either whole or not
// at all.
func TestBoltKill9LosesNothing(t *testing.T) {
	t.Parallel()
	for _, replace := range []bool{false, true} {
		t.Run(fmt.Sprintf("replace=%v", replace), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), "REGHOST_BOLT_WRITER="+dir)
			if replace {
				cmd.Env = append(cmd.Env, "REGHOST_BOLT_WRITER_REPLACE=1")
			}
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			// Kill it once it has answered 200 writes, or 300 ms into
			// the replace.
			sc := bufio.NewScanner(out)
			var written []string
			replaced := make(chan bool, 1)
			replacing := make(chan struct{})
			go func() {
				done := false
				for sc.Scan() {
					f := strings.Fields(sc.Text())
					switch f[0] {
					case "replacing":
						close(replacing)
					case "wrote":
						written = append(written, f[1])
					case "replaced":
						done = true
					}
					if len(written) == 200 {
						break
					}
				}
				replaced <- done
			}()
			if replace {
				<-replacing
				time.Sleep(300 * time.Millisecond) // well into writing 100,000 overrides
			}
			var answered bool
			if !replace {
				answered = <-replaced
			}
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			cmd.Wait()
			if replace {
				answered = <-replaced
			}
			s := openBolt(t, dir, store.BoltOptions{})
			st, err := s.Load(t.Context())
			if err != nil {
				t.Fatalf("after kill -9: %v (writer said: %s)", err, stderr.String())
			}
			have := map[string]bool{}
			bulkN := 0
			for _, o := range st.Overrides {
				have[o.ID] = true
				if strings.HasPrefix(o.ID, "bulk-") {
					bulkN++
				}
			}
			for _, id := range written {
				if !have[id] {
					t.Errorf("write %s returned, and is gone after kill -9", id)
				}
			}
			if bulkN != 0 && bulkN != 100_000 || answered && bulkN != 100_000 {
				t.Errorf("after kill -9: %d of the 100,000 replaced overrides (the replace returned: %v); want all or none", bulkN, answered)
			}
			t.Logf("%d writes answered, replace answered: %v, %d bulk overrides after kill -9", len(written), answered, bulkN)
		})
	}
}

// BenchmarkBoltWrites: creations one by one, at a store of 5,000 and of
// 100,000 overrides (each synced to disk: the cost does not grow with
// the number stored), and a replace of the whole set in one call.
func BenchmarkBoltWrites(b *testing.B) {
	for _, stored := range []int{0, 100_000} {
		b.Run("create/stored="+strconv.Itoa(stored), func(b *testing.B) {
			s := openBolt(b, b.TempDir(), store.BoltOptions{})
			if stored > 0 {
				if _, err := s.Replace(b.Context(), "bench", bulk(stored)); err != nil {
					b.Fatal(err)
				}
			}
			i := 0
			for b.Loop() {
				if _, err := s.Create(b.Context(), "bench", storetest.Override("c"+strconv.Itoa(i), i)); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
	b.Run("replace/100000", func(b *testing.B) {
		s := openBolt(b, b.TempDir(), store.BoltOptions{})
		ovs := bulk(100_000)
		for b.Loop() {
			if _, err := s.Replace(b.Context(), "bench", ovs); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A store opened read-only reads what is stored and changes nothing on
// disk, not even bbolt's meta pages; it refuses writes, creates nothing
// where there is no store, and cannot be had while a server holds the
// store.
func TestBoltReadOnly(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dir := t.TempDir()
	w := openBolt(t, dir, store.BoltOptions{})
	if _, err := w.Put(ctx, "alice", storetest.Override("o1", 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := store.OpenBolt(dir, store.BoltOptions{ReadOnly: true}); !errors.Is(err, store.ErrLocked) {
		t.Errorf("read-only open while a writer has it: %v, want ErrLocked", err)
	}
	w.Close()
	want, err := os.ReadFile(filepath.Join(dir, store.BoltFile))
	if err != nil {
		t.Fatal(err)
	}

	r := openBolt(t, dir, store.BoltOptions{ReadOnly: true})
	st, err := r.Load(ctx)
	if err != nil || len(st.Overrides) != 1 || st.Overrides[0].ID != "o1" || st.Version != (store.Version{Epoch: 1, N: 1}) {
		t.Errorf("Load = %+v, %v", st, err)
	}
	r2 := openBolt(t, dir, store.BoltOptions{ReadOnly: true}) // readers share the lock
	if _, err := r2.Version(ctx); err != nil {
		t.Error(err)
	}
	for name, write := range map[string]func() error{
		"Put":     func() error { _, err := r.Put(ctx, "alice", storetest.Override("o2", 2)); return err },
		"Replace": func() error { _, err := r.Replace(ctx, "alice", nil); return err },
		"Drain":   func() error { _, err := r.Drain(ctx, "alice", store.Drain{Registry: "k8s"}); return err },
	} {
		if err := write(); err == nil || !strings.Contains(err.Error(), "read-only") {
			t.Errorf("%s on a read-only store: %v", name, err)
		}
	}
	r.Close()
	r2.Close()
	if got, _ := os.ReadFile(filepath.Join(dir, store.BoltFile)); !bytes.Equal(got, want) {
		t.Error("the database file changed under a read-only store")
	}

	empty := filepath.Join(t.TempDir(), "data")
	if _, err := store.OpenBolt(empty, store.BoltOptions{ReadOnly: true}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("read-only open of no store: %v, want fs.ErrNotExist", err)
	}
	if _, err := os.Stat(empty); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a read-only open created %s: %v", empty, err)
	}
}
