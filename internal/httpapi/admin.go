package httpapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"strings"
	"time"

	"github.com/labstack/echo/v5"
	"github.com/labstack/echo/v5/middleware"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/reghost/reghost/internal/policy"
	"github.com/reghost/reghost/internal/rules"
	"github.com/reghost/reghost/internal/store"
)

// AdminConfig is what the admin listener needs.
type AdminConfig struct {
	Engine *policy.Engine
	Store  store.Store
	// Token is the bearer token every call but /metrics must present.
	Token string
	// Apply rebuilds the engine's overrides from the store; called after
	// every write so that it takes effect on this server at once.
	Apply func(context.Context) error
	// DataSets reports the loaded GeoIP and cloud data (/api/v1/datasets).
	DataSets func() any
	// Health reports whether a registry is up; nil: all are.
	Health  policy.Health
	Logger  *slog.Logger
	Metrics *Metrics
	// AccessLog receives one line per request; nil: none.
	AccessLog *AccessLog
	Now       func() time.Time
}

type admin struct {
	cfg   AdminConfig
	token []byte
}

// maxBody bounds an override's JSON.
const maxBody = 64 << 10

// NewAdmin returns the admin listener's handler.
func NewAdmin(cfg AdminConfig) (*echo.Echo, error) {
	if len(cfg.Token) < 16 {
		return nil, errors.New("admin token: shorter than 16 characters")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Apply == nil {
		cfg.Apply = func(context.Context) error { return nil }
	}
	a := &admin{cfg: cfg, token: []byte(cfg.Token)}
	e := echo.NewWithConfig(echo.Config{Logger: cfg.Logger, IPExtractor: echo.ExtractIPDirect()})
	e.Use(observe("admin", cfg.Metrics, cfg.AccessLog), middleware.Recover())
	e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(cfg.Metrics.Registry(), promhttp.HandlerOpts{})))

	api := e.Group("/api/v1", a.auth)
	api.GET("/overrides", a.list)
	api.POST("/overrides", a.create)
	api.GET("/overrides/:id", a.get)
	api.PUT("/overrides/:id", a.put)
	api.DELETE("/overrides/:id", a.delete)
	api.GET("/explain", a.explain)
	api.GET("/registries", a.registries)
	api.GET("/datasets", a.datasets)

	// Go's profiler, for operators chasing latency; behind the token too.
	dbg := e.Group("/debug/pprof", a.auth)
	dbg.GET("/", echo.WrapHandler(http.HandlerFunc(pprof.Index)))
	dbg.GET("/profile", echo.WrapHandler(http.HandlerFunc(pprof.Profile)))
	dbg.GET("/trace", echo.WrapHandler(http.HandlerFunc(pprof.Trace)))
	dbg.GET("/:name", func(c *echo.Context) error {
		pprof.Handler(c.Param("name")).ServeHTTP(c.Response(), c.Request())
		return nil
	})
	return e, nil
}

// auth checks "Authorization: Bearer <token>" in constant time.
func (a *admin) auth(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c *echo.Context) error {
		got, ok := strings.CutPrefix(c.Request().Header.Get(echo.HeaderAuthorization), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), a.token) != 1 {
			c.Response().Header().Set("WWW-Authenticate", `Bearer realm="reghost admin"`)
			return c.JSON(http.StatusUnauthorized, apiError{Error: "missing or wrong bearer token"})
		}
		return next(c)
	}
}

// apiError is every error body of the admin API.
type apiError struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

// fail answers an error, mapping store errors to status codes.
func fail(c *echo.Context, err error) error {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, store.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, store.ErrConflict):
		code = http.StatusConflict
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		code = http.StatusServiceUnavailable
	}
	return c.JSON(code, apiError{Error: err.Error()})
}

// invalid answers 400 naming the field: validation messages start with
// it ("match.country: ...", "registries[0]: ...").
func invalid(c *echo.Context, err error) error {
	msg := err.Error()
	field, _, ok := strings.Cut(msg, ": ")
	if !ok || strings.ContainsAny(field, " \"") {
		field = ""
	}
	return c.JSON(http.StatusBadRequest, apiError{Error: msg, Field: field})
}

type listResponse struct {
	Version   uint64           `json:"version"`
	Overrides []rules.Override `json:"overrides"`
}

type writeResponse struct {
	Version  uint64          `json:"version"`
	Override *rules.Override `json:"override,omitempty"`
}

func (a *admin) list(c *echo.Context) error {
	ovs, v, err := a.cfg.Store.List(c.Request().Context())
	if err != nil {
		return fail(c, err)
	}
	if ovs == nil {
		ovs = []rules.Override{}
	}
	return c.JSON(http.StatusOK, listResponse{Version: v, Overrides: ovs})
}

func (a *admin) get(c *echo.Context) error {
	o, err := a.cfg.Store.Get(c.Request().Context(), c.Param("id"))
	if err != nil {
		return fail(c, err)
	}
	return c.JSON(http.StatusOK, o)
}

// overrideBody is an override as clients send it: the CIDR as a string,
// so that a bad one is reported with its field name.
type overrideBody struct {
	ID    string `json:"id"`
	Match struct {
		CIDR      string `json:"cidr"`
		ASN       uint32 `json:"asn"`
		Cloud     string `json:"cloud"`
		Region    string `json:"region"`
		Country   string `json:"country"`
		Continent string `json:"continent"`
	} `json:"match"`
	Registries []string  `json:"registries"`
	ExpiresAt  time.Time `json:"expires_at"`
	Note       string    `json:"note"`
	CreatedBy  string    `json:"created_by"`
	CreatedAt  time.Time `json:"created_at"`
}

// readOverride decodes and validates a request body. The path's id, when
// there is one, is the override's ID.
func (a *admin) readOverride(c *echo.Context, pathID string) (rules.Override, error) {
	data, err := io.ReadAll(io.LimitReader(c.Request().Body, maxBody+1))
	if err != nil {
		return rules.Override{}, fmt.Errorf("body: %w", err)
	}
	if len(data) > maxBody {
		return rules.Override{}, fmt.Errorf("body: larger than %d bytes", maxBody)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var b overrideBody
	if err := dec.Decode(&b); err != nil {
		return rules.Override{}, fmt.Errorf("body: invalid JSON: %w", err)
	}
	if dec.More() {
		return rules.Override{}, errors.New("body: more than one JSON value")
	}
	o := rules.Override{
		ID: b.ID, Registries: b.Registries, ExpiresAt: b.ExpiresAt, Note: b.Note,
		CreatedBy: b.CreatedBy, CreatedAt: b.CreatedAt,
		Match: rules.Match{ASN: b.Match.ASN, Cloud: b.Match.Cloud, Region: b.Match.Region,
			Country: b.Match.Country, Continent: b.Match.Continent},
	}
	if b.Match.CIDR != "" {
		p, err := netip.ParsePrefix(b.Match.CIDR)
		if err != nil {
			return rules.Override{}, fmt.Errorf("match.cidr: %q is not a CIDR prefix", b.Match.CIDR)
		}
		o.Match.CIDR = p
	}
	switch {
	case pathID != "" && o.ID == "":
		o.ID = pathID
	case pathID != "" && o.ID != pathID:
		return rules.Override{}, fmt.Errorf("id: %q in the body but %q in the path", o.ID, pathID)
	case o.ID == "":
		o.ID = newID()
	}
	now := a.cfg.Now().UTC().Truncate(time.Second)
	if o.CreatedAt.IsZero() {
		o.CreatedAt = now
	}
	if !o.ExpiresAt.IsZero() && !o.ExpiresAt.After(now) {
		return rules.Override{}, fmt.Errorf("expires_at: %s is not in the future", o.ExpiresAt.Format(time.RFC3339))
	}
	if o.CreatedBy == "" {
		o.CreatedBy = "admin-api"
	}
	return o, a.cfg.Engine.ValidateOverride(o)
}

func newID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "ovr-" + hex.EncodeToString(b[:])
}

func (a *admin) create(c *echo.Context) error {
	o, err := a.readOverride(c, "")
	if err != nil {
		return invalid(c, err)
	}
	v, err := a.cfg.Store.Create(c.Request().Context(), o)
	if err != nil {
		return fail(c, err)
	}
	a.applied(c, "create", o.ID, v)
	return c.JSON(http.StatusCreated, writeResponse{Version: v, Override: &o})
}

func (a *admin) put(c *echo.Context) error {
	o, err := a.readOverride(c, c.Param("id"))
	if err != nil {
		return invalid(c, err)
	}
	v, err := a.cfg.Store.Put(c.Request().Context(), o)
	if err != nil {
		return fail(c, err)
	}
	a.applied(c, "put", o.ID, v)
	return c.JSON(http.StatusOK, writeResponse{Version: v, Override: &o})
}

func (a *admin) delete(c *echo.Context) error {
	id := c.Param("id")
	v, err := a.cfg.Store.Delete(c.Request().Context(), id)
	if err != nil {
		return fail(c, err)
	}
	a.applied(c, "delete", id, v)
	return c.JSON(http.StatusOK, writeResponse{Version: v})
}

// applied makes a write take effect here at once, and logs it as audit.
// The write has succeeded whatever Apply says; an Apply error is logged
// and the change watcher retries.
func (a *admin) applied(c *echo.Context, op, id string, version uint64) {
	ctx := c.Request().Context()
	a.cfg.Logger.LogAttrs(ctx, slog.LevelInfo, "override changed",
		slog.String("op", op), slog.String("id", id), slog.Uint64("version", version),
		slog.String("peer", c.Request().RemoteAddr))
	if err := a.cfg.Apply(ctx); err != nil {
		a.cfg.Logger.Warn("applying overrides after a write failed; will retry on the next change", "err", err)
	}
}

func (a *admin) explain(c *echo.Context) error {
	ip := c.QueryParam("ip")
	addr, err := parseClientAddr("ip", ip)
	if err != nil {
		return c.JSON(http.StatusBadRequest, apiError{Error: err.Error(), Field: "ip"})
	}
	target := c.QueryParamOr("path", "/v2/")
	path, query, _ := strings.Cut(target, "?")
	d, err := a.cfg.Engine.Explain(addr, path, query)
	if err != nil {
		return c.JSON(http.StatusBadRequest, apiError{Error: err.Error(), Field: "path"})
	}
	return c.JSON(http.StatusOK, newDecideResponse(addr, d))
}

type registryInfo struct {
	Name    string `json:"name"`
	URL     string `json:"url"`
	Host    string `json:"host"`
	Default bool   `json:"default"`
	Up      bool   `json:"up"`
}

func (a *admin) registries(c *echo.Context) error {
	var out []registryInfo
	for _, t := range a.cfg.Engine.Registries() {
		up := a.cfg.Health == nil || a.cfg.Health.Up(t.Name)
		out = append(out, registryInfo{Name: t.Name, URL: t.URL, Host: t.Host, Default: t.Default, Up: up})
	}
	return c.JSON(http.StatusOK, out)
}

func (a *admin) datasets(c *echo.Context) error {
	if a.cfg.DataSets == nil {
		return c.JSON(http.StatusOK, []any{})
	}
	return c.JSON(http.StatusOK, a.cfg.DataSets())
}
