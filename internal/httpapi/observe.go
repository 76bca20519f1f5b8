package httpapi

import (
	"log/slog"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/reghost/reghost/internal/policy"
)

// decisionKey is where a handler notes its decision, in Echo's
// per-request store, for the access log and metrics.
const notedKey = "reghost.decision"

// noted is a request's decision as the access log and metrics see it.
type noted struct {
	client   netip.Addr
	reason   string
	registry string
}

// notedPool recycles what observe gives each request to note its
// decision in: one allocation fewer a request, on every request.
var notedPool = sync.Pool{New: func() any { return new(noted) }}

// noteDecision records the decision for the access log and metrics.
func noteDecision(c *echo.Context, client netip.Addr, d *policy.Decision) {
	if n, ok := c.Get(notedKey).(*noted); ok {
		*n = noted{client: client, reason: d.Reason, registry: d.Registry}
	}
}

// observe records every request's duration and decision in the metrics
// and, when access is not nil, logs it: one line a request, in the shape
// of every other log line. The client is the address reghost decided
// for; the Authorization header is never logged. The record goes to the
// handler without a slog.Logger, which would look up its caller (a
// tenth of the line's cost) for a source no access line shows.
func observe(listener string, m *Metrics, access slog.Handler, rec Recorder) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c *echo.Context) error {
			start := time.Now()
			d := notedPool.Get().(*noted)
			defer func() { *d = noted{}; notedPool.Put(d) }()
			c.Set(notedKey, d)
			if err := next(c); err != nil {
				c.Echo().HTTPErrorHandler(c, err)
			}
			status := http.StatusOK
			if r, _ := echo.UnwrapResponse(c.Response()); r != nil && r.Status != 0 {
				status = r.Status
			}
			route := c.Path()
			if route == "" {
				route = "unmatched"
			}
			took := time.Since(start)
			m.observe(listener, route, status, took)
			if d.reason != "" {
				m.decided(d.reason, d.registry)
				if rec != nil {
					rec.Record(d.client, d.reason, d.registry)
				}
			}
			if access != nil {
				req := c.Request()
				r := slog.NewRecord(start, slog.LevelInfo, "access", 0)
				r.AddAttrs(
					slog.String("listener", listener),
					slog.String("method", req.Method),
					slog.String("path", req.URL.EscapedPath()), // as redirected, not decoded
					slog.String("route", route),
					slog.Int("status", status),
					slog.Int64("duration_us", took.Microseconds()),
					slog.String("client", addrString(d.client)),
					slog.String("peer", req.RemoteAddr),
					slog.String("reason", d.reason),
					slog.String("registry", d.registry))
				_ = access.Handle(req.Context(), r) // a line that cannot be written is not the client's problem
			}
			return nil
		}
	}
}

// Recorder keeps recent decisions for the admin page (traffic.Recorder).
type Recorder interface {
	Record(client netip.Addr, reason, registry string)
}

// addrString is a's text, or "" for the zero Addr (netip says
// "invalid IP").
func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}
