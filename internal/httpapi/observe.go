package httpapi

import (
	"net/http"
	"net/netip"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/reghost/reghost/internal/policy"
)

// reqInfo carries what a handler decided to the access log and metrics.
type reqInfo struct {
	client   netip.Addr
	reason   string
	registry string
}

const reqInfoKey = "reghost.info"

// requestInfo returns where c's request notes its decision. On a server
// with ConnContext that is its connection's reqInfo: an HTTP/1
// connection serves one request at a time, and looking it up costs a
// walk up the request's context, where the alternative, a new reqInfo
// in Echo's per-request store, costs an allocation and map writes and
// reads (together a tenth of the instructions reghost adds to a
// "GET /"). Other servers, and HTTP/2, whose streams share a
// connection, take the alternative. So a handler must note its decision
// before it returns, never from a goroutine of its own, and a middleware
// that replaces the request must keep a context derived from its
// context.
func requestInfo(c *echo.Context) *reqInfo {
	r := c.Request()
	if r.ProtoMajor == 1 {
		if ci := connOf(r); ci != nil {
			return &ci.req
		}
	}
	if ri, ok := c.Get(reqInfoKey).(*reqInfo); ok {
		return ri
	}
	ri := new(reqInfo)
	c.Set(reqInfoKey, ri)
	return ri
}

// noteDecision records the decision for the access log and metrics.
func noteDecision(c *echo.Context, client netip.Addr, d *policy.Decision) {
	ri := requestInfo(c)
	ri.client, ri.reason, ri.registry = client, d.Reason, d.Registry
}

// observe records every request's duration and decision in the metrics
// and, when log is not nil, writes its access-log line. The client is the
// address reghost decided for; the Authorization header is never logged.
func observe(listener string, m *Metrics, log *AccessLog) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c *echo.Context) error {
			start := time.Now()
			ri := requestInfo(c)
			*ri = reqInfo{}
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
			// Not kept for the connection's next request: an idle
			// connection would keep a replaced snapshot's text alive.
			*ri = reqInfo{}
			return nil
		}
	}
}
