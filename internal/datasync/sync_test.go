package datasync

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/reghost/reghost/internal/loader/loadertest"
	"github.com/reghost/reghost/internal/logtest"
	"github.com/reghost/reghost/internal/store/redistest"
)

// syncSetup is a Redis, a publisher, and a server's data directory with
// the ASN database and GCP's ranges as targets.
type syncSetup struct {
	srv      *redistest.Server
	pub      *Client
	dir      string
	asn, gcp string // the targets' paths
	reg      *prometheus.Registry
	log      *logtest.Buffer

	mu        sync.Mutex
	installed []string
}

func newSyncSetup(t *testing.T) *syncSetup {
	t.Helper()
	srv := redistest.Start(t)
	s := &syncSetup{srv: srv, pub: newTestClient(t, srv, "", nil), dir: t.TempDir(), reg: prometheus.NewRegistry(), log: &logtest.Buffer{}}
	s.asn, s.gcp = filepath.Join(s.dir, "geo", "asn.mmdb"), filepath.Join(s.dir, "gcp.json")
	return s
}

// syncer is a server's Syncer of the setup's targets, as user ("" the
// default user).
func (s *syncSetup) syncer(t *testing.T, user string, poll time.Duration) *Syncer {
	t.Helper()
	sy, err := NewSyncer(SyncerConfig{
		Client:     newTestClient(t, s.srv, user, func(c *ClientConfig) { c.ChunkSize = 0 }),
		Targets:    Targets(s.asn, "", map[string]string{"gcp": s.gcp}),
		Poll:       poll,
		Logger:     slog.New(slog.NewJSONHandler(s.log, nil)),
		Registerer: s.reg,
		Installed: func(name string) {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.installed = append(s.installed, name)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return sy
}

func (s *syncSetup) count(name, result string) float64 {
	return testutil.ToFloat64(must(newSyncTotal(s.reg)).WithLabelValues(name, result))
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func asnDB(t *testing.T, org string) []byte {
	return loadertest.ASNDB(t, time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), org)
}

func sameFile(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("%s: %d bytes (%v), want the %d bytes published", path, len(got), err, len(want))
	}
}

// A server with an empty data directory gets what is published, checked
// and renamed into place, and is told of each; a second look changes
// nothing; a file changed on disk is put back as Redis holds it.
func TestSyncInstalls(t *testing.T) {
	t.Parallel()
	s := newSyncSetup(t)
	sy := s.syncer(t, "", time.Minute)
	if err := sy.Sync(t.Context()); err != nil || len(sy.Problems()) != 0 {
		t.Fatalf("nothing published: %v %v", err, sy.Problems())
	}
	if _, err := os.Stat(s.asn); err == nil {
		t.Fatal("a file appeared with nothing published")
	}
	asn, gcp := asnDB(t, "Google LLC"), loadertest.Snapshot(t, "gcp-cloud.json")
	put(t, s.pub, "geoip/asn", asn)
	p := put(t, s.pub, "cloud/gcp", gcp)
	time.Sleep(20 * time.Millisecond) // a fetch now is later than the publish
	if err := sy.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	sameFile(t, s.asn, asn)
	sameFile(t, s.gcp, gcp)
	// The data's age is the publish's, on every replica alike.
	if fi, _ := os.Stat(s.gcp); fi.Mode().Perm() != 0o644 || !fi.ModTime().Equal(p.PublishedAt) {
		t.Errorf("mode %v, modified %v, want 0644 and the publish time %v", fi.Mode(), fi.ModTime(), p.PublishedAt)
	}
	if s.count("geoip/asn", "installed") != 1 || s.count("cloud/gcp", "installed") != 1 || strings.Join(s.installed, " ") != "geoip/asn cloud/gcp" {
		t.Errorf("installed: %v; metrics %v %v", s.installed, s.count("geoip/asn", "installed"), s.count("cloud/gcp", "installed"))
	}
	before, _ := os.Stat(s.asn)
	if err := sy.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.Stat(s.asn); !os.SameFile(before, after) || len(s.installed) != 2 {
		t.Error("a second look rewrote a file that is as published")
	}
	os.WriteFile(s.gcp, []byte(`{"changed":"by hand"}`), 0o644)
	if err := sy.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	sameFile(t, s.gcp, gcp)
	entries, _ := os.ReadDir(filepath.Dir(s.asn))
	if len(entries) != 1 {
		t.Errorf("the directory holds %d entries: a temporary file left?", len(entries))
	}
}

// A version that is corrupt in Redis, or that the server's checks
// refuse, is refused, once: logged as an error, counted, reported; the
// file on disk keeps serving. A good version after it is installed.
func TestSyncRefuses(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		target string
		bad    func(t *testing.T, s *syncSetup)
		says   string
	}{
		{"a byte changed", "geoip/asn", func(t *testing.T, s *syncSetup) {
			p := put(t, s.pub, "geoip/asn", asnDB(t, "Evil Corp"))
			b := []byte(s.srv.Do("HGET", "{reghost}:data:geoip/asn:"+p.ID, "1").(string))
			b[10] ^= 0xff
			s.srv.Do("HSET", "{reghost}:data:geoip/asn:"+p.ID, "1", b)
		}, "SHA-256"},
		{"a chunk gone", "geoip/asn", func(t *testing.T, s *syncSetup) {
			p := put(t, s.pub, "geoip/asn", asnDB(t, "Evil Corp"))
			s.srv.Do("HDEL", "{reghost}:data:geoip/asn:"+p.ID, "2")
		}, "chunk 2 of"},
		{"truncated, the pointer too", "geoip/asn", func(t *testing.T, s *syncSetup) {
			db := asnDB(t, "Evil Corp")
			db = db[:len(db)/2]
			put(t, s.pub, "geoip/asn", db) // its own SHA-256: only the checks can tell
		}, "refused by the server's checks"},
		{"another provider's file", "cloud/gcp", func(t *testing.T, s *syncSetup) {
			put(t, s.pub, "cloud/gcp", loadertest.Snapshot(t, "aws-ip-ranges.json"))
		}, "refused by the server's checks"},
		{"a country database as the ASN one", "geoip/asn", func(t *testing.T, s *syncSetup) {
			put(t, s.pub, "geoip/asn", loadertest.CountryDB(t, time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC), "US"))
		}, "refused by the server's checks"},
		{"a pointer that does not decode", "cloud/gcp", func(t *testing.T, s *syncSetup) {
			s.srv.Do("HSET", "{reghost}:data:cloud/gcp", "sha256", "nope")
		}, "pointer"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newSyncSetup(t)
			sy := s.syncer(t, "", time.Minute)
			good := map[string][]byte{"geoip/asn": asnDB(t, "Google LLC"), "cloud/gcp": loadertest.Snapshot(t, "gcp-cloud.json")}
			for name, b := range good {
				put(t, s.pub, name, b)
			}
			if err := sy.Sync(t.Context()); err != nil {
				t.Fatal(err)
			}
			tt.bad(t, s)
			for range 2 {
				if err := sy.Sync(t.Context()); err == nil || !strings.Contains(err.Error(), tt.says) {
					t.Fatalf("Sync: %v, want an error saying %q", err, tt.says)
				}
			}
			sameFile(t, s.asn, good["geoip/asn"])
			sameFile(t, s.gcp, good["cloud/gcp"])
			if n := s.count(tt.target, "refused"); n != 1 {
				t.Errorf("refused counted %v times, want once", n)
			}
			if p := sy.Problems(); len(p) != 1 || !strings.HasPrefix(p[0], tt.target+": refused") || !strings.Contains(p[0], "keeps serving") {
				t.Errorf("problems %q", p)
			}
			if logs := s.log.String(); strings.Count(logs, `"level":"ERROR"`) != 1 || !strings.Contains(logs, tt.says) {
				t.Errorf("want one ERROR line saying %q:\n%s", tt.says, logs)
			}

			// A good version after it.
			next := map[string][]byte{"geoip/asn": asnDB(t, "Google LLC (next)"), "cloud/gcp": loadertest.GCP(t, 1769717571195, time.Now(), nil)}[tt.target]
			put(t, s.pub, tt.target, next)
			if err := sy.Sync(t.Context()); err != nil || len(sy.Problems()) != 0 {
				t.Fatalf("a good version after the bad one: %v %q", err, sy.Problems())
			}
			sameFile(t, map[string]string{"geoip/asn": s.asn, "cloud/gcp": s.gcp}[tt.target], next)
		})
	}
}

// Run follows Redis: a publish arrives through its message, and after
// Redis restarts (the subscription is lost and made again) too; a change
// that no message announces arrives at the poll. Run stops with its
// context, and its goroutines with it.
func TestSyncRun(t *testing.T) {
	t.Parallel()
	s := newSyncSetup(t)
	sy := s.syncer(t, "", 300*time.Millisecond)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { sy.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	waitFor := func(what string, path string, want []byte, limit time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		for {
			if b, _ := os.ReadFile(path); bytes.Equal(b, want) {
				return time.Since(start)
			}
			if time.Since(start) > limit {
				t.Fatalf("%s: %s not installed within %v", what, path, limit)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	time.Sleep(100 * time.Millisecond) // subscribed
	v1 := asnDB(t, "one")
	put(t, s.pub, "geoip/asn", v1)
	t.Logf("a publish is installed %v later", waitFor("a publish", s.asn, v1, 5*time.Second))

	s.srv.Kill()
	s.srv.Restart()
	v2 := asnDB(t, "two")
	put(t, s.pub, "geoip/asn", v2)
	waitFor("a publish after Redis restarted", s.asn, v2, 5*time.Second)

	// A version written without a message: the poll finds it.
	v3 := asnDB(t, "three")
	sum := sha256.Sum256(v3)
	s.srv.Do("HSET", "{reghost}:data:geoip/asn:quiet", "0", v3)
	s.srv.Do("HSET", "{reghost}:data:geoip/asn", "version", "v3", "id", "quiet", "sha256", hex.EncodeToString(sum[:]),
		"size", len(v3), "chunks", 1, "source", "", "build_time", "", "published_at", "")
	waitFor("a silent change", s.asn, v3, 3*time.Second)
}

// The server's rights are those internal/store/REDIS.md lists for the
// store (the data sets need no more: HMGET, HGET, SUBSCRIBE); the
// loader's are those cmd/loader/README.md lists.
func TestMinimalACL(t *testing.T) {
	t.Parallel()
	s := newSyncSetup(t)
	s.srv.Do(append([]any{"ACL", "SETUSER", "reghost"}, serverACL...)...)
	s.srv.Do(append([]any{"ACL", "SETUSER", "loader"}, loaderACL...)...)
	loaderClient := newTestClient(t, s.srv, "loader", nil)
	asn := asnDB(t, "Google LLC")
	put(t, loaderClient, "geoip/asn", asn)
	put(t, loaderClient, "geoip/asn", asnDB(t, "next")) // replaces one
	put(t, loaderClient, "geoip/asn", asn)
	st := loaderClient.State()
	if _, err := st.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := st.Save(t.Context(), stateWith("geoip/asn", "abc")); err != nil {
		t.Fatal(err)
	}
	if _, err := loaderClient.lock(t.Context(), "geoip/country"); err != nil {
		t.Fatal(err)
	}

	sy := s.syncer(t, "reghost", time.Minute)
	if err := sy.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	sameFile(t, s.asn, asn)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { sy.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	time.Sleep(100 * time.Millisecond)
	next := asnDB(t, "after")
	put(t, loaderClient, "geoip/asn", next)
	for start := time.Now(); ; time.Sleep(10 * time.Millisecond) {
		if b, _ := os.ReadFile(s.asn); bytes.Equal(b, next) {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("the server's subscription under its ACL heard nothing: %s", s.log.String())
		}
	}
}

// serverACL is REDIS.md's minimal ACL for the store, unchanged.
var serverACL = []any{"on", ">acl-password", "resetkeys", "~{reghost}:*", "resetchannels", "&{reghost}:*",
	"-@all", "+hello", "+auth", "+client|setname", "+ping", "+info", "+select",
	"+evalsha", "+eval", "+multi", "+exec", "+hvals", "+hget", "+hmget", "+xrevrange", "+subscribe", "+wait",
	"+hset", "+hdel", "+del", "+hlen", "+xadd", "+time", "+publish"}

// loaderACL is cmd/loader/README.md's minimal ACL for a loader that
// publishes.
var loaderACL = []any{"on", ">acl-password", "resetkeys", "~{reghost}:*", "resetchannels", "&{reghost}:*",
	"-@all", "+hello", "+auth", "+client|setname", "+ping", "+select",
	"+evalsha", "+eval", "+get", "+set", "+hget", "+hmget", "+hgetall", "+hset", "+hlen", "+pexpire", "+persist",
	"+del", "+publish"}
