package datasync

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/reghost/reghost/internal/store/redistest"
)

// A publish writes the content in chunks under a new version, switches
// the pointer and says so on the channel; fetching gives it back whole.
// Publishing the same content again writes nothing. The replaced
// version's content expires KeepOld later, not at once.
func TestPublishAndFetch(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c := newTestClient(t, srv, "", func(cfg *ClientConfig) { cfg.KeepOld = 400 * time.Millisecond })
	ps := srv.Client().Subscribe(t.Context(), "{reghost}:data")
	if _, err := ps.Receive(t.Context()); err != nil {
		t.Fatal(err)
	}

	if _, ok, err := c.Current(t.Context(), "geoip/asn"); ok || err != nil {
		t.Fatalf("before any publish: %v, %v", ok, err)
	}
	v1, sum1 := content(2500, 1)
	built := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	p, published, err := c.publish(t.Context(), Pointer{Name: "geoip/asn", Version: "20261201", SHA256: sum1, Size: 2500,
		Source: "https://download.maxmind.com/…", BuildTime: built}, bytes.NewReader(v1))
	if err != nil || !published {
		t.Fatalf("publish: %v, %v", published, err)
	}
	if p.Chunks != 3 || p.ID == "" || p.PublishedAt.IsZero() {
		t.Errorf("pointer %+v: want 3 chunks of at most 1000 bytes", p)
	}
	if n := srv.Do("HLEN", "{reghost}:data:geoip/asn:"+p.ID); n != int64(3) {
		t.Errorf("content hash has %v fields", n)
	}
	if ttl := srv.Do("TTL", "{reghost}:data:geoip/asn:"+p.ID); ttl != int64(-1) {
		t.Errorf("the current version's content expires (TTL %v)", ttl)
	}
	msg, err := ps.ReceiveMessage(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var m message
	if err := json.Unmarshal([]byte(msg.Payload), &m); err != nil || m != (message{"geoip/asn", p.ID, sum1}) {
		t.Errorf("message %s", msg.Payload)
	}

	cur, ok, err := c.Current(t.Context(), "geoip/asn")
	if err != nil || !ok || cur.ID != p.ID || cur.SHA256 != sum1 || cur.Size != 2500 || cur.Version != "20261201" ||
		!cur.BuildTime.Equal(built) || !cur.PublishedAt.Equal(p.PublishedAt) || cur.Source != p.Source {
		t.Fatalf("Current: %+v, %v, %v; published %+v", cur, ok, err, p)
	}
	var got bytes.Buffer
	if err := c.Fetch(t.Context(), cur, &got); err != nil || !bytes.Equal(got.Bytes(), v1) {
		t.Fatalf("Fetch: %d bytes, %v", got.Len(), err)
	}

	// The same content: nothing written, the pointer as it was.
	again, published, err := c.publish(t.Context(), Pointer{Name: "geoip/asn", Version: "20261201", SHA256: sum1, Size: 2500}, bytes.NewReader(v1))
	if err != nil || published || again.ID != p.ID {
		t.Errorf("publishing the same content again: %+v, %v, %v", again, published, err)
	}

	// A new version: the old content stays for a reader mid-fetch, then
	// expires.
	v2, _ := content(1200, 2)
	p2 := put(t, c, "geoip/asn", v2)
	if ttl := srv.Do("PTTL", "{reghost}:data:geoip/asn:"+p.ID).(int64); ttl <= 0 || ttl > 400 {
		t.Errorf("the replaced version's content: PTTL %d, want it expiring within 400 ms", ttl)
	}
	got.Reset()
	if err := c.Fetch(t.Context(), p, &got); err != nil || !bytes.Equal(got.Bytes(), v1) {
		t.Errorf("fetching the replaced version before it expires: %v", err)
	}
	time.Sleep(600 * time.Millisecond)
	if err := c.Fetch(t.Context(), p, &got); !errors.Is(err, ErrCorrupt) || !errors.Is(err, errChunkGone) {
		t.Errorf("fetching an expired version: %v", err)
	}
	got.Reset()
	if err := c.Fetch(t.Context(), p2, &got); err != nil || !bytes.Equal(got.Bytes(), v2) {
		t.Errorf("fetching the new version: %v", err)
	}
}

// What the pointer promises is checked: a content that is not what it
// says is ErrCorrupt, whichever way it is wrong.
func TestFetchRefusesCorruption(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c := newTestClient(t, srv, "", nil)
	b, _ := content(2500, 3)
	p := put(t, c, "cloud/aws", b)
	key := "{reghost}:data:cloud/aws:" + p.ID
	for _, tt := range []struct {
		name    string
		corrupt func()
		want    string
	}{
		{"a byte changed", func() { srv.Do("HSET", key, "1", append([]byte{b[1000] ^ 1}, b[1001:2000]...)) }, "SHA-256"},
		{"a chunk cut short", func() { srv.Do("HSET", key, "2", b[2000:2400]) }, "2400 bytes, the pointer says 2500"},
		{"a chunk too long", func() { srv.Do("HSET", key, "0", append(b[:1000:1000], b[:600]...)) }, "more than the 2500 bytes"},
		{"a chunk gone", func() { srv.Do("HDEL", key, "1") }, "chunk 1 of 3"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for i := 0; i < 3; i++ {
				srv.Do("HSET", key, i, b[i*1000:min(2500, (i+1)*1000)])
			}
			tt.corrupt()
			err := c.Fetch(t.Context(), p, &bytes.Buffer{})
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want ErrCorrupt saying %q", err, tt.want)
			}
		})
	}
	// A pointer that does not decode is corrupt too.
	srv.Do("HSET", "{reghost}:data:cloud/aws", "size", "-1")
	if _, _, err := c.Current(t.Context(), "cloud/aws"); !errors.Is(err, ErrCorrupt) {
		t.Errorf("a pointer with size -1: %v", err)
	}
	// A publish replaces it.
	b2, _ := content(300, 4)
	p2 := put(t, c, "cloud/aws", b2)
	if cur, ok, err := c.Current(t.Context(), "cloud/aws"); err != nil || !ok || cur.ID != p2.ID {
		t.Errorf("after a publish over a corrupt pointer: %+v, %v, %v", cur, ok, err)
	}
}

// The lock stops a second publisher of the same data set (and only of
// that one) until the first is done, and only its holder releases it; a
// content that is not what the loader checked is not published.
func TestPublishLock(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c := newTestClient(t, srv, "", nil)
	held, err := c.lock(t.Context(), "geoip/country")
	if err != nil {
		t.Fatal(err)
	}
	b, sum := content(1500, 5)
	start := time.Now()
	_, _, err = c.publish(t.Context(), Pointer{Name: "geoip/country", SHA256: sum, Size: 1500}, bytes.NewReader(b))
	if !errors.Is(err, ErrLocked) || time.Since(start) < 200*time.Millisecond {
		t.Fatalf("a publish while another holds the lock: %v after %v, want ErrLocked after LockWait", err, time.Since(start))
	}
	if _, ok, _ := c.Current(t.Context(), "geoip/country"); ok {
		t.Fatal("a publisher without the lock switched the pointer")
	}
	if n := srv.Do("KEYS", "{reghost}:data:geoip/country:*").([]any); len(n) != 0 {
		t.Errorf("a publisher without the lock wrote %v", n)
	}
	put(t, c, "geoip/asn", b) // another data set is not locked

	// A release by another token leaves the lock; the holder's frees it.
	other := &lock{c: c, key: held.key, token: "not-the-holder"}
	if err := other.release(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := other.refresh(t.Context()); err == nil {
		t.Error("a lock was refreshed by another token")
	}
	if srv.Do("GET", held.key) != held.token {
		t.Fatal("another token released the lock")
	}
	if err := held.release(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, published, err := c.publish(t.Context(), Pointer{Name: "geoip/country", SHA256: sum, Size: 1500}, bytes.NewReader(b)); err != nil || !published {
		t.Fatalf("after the release: %v, %v", published, err)
	}
	if v := srv.Do("EXISTS", held.key); v != int64(0) {
		t.Error("the lock is still there after a publish")
	}

	// The file changed since the loader checked it.
	b2, _ := content(1500, 6)
	_, checked := content(1500, 10)
	_, _, err = c.publish(t.Context(), Pointer{Name: "geoip/country", SHA256: checked, Size: 1500}, bytes.NewReader(b2))
	if err == nil || !strings.Contains(err.Error(), "changed since it was checked") {
		t.Errorf("a content that is not the checked one: %v", err)
	}
	// Only the current version's content is kept for good; the lock is
	// released.
	kept := 0
	for _, k := range srv.Do("KEYS", "{reghost}:data:geoip/country:*").([]any) {
		if srv.Do("TTL", k) == int64(-1) {
			kept++
		}
	}
	if kept != 1 {
		t.Errorf("%d versions kept without expiry, want the current one", kept)
	}
	if v := srv.Do("EXISTS", "{reghost}:data-lock:geoip/country"); v != int64(0) {
		t.Error("a failed publish left its lock")
	}
}

// A publisher whose lock expired (a pause longer than LockTTL) and was
// taken by another does not switch the pointer.
func TestPublishLostLock(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c := newTestClient(t, srv, "", func(cfg *ClientConfig) { cfg.LockTTL = 50 * time.Millisecond })
	b, sum := content(3000, 7)
	// A reader that pauses past the lock's expiry after the first chunk.
	r := &pausingReader{r: bytes.NewReader(b), after: 1000, pause: func() {
		time.Sleep(150 * time.Millisecond)
		srv.Do("SET", "{reghost}:data-lock:cloud/gcp", "someone-else")
	}}
	_, _, err := c.publish(t.Context(), Pointer{Name: "cloud/gcp", SHA256: sum, Size: 3000}, r)
	if err == nil || !strings.Contains(err.Error(), "lock") {
		t.Fatalf("a publisher that lost its lock: %v", err)
	}
	if _, ok, _ := c.Current(t.Context(), "cloud/gcp"); ok {
		t.Error("a publisher that lost its lock switched the pointer")
	}
	if srv.Do("GET", "{reghost}:data-lock:cloud/gcp") != "someone-else" {
		t.Error("a publisher released a lock that was no longer its own")
	}
}

// pausingReader calls pause once, after the first `after` bytes.
type pausingReader struct {
	r     *bytes.Reader
	after int
	n     int
	pause func()
}

func (p *pausingReader) Read(b []byte) (int, error) {
	if p.n >= p.after && p.pause != nil {
		p.pause()
		p.pause = nil
	}
	if p.n < p.after && len(b) > p.after-p.n {
		b = b[:p.after-p.n]
	}
	n, err := p.r.Read(b)
	p.n += n
	return n, err
}

// Every key is in the prefix's hash slot: a publish, a fetch, the
// loader state and a server following the channel work on a Redis
// Cluster.
func TestPublishCluster(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t)
	c := newClusterClient(t, cl)
	b, _ := content(2500, 8)
	p := put(t, c, "cloud/oracle", b)
	var got bytes.Buffer
	if err := c.Fetch(t.Context(), p, &got); err != nil || !bytes.Equal(got.Bytes(), b) {
		t.Fatalf("fetch on a Cluster: %v", err)
	}
	st := c.State()
	if err := st.Save(t.Context(), stateWith("cloud/oracle", p.SHA256)); err != nil {
		t.Fatal(err)
	}
	if got, err := c.State().Load(t.Context()); err != nil || got.Sets["cloud/oracle"].SHA256 != p.SHA256 {
		t.Fatalf("state on a Cluster: %+v, %v", got, err)
	}

	dest := filepath.Join(t.TempDir(), "oracle.json")
	sy, err := NewSyncer(SyncerConfig{Client: newClusterClient(t, cl), Poll: time.Minute,
		Targets: []Target{{Name: "cloud/oracle", Path: dest, Check: func(string) error { return nil }}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { sy.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	time.Sleep(200 * time.Millisecond) // subscribed
	b2, _ := content(1000, 9)
	put(t, c, "cloud/oracle", b2)
	for start := time.Now(); ; time.Sleep(10 * time.Millisecond) {
		if got, _ := os.ReadFile(dest); bytes.Equal(got, b2) {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatal("a server on a Cluster did not follow a publish")
		}
	}
}
