package httpapi

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v5"
	"github.com/labstack/echo/v5/middleware"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/reghost/reghost/internal/overrides"
	"github.com/reghost/reghost/internal/policy"
	"github.com/reghost/reghost/internal/rules"
	"github.com/reghost/reghost/internal/store"
)

// AdminConfig is what the admin listener needs.
type AdminConfig struct {
	Engine    *policy.Engine
	Overrides *overrides.Service
	// Token is the bearer token every call but /metrics must present.
	Token string
	// DataSets reports the loaded GeoIP and cloud data (/api/v1/datasets).
	DataSets func() any
	Logger   *slog.Logger
	Metrics  *Metrics
	// AccessLog gets one line per request; nil: none.
	AccessLog slog.Handler
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
	a := &admin{cfg: cfg, token: []byte(cfg.Token)}
	// Without the catch-all routes Echo adds to groups with middleware,
	// a method a path does not take is 405 with Allow, not 404. Paths
	// and methods that do not exist reveal nothing the API's documentation
	// does not; every route there is behind the token.
	e := echo.NewWithConfig(echo.Config{Logger: cfg.Logger, IPExtractor: echo.ExtractIPDirect(),
		NoGroupAutoRegister404Routes: true})
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
		// The scheme's name is case-insensitive (RFC 9110, 11.1), and one
		// or more spaces may follow it (11.4).
		scheme, got, _ := strings.Cut(c.Request().Header.Get(echo.HeaderAuthorization), " ")
		got = strings.TrimLeft(got, " ")
		if !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare([]byte(got), a.token) != 1 {
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
	if _, ok := errors.AsType[*overrides.ValidationError](err); ok {
		return invalid(c, err)
	}
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
	ovs, v, err := a.cfg.Overrides.List(c.Request().Context())
	if err != nil {
		return fail(c, err)
	}
	if ovs == nil {
		ovs = []rules.Override{}
	}
	return c.JSON(http.StatusOK, listResponse{Version: v, Overrides: ovs})
}

func (a *admin) get(c *echo.Context) error {
	o, err := a.cfg.Overrides.Get(c.Request().Context(), c.Param("id"))
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
	Registries []string `json:"registries"`
	ExpiresAt  string   `json:"expires_at"` // RFC 3339, parsed here to name the field in errors
	Note       string   `json:"note"`
	CreatedBy  string   `json:"created_by"`
	CreatedAt  string   `json:"created_at"`
}

// parseTime parses an optional RFC 3339 time; field names it in errors.
func parseTime(field, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if _, off := t.Zone(); err == nil && (off <= -24*3600 || off >= 24*3600) {
		// time.Parse takes "+24:00"; RFC 3339 and the store do not.
		err = errors.New("offset out of range")
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("%s: %q is not an RFC 3339 time, such as 2030-01-01T00:00:00Z", field, truncate(s, 64))
	}
	return t, nil
}

// jsonUnknownField starts encoding/json's error for a key that
// DisallowUnknownFields refuses; the quoted key follows.
const jsonUnknownField = "json: unknown field "

// unknownField names the field encoding/json refused as unknown, whose
// error gives the quoted key alone. The body is decoded again with its
// match left raw: an unknown key then is at the top level, and if none
// is, the one refused was inside match.
func unknownField(data []byte, quoted string) string {
	var top struct {
		overrideBody
		Match json.RawMessage `json:"match"` // shadows overrideBody's
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err := dec.Decode(&top)
	if q, ok := strings.CutPrefix(fmt.Sprint(err), jsonUnknownField); ok {
		if key, err := strconv.Unquote(q); err == nil {
			return key
		}
	}
	key, err := strconv.Unquote(quoted)
	if err != nil {
		return "match"
	}
	return "match." + key
}

// jsonKind names what a Go type takes in JSON, for decoding errors.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Slice:
		return "an array"
	case reflect.Struct:
		return "an object"
	case reflect.Uint32:
		return "a number from 0 to 4294967295"
	}
	return t.String()
}

// readOverride decodes a request body. The path's id, when there is
// one, is the override's ID. What the body leaves out, the overrides
// service fills in.
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
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return rules.Override{}, fmt.Errorf("%s: a JSON %s where %s belongs", te.Field, te.Value, jsonKind(te.Type))
		}
		if name, ok := strings.CutPrefix(err.Error(), jsonUnknownField); ok {
			return rules.Override{}, fmt.Errorf("%s: unknown field", unknownField(data, name))
		}
		return rules.Override{}, fmt.Errorf("body: invalid JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return rules.Override{}, errors.New("body: more after the JSON object")
	}
	expires, err := parseTime("expires_at", b.ExpiresAt)
	if err != nil {
		return rules.Override{}, err
	}
	created, err := parseTime("created_at", b.CreatedAt)
	if err != nil {
		return rules.Override{}, err
	}
	o := rules.Override{
		ID: b.ID, Registries: b.Registries, ExpiresAt: expires, Note: b.Note,
		CreatedBy: b.CreatedBy, CreatedAt: created,
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
	}
	return o, nil
}

// actor is who makes changes through the admin API, as the overrides
// service records them.
const actor = "admin-api"

func (a *admin) create(c *echo.Context) error {
	o, err := a.readOverride(c, "")
	if err != nil {
		return invalid(c, err)
	}
	o, v, err := a.cfg.Overrides.Create(c.Request().Context(), actor, o)
	if err != nil {
		return fail(c, err)
	}
	return c.JSON(http.StatusCreated, writeResponse{Version: v, Override: &o})
}

// put replaces an override, or creates it (201).
func (a *admin) put(c *echo.Context) error {
	o, err := a.readOverride(c, c.Param("id"))
	if err != nil {
		return invalid(c, err)
	}
	o, created, v, err := a.cfg.Overrides.Put(c.Request().Context(), actor, o)
	if err != nil {
		return fail(c, err)
	}
	code := http.StatusOK
	if created {
		code = http.StatusCreated
	}
	return c.JSON(code, writeResponse{Version: v, Override: &o})
}

func (a *admin) delete(c *echo.Context) error {
	v, err := a.cfg.Overrides.Delete(c.Request().Context(), actor, c.Param("id"))
	if err != nil {
		return fail(c, err)
	}
	return c.JSON(http.StatusOK, writeResponse{Version: v})
}

func (a *admin) explain(c *echo.Context) error {
	ip := c.QueryParam("ip")
	if ip == "" {
		return c.JSON(http.StatusBadRequest, apiError{Error: "missing ?ip=, the client address to explain", Field: "ip"})
	}
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
	for _, r := range a.cfg.Engine.Registries() {
		out = append(out, registryInfo{Name: r.Name, URL: r.URL, Host: r.Host, Default: r.Default, Up: r.Up})
	}
	return c.JSON(http.StatusOK, out)
}

func (a *admin) datasets(c *echo.Context) error {
	if a.cfg.DataSets == nil {
		return c.JSON(http.StatusOK, []any{})
	}
	return c.JSON(http.StatusOK, a.cfg.DataSets())
}
