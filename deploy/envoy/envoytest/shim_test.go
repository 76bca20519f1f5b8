package envoytest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"
)

// This file is a shim of Envoy's HTTP Lua filter for gopher-lua: the
// stream handle a script's envoy_on_request receives, as Envoy documents
// it (docs/root/configuration/http/http_filters/lua_filter.rst) and as
// source/extensions/filters/http/lua/lua_filter.cc implements it:
//
//   - httpCall(cluster, headers, body, timeout_ms [, asynchronous]) or
//     httpCall(cluster, headers, body, options): an unknown cluster, a
//     headers table without :method, :path and :authority, a bad timeout
//     or an unknown option raise a Lua error; otherwise the call returns a
//     table of the response's headers with lower-case names and :status,
//     the last value winning for repeated names, and the body, nil when
//     empty. When the cluster cannot be reached Envoy's router answers 503
//     itself, and 504 when the timeout passes; so does the shim. Envoy's
//     async client appends its own address to x-forwarded-for unless
//     send_xff is false, and sets x-envoy-internal; so does the shim.
//   - respond(headers, body) needs :status between 200 and 599 and ends
//     the script: Envoy yields the coroutine and never resumes it. The shim
//     raises a sentinel error instead, which the run catches; if the
//     script catches it (pcall) and carries on, the run reports that.
//   - headers():get/add/replace/remove, case-insensitive, get joining
//     repeated values with ",".
//   - streamInfo():downstreamDirectRemoteAddress()/downstreamRemoteAddress(),
//     "192.0.2.1:5555" or "[2001:db8::1]:5555".
//   - metadata():get(key): the route's filter_metadata under the filter's
//     name.
//   - logTrace/logDebug/logInfo/logWarn/logErr/logCritical(message).
//
// An error the script does not catch is what Envoy counts as a script
// error: it logs it and lets the request go on to the next filter, the
// router, as if the script had not responded.

// envoyRequest is one downstream request as the filter sees it.
type envoyRequest struct {
	Method, Path string
	// Headers are further request headers, in order.
	Headers [][2]string
	// DirectRemote is downstreamDirectRemoteAddress(); Remote is
	// downstreamRemoteAddress(), DirectRemote when empty.
	DirectRemote, Remote string
	// Metadata is the route's metadata under envoy.filters.http.lua.
	Metadata map[string]any
}

// envoyResult is what the filter did with a request.
type envoyResult struct {
	// Responded: the script called respond() with these.
	Responded bool
	Status    string
	Headers   map[string]string
	Body      *string
	// ScriptError is an error the script did not catch: Envoy logs it
	// and passes the request on to the router.
	ScriptError string
	// Violation is a use of the handle that Envoy would not have
	// allowed to happen, such as the script going on after respond().
	Violation string
	Calls     []httpCallRecord
	Logs      []logLine
}

type logLine struct{ Level, Message string }

// httpCallRecord is one httpCall: what the script asked and what it got.
type httpCallRecord struct {
	Cluster   string
	Headers   map[string][]string
	Body      *string
	TimeoutMS int64
	// Raised is the Lua error httpCall raised, if it did; otherwise the
	// response the script received.
	Raised   string
	Response map[string]string
	RespBody *string
}

func (r envoyResult) warned() bool {
	return slices.ContainsFunc(r.Logs, func(l logLine) bool { return l.Level == "warn" })
}

// envoyShim runs Lua filter scripts.
type envoyShim struct {
	// Clusters maps a cluster name to its base URL, "http://host:port".
	Clusters map[string]string
	// LocalAddress is Envoy's own address, which its async client appends
	// to x-forwarded-for.
	LocalAddress string
}

// errResponded is raised by respond(): Envoy stops the script there.
var errResponded = errors.New("respond() ended the script")

// loadScript returns a Lua state with the script loaded, as Envoy loads
// it once per worker.
func loadScript(t *testing.T, script string) *lua.LState {
	t.Helper()
	L := lua.NewState()
	t.Cleanup(L.Close)
	if err := L.DoString(script); err != nil {
		t.Fatalf("loading the script: %v", err)
	}
	if _, ok := L.GetGlobal("envoy_on_request").(*lua.LFunction); !ok {
		t.Fatal("the script defines no envoy_on_request function")
	}
	strictGlobals(t, L)
	return L
}

// strictGlobals makes reading an undefined global an error: in Envoy it
// would be nil, which a script never means (a typo, a missing local).
func strictGlobals(t *testing.T, L *lua.LState) {
	t.Helper()
	if err := L.DoString(`
		setmetatable(_G, {__index = function(_, k) error("read of undefined global " .. tostring(k), 2) end})`); err != nil {
		t.Fatal(err)
	}
}

// run calls envoy_on_request for req in L.
func (s *envoyShim) run(L *lua.LState, req envoyRequest) envoyResult {
	var res envoyResult
	h := &streamHandle{shim: s, L: L, req: req, res: &res}
	sentinel := L.NewUserData()
	sentinel.Value = errResponded
	h.sentinel = sentinel
	err := L.CallByParam(lua.P{Fn: L.GetGlobal("envoy_on_request"), NRet: 0, Protect: true}, h.object())
	var apiErr *lua.ApiError
	switch {
	case err == nil && res.Responded:
		res.Violation = "respond() returned to the script, which went on to the end (was it called inside pcall?)"
	case err == nil:
	case errors.As(err, &apiErr) && apiErr.Object == sentinel:
	default:
		res.ScriptError = err.Error()
	}
	if h.violation != "" {
		res.Violation = h.violation
	}
	return res
}

// streamHandle is the request_handle of one request.
type streamHandle struct {
	shim      *envoyShim
	L         *lua.LState
	req       envoyRequest
	res       *envoyResult
	sentinel  *lua.LUserData
	headers   [][2]string // request headers, lower-case names
	violation string
	self      *lua.LUserData
}

// newObject returns a userdata whose methods are called with ':', like
// Envoy's wrappers; setting a field on it is an error.
func newObject(L *lua.LState, name string, methods map[string]lua.LGFunction) *lua.LUserData {
	ud := L.NewUserData()
	mt := L.NewTable()
	mt.RawSetString("__index", L.SetFuncs(L.NewTable(), methods))
	mt.RawSetString("__newindex", L.NewFunction(func(L *lua.LState) int {
		L.RaiseError("%s: cannot set fields", name)
		return 0
	}))
	mt.RawSetString("__tostring", L.NewFunction(func(L *lua.LState) int {
		L.Push(lua.LString(name))
		return 1
	}))
	L.SetMetatable(ud, mt)
	return ud
}

func (h *streamHandle) object() *lua.LUserData {
	h.headers = [][2]string{{":method", h.req.Method}, {":path", h.req.Path}, {":authority", "registry.example.com"}, {":scheme", "http"}}
	for _, kv := range h.req.Headers {
		h.headers = append(h.headers, [2]string{strings.ToLower(kv[0]), kv[1]})
	}
	methods := map[string]lua.LGFunction{
		"headers":    h.method(h.luaHeaders),
		"streamInfo": h.method(h.luaStreamInfo),
		"metadata":   h.method(h.luaMetadata),
		"httpCall":   h.method(h.luaHTTPCall),
		"respond":    h.method(h.luaRespond),
	}
	for _, level := range []string{"Trace", "Debug", "Info", "Warn", "Err", "Critical"} {
		methods["log"+level] = h.method(func(L *lua.LState) int {
			h.res.Logs = append(h.res.Logs, logLine{Level: strings.ToLower(level), Message: L.CheckString(2)})
			return 0
		})
	}
	h.self = newObject(h.L, "stream handle", methods)
	return h.self
}

// method checks what Envoy checks of every stream handle call: it is made
// on the handle (with ':') and not after the script responded.
func (h *streamHandle) method(f lua.LGFunction) lua.LGFunction {
	return func(L *lua.LState) int {
		if L.Get(1) != h.self {
			L.RaiseError("stream handle method called without ':' or on another object")
		}
		if h.res.Responded {
			h.violation = "the stream handle was used after respond()"
			L.RaiseError("%s", h.violation)
		}
		return f(L)
	}
}

func (h *streamHandle) luaHeaders(L *lua.LState) int {
	get := func(L *lua.LState) int {
		key := strings.ToLower(L.CheckString(2))
		var vals []string
		for _, kv := range h.headers {
			if kv[0] == key {
				vals = append(vals, kv[1])
			}
		}
		if vals == nil {
			L.Push(lua.LNil)
		} else {
			L.Push(lua.LString(strings.Join(vals, ",")))
		}
		return 1
	}
	remove := func(key string) {
		h.headers = slices.DeleteFunc(h.headers, func(kv [2]string) bool { return kv[0] == key })
	}
	L.Push(newObject(L, "header map", map[string]lua.LGFunction{
		"get": get,
		"add": func(L *lua.LState) int {
			h.headers = append(h.headers, [2]string{strings.ToLower(L.CheckString(2)), L.CheckString(3)})
			return 0
		},
		"replace": func(L *lua.LState) int {
			key := strings.ToLower(L.CheckString(2))
			remove(key)
			h.headers = append(h.headers, [2]string{key, L.CheckString(3)})
			return 0
		},
		"remove": func(L *lua.LState) int {
			remove(strings.ToLower(L.CheckString(2)))
			return 0
		},
	}))
	return 1
}

func (h *streamHandle) luaStreamInfo(L *lua.LState) int {
	remote := h.req.Remote
	if remote == "" {
		remote = h.req.DirectRemote
	}
	L.Push(newObject(L, "stream info", map[string]lua.LGFunction{
		"downstreamDirectRemoteAddress": func(L *lua.LState) int {
			L.Push(lua.LString(h.req.DirectRemote))
			return 1
		},
		"downstreamRemoteAddress": func(L *lua.LState) int {
			L.Push(lua.LString(remote))
			return 1
		},
		"protocol": func(L *lua.LState) int {
			L.Push(lua.LString("HTTP/1.1"))
			return 1
		},
	}))
	return 1
}

func (h *streamHandle) luaMetadata(L *lua.LState) int {
	L.Push(newObject(L, "metadata", map[string]lua.LGFunction{
		"get": func(L *lua.LState) int {
			L.Push(toLua(L, h.req.Metadata[L.CheckString(2)]))
			return 1
		},
	}))
	return 1
}

// toLua converts metadata values (a protobuf Struct's kinds) to Lua.
func toLua(L *lua.LState, v any) lua.LValue {
	switch v := v.(type) {
	case nil:
		return lua.LNil
	case string:
		return lua.LString(v)
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case int:
		return lua.LNumber(v)
	case map[string]any:
		t := L.NewTable()
		for k, e := range v {
			t.RawSetString(k, toLua(L, e))
		}
		return t
	case []any:
		t := L.NewTable()
		for _, e := range v {
			t.Append(toLua(L, e))
		}
		return t
	}
	panic(fmt.Sprintf("metadata value of type %T", v))
}

// headersFromTable reads a headers table as Envoy's buildHeadersFromTable
// does: string keys, lower-cased; a value is a string (or a number) or a
// table of them.
func headersFromTable(L *lua.LState, t *lua.LTable) map[string][]string {
	out := map[string][]string{}
	value := func(v lua.LValue) string {
		switch v.Type() {
		case lua.LTString, lua.LTNumber:
			return v.String()
		}
		L.RaiseError("header value: string expected, got %s", v.Type())
		return ""
	}
	t.ForEach(func(k, v lua.LValue) {
		if k.Type() != lua.LTString {
			L.RaiseError("header key: string expected, got %s", k.Type())
		}
		key := strings.ToLower(k.String())
		if vt, ok := v.(*lua.LTable); ok {
			vt.ForEach(func(_, e lua.LValue) { out[key] = append(out[key], value(e)) })
			return
		}
		out[key] = append(out[key], value(v))
	})
	return out
}

type callOptions struct {
	timeoutMS  int64
	async      bool
	duplicates bool
	sendXFF    bool
}

func (h *streamHandle) luaHTTPCall(L *lua.LState) int {
	cluster := L.CheckString(2)
	table := L.CheckTable(3)
	var body *string
	switch v := L.Get(4); v.Type() {
	case lua.LTNil:
	case lua.LTString, lua.LTNumber:
		s := v.String()
		body = &s
	default:
		L.ArgError(4, "string expected")
	}
	opts := callOptions{sendXFF: true}
	if t, ok := L.Get(5).(*lua.LTable); ok {
		t.ForEach(func(k, v lua.LValue) {
			switch k.String() {
			case "asynchronous":
				opts.async = lua.LVAsBool(v)
			case "timeout_ms":
				n, ok := v.(lua.LNumber)
				if !ok || n != lua.LNumber(int64(n)) {
					L.RaiseError("'timeout_ms' option: integer expected")
				}
				opts.timeoutMS = int64(n)
			case "trace_sampled":
			case "return_duplicate_headers":
				opts.duplicates = lua.LVAsBool(v)
			case "send_xff":
				opts.sendXFF = lua.LVAsBool(v)
			default:
				L.RaiseError("%q is not valid key for httpCall() options", k.String())
			}
		})
	} else {
		if a := L.Get(6); a.Type() != lua.LTNil && a.Type() != lua.LTBool {
			L.RaiseError("http call asynchronous flag must be 'true', 'false', or empty")
		}
		n, ok := L.Get(5).(lua.LNumber)
		if !ok || n != lua.LNumber(int64(n)) {
			L.ArgError(5, "integer expected")
		}
		opts.timeoutMS = int64(n)
		opts.async = lua.LVAsBool(L.Get(6))
	}
	if opts.timeoutMS < 0 {
		L.RaiseError("http call timeout must be >= 0")
	}
	rec := httpCallRecord{Cluster: cluster, Body: body, TimeoutMS: opts.timeoutMS}
	raise := func(msg string) {
		rec.Raised = msg
		h.res.Calls = append(h.res.Calls, rec)
		// Envoy's errors from C carry no position.
		L.Error(lua.LString(msg), 0)
	}
	base, ok := h.shim.Clusters[cluster]
	if !ok {
		raise("http call cluster invalid. Must be configured")
	}
	rec.Headers = headersFromTable(L, table)
	if rec.Headers[":path"] == nil || rec.Headers[":method"] == nil || rec.Headers[":authority"] == nil {
		raise("http call headers must include ':path', ':method', and ':authority'")
	}
	status, respHeaders, respBody := h.shim.do(base, rec, opts)
	resp := L.NewTable()
	resp.RawSetString(":status", lua.LString(strconv.Itoa(status)))
	rec.Response = map[string]string{":status": strconv.Itoa(status)}
	for k, vs := range respHeaders {
		k = strings.ToLower(k)
		rec.Response[k] = vs[len(vs)-1]
		if opts.duplicates && len(vs) > 1 {
			t := L.NewTable()
			for _, v := range vs {
				t.Append(lua.LString(v))
			}
			resp.RawSetString(k, t)
			continue
		}
		resp.RawSetString(k, lua.LString(vs[len(vs)-1]))
	}
	if len(respBody) > 0 {
		s := string(respBody)
		rec.RespBody = &s
	}
	h.res.Calls = append(h.res.Calls, rec)
	if opts.async {
		return 0
	}
	L.Push(resp)
	if rec.RespBody == nil {
		L.Push(lua.LNil)
	} else {
		L.Push(lua.LString(*rec.RespBody))
	}
	return 2
}

// do makes the request of an httpCall for real. Failures come back as
// the local replies Envoy's router makes for them.
func (s *envoyShim) do(base string, rec httpCallRecord, opts callOptions) (int, http.Header, []byte) {
	ctx := context.Background()
	if opts.timeoutMS > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(opts.timeoutMS)*time.Millisecond)
		defer cancel()
	}
	var body io.Reader
	if rec.Body != nil {
		body = strings.NewReader(*rec.Body)
	}
	req, err := http.NewRequestWithContext(ctx, rec.Headers[":method"][0], base+rec.Headers[":path"][0], body)
	if err != nil {
		return http.StatusServiceUnavailable, nil, []byte("upstream failure")
	}
	req.Host = rec.Headers[":authority"][0]
	for k, vs := range rec.Headers {
		if !strings.HasPrefix(k, ":") {
			req.Header[http.CanonicalHeaderKey(k)] = vs
		}
	}
	req.Header.Set("X-Envoy-Internal", "true")
	if opts.sendXFF {
		if xff := req.Header.Get("X-Forwarded-For"); xff != "" {
			req.Header.Set("X-Forwarded-For", xff+","+s.LocalAddress)
		} else {
			req.Header.Set("X-Forwarded-For", s.LocalAddress)
		}
	}
	client := &http.Client{
		Transport:     &http.Transport{DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err == nil {
		defer resp.Body.Close()
		var b []byte
		if b, err = io.ReadAll(resp.Body); err == nil {
			return resp.StatusCode, resp.Header, b
		}
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return http.StatusGatewayTimeout, http.Header{"Content-Type": {"text/plain"}}, []byte("upstream request timeout")
	}
	return http.StatusServiceUnavailable, http.Header{"Content-Type": {"text/plain"}},
		[]byte("upstream connect error or disconnect/reset before headers. reset reason: remote connection failure")
}

func (h *streamHandle) luaRespond(L *lua.LState) int {
	headers := headersFromTable(L, L.CheckTable(2))
	var body *string
	switch v := L.Get(3); v.Type() {
	case lua.LTNil:
	case lua.LTString, lua.LTNumber:
		s := v.String()
		body = &s
	default:
		L.ArgError(3, "string expected")
	}
	status := ""
	if vs := headers[":status"]; len(vs) == 1 {
		status = vs[0]
	}
	if n, err := strconv.Atoi(status); err != nil || n < 200 || n >= 600 {
		L.RaiseError(":status must be between 200-599")
	}
	h.res.Responded, h.res.Status, h.res.Body = true, status, body
	h.res.Headers = map[string]string{}
	for k, vs := range headers {
		if k != ":status" {
			h.res.Headers[k] = strings.Join(vs, ",")
		}
	}
	L.Error(h.sentinel, 0)
	return 0
}
