package connwatch

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// Short limits, so that the tests take a second or two; each test checks
// that its connection is closed by the limit it is about, the others
// being much longer.
const tick = 20 * time.Millisecond

// serve runs an HTTP server behind a Watch with cfg and returns its
// address. The handler answers at once, or after ?sleep=<duration>.
func serve(t *testing.T, cfg Config) (string, *Watch) {
	t.Helper()
	cfg.Tick = tick
	w := New(cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			if d, err := time.ParseDuration(r.URL.Query().Get("sleep")); err == nil {
				time.Sleep(d)
			}
			_, _ = io.WriteString(rw, "ok")
		}),
		ConnState: w.ConnState,
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	go func() { _ = srv.Serve(w.Listener(ln)) }()
	t.Cleanup(func() {
		cancel()
		_ = srv.Close()
		<-done
	})
	return ln.Addr().String(), w
}

const long = time.Minute

// closedWithin reports how long c took to be closed by the server, or
// fails after limit.
func closedWithin(t *testing.T, c net.Conn, r *bufio.Reader, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(limit))
	_, err := r.ReadByte()
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after %v", limit)
	}
	if err == nil {
		t.Fatal("the server sent something; want the connection closed")
	}
	return time.Since(start)
}

func dial(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

const wholeRequest = "GET / HTTP/1.1\r\nHost: x\r\n\r\n"

// request sends a whole request and reads its response.
func request(t *testing.T, c net.Conn, r *bufio.Reader) {
	t.Helper()
	exchange(t, c, r, wholeRequest)
}

// exchange sends raw and reads one response.
func exchange(t *testing.T, c net.Conn, r *bufio.Reader, raw string) {
	t.Helper()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

func TestNewConnectionThatSendsNothing(t *testing.T) {
	t.Parallel()
	addr, _ := serve(t, Config{Header: 200 * time.Millisecond, Request: long, Idle: long})
	c, r := dial(t, addr)
	if d := closedWithin(t, c, r, 5*time.Second); d < 150*time.Millisecond {
		t.Errorf("closed after %v, before the 200ms limit", d)
	}
}

func TestSlowHeader(t *testing.T) {
	t.Parallel()
	addr, _ := serve(t, Config{Header: 200 * time.Millisecond, Request: long, Idle: long})
	c, r := dial(t, addr)
	_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n") // and never the blank line
	closedWithin(t, c, r, 5*time.Second)
}

// After a first request, a connection that starts the next and stalls
// is cut off by the header's limit, not the much longer idle one.
func TestSlowHeaderOnKeptAliveConnection(t *testing.T) {
	t.Parallel()
	addr, _ := serve(t, Config{Header: 200 * time.Millisecond, Request: long, Idle: long})
	c, r := dial(t, addr)
	request(t, c, r)
	_, _ = io.WriteString(c, "GET / HT")
	closedWithin(t, c, r, 5*time.Second)
}

// A request pipelined behind another, its header left unfinished, is
// already buffered by net/http when the first is answered: the idle
// limit bounds it (see the package comment), so it cannot outstay an
// idle connection.
func TestPipelinedPartialHeaderIsBounded(t *testing.T) {
	t.Parallel()
	addr, _ := serve(t, Config{Header: long, Request: long, Idle: 300 * time.Millisecond})
	c, r := dial(t, addr)
	exchange(t, c, r, wholeRequest+"GET / HTTP/1.1\r\nHost: x\r\n")
	closedWithin(t, c, r, 5*time.Second)
}

func TestIdleConnection(t *testing.T) {
	t.Parallel()
	addr, _ := serve(t, Config{Header: long, Request: long, Idle: 300 * time.Millisecond})
	c, r := dial(t, addr)
	request(t, c, r)
	if d := closedWithin(t, c, r, 5*time.Second); d < 250*time.Millisecond {
		t.Errorf("closed after %v idle, before the 300ms limit", d)
	}
}

func TestSlowResponse(t *testing.T) {
	t.Parallel()
	addr, _ := serve(t, Config{Header: long, Request: 200 * time.Millisecond, Idle: long})
	c, r := dial(t, addr)
	_, _ = io.WriteString(c, "GET /?sleep=3s HTTP/1.1\r\nHost: x\r\n\r\n")
	closedWithin(t, c, r, 2*time.Second)
}

// A connection in steady use, for several times every limit, is never
// cut off, and a closed one is forgotten.
func TestBusyConnectionIsKept(t *testing.T) {
	t.Parallel()
	// Limits of 300ms against requests every 20ms: only a stall of the
	// test itself longer than the limit, on a loaded machine, could look
	// like an idle connection.
	addr, w := serve(t, Config{Header: 300 * time.Millisecond, Request: 300 * time.Millisecond, Idle: 300 * time.Millisecond})
	var dials atomic.Int32
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
			dials.Add(1)
			return (&net.Dialer{}).DialContext(ctx, network, a)
		},
	}}
	for end := time.Now().Add(1500 * time.Millisecond); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		resp, err := client.Get("http://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("%d connections for requests every 20ms, want 1: a busy connection was closed", n)
	}
	client.CloseIdleConnections()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		w.mu.Lock()
		n := len(w.conns)
		w.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections still tracked after the client closed its only one", n)
		}
	}
}

func TestDefaults(t *testing.T) {
	w := New(Config{})
	if w.cfg.Header != 10*time.Second || w.cfg.Request != 10*time.Second || w.cfg.Idle != 120*time.Second || w.cfg.Tick != time.Second {
		t.Errorf("defaults = %+v", w.cfg)
	}
	if got := w.ticksOf(10 * time.Second); got != 10 {
		t.Errorf("10 s is %d ticks of 1 s", got)
	}
	if got := w.ticksOf(time.Millisecond); got != 1 {
		t.Errorf("1 ms is %d ticks of 1 s, want at least 1", got)
	}
}
