package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"net/netip"
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

// noteDecision records the decision for the access log and metrics.
func noteDecision(c *echo.Context, client netip.Addr, d *policy.Decision) {
	c.Set(notedKey, &noted{client: client, reason: d.Reason, registry: d.Registry})
}

// observe records every request's duration and decision in the metrics
// and, when access is not nil, logs it: one line a request, in the shape
// of every other log line. The client is the address reghost decided
// for; the Authorization header is never logged.
func observe(listener string, m *Metrics, access *slog.Logger) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c *echo.Context) error {
			start := time.Now()
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
			d, _ := c.Get(notedKey).(*noted)
			if d != nil {
				m.decided(d.reason, d.registry)
			} else {
				d = &noted{}
			}
			if access != nil {
				req := c.Request()
				access.LogAttrs(context.Background(), slog.LevelInfo, "access",
					slog.String("listener", listener),
					slog.String("method", req.Method),
					slog.String("path", req.URL.Path),
					slog.String("route", route),
					slog.Int("status", status),
					slog.Int64("duration_us", took.Microseconds()),
					slog.String("client", addrString(d.client)),
					slog.String("peer", req.RemoteAddr),
					slog.String("reason", d.reason),
					slog.String("registry", d.registry))
			}
			return nil
		}
	}
}

// addrString is a's text, or "" for the zero Addr (netip says
// "invalid IP").
func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}
