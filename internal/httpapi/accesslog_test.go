package httpapi

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reghost/reghost/internal/logtest"
)

// accessLines returns the JSON lines written to buf, decoded.
func accessLines(t *testing.T, buf *logtest.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(buf.String()))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("access log line is not JSON: %v: %s", err, sc.Bytes())
		}
		out = append(out, m)
	}
	return out
}

func TestAccessLog(t *testing.T) {
	t.Parallel()
	var buf logtest.Buffer
	al := NewAccessLog(&buf)
	h, err := NewPublic(PublicConfig{Engine: testEngine(t), AccessLog: al,
		ClientIP: ClientIPConfig{Header: "X-Forwarded-For", TrustedProxies: testTrusted}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	do(t, "GET", srv.URL+"/v2/pause/manifests/3.9?n=1", map[string]string{"X-Forwarded-For": "89.160.20.112", "Authorization": "Bearer secret-token"})
	do(t, "GET", srv.URL+"/nope/%22%0A%ff", nil)
	if len(accessLines(t, &buf)) != 0 {
		t.Error("lines written before Flush")
	}
	if err := al.Flush(); err != nil {
		t.Fatal(err)
	}
	lines := accessLines(t, &buf)
	if len(lines) != 2 {
		t.Fatalf("%d lines", len(lines))
	}
	// Lines of different connections may come out of order (they are
	// flushed by shard), and the client may have used two.
	if lines[0]["route"] != "/v2/*" {
		lines[0], lines[1] = lines[1], lines[0]
	}
	first := lines[0]
	for k, want := range map[string]any{
		"level": "INFO", "msg": "access", "listener": "public", "method": "GET",
		"path": "/v2/pause/manifests/3.9", "route": "/v2/*", "status": 307.0,
		"client": "89.160.20.112", "reason": "country:SE", "registry": "hub",
	} {
		if first[k] != want {
			t.Errorf("%s = %v, want %v", k, first[k], want)
		}
	}
	if _, err := time.Parse(time.RFC3339Nano, first["time"].(string)); err != nil {
		t.Error(err)
	}
	if strings.Contains(buf.String(), "secret-token") {
		t.Error("the access log holds the Authorization header")
	}
	if second := lines[1]; second["path"] != "/nope/\"\n\ufffd" || second["status"] != 404.0 || second["route"] != "unmatched" {
		t.Errorf("second line: %v", second)
	}
}

func TestAppendJSONEscaped(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"plain", `q"b\s`, "\x00\x1f\n\r\t", "é→😀", "bad\xffutf8", "", "/v2/a\"b", "/v2/é", "tail\x7f\n"} {
		got := appendJSONEscaped(nil, s)
		var back string
		if err := json.Unmarshal(append(append([]byte{'"'}, got...), '"'), &back); err != nil {
			t.Fatalf("%q -> %s: %v", s, got, err)
		}
		want, _ := json.Marshal(s)
		var wantBack string
		json.Unmarshal(want, &wantBack)
		if back != wantBack {
			t.Errorf("%q round-trips to %q, want %q", s, back, wantBack)
		}
	}
}

func BenchmarkAccessLog(b *testing.B) {
	l := NewAccessLog(discard{})
	e := &accessEntry{start: time.Now(), listener: "public", method: http.MethodGet, path: "/v2/pause/manifests/3.9",
		route: "/v2/*", status: 307, client: netip.MustParseAddr("89.160.20.112"), peer: "127.0.0.1:5555", reason: "country:SE", registry: "hub"}
	var n atomic.Int32
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		e := *e // each goroutine a connection of its own
		e.peer = "127.0.0.1:" + strconv.Itoa(5555+int(n.Add(1)))
		for pb.Next() {
			l.log(&e)
		}
	})
}

// Lines from many connections at once come out whole, each once, and a
// connection's lines in order, however the shards fill and flush.
func TestAccessLogConcurrent(t *testing.T) {
	t.Parallel()
	var buf logtest.Buffer
	l := NewAccessLog(&buf)
	const conns, perConn = 40, 500
	var wg sync.WaitGroup
	for c := range conns {
		wg.Go(func() {
			peer := "127.0.0.1:" + strconv.Itoa(10000+c)
			for i := range perConn {
				l.log(&accessEntry{start: time.Now(), listener: "public", method: "GET", path: "/v2/" + strconv.Itoa(i),
					route: "/v2/*", status: 307, peer: peer, reason: "default", registry: "k8s"})
			}
		})
	}
	wg.Wait()
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	next := map[string]int{}
	lines := accessLines(t, &buf)
	for _, m := range lines {
		peer, path := m["peer"].(string), m["path"].(string)
		if want := "/v2/" + strconv.Itoa(next[peer]); path != want {
			t.Fatalf("%s: %s after %d lines, want %s", peer, path, next[peer], want)
		}
		next[peer]++
	}
	if len(lines) != conns*perConn {
		t.Errorf("%d lines, want %d", len(lines), conns*perConn)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// The cached stamp must be what time.RFC3339Nano gives, whatever the
// nanoseconds (trailing zeros trimmed, none at all), the zone, and however
// the seconds come and go.
func TestStampCacheMatchesRFC3339Nano(t *testing.T) {
	stockholm, err := time.LoadLocation("Europe/Stockholm")
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 3, 29, 0, 59, 58, 0, time.UTC) // Stockholm's DST starts at 01:00 UTC
	var c stampCache
	for i, ns := range []int{0, 1, 10, 120_000_000, 999_999_999, 500_000_000, 0, 123_456_789, 100} {
		for _, loc := range []*time.Location{time.UTC, stockholm, time.FixedZone("", -(3*3600 + 1800))} {
			tm := base.Add(time.Duration(i) * 700 * time.Millisecond).Truncate(time.Second).Add(time.Duration(ns)).In(loc)
			got := string(c.append(nil, tm))
			if want := tm.Format(time.RFC3339Nano); got != want {
				t.Errorf("%v: got %q, want %q", tm, got, want)
			}
		}
	}
}

// newLoggingServer is a public server, not yet started, as the app runs
// it (with ConnContext), trusting loopback, with its access log.
func newLoggingServer(t *testing.T) (*httptest.Server, *AccessLog, *logtest.Buffer) {
	t.Helper()
	buf := new(logtest.Buffer)
	al := NewAccessLog(buf)
	h, err := NewPublic(PublicConfig{Engine: testEngine(t), AccessLog: al, ClientIP: ClientIPConfig{TrustedProxies: testTrusted}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnContext = ConnContext
	t.Cleanup(srv.Close)
	return srv, al, buf
}

// On a server with ConnContext a connection's requests note their
// decisions in one place (requestInfo): each line must still carry its
// own request's decision, and a request that decides nothing none.
func TestAccessLogOneConnection(t *testing.T) {
	t.Parallel()
	srv, al, buf := newLoggingServer(t)
	srv.Start()
	transport := &http.Transport{MaxConnsPerHost: 1}
	defer transport.CloseIdleConnections()
	requests := []struct{ path, realIP, reason string }{
		{"/", "89.160.20.112", "country:SE"},
		{"/healthz", "1.0.0.1", ""},
		{"/v2/pause/manifests/3.9", "1.0.0.1", "asn:15169"},
		{"/nope", "89.160.20.112", ""},
		{"/", "2a02:d180::1", "continent:EU"},
	}
	for _, r := range requests {
		req, _ := http.NewRequest("GET", srv.URL+r.path, nil)
		req.Header.Set("X-Real-IP", r.realIP)
		resp, err := transport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body) // read to the end, or the connection is not reused
		resp.Body.Close()
	}
	if err := al.Flush(); err != nil {
		t.Fatal(err)
	}
	lines := accessLines(t, buf)
	if len(lines) != len(requests) {
		t.Fatalf("%d lines, want %d", len(lines), len(requests))
	}
	for i, r := range requests {
		m := lines[i]
		if m["peer"] != lines[0]["peer"] {
			t.Fatalf("line %d from %v, line 0 from %v: the requests did not share a connection", i, m["peer"], lines[0]["peer"])
		}
		client := ""
		if r.reason != "" {
			client = r.realIP
		}
		if m["path"] != r.path || m["reason"] != r.reason || m["client"] != client {
			t.Errorf("line %d: path %v, reason %q, client %q; want %s, %q, %q", i, m["path"], m["reason"], m["client"], r.path, r.reason, client)
		}
	}
}

// HTTP/2 serves a connection's requests at once: each must keep its own
// decision (the race detector watches the rest).
func TestAccessLogHTTP2(t *testing.T) {
	t.Parallel()
	srv, al, buf := newLoggingServer(t)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	client := srv.Client()
	want := map[string]string{"89.160.20.112": "country:SE", "1.0.0.1": "asn:15169", "2a02:d180::1": "continent:EU", "192.168.0.7": "cidr:192.168.0.0/24"}
	var wg sync.WaitGroup
	var proto atomic.Value
	for i := range 200 {
		wg.Go(func() {
			ip := [...]string{"89.160.20.112", "1.0.0.1", "2a02:d180::1", "192.168.0.7"}[i%4]
			req, _ := http.NewRequest("GET", srv.URL+"/", nil)
			req.Header.Set("X-Real-IP", ip)
			resp, err := client.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			proto.Store(resp.Proto)
			resp.Body.Close()
		})
	}
	wg.Wait()
	if p := proto.Load(); p != "HTTP/2.0" {
		t.Fatalf("served over %v, want HTTP/2.0", p)
	}
	if err := al.Flush(); err != nil {
		t.Fatal(err)
	}
	lines := accessLines(t, buf)
	if len(lines) != 200 {
		t.Fatalf("%d lines, want 200", len(lines))
	}
	seen := map[string]int{}
	for _, m := range lines {
		c, _ := m["client"].(string)
		if reason, ok := want[c]; !ok || m["reason"] != reason {
			t.Errorf("client %q logged with reason %v, want %q", c, m["reason"], reason)
		}
		seen[c]++
	}
	for c := range want {
		if seen[c] != 50 {
			t.Errorf("%d lines for client %s, want 50", seen[c], c)
		}
	}
}
