package store_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/reghost/reghost/internal/logtest"
	"github.com/reghost/reghost/internal/store"
	"github.com/reghost/reghost/internal/store/redistest"
	"github.com/reghost/reghost/internal/store/storetest"
)

// nextChange waits for a change on ch that ok accepts, and fails the
// test after d.
func nextChange(t testing.TB, ch <-chan store.Change, d time.Duration, what string, ok func(store.Change) bool) store.Change {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case c, open := <-ch:
			if !open {
				t.Fatalf("%s: the Changes channel closed", what)
			}
			if ok(c) {
				return c
			}
		case <-timeout:
			t.Fatalf("%s: no such change within %s", what, d)
		}
	}
}

// reaches accepts a change at v or later.
func reaches(v store.Version) func(store.Change) bool {
	return func(c store.Change) bool { return !c.Version.Less(v) }
}

// eventually polls cond every 20 ms until it holds, or fails after d.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// With its pub/sub connection killed, a store resubscribes by itself and
// tells its readers to reload: a write made meanwhile is not lost. The
// poll is set to a minute, so only the resubscription can bring it.
func TestRedisSubscriptionKilled(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	writer := openRedis(t, fast(srv.URL(), "reghost"))
	o := fast(srv.URL(), "reghost")
	o.PollInterval = time.Minute
	reader := openRedis(t, o)
	ch := reader.Changes(t.Context())

	for round := range 3 {
		killed := srv.Do("CLIENT", "KILL", "TYPE", "pubsub").(int64)
		if killed < 2 { // the writer's and the reader's
			t.Fatalf("round %d: CLIENT KILL TYPE pubsub killed %d connections", round, killed)
		}
		v, err := writer.Put(t.Context(), "alice", storetest.Override(fmt.Sprintf("after-kill-%d", round), round))
		if err != nil {
			t.Fatal(err)
		}
		nextChange(t, ch, 5*time.Second, "a write after the subscription was killed", reaches(v))
	}
	eventually(t, 5*time.Second, "the subscription back", func() bool { return reader.Health() == nil })
}

// A store whose subscription cannot work (an ACL user without channel
// rights) still learns of every write, through the version poll, and
// says in Health that notifications are down.
func TestRedisPollAlone(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	srv.Do("ACL", "SETUSER", "nosub", "on", ">secret-pw", "~*", "+@all", "resetchannels")
	writer := openRedis(t, fast(srv.URL(), "reghost"))
	reader := openRedis(t, fast("redis://nosub:secret-pw@"+srv.Addr()+"/0", "reghost"))
	ch := reader.Changes(t.Context())
	start := time.Now()
	v, err := writer.Put(t.Context(), "alice", storetest.Override("a", 1))
	if err != nil {
		t.Fatal(err)
	}
	c := nextChange(t, ch, 3*time.Second, "a write, through the poll", reaches(v))
	if !c.Whole() {
		t.Errorf("the poll delivered %+v; it knows only the version, so a Whole change", c)
	}
	t.Logf("a write reached a reader without pub/sub in %s (poll every 200 ms)", time.Since(start).Round(time.Millisecond))
	if err := reader.Health(); err == nil || !strings.Contains(err.Error(), "notifications are down") {
		t.Errorf("Health with no subscription: %v", err)
	}
}

// Redis stopped under a reader: calls fail fast with ErrUnavailable and
// Health says so; started again, Health clears and Changes tells readers
// to reload.
func TestRedisOutage(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, redistest.Persistent(), redistest.Args("--save", "3600 1"))
	s := openRedis(t, fast(srv.URL(), "reghost"))
	ctx := t.Context()
	if _, err := s.Put(ctx, "alice", storetest.Override("a", 1)); err != nil {
		t.Fatal(err)
	}
	ch := s.Changes(ctx)
	srv.Stop() // SIGTERM: saves the snapshot first

	var slowest time.Duration
	for i := range 20 {
		start := time.Now()
		_, err := s.Load(ctx)
		_, werr := s.Put(ctx, "alice", storetest.Override(fmt.Sprintf("down-%d", i), i))
		took := time.Since(start)
		slowest = max(slowest, took)
		if !errors.Is(err, store.ErrUnavailable) || !errors.Is(werr, store.ErrUnavailable) {
			t.Fatalf("Load and Put with Redis down: %v, %v; want ErrUnavailable", err, werr)
		}
		if took > 500*time.Millisecond {
			t.Errorf("a Load and a Put with Redis down took %s; they must fail fast", took)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("with Redis down, the slowest Load+Put took %s", slowest)
	if err := s.Health(); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Health with Redis down: %v", err)
	}

	srv.Restart()
	eventually(t, 5*time.Second, "Health clear after Redis is back", func() bool { return s.Health() == nil })
	c := nextChange(t, ch, 5*time.Second, "a reload after Redis came back", func(c store.Change) bool { return c.Whole() })
	st, err := s.Load(ctx)
	if err != nil || st.Version != c.Version || len(st.Overrides) != 1 {
		t.Errorf("after the outage: %d overrides at %s, %v; the reload said %s", len(st.Overrides), st.Version, err, c.Version)
	}
	if _, err := s.Put(ctx, "alice", storetest.Override("b", 2)); err != nil {
		t.Errorf("a write after the outage: %v", err)
	}
}

// A store opened while Redis is down opens, reports it, and connects by
// itself when Redis comes.
func TestRedisOpenWhileDown(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	srv.Stop()
	start := time.Now()
	s := openRedis(t, fast(srv.URL(), "reghost"))
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("OpenRedis with Redis down took %s", took)
	}
	if err := s.Health(); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Health of a store opened with Redis down: %v", err)
	}
	ch := s.Changes(t.Context())
	srv.Restart()
	nextChange(t, ch, 5*time.Second, "a reload once Redis is up", func(c store.Change) bool { return c.Whole() })
	eventually(t, 5*time.Second, "Health clear", func() bool { return s.Health() == nil })
	if _, err := s.Put(t.Context(), "alice", storetest.Override("a", 1)); err != nil {
		t.Error(err)
	}
}

// A Redis restarting with a large data set answers LOADING: the store
// reports it unavailable, never empty.
func TestRedisLoading(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, redistest.Persistent(), redistest.Args("--save", "", "--enable-debug-command", "yes"))
	s := openRedis(t, fast(srv.URL(), "reghost"))
	ctx := t.Context()
	want, err := s.Put(ctx, "alice", storetest.Override("a", 1))
	if err != nil {
		t.Fatal(err)
	}
	// Enough data that loading it takes a while: ~300 MB.
	srv.Do("DEBUG", "POPULATE", 2_500_000, "filler", 100)
	srv.Do("SAVE")
	srv.Kill()
	srv.StartAgain() // accepting connections, loading

	sawLoading := false
	for {
		st, err := s.Load(ctx)
		if err == nil {
			if st.Version != want || len(st.Overrides) != 1 {
				t.Fatalf("loaded %d overrides at %s; want the one written, at %s (never an empty set while loading)", len(st.Overrides), st.Version, want)
			}
			break
		}
		if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "loading") {
			t.Fatalf("Load while Redis loads: %v; want ErrUnavailable saying it is loading", err)
		}
		if !sawLoading {
			sawLoading = true
			if h := s.Health(); !errors.Is(h, store.ErrUnavailable) {
				t.Errorf("Health while Redis loads: %v", h)
			}
			if _, err := s.Put(ctx, "alice", storetest.Override("b", 2)); !errors.Is(err, store.ErrUnavailable) {
				t.Errorf("Put while Redis loads: %v", err)
			}
			other := openRedis(t, fast(srv.URL(), "reghost")) // opens all the same
			if h := other.Health(); !errors.Is(h, store.ErrUnavailable) {
				t.Errorf("Health of a store opened while Redis loads: %v", h)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !sawLoading {
		t.Fatal("Redis was never seen loading; give it more data")
	}
}

// After FLUSHALL: Load is the zero state, a write by a store that saw
// data is refused with a message saying what to do, and a restore
// (Replace) works, in a later epoch.
func TestRedisFlushed(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ctx := t.Context()
	a := openRedis(t, fast(srv.URL(), "reghost"))
	b := openRedis(t, fast(srv.URL(), "reghost"))
	for i := range 3 {
		if _, err := a.Put(ctx, "alice", storetest.Override(fmt.Sprintf("o%d", i), i)); err != nil {
			t.Fatal(err)
		}
	}
	before, err := b.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ch := b.Changes(ctx)
	srv.Flush()

	st, err := a.Load(ctx)
	if err != nil || st.Version != (store.Version{}) || len(st.Overrides) != 0 {
		t.Fatalf("Load after a flush: %+v, %v; want the zero state", st, err)
	}
	for name, s := range map[string]*store.Redis{"the writer": a, "a reader": b} {
		_, err := s.Put(ctx, "alice", storetest.Override("new", 9))
		if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "restore") {
			t.Errorf("a write by %s after the flush: %v; want ErrUnavailable saying to restore", name, err)
		}
		if err := s.Health(); err == nil || !strings.Contains(err.Error(), "holds no reghost data") {
			t.Errorf("Health of %s after the flush: %v", name, err)
		}
	}
	nextChange(t, ch, 3*time.Second, "the reader told of the flush", func(c store.Change) bool { return c.Version == store.Version{} })
	if v, err := a.Version(ctx); err != nil || v != (store.Version{}) {
		t.Errorf("the refused writes wrote something: version %s, %v", v, err)
	}

	v, err := a.Replace(ctx, "alice", before.Overrides)
	if err != nil {
		t.Fatalf("restore after a flush: %v", err)
	}
	if v.Epoch <= before.Version.Epoch {
		t.Errorf("the restore is at %s, not in an epoch after %s", v, before.Version)
	}
	nextChange(t, ch, 3*time.Second, "the restore", reaches(v))
	if err := b.Health(); err != nil {
		t.Errorf("Health after the restore: %v", err)
	}
	if v2, err := b.Put(ctx, "bob", storetest.Override("new", 9)); err != nil || !v.Next(v2) {
		t.Errorf("a write after the restore: %s, %v; want the one after %s", v2, err, v)
	}
}

// Redis going back behind what a store saw, with data still there (a
// failover that lost a write some replicas had heard of), starts a new
// epoch, so that no replica keeps the lost write while skipping the
// different write that takes its number.
func TestRedisLostWritesNewEpoch(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ctx := t.Context()
	a := openRedis(t, fast(srv.URL(), "reghost"))
	for i := range 3 {
		if _, err := a.Put(ctx, "alice", storetest.Override(fmt.Sprintf("o%d", i), i)); err != nil {
			t.Fatal(err)
		}
	}
	lost, err := a.Put(ctx, "alice", storetest.Override("lost", 9))
	if err != nil {
		t.Fatal(err)
	}
	// What a promoted replica that missed the last write holds: the write
	// undone, the version one back.
	srv.Do("HDEL", "{reghost}:overrides", "lost")
	srv.Do("HSET", "{reghost}:version", "n", lost.N-1, "id", "0-1")
	ch := a.Changes(ctx)
	c := nextChange(t, ch, 3*time.Second, "a new epoch", func(c store.Change) bool { return c.Version.Epoch > lost.Epoch })
	if !c.Whole() {
		t.Errorf("the new epoch came as %+v; readers must reload", c)
	}
	st, err := a.Load(ctx)
	if err != nil || st.Version.Epoch <= lost.Epoch || len(st.Overrides) != 3 {
		t.Errorf("after the new epoch: %d overrides at %s, %v", len(st.Overrides), st.Version, err)
	}
	if audit, _ := a.Audit(ctx, 1); len(audit) != 1 || audit[0].Op != store.OpReplaceAll || !strings.HasPrefix(audit[0].Who, "reghost") {
		t.Errorf("the new epoch's audit entry: %+v", audit)
	}
}

// Two stores on one Redis, two writers each: no write lost or applied
// twice, every writer's versions strictly increasing and all versions
// distinct, the audit trail complete with the writers' names.
func TestRedisConcurrentStores(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ctx := t.Context()
	stores := []*store.Redis{openRedis(t, fast(srv.URL(), "reghost")), openRedis(t, fast(srv.URL(), "reghost"))}
	v0, err := stores[0].Version(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const writers, each = 4, 50
	var (
		mu  sync.Mutex
		all []uint64
		wg  sync.WaitGroup
	)
	for w := range writers {
		s, who := stores[w%2], fmt.Sprintf("writer-%d", w)
		wg.Go(func() {
			var last store.Version
			for i := range each {
				id := fmt.Sprintf("%s-%02d", who, i)
				var v store.Version
				var err error
				switch i % 3 {
				case 0:
					v, err = s.Create(ctx, who, storetest.Override(id, i))
				case 1:
					v, err = s.Put(ctx, who, storetest.Override(id, i))
				default:
					v, err = s.Drain(ctx, who, store.Drain{Registry: id, By: who})
				}
				if err != nil {
					t.Errorf("%s: %v", who, err)
					return
				}
				if !last.Less(v) {
					t.Errorf("%s: version %s after %s", who, v, last)
				}
				last = v
				mu.Lock()
				all = append(all, v.N)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.Sort(all)
	if len(slices.Compact(slices.Clone(all))) != writers*each || all[0] != v0.N+1 || all[len(all)-1] != v0.N+writers*each {
		t.Errorf("versions %v..%v (%d distinct); want each of %d..%d once", all[0], all[len(all)-1], len(slices.Compact(slices.Clone(all))), v0.N+1, v0.N+writers*each)
	}
	st, err := stores[1].Load(ctx)
	wantDrains := writers * (each / 3)
	if err != nil || len(st.Overrides)+len(st.Drains) != writers*each || len(st.Drains) != wantDrains || st.Version.N != v0.N+writers*each {
		t.Errorf("load: %d overrides and %d drains at %s, %v", len(st.Overrides), len(st.Drains), st.Version, err)
	}
	audit, err := stores[0].Audit(ctx, 10_000)
	if err != nil || len(audit) != writers*each {
		t.Fatalf("audit: %d entries, %v; want %d", len(audit), err, writers*each)
	}
	byWho := map[string]int{}
	for i, e := range audit {
		byWho[e.Who]++
		if i > 0 && !e.Version.Less(audit[i-1].Version) {
			t.Errorf("audit not newest first: %s after %s", e.Version, audit[i-1].Version)
		}
	}
	for w := range writers {
		if n := byWho[fmt.Sprintf("writer-%d", w)]; n != each {
			t.Errorf("audit: %d entries by writer-%d, want %d", n, w, each)
		}
	}
}

// A write whose answer is lost is not sent again: the version moves by
// exactly one. The answer is lost two ways: the server stalls past the
// client's read timeout (DEBUG SLEEP) and applies the write after the
// client gave up, or the connection breaks after the server applied it
// (a proxy that drops the server's answer and the connection with it).
func TestRedisWriteNotRetried(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, redistest.Args("--enable-debug-command", "yes"))
	proxy := newDropProxy(t, srv.Addr())
	o := fast("redis://"+proxy.addr+"/0", "reghost")
	o.ReadTimeout = 200 * time.Millisecond
	s := openRedis(t, o)
	ctx := t.Context()
	direct := srv.Client()
	version := func() store.Version {
		var v store.Version
		eventually(t, 5*time.Second, "the version", func() bool {
			vals, err := direct.HMGet(ctx, "{reghost}:version", "epoch", "n").Result()
			if err != nil || vals[0] == nil {
				return false
			}
			_, err = fmt.Sscan(vals[0].(string)+" "+vals[1].(string), &v.Epoch, &v.N)
			return err == nil
		})
		return v
	}
	for i, lose := range []struct {
		name          string
		before, after func()
	}{
		{"timeout", func() {
			go srv.Do("DEBUG", "SLEEP", "1")
			time.Sleep(100 * time.Millisecond)
		}, func() {}},
		{"connection lost", func() { proxy.drop.Store(true) }, func() { proxy.drop.Store(false) }},
	} {
		if _, err := s.Put(ctx, "alice", storetest.Override("warm-up", i)); err != nil {
			t.Fatal(err)
		}
		v0 := version()
		lose.before()
		start := time.Now()
		_, err := s.Put(ctx, "alice", storetest.Override(fmt.Sprintf("lost-answer-%d", i), i))
		lose.after()
		if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "not retried") {
			t.Errorf("%s: a write whose answer was lost: %v; want ErrUnavailable saying it is not retried", lose.name, err)
		}
		t.Logf("%s: the write gave up after %s: %v", lose.name, time.Since(start).Round(time.Millisecond), err)
		time.Sleep(time.Second) // the stalled server wakes, anything resent arrives
		if v := version(); v != (store.Version{Epoch: v0.Epoch, N: v0.N + 1}) {
			t.Errorf("%s: version %s after one write at %s: it was applied %d times", lose.name, v, v0, int(v.N)-int(v0.N))
		}
	}
}

// dropProxy forwards TCP connections to a server; while drop is set, it
// closes a connection when the server answers, instead of forwarding
// the answer.
type dropProxy struct {
	addr string
	drop atomic.Bool
}

func newDropProxy(t *testing.T, target string) *dropProxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &dropProxy{addr: l.Addr().String()}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, s)
			mu.Unlock()
			wg.Go(func() { io.Copy(s, c); s.Close() })
			wg.Go(func() {
				buf := make([]byte, 64<<10)
				for {
					n, err := s.Read(buf)
					if n > 0 && p.drop.Load() {
						break
					}
					if n > 0 {
						if _, err := c.Write(buf[:n]); err != nil {
							break
						}
					}
					if err != nil {
						break
					}
				}
				c.Close()
				s.Close()
			})
		}
	})
	return p
}

// The data nodes' password comes from a file, read again at every new
// connection: a rotated password works without reopening the store.
func TestRedisPasswordFile(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, redistest.Args("--requirepass", "first-password"))
	file := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(file, []byte("first-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o := fast(srv.URL(), "reghost")
	o.PasswordFile = file
	s := openRedis(t, o)
	ctx := t.Context()
	if _, err := s.Put(ctx, "alice", storetest.Override("a", 1)); err != nil {
		t.Fatal(err)
	}
	client := srv.Client()
	client.Options().Password = "first-password"
	if err := client.Do(ctx, "CONFIG", "SET", "requirepass", "second-password").Err(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte("second-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := client.Do(ctx, "CLIENT", "KILL", "USER", "default", "SKIPME", "yes").Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "a write with the rotated password", func() bool {
		_, err := s.Put(ctx, "alice", storetest.Override("b", 2))
		return err == nil
	})
}

// OpenRedis fails for options that cannot work, never for Redis being
// away; the URL's form selects the mode.
func TestOpenRedisOptions(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "missing")
	for _, tc := range []struct {
		name string
		o    store.RedisOptions
		mode string // "" : an error containing err
		err  string
	}{
		{name: "standalone", o: store.RedisOptions{URL: "redis://127.0.0.1:1/0"}, mode: "standalone"},
		{name: "tls", o: store.RedisOptions{URL: "rediss://user:pw@127.0.0.1:1/2"}, mode: "standalone"},
		{name: "unix", o: store.RedisOptions{URL: "unix:///nonexistent/redis.sock"}, mode: "standalone"},
		{name: "sentinel", o: store.RedisOptions{URL: "redis://127.0.0.1:1/0?master_name=mymaster&addr=127.0.0.1:2"}, mode: "sentinel"},
		{name: "cluster", o: store.RedisOptions{URL: "redis://127.0.0.1:1?addr=127.0.0.1:2&addr=127.0.0.1:3"}, mode: "cluster"},
		{name: "empty URL", o: store.RedisOptions{}, err: "URL is empty"},
		{name: "bad scheme", o: store.RedisOptions{URL: "http://127.0.0.1:1"}, err: "invalid URL scheme"},
		{name: "unknown parameter", o: store.RedisOptions{URL: "redis://127.0.0.1:1/0?bogus=1"}, err: "unexpected option"},
		{name: "retries", o: store.RedisOptions{URL: "redis://127.0.0.1:1/0?max_retries=3"}, err: "never retries writes"},
		{name: "password twice", o: store.RedisOptions{URL: "redis://:pw@127.0.0.1:1/0", PasswordFile: "/etc/hostname"}, err: "keep one"},
		{name: "missing password file", o: store.RedisOptions{URL: "redis://127.0.0.1:1/0", PasswordFile: missing}, err: "password file"},
		{name: "missing sentinel password file", o: store.RedisOptions{URL: "redis://127.0.0.1:1/0?master_name=m", SentinelPasswordFile: missing}, err: "password file"},
		{name: "TLS files without rediss", o: store.RedisOptions{URL: "redis://127.0.0.1:1/0", TLS: store.RedisTLS{ServerName: "x"}}, err: "not rediss://"},
		{name: "missing CA", o: store.RedisOptions{URL: "rediss://127.0.0.1:1/0", TLS: store.RedisTLS{CAFile: missing}}, err: "TLS CA"},
		{name: "cert without key", o: store.RedisOptions{URL: "rediss://127.0.0.1:1/0", TLS: store.RedisTLS{CertFile: missing}}, err: "both"},
		{name: "prefix with a brace", o: store.RedisOptions{URL: "redis://127.0.0.1:1/0", Prefix: "a{b"}, err: "braces"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			defer cancel()
			s, err := store.OpenRedis(ctx, tc.o)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one saying %q", err, tc.err)
				}
				if strings.Contains(err.Error(), ":pw@") {
					t.Errorf("the error shows the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if s.Mode() != tc.mode {
				t.Errorf("mode %s, want %s", s.Mode(), tc.mode)
			}
			if err := s.Health(); !errors.Is(err, store.ErrUnavailable) {
				t.Errorf("Health with nothing listening: %v", err)
			} else if strings.Contains(err.Error(), ":pw@") {
				t.Errorf("Health shows the password: %v", err)
			}
		})
	}
}

// SIGKILL the primary under a writer: Sentinel promotes the replica,
// writes resume on it within seconds, no write that succeeded (WAIT 1:
// on the replica before it was answered) is lost, and a reader's
// subscription follows the new primary.
func TestRedisSentinelFailover(t *testing.T) {
	t.Parallel()
	sn := redistest.StartSentinel(t)
	ctx := t.Context()
	writer := openRedis(t, fast(sn.URL(), "reghost"))
	reader := openRedis(t, fast(sn.URL(), "reghost"))
	if writer.Mode() != "sentinel" {
		t.Fatalf("mode %s", writer.Mode())
	}
	ch := reader.Changes(ctx)

	var (
		acked               []string
		killedAt, resumedAt time.Time
		failed, unconfirmed int
	)
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		if i == 30 {
			sn.Primary.Kill()
			killedAt = time.Now()
		}
		id := fmt.Sprintf("w-%03d", i)
		_, err := writer.Put(ctx, "writer", storetest.Override(id, i))
		switch {
		case err == nil:
			acked = append(acked, id)
			if !killedAt.IsZero() && resumedAt.IsZero() {
				resumedAt = time.Now()
			}
		case errors.Is(err, store.ErrNotReplicated):
			unconfirmed++ // in Redis, but the admin was not told it is safe
		case errors.Is(err, store.ErrUnavailable):
			failed++
		default:
			t.Fatalf("write %d: %v", i, err)
		}
		if !resumedAt.IsZero() && len(acked) >= 60 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if resumedAt.IsZero() {
		t.Fatalf("writes did not resume within 30 s of the primary's death (%d failed)", failed)
	}
	t.Logf("the primary was killed; writes resumed after %s (%d failed, %d not confirmed by a replica); the new primary is %s (was %s)",
		resumedAt.Sub(killedAt).Round(time.Millisecond), failed, unconfirmed, sn.CurrentPrimary(), sn.Primary.Addr())
	if took := resumedAt.Sub(killedAt); took > 10*time.Second {
		t.Errorf("writes resumed %s after the primary died; documented: within 10 s", took)
	}
	st, err := writer.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, o := range st.Overrides {
		have[o.ID] = true
	}
	for _, id := range acked {
		if !have[id] {
			t.Errorf("override %s was acknowledged and is lost after the failover", id)
		}
	}
	// The reader's subscription is on the new primary: a write reaches it.
	v, err := writer.Put(ctx, "writer", storetest.Override("after-failover", 1))
	if err != nil && !errors.Is(err, store.ErrNotReplicated) {
		t.Fatal(err)
	}
	c := nextChange(t, ch, 5*time.Second, "a write on the new primary", reaches(v))
	if c.Version == v && c.Override == nil {
		t.Logf("the write came as %+v", c)
	}
	eventually(t, 5*time.Second, "the reader healthy", func() bool { return reader.Health() == nil })
}

// A Redis that may evict keys is warned about at open; writes wait for
// as many replicas as asked, and a write no replica confirmed is saved
// but reported with ErrNotReplicated and its version.
func TestRedisPrimaryChecks(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, redistest.Args("--maxmemory-policy", "allkeys-lru"))
	var logs logtest.Buffer
	o := fast(srv.URL(), "reghost")
	o.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
	o.WaitReplicas, o.WaitTimeout = 1, 100*time.Millisecond
	s := openRedis(t, o)
	if !strings.Contains(logs.String(), "maxmemory-policy is not noeviction") || !strings.Contains(logs.String(), "allkeys-lru") {
		t.Errorf("no warning about eviction in the log:\n%s", logs.String())
	}
	start := time.Now()
	v, err := s.Put(t.Context(), "alice", storetest.Override("a", 1))
	if !errors.Is(err, store.ErrNotReplicated) || v == (store.Version{}) {
		t.Fatalf("a write waiting for a replica that is not there: %s, %v; want its version and ErrNotReplicated", v, err)
	}
	if took := time.Since(start); took < 100*time.Millisecond || took > time.Second {
		t.Errorf("the write took %s; WAIT should have waited its 100 ms", took)
	}
	if got, err := s.Get(t.Context(), "a"); err != nil || got.ID != "a" {
		t.Errorf("the unconfirmed write is not in Redis: %+v, %v", got, err)
	}
	reg := prometheus.NewRegistry()
	o.WaitReplicas, o.Logger, o.Registerer = store.WaitAuto, nil, reg
	auto := openRedis(t, o)
	if _, err := auto.Put(t.Context(), "alice", storetest.Override("b", 2)); err != nil {
		t.Errorf("WaitAuto with no replica: %v; it should not wait", err)
	}
	// The metrics are there, and carry no address.
	if _, err := auto.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range families {
		names[f.GetName()] = true
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if strings.Contains(l.GetValue(), "127.0.0.1") {
					t.Errorf("%s has an address as a label: %s", f.GetName(), l)
				}
			}
		}
	}
	for _, want := range []string{"reghost_store_redis_up", "reghost_store_epoch", "reghost_store_version",
		"reghost_store_redis_last_message_age_seconds", "reghost_store_redis_changes_delivered_total",
		"reghost_store_redis_command_duration_seconds"} {
		if !names[want] {
			t.Errorf("metric %s is missing (have %v)", want, names)
		}
	}
}
