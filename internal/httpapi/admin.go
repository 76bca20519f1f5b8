package httpapi

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
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
	// Tokens are the bearer tokens every call but /metrics must present
	// one of, by name: the name is who made a change, in the audit trail.
	Tokens map[string]string
	// DataSets reports the loaded GeoIP and cloud data (/api/v1/datasets).
	DataSets func() any
	// Health reports a registry's health checks for /api/v1/registries;
	// nil: none.
	Health  func(registry string) any
	Logger  *slog.Logger
	Metrics *Metrics
	// AccessLog gets one line per request; nil: none.
	AccessLog slog.Handler
	// Web is the admin page (package web), served under /admin with its
	// own sign-in; nil: none.
	Web http.Handler
}

type admin struct {
	cfg    AdminConfig
	tokens []namedToken
}

type namedToken struct {
	name  string
	token []byte
}

// maxBody bounds an override's JSON.
const maxBody = 64 << 10

// NewAdmin returns the admin listener's handler.
func NewAdmin(cfg AdminConfig) (*echo.Echo, error) {
	if len(cfg.Tokens) == 0 {
		return nil, errors.New("admin: no token")
	}
	a := &admin{cfg: cfg}
	for _, name := range slices.Sorted(maps.Keys(cfg.Tokens)) {
		if len(cfg.Tokens[name]) < 16 {
			return nil, fmt.Errorf("admin token %q: shorter than 16 characters", name)
		}
		a.tokens = append(a.tokens, namedToken{name, []byte(cfg.Tokens[name])})
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics()
	}
	// Without the catch-all routes Echo adds to groups with middleware,
	// a method a path does not take is 405 with Allow, not 404. Paths
	// and methods that do not exist reveal nothing the API's documentation
	// does not; every route there is behind the token.
	e := echo.NewWithConfig(echo.Config{Logger: cfg.Logger, IPExtractor: echo.ExtractIPDirect(),
		NoGroupAutoRegister404Routes: true})
	e.Use(observe("admin", cfg.Metrics, cfg.AccessLog, nil), middleware.Recover())
	e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(cfg.Metrics.Registry(), promhttp.HandlerOpts{})))

	api := e.Group("/api/v1", a.auth)
	api.GET("/overrides", a.list)
	api.POST("/overrides", a.create)
	api.PUT("/overrides", a.replaceAll)
	api.POST("/overrides/restore", a.restore)
	api.GET("/overrides/:id", a.get)
	api.PUT("/overrides/:id", a.put)
	api.DELETE("/overrides/:id", a.delete)
	api.GET("/explain", a.explain)
	api.GET("/registries", a.registries)
	api.POST("/registries/:name/drain", a.drain)
	api.POST("/registries/:name/undrain", a.undrain)
	api.GET("/audit", a.audit)
	api.GET("/datasets", a.datasets)

	if cfg.Web != nil {
		// The page checks its own session cookie; the routes above take
		// the bearer token alone.
		e.Any("/admin", echo.WrapHandler(cfg.Web))
		e.Any("/admin/*", echo.WrapHandler(cfg.Web))
	}

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
		who := ""
		// Every token is compared, so that the time taken says nothing
		// of which one came close.
		for _, t := range a.tokens {
			if subtle.ConstantTimeCompare([]byte(got), t.token) == 1 {
				who = t.name
			}
		}
		if !strings.EqualFold(scheme, "Bearer") || who == "" {
			c.Response().Header().Set("WWW-Authenticate", `Bearer realm="reghost admin"`)
			return c.JSON(http.StatusUnauthorized, apiError{Error: "missing or wrong bearer token"})
		}
		c.Set(whoKey, who)
		return next(c)
	}
}

// whoKey is where auth notes the name of the token a request presented.
const whoKey = "reghost.who"

// who is the name of the token the request presented: who makes the
// change, as the audit trail records it.
func who(c *echo.Context) string {
	name, _ := c.Get(whoKey).(string)
	return name
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

type writeResponse struct {
	Version  store.Version   `json:"version"`
	Override *rules.Override `json:"override,omitempty"`
}

func (a *admin) list(c *echo.Context) error {
	ovs, v, err := a.cfg.Overrides.List(c.Request().Context())
	if err != nil {
		return fail(c, err)
	}
	return c.JSON(http.StatusOK, NewOverrideSet(ovs, v, a.cfg.Overrides.Now()))
}

func (a *admin) get(c *echo.Context) error {
	o, err := a.cfg.Overrides.Get(c.Request().Context(), c.Param("id"))
	if err != nil {
		return fail(c, err)
	}
	return c.JSON(http.StatusOK, viewOf(o, a.cfg.Overrides.Now()))
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
	// Expired is what a list says of an override; it is read, so that a
	// list can be written back as it is, and ignored.
	Expired bool `json:"expired"`
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

// decodeStrict decodes data into v by JSON's strict reading: a key must
// match its field's name exactly, a key given twice is refused, and so is
// a key the API does not know or anything after the value. Errors start
// with the field at fault, as a dotted path ("match.asn: ...").
func decodeStrict(data []byte, v any) error { return decodeStrictAt(data, v, "") }

// decodeStrictAt is decodeStrict of a value that sits at root in the
// API's shape: a bare list of overrides read as "overrides" names its
// fields overrides[3].match, as the object holding it would.
func decodeStrictAt(data []byte, v any, root string) error {
	err := jsonv2.Unmarshal(data, v, jsonv2.RejectUnknownMembers(true))
	if err == nil {
		return nil
	}
	if se, ok := errors.AsType[*jsonv2.SemanticError](err); ok {
		field := fieldOf(root, se.JSONPointer)
		switch {
		case errors.Is(se.Err, jsonv2.ErrUnknownName):
			return fmt.Errorf("%s: unknown field", field)
		case se.GoType != nil && se.JSONKind == '0' && len(se.JSONValue) > 0:
			return fmt.Errorf("%s: a JSON number %s where %s belongs", field, truncate(string(se.JSONValue), 32), jsonKind(se.GoType))
		case se.GoType != nil && se.JSONKind != 0:
			return fmt.Errorf("%s: a JSON %s where %s belongs", field, kindName(se.JSONKind), jsonKind(se.GoType))
		}
		return fmt.Errorf("%s: %v", field, se.Err)
	}
	if se, ok := errors.AsType[*jsontext.SyntacticError](err); ok {
		if errors.Is(se.Err, jsontext.ErrDuplicateName) {
			return fmt.Errorf("%s: given more than once", fieldOf(root, se.JSONPointer))
		}
		if strings.Contains(se.Err.Error(), "after top-level value") {
			return errors.New("body: more after the JSON object")
		}
		return fmt.Errorf("body: invalid JSON at byte %d: %v", se.ByteOffset, se.Err)
	}
	return fmt.Errorf("body: invalid JSON: %v", err)
}

// fieldOf renders a JSON pointer as a field path: /overrides/3/match
// becomes overrides[3].match, and under root "overrides" so does
// /3/match.
func fieldOf(root string, p jsontext.Pointer) string {
	var b strings.Builder
	b.WriteString(root)
	for tok := range p.Tokens() {
		if n, err := strconv.Atoi(tok); err == nil && b.Len() > 0 {
			fmt.Fprintf(&b, "[%d]", n)
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(tok)
	}
	if b.Len() == 0 {
		return "body"
	}
	return b.String()
}

// kindName names a JSON value's kind; jsontext spells objects and arrays
// as their opening brackets.
func kindName(k jsontext.Kind) string {
	switch k {
	case '{':
		return "object"
	case '[':
		return "array"
	}
	return k.String()
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

// readBody reads a request body of at most limit bytes.
func readBody(c *echo.Context, limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(c.Request().Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("body: %w", err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("body: larger than %d bytes", limit)
	}
	return data, nil
}

// readOverride decodes a request body. The path's id, when there is
// one, is the override's ID. What the body leaves out, the overrides
// service fills in.
func (a *admin) readOverride(c *echo.Context, pathID string) (rules.Override, error) {
	data, err := readBody(c, maxBody)
	if err != nil {
		return rules.Override{}, err
	}
	var b overrideBody
	if err := decodeStrict(data, &b); err != nil {
		return rules.Override{}, err
	}
	o, err := b.override("")
	if err != nil {
		return rules.Override{}, err
	}
	switch {
	case pathID != "" && o.ID == "":
		o.ID = pathID
	case pathID != "" && o.ID != pathID:
		return rules.Override{}, fmt.Errorf("id: %q in the body but %q in the path", o.ID, pathID)
	}
	return o, nil
}

// override converts b; field prefixes errors' field names
// ("overrides[3].").
func (b *overrideBody) override(field string) (rules.Override, error) {
	expires, err := parseTime(field+"expires_at", b.ExpiresAt)
	if err != nil {
		return rules.Override{}, err
	}
	created, err := parseTime(field+"created_at", b.CreatedAt)
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
			return rules.Override{}, fmt.Errorf("%smatch.cidr: %q is not a CIDR prefix", field, truncate(b.Match.CIDR, 64))
		}
		o.Match.CIDR = p
	}
	return o, nil
}

func (a *admin) create(c *echo.Context) error {
	o, err := a.readOverride(c, "")
	if err != nil {
		return invalid(c, err)
	}
	o, v, err := a.cfg.Overrides.Create(c.Request().Context(), who(c), o)
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
	o, created, v, err := a.cfg.Overrides.Put(c.Request().Context(), who(c), o)
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
	v, err := a.cfg.Overrides.Delete(c.Request().Context(), who(c), c.Param("id"))
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
	// Up: decisions may send clients there (not down, or health is
	// ignored in panic; not drained).
	Up      bool         `json:"up"`
	Down    bool         `json:"down"`
	Drained *store.Drain `json:"drained,omitempty"`
	Health  any          `json:"health,omitempty"`
}

type registriesResponse struct {
	// Panic: most registries look down, so health is ignored.
	Panic      bool           `json:"panic"`
	Registries []registryInfo `json:"registries"`
}

func (a *admin) registries(c *echo.Context) error {
	regs, panic := a.cfg.Engine.Registries()
	drains := map[string]store.Drain{}
	for _, d := range a.cfg.Overrides.Drains() {
		drains[d.Registry] = d
	}
	out := registriesResponse{Panic: panic, Registries: []registryInfo{}}
	for _, r := range regs {
		info := registryInfo{Name: r.Name, URL: r.URL, Host: r.Host, Default: r.Default, Up: r.Up, Down: r.Down}
		if d, ok := drains[r.Name]; ok {
			info.Drained = &d
		}
		if a.cfg.Health != nil {
			info.Health = a.cfg.Health(r.Name)
		}
		out.Registries = append(out.Registries, info)
	}
	return c.JSON(http.StatusOK, out)
}

// restore writes the set this replica serves back to the store, whole,
// with its drains: after the store lost its data.
func (a *admin) restore(c *echo.Context) error {
	v, err := a.cfg.Overrides.Restore(c.Request().Context(), who(c))
	if err != nil {
		return fail(c, err)
	}
	return c.JSON(http.StatusOK, writeResponse{Version: v})
}

// drain and undrain take a registry out of routing and put it back, on
// every replica; health checks go on.
func (a *admin) drain(c *echo.Context) error {
	var body struct {
		Note string `json:"note"`
	}
	data, err := readBody(c, maxBody)
	if err != nil {
		return invalid(c, err)
	}
	if len(bytes.TrimSpace(data)) > 0 {
		if err := decodeStrict(data, &body); err != nil {
			return invalid(c, err)
		}
	}
	v, err := a.cfg.Overrides.Drain(c.Request().Context(), who(c), c.Param("name"), body.Note)
	if err != nil {
		return fail(c, err)
	}
	return c.JSON(http.StatusOK, writeResponse{Version: v})
}

func (a *admin) undrain(c *echo.Context) error {
	v, err := a.cfg.Overrides.Undrain(c.Request().Context(), who(c), c.Param("name"))
	if err != nil {
		return fail(c, err)
	}
	return c.JSON(http.StatusOK, writeResponse{Version: v})
}

// audit is the trail of changes, newest first: ?limit= (default 100, at
// most 10,000).
func (a *admin) audit(c *echo.Context) error {
	limit := 100
	if s := c.QueryParam("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 10_000 {
			return c.JSON(http.StatusBadRequest, apiError{Error: "limit: want a number from 1 to 10000", Field: "limit"})
		}
		limit = n
	}
	entries, err := a.cfg.Overrides.Audit(c.Request().Context(), limit)
	if err != nil {
		return fail(c, err)
	}
	if entries == nil {
		entries = []store.AuditEntry{}
	}
	return c.JSON(http.StatusOK, map[string]any{"entries": entries})
}

// maxImport bounds an import's JSON: a hundred thousand overrides are
// about 20 MB.
const maxImport = 256 << 20

// replaceAll makes the body's overrides the whole set, in one step: an
// import, or a restore of a saved set. Every one is validated first; one
// that is not valid fails the call and changes nothing.
func (a *admin) replaceAll(c *echo.Context) error {
	data, err := readBody(c, maxImport)
	if err != nil {
		return invalid(c, err)
	}
	ovs, err := DecodeOverrideSet(data)
	if err != nil {
		return invalid(c, err)
	}
	v, err := a.cfg.Overrides.Replace(c.Request().Context(), who(c), ovs)
	if err != nil {
		return fail(c, err)
	}
	return c.JSON(http.StatusOK, map[string]any{"version": v, "overrides": len(ovs)})
}

func (a *admin) datasets(c *echo.Context) error {
	if a.cfg.DataSets == nil {
		return c.JSON(http.StatusOK, []any{})
	}
	return c.JSON(http.StatusOK, a.cfg.DataSets())
}
