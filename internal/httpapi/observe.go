package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v5"
)

// reqInfo carries what a handler decided to the access log. It is pooled
// so that logging a decision allocates nothing.
type reqInfo struct {
	reason   string
	registry string
}

const reqInfoKey = "reghost.info"

var reqInfoPool = sync.Pool{New: func() any { return new(reqInfo) }}

// noteDecision records the decision for the access log and metrics.
func noteDecision(c *echo.Context, reason, registry string) {
	if ri, ok := c.Get(reqInfoKey).(*reqInfo); ok {
		ri.reason, ri.registry = reason, registry
	}
}

// observe logs one line per request and records its duration. The
// client address is the one reghost decided for, and the Authorization
// header is never logged.
func observe(listener string, logger *slog.Logger, m *Metrics, accessLog bool) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c *echo.Context) error {
			start := time.Now()
			ri := reqInfoPool.Get().(*reqInfo)
			*ri = reqInfo{}
			c.Set(reqInfoKey, ri)
			err := next(c)
			if err != nil {
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
			d := time.Since(start)
			m.observe(listener, route, status, d)
			if ri.reason != "" {
				m.decided(ri.reason, ri.registry)
			}
			if accessLog && logger.Enabled(context.Background(), slog.LevelInfo) {
				req := c.Request()
				logger.LogAttrs(req.Context(), slog.LevelInfo, "request",
					slog.String("listener", listener),
					slog.String("method", req.Method),
					slog.String("path", req.URL.Path),
					slog.String("route", route),
					slog.Int("status", status),
					slog.Duration("duration", d),
					slog.String("client", c.RealIP()),
					slog.String("peer", req.RemoteAddr),
					slog.String("reason", ri.reason),
					slog.String("registry", ri.registry),
				)
			}
			reqInfoPool.Put(ri)
			return nil
		}
	}
}
