// Package connwatch closes HTTP connections that stay too long in one
// phase: sending a request's header, being answered, or idle between
// requests. It protects a server from clients that open connections and
// then trickle bytes or go quiet (slowloris), as http.Server's
// ReadHeaderTimeout, ReadTimeout and IdleTimeout do, at less cost: those
// move each connection's read deadline twice a request, a runtime timer
// update each time, which was 3% of reghost's CPU a request under load
// (bench/ab, in both orders). Here a request costs a few atomic loads and
// stores, and one goroutine looks at every connection once a tick.
//
// A request's header is timed from the Read that brings its first byte.
// The start of a request pipelined behind another and read with it is
// already in net/http's buffer, so its header is under the idle limit
// until another byte of it arrives, and the header's limit from then (as
// with net/http's deadlines when fewer than 4 of its bytes came early).
//
// Limits are rounded up to whole ticks (1 s by default), and a connection
// over its limit is closed at most one tick later. Use it on a server
// whose handlers answer quickly: a request still being answered after the
// Request limit is cut off too.
package connwatch

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Config sets the limits. Zero values take the defaults.
type Config struct {
	// Header is the longest a client may take to send a request's header,
	// from its first byte, or to send any byte at all on a new
	// connection. Default 10 s.
	Header time.Duration
	// Request is the longest from a request's header to the end of its
	// response. Default 10 s.
	Request time.Duration
	// Idle is the longest a connection may wait for its next request.
	// Default 120 s.
	Idle time.Duration
	// Tick is how often connections are looked at. Default 1 s.
	Tick time.Duration
	// Logger gets a debug line for every connection closed; nil discards.
	Logger *slog.Logger
}

// Watch tracks the connections of one server. Serve it a listener from
// Listener, set its ConnState as the server's, and Run it.
type Watch struct {
	cfg   Config
	ticks atomic.Int64 // a coarse clock: ticks since Run started

	mu    sync.Mutex
	conns map[*conn]struct{}
}

// New returns a Watch with cfg's limits.
func New(cfg Config) *Watch {
	if cfg.Header <= 0 {
		cfg.Header = 10 * time.Second
	}
	if cfg.Request <= 0 {
		cfg.Request = 10 * time.Second
	}
	if cfg.Idle <= 0 {
		cfg.Idle = 120 * time.Second
	}
	if cfg.Tick <= 0 {
		cfg.Tick = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Watch{cfg: cfg, conns: make(map[*conn]struct{})}
}

// phase is where a connection is; each has its own limit.
type phase int32

const (
	phaseWaiting phase = iota // new: no byte yet
	phaseHeader               // a request's first byte read, its header not all
	phaseActive               // the header read, the response not finished
	phaseIdle                 // between requests
	phaseDone                 // closed or hijacked: no longer watched
)

var phaseNames = [...]string{"waiting for a request", "sending a request header", "being answered", "idle", "done"}

// conn is an accepted connection and its phase, which net/http's
// connection goroutine (through ConnState and Read) and the watcher share.
type conn struct {
	net.Conn
	w     *Watch
	phase atomic.Int32
	since atomic.Int64 // the tick the phase began
}

// Read notes a request's first byte: the header's limit runs from there,
// as http.Server's ReadHeaderTimeout does.
func (c *conn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		if p := phase(c.phase.Load()); p == phaseWaiting || p == phaseIdle {
			c.set(phaseHeader)
		}
	}
	return n, err
}

// CloseWrite keeps net/http's graceful close of TCP connections.
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func (c *conn) set(p phase) {
	// since first: the watcher reads phase, then since, and must not
	// pair a new phase with an old start.
	c.since.Store(c.w.ticks.Load())
	c.phase.Store(int32(p))
}

// Listener returns ln with every accepted connection watched.
func (w *Watch) Listener(ln net.Listener) net.Listener { return listener{ln, w} }

type listener struct {
	net.Listener
	w *Watch
}

func (l listener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	c := &conn{Conn: nc, w: l.w}
	c.set(phaseWaiting)
	l.w.mu.Lock()
	l.w.conns[c] = struct{}{}
	l.w.mu.Unlock()
	return c, nil
}

// ConnState is the server's http.Server.ConnState.
func (w *Watch) ConnState(nc net.Conn, s http.ConnState) {
	c, ok := nc.(*conn)
	if !ok {
		return // not from Listener
	}
	switch s {
	case http.StateActive:
		c.set(phaseActive)
	case http.StateIdle:
		c.set(phaseIdle)
	case http.StateHijacked, http.StateClosed:
		c.phase.Store(int32(phaseDone))
		w.mu.Lock()
		delete(w.conns, c)
		w.mu.Unlock()
	}
}

// Run closes connections over their phase's limit, once a tick, until ctx
// is done.
func (w *Watch) Run(ctx context.Context) {
	t := time.NewTicker(w.cfg.Tick)
	defer t.Stop()
	limits := [...]int64{
		phaseWaiting: w.ticksOf(w.cfg.Header),
		phaseHeader:  w.ticksOf(w.cfg.Header),
		phaseActive:  w.ticksOf(w.cfg.Request),
		phaseIdle:    w.ticksOf(w.cfg.Idle),
	}
	var over []*conn
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := w.ticks.Add(1)
		w.mu.Lock()
		for c := range w.conns {
			p := phase(c.phase.Load())
			if p != phaseDone && now-c.since.Load() > limits[p] {
				over = append(over, c)
				delete(w.conns, c)
			}
		}
		w.mu.Unlock()
		for _, c := range over {
			w.cfg.Logger.Debug("closing a slow connection", "remote", c.RemoteAddr().String(),
				"phase", phaseNames[c.phase.Load()])
			_ = c.Close()
		}
		clear(over)
		over = over[:0]
	}
}

// ticksOf is how many whole ticks d spans, at least one.
func (w *Watch) ticksOf(d time.Duration) int64 {
	return max(1, int64((d+w.cfg.Tick-1)/w.cfg.Tick))
}
