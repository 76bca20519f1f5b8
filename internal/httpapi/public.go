// Package httpapi holds reghost's Echo handlers: the public listener that
// clients and Envoy reach (the original "GET /" contract, /decide, direct
// /v2/ redirects, Envoy ext_authz, health) and the admin listener (the
// overrides API, explain, data sets, metrics), with client-address
// extraction that believes headers only from trusted proxies.
package httpapi

import (
	"context"
	"fmt"
	"html"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync"

	"github.com/labstack/echo/v5"
	"github.com/labstack/echo/v5/middleware"

	"github.com/reghost/reghost/internal/policy"
)

// PublicConfig is what the public listener needs.
type PublicConfig struct {
	Engine         *policy.Engine
	ClientIP       ClientIPConfig
	RedirectStatus int                       // 307 or 302; 0 means 307
	Ready          func(context.Context) any // the /readyz report; always answered 200
	Logger         *slog.Logger
	Metrics        *Metrics
	// AccessLog gets one line per request; nil: none.
	AccessLog slog.Handler
	// Traffic records every decision for the admin page; nil: none.
	Traffic Recorder
}

type public struct {
	engine   *policy.Engine
	ci       *clientIP
	status   int
	bodyTail string // `">Temporary Redirect</a>.\n`
	ready    func(context.Context) any
}

// Response headers of /decide.
const (
	HeaderLocation = "X-Reghost-Location"
	HeaderRegistry = "X-Reghost-Registry"
	HeaderReason   = "X-Reghost-Reason"
	// HeaderOriginalPath carries the client's path (and query) to /decide.
	HeaderOriginalPath = "X-Original-Path"
)

// NewPublic returns the public listener's handler.
func NewPublic(cfg PublicConfig) (*echo.Echo, error) {
	ci, err := newClientIP(cfg.ClientIP)
	if err != nil {
		return nil, err
	}
	switch cfg.RedirectStatus {
	case 0:
		cfg.RedirectStatus = http.StatusTemporaryRedirect
	case http.StatusFound, http.StatusTemporaryRedirect:
	default:
		return nil, fmt.Errorf("redirect_status: %d; want 302 or 307", cfg.RedirectStatus)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics()
	}
	p := &public{engine: cfg.Engine, ci: ci, status: cfg.RedirectStatus, ready: cfg.Ready,
		bodyTail: `">` + http.StatusText(cfg.RedirectStatus) + "</a>.\n"}

	e := echo.NewWithConfig(echo.Config{Logger: cfg.Logger, IPExtractor: ci.extractor})
	e.Use(observe("public", cfg.Metrics, cfg.AccessLog, cfg.Traffic), middleware.Recover())
	// HEAD wherever GET is: uptime checks and load balancers probe with
	// it, and net/http drops the body.
	getHead := []string{http.MethodGet, http.MethodHead}
	e.Match(getHead, "/", p.host)
	e.Match(getHead, "/decide", p.decide)
	e.Any("/v2", p.direct)
	e.Any("/v2/*", p.direct)
	e.Any("/ext_authz", p.extAuthz)
	e.Any("/ext_authz/*", p.extAuthz)
	e.Match(getHead, "/healthz", func(c *echo.Context) error { return c.String(http.StatusOK, "ok\n") })
	e.Match(getHead, "/readyz", p.readyz)
	return e, nil
}

// host is the original Envoy contract: the client address in X-Real-IP,
// the registry's host as a plain-text body and nothing else.
func (p *public) host(c *echo.Context) error {
	addr, err := p.ci.from(c.Request(), "X-Real-Ip")
	if err != nil {
		return c.String(http.StatusBadRequest, err.Error()+"\n")
	}
	d := p.engine.Choose(addr)
	noteDecision(c, addr, &d)
	return c.String(http.StatusOK, d.Host)
}

// decideResponse is the JSON body of /decide.
type decideResponse struct {
	Registry string        `json:"registry"`
	Host     string        `json:"host"`
	Location string        `json:"location"`
	Reason   string        `json:"reason"`
	Source   string        `json:"source"`
	Client   string        `json:"client"`
	Facts    policy.Facts  `json:"facts"`
	Trail    []policy.Step `json:"trail"`
}

func newDecideResponse(addr netip.Addr, d policy.Decision) decideResponse {
	return decideResponse{Registry: d.Registry, Host: d.Host, Location: d.Location, Reason: d.Reason,
		Source: d.Source, Client: addr.String(), Facts: d.Facts, Trail: d.Trail}
}

// decide is the rich contract of the shipped Lua filter: the client
// address from the trusted header (or ?ip= from a trusted peer), the
// original path from X-Original-Path (or ?path=), the decision in
// headers and, on Accept: application/json, with facts and trail.
func (p *public) decide(c *echo.Context) error {
	r := c.Request()
	var addr netip.Addr
	var err error
	if ip := c.QueryParam("ip"); ip != "" {
		// Asked for explicitly, by a proxy trusted to name clients: the
		// header, whatever it holds, does not matter.
		if !p.ci.trusts(peer(r)) {
			return c.String(http.StatusForbidden, "?ip= is only accepted from a trusted proxy\n")
		}
		addr, err = parseClientAddr("ip", ip)
	} else {
		addr, err = p.ci.addr(r)
	}
	if err != nil {
		return c.String(http.StatusBadRequest, err.Error()+"\n")
	}
	target := r.Header.Get(HeaderOriginalPath)
	if target == "" {
		target = c.QueryParam("path")
	}
	if target == "" {
		return c.String(http.StatusBadRequest, "missing "+HeaderOriginalPath+" header or ?path=\n")
	}
	path, query, _ := strings.Cut(target, "?")
	wantJSON := strings.Contains(r.Header.Get(echo.HeaderAccept), echo.MIMEApplicationJSON)
	// The trail, with override IDs and every match tried, is for
	// trusted proxies; anyone else gets the decision alone.
	trusted := p.ci.trusts(peer(r))
	var d policy.Decision
	if wantJSON && trusted {
		d, err = p.engine.Explain(addr, path, query)
	} else {
		d, err = p.engine.Decide(addr, path, query)
	}
	if err != nil {
		return c.String(http.StatusBadRequest, err.Error()+"\n")
	}
	noteDecision(c, addr, &d)
	if !trusted {
		d.Source, _, _ = strings.Cut(d.Source, ":") // "override", without its ID
	}
	h := c.Response().Header()
	h.Set(HeaderLocation, d.Location)
	h.Set(HeaderRegistry, d.Registry)
	h.Set(HeaderReason, d.Reason)
	h.Set(echo.HeaderCacheControl, "no-store")
	if wantJSON {
		return c.JSON(http.StatusOK, newDecideResponse(addr, d))
	}
	return c.String(http.StatusOK, d.Location)
}

// readOnly reports whether the method is GET or HEAD, the only ones a
// redirect can answer, and sets Allow for the 405 otherwise.
func readOnly(c *echo.Context) bool {
	switch c.Request().Method {
	case http.MethodGet, http.MethodHead:
		return true
	}
	c.Response().Header().Set("Allow", "GET, HEAD")
	return false
}

// direct redirects registry clients without Envoy.
func (p *public) direct(c *echo.Context) error {
	r := c.Request()
	if !readOnly(c) {
		return c.String(http.StatusMethodNotAllowed, "method not allowed\n")
	}
	path := r.URL.EscapedPath()
	if path == "/v2" || path == "/v2/" {
		// The API root: clients check it before anything else, and it
		// tells them this is a registry. Every registry answers it alike.
		h := c.Response().Header()
		h.Set("Docker-Distribution-Api-Version", "registry/2.0")
		return c.JSONBlob(http.StatusOK, []byte("{}"))
	}
	return p.redirectFor(c, path)
}

// redirectFor decides for the request's client and redirects it to path
// on the chosen registry. A malformed address from a trusted proxy sends
// the client to the default registry: a pull must not fail over a header.
func (p *public) redirectFor(c *echo.Context, path string) error {
	r := c.Request()
	addr, err := p.ci.addr(r)
	var d policy.Decision
	if err != nil {
		d, err = p.fallback(path, r.URL.RawQuery)
	} else {
		d, err = p.engine.Decide(addr, path, r.URL.RawQuery)
	}
	if err != nil {
		return c.String(http.StatusBadRequest, err.Error()+"\n")
	}
	noteDecision(c, addr, &d)
	return p.redirect(c, d.Location)
}

// fallbackBadAddr is the reason when a trusted proxy sent a malformed
// client address.
const fallbackBadAddr = "fallback:bad-client-address"

func (p *public) fallback(path, query string) (policy.Decision, error) {
	t := p.engine.Default()
	loc, err := t.Location(path, query)
	return policy.Decision{Registry: t.Name, Host: t.Host, Location: loc, Reason: fallbackBadAddr, Source: "default"}, err
}

// redirect answers as http.Redirect does, without parsing the location
// again: it is built from checked parts. Caches must not keep it: the
// next decision may differ.
func (p *public) redirect(c *echo.Context, location string) error {
	w := c.Response()
	h := w.Header()
	// Assigned rather than Set: the constant values are shared (net/http
	// only reads them), which saves two allocations a redirect.
	h[echo.HeaderLocation] = []string{location}
	h[echo.HeaderCacheControl] = cacheControlNoStore
	h[echo.HeaderContentType] = contentTypeHTML
	w.WriteHeader(p.status)
	if c.Request().Method != http.MethodGet {
		return nil // HEAD: GET's headers, no body
	}
	bp := bodyPool.Get().(*[]byte)
	b := append((*bp)[:0], `<a href="`...)
	b = append(b, html.EscapeString(location)...)
	b = append(b, p.bodyTail...)
	_, err := w.Write(b)
	*bp = b
	bodyPool.Put(bp)
	return err
}

var (
	cacheControlNoStore = []string{"private, no-store"}
	contentTypeHTML     = []string{echo.MIMETextHTMLCharsetUTF8}
	// bodyPool recycles the buffers redirect bodies are built in.
	bodyPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}
)

func (p *public) readyz(c *echo.Context) error {
	if p.ready == nil {
		return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
	}
	return c.JSON(http.StatusOK, p.ready(c.Request().Context()))
}

// extAuthz answers Envoy's ext_authz HTTP check with the redirect. Envoy
// sends the original request's method and headers, and its path after
// the configured path_prefix; a non-200 answer is "denied" and Envoy
// passes it to the client, Location included when allowed_client_headers
// lets it through. The client address comes from the configured header,
// which Envoy sets, as for every other route.
func (p *public) extAuthz(c *echo.Context) error {
	r := c.Request()
	if !readOnly(c) {
		return c.String(http.StatusMethodNotAllowed, "method not allowed\n")
	}
	path := strings.TrimPrefix(r.URL.EscapedPath(), "/ext_authz")
	if path == "" {
		path = "/"
	}
	return p.redirectFor(c, path)
}
