package httpapi

import (
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/reghost/reghost/internal/policy"
)

// reqInfo carries what a handler decided to the access log. It is pooled
// so that logging a decision allocates nothing.
type reqInfo struct {
	client   netip.Addr
	reason   string
	registry string
}

const reqInfoKey = "reghost.info"

var reqInfoPool = sync.Pool{New: func() any { return new(reqInfo) }}

// noteDecision records the decision for the access log and metrics.
func noteDecision(c *echo.Context, client netip.Addr, d *policy.Decision) {
	if ri, ok := c.Get(reqInfoKey).(*reqInfo); ok {
		ri.client, ri.reason, ri.registry = client, d.Reason, d.Registry
	}
}

// observe records every request's duration and decision in the metrics
// and, when log is not nil, writes its access-log line. The client is the
// address reghost decided for; the Authorization header is never logged.
func observe(listener string, m *Metrics, log *AccessLog) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c *echo.Context) error {
			start := time.Now()
			ri := reqInfoPool.Get().(*reqInfo)
			*ri = reqInfo{}
			c.Set(reqInfoKey, ri)
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
			d := time.Since(start)
			m.observe(listener, route, status, d)
			if ri.reason != "" {
				m.decided(ri.reason, ri.registry)
			}
			if log != nil {
				req := c.Request()
				log.log(&accessEntry{
					start: start, duration: d, listener: listener, method: req.Method,
					path: req.URL.Path, route: route, status: status, client: ri.client,
					peer: req.RemoteAddr, reason: ri.reason, registry: ri.registry,
				})
			}
			reqInfoPool.Put(ri)
			return nil
		}
	}
}
