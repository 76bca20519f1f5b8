package httpapi

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
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
	h, err := NewPublic(PublicConfig{Engine: testEngine(t), AccessLog: NewAccessLogHandler(&buf),
		ClientIP: ClientIPConfig{Header: "X-Forwarded-For", TrustedProxies: testTrusted}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	do(t, "GET", srv.URL+"/v2/pause/manifests/3.9?n=1", map[string]string{"X-Forwarded-For": "89.160.20.112", "Authorization": "Bearer secret-token"})
	do(t, "GET", srv.URL+"/nope/%22%0A%ff", nil)
	// Refused: an escaped CR LF never reaches a Location.
	if r := do(t, "GET", srv.URL+"/v2/x%0D%0ASet-Cookie:%20a=b", nil); r.status != 400 {
		t.Errorf("escaped CR LF: %d, want 400", r.status)
	}
	lines := accessLines(t, &buf)
	if len(lines) != 3 || lines[2]["path"] != "/v2/x%0D%0ASet-Cookie:%20a=b" || lines[2]["status"] != 400.0 {
		t.Errorf("the refused request's line: %v", lines[len(lines)-1])
	}
	if len(lines) < 2 {
		t.Fatalf("%d lines", len(lines))
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
	if second := lines[1]; second["path"] != "/nope/%22%0A%ff" || second["status"] != 404.0 || second["route"] != "unmatched" {
		t.Errorf("second line: %v", second)
	}
}

// newLoggingServer is a public server, not yet started, trusting
// loopback, with its access log.
func newLoggingServer(t *testing.T) (*httptest.Server, *logtest.Buffer) {
	t.Helper()
	buf := new(logtest.Buffer)
	h, err := NewPublic(PublicConfig{Engine: testEngine(t), AccessLog: NewAccessLogHandler(buf),
		ClientIP: ClientIPConfig{TrustedProxies: testTrusted}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	t.Cleanup(srv.Close)
	return srv, buf
}

// A connection's requests each log their own decision, and a request
// that decides nothing logs none.
func TestAccessLogOneConnection(t *testing.T) {
	t.Parallel()
	srv, buf := newLoggingServer(t)
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
	srv, buf := newLoggingServer(t)
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
