package envoytest

import (
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"
)

// backend is what answers on the "reghost" cluster.
type backend string

const (
	backendReghost     backend = "reghost"      // a real reghost
	backendDown        backend = "down"         // a closed port
	backendSlow        backend = "slow"         // answers after 2s
	backend500         backend = "500"          // answers 500
	backendEmpty200    backend = "empty-200"    // 200, no body, no location
	backendBadLocation backend = "bad-location" // 200 with a location that is no URL
	backendNoCluster   backend = "no-cluster"   // no such cluster: httpCall raises
)

// backendLocationPrefix starts a backend that answers 200 with the rest of
// its name as X-Reghost-Location; locationBackend makes one.
const backendLocationPrefix = "location "

func locationBackend(location string) backend {
	return backend(backendLocationPrefix + location)
}

// scriptVariant names a version of the script under test.
type scriptVariant string

const (
	scriptShipped  scriptVariant = "reghost.lua"           // deploy/envoy/reghost.lua
	scriptTrustXFF scriptVariant = "reghost-trust-xff.lua" // the same with TRUST_XFF = true
	scriptOriginal scriptVariant = "original.lua"          // testdata/original.lua
)

type luaCase struct {
	name    string
	script  scriptVariant
	backend backend
	req     envoyRequest
	// wantStatus and wantLocation are the answer; wantWarn, whether the
	// script logged a warning (it does on every fallback).
	wantStatus   string
	wantLocation string
	wantWarn     bool
	// wantWarnHas is in a warning when set: the reason of a fallback.
	wantWarnHas string
	// wantClient is the X-Real-IP the script sends reghost; "" when it
	// makes no call.
	wantClient string
}

const (
	manifest     = "/v2/pause/manifests/3.9"
	mirrorLoc    = "https://" + mirrorHost + "/v2/images/pause/manifests/3.9"
	reghostDefLo = "https://" + reghostDefaultHost + manifest
)

// luaCases are run under gopher-lua against a real reghost, then replayed
// under LuaJIT. fallback is the script's default registry.
func luaCases(fallback string) []luaCase {
	get := func(remote, path string) envoyRequest {
		return envoyRequest{Method: "GET", Path: path, DirectRemote: remote}
	}
	fb := "https://" + fallback + manifest
	return []luaCase{
		{name: "GET rule client IPv4", backend: backendReghost, req: get(ruleV4+":5555", manifest),
			wantStatus: "302", wantLocation: mirrorLoc, wantClient: ruleV4},
		{name: "HEAD rule client IPv4", backend: backendReghost,
			req:        envoyRequest{Method: "HEAD", Path: manifest, DirectRemote: ruleV4 + ":5555"},
			wantStatus: "302", wantLocation: mirrorLoc, wantClient: ruleV4},
		{name: "GET default client IPv4", backend: backendReghost, req: get(otherV4+":1234", manifest),
			wantStatus: "302", wantLocation: reghostDefLo, wantClient: otherV4},
		{name: "HEAD default client IPv4", backend: backendReghost,
			req:        envoyRequest{Method: "HEAD", Path: manifest, DirectRemote: otherV4 + ":1234"},
			wantStatus: "302", wantLocation: reghostDefLo, wantClient: otherV4},
		{name: "GET rule client IPv6", backend: backendReghost, req: get("["+ruleV6+"]:5555", manifest),
			wantStatus: "302", wantLocation: mirrorLoc, wantClient: ruleV6},
		{name: "GET default client IPv6", backend: backendReghost, req: get("["+otherV6+"]:443", manifest),
			wantStatus: "302", wantLocation: reghostDefLo, wantClient: otherV6},
		{name: "query kept", backend: backendReghost, req: get(ruleV4+":5555", "/v2/pause/tags/list?n=1&last=3.8"),
			wantStatus: "302", wantLocation: "https://" + mirrorHost + "/v2/images/pause/tags/list?n=1&last=3.8", wantClient: ruleV4},
		{name: "client X-Forwarded-For ignored", backend: backendReghost,
			req:        envoyRequest{Method: "GET", Path: manifest, DirectRemote: otherV4 + ":1234", Headers: [][2]string{{"X-Forwarded-For", ruleV4}, {"X-Real-IP", ruleV4}}},
			wantStatus: "302", wantLocation: reghostDefLo, wantClient: otherV4},
		{name: "POST", backend: backendReghost,
			req:        envoyRequest{Method: "POST", Path: "/v2/pause/blobs/uploads/", DirectRemote: ruleV4 + ":5555"},
			wantStatus: "405"},
		{name: "DELETE", backend: backendReghost,
			req:        envoyRequest{Method: "DELETE", Path: manifest, DirectRemote: ruleV4 + ":5555"},
			wantStatus: "405"},
		{name: "reghost down", backend: backendDown, req: get(ruleV4+":5555", manifest),
			wantStatus: "302", wantLocation: fb, wantWarn: true, wantWarnHas: "reghost answered 503", wantClient: ruleV4},
		{name: "reghost down HEAD", backend: backendDown,
			req:        envoyRequest{Method: "HEAD", Path: manifest, DirectRemote: ruleV4 + ":5555"},
			wantStatus: "302", wantLocation: fb, wantWarn: true, wantWarnHas: "reghost answered 503", wantClient: ruleV4},
		{name: "reghost down query kept", backend: backendDown, req: get(ruleV4+":5555", "/v2/pause/tags/list?n=1"),
			wantStatus: "302", wantLocation: "https://" + fallback + "/v2/pause/tags/list?n=1", wantWarn: true, wantWarnHas: "reghost answered 503", wantClient: ruleV4},
		{name: "reghost slow", backend: backendSlow, req: get(ruleV4+":5555", manifest),
			wantStatus: "302", wantLocation: fb, wantWarn: true, wantWarnHas: "reghost answered 504", wantClient: ruleV4},
		{name: "reghost 500", backend: backend500, req: get(ruleV4+":5555", manifest),
			wantStatus: "302", wantLocation: fb, wantWarn: true, wantWarnHas: "reghost answered 500", wantClient: ruleV4},
		{name: "reghost 200 without location", backend: backendEmpty200, req: get(ruleV4+":5555", manifest),
			wantStatus: "302", wantLocation: fb, wantWarn: true, wantWarnHas: "without a usable x-reghost-location", wantClient: ruleV4},
		{name: "reghost 200 with a location that is no URL", backend: backendBadLocation, req: get(ruleV4+":5555", manifest),
			wantStatus: "302", wantLocation: fb, wantWarn: true, wantWarnHas: "without a usable x-reghost-location", wantClient: ruleV4},
		// reghost picks the registry, so any https:// location with a valid
		// host is followed; a downgrade to http://, a missing host or user
		// info is not, and the client goes to the default registry.
		{name: "reghost location on any valid https host", backend: locationBackend("https://evil-but-valid-host" + manifest), req: get(ruleV4+":5555", manifest),
			wantStatus: "302", wantLocation: "https://evil-but-valid-host" + manifest, wantClient: ruleV4},
		{name: "reghost location with a port", backend: locationBackend("https://registry.example:5000/v2/x"), req: get(ruleV4+":5555", manifest),
			wantStatus: "302", wantLocation: "https://registry.example:5000/v2/x", wantClient: ruleV4},
		{name: "reghost location http", backend: locationBackend("http://x.example/v2/"), req: get(ruleV4+":5555", manifest),
			wantStatus: "302", wantLocation: fb, wantWarn: true, wantWarnHas: "without a usable x-reghost-location", wantClient: ruleV4},
		{name: "reghost location https only", backend: locationBackend("https://"), req: get(ruleV4+":5555", manifest),
			wantStatus: "302", wantLocation: fb, wantWarn: true, wantWarnHas: "without a usable x-reghost-location", wantClient: ruleV4},
		{name: "reghost location empty host", backend: locationBackend("https:///v2/"), req: get(ruleV4+":5555", manifest),
			wantStatus: "302", wantLocation: fb, wantWarn: true, wantWarnHas: "without a usable x-reghost-location", wantClient: ruleV4},
		{name: "reghost location user info", backend: locationBackend("https://user@x.example/v2/"), req: get(ruleV4+":5555", manifest),
			wantStatus: "302", wantLocation: fb, wantWarn: true, wantWarnHas: "without a usable x-reghost-location", wantClient: ruleV4},
		{name: "reghost location without a path", backend: locationBackend("https://x.example"), req: get(ruleV4+":5555", manifest),
			wantStatus: "302", wantLocation: fb, wantWarn: true, wantWarnHas: "without a usable x-reghost-location", wantClient: ruleV4},
		{name: "Lua error in httpCall", backend: backendNoCluster, req: get(ruleV4+":5555", manifest),
			wantStatus: "302", wantLocation: fb, wantWarn: true, wantWarnHas: "script error: http call cluster invalid. Must be configured", wantClient: ruleV4},
		{name: "no IP address", backend: backendReghost, req: get("/run/envoy.sock", manifest),
			wantStatus: "302", wantLocation: fb, wantWarn: true, wantWarnHas: "no client IP address"},
		{name: "route metadata default_registry", backend: backendDown,
			req: envoyRequest{Method: "GET", Path: manifest, DirectRemote: ruleV4 + ":5555",
				Metadata: map[string]any{"default_registry": "mirror.gcr.io:443"}},
			wantStatus: "302", wantLocation: "https://mirror.gcr.io:443" + manifest, wantWarn: true, wantClient: ruleV4},
		{name: "route metadata default_registry not a host", backend: backendDown,
			req: envoyRequest{Method: "GET", Path: manifest, DirectRemote: ruleV4 + ":5555",
				Metadata: map[string]any{"default_registry": "evil.example@mirror.gcr.io/x"}},
			wantStatus: "302", wantLocation: fb, wantWarn: true, wantWarnHas: "ignoring route metadata default_registry", wantClient: ruleV4},
		{name: "route metadata default_registry not a string", backend: backendDown,
			req: envoyRequest{Method: "GET", Path: manifest, DirectRemote: ruleV4 + ":5555",
				Metadata: map[string]any{"default_registry": map[string]any{"host": "mirror.gcr.io"}}},
			wantStatus: "302", wantLocation: fb, wantWarn: true, wantWarnHas: "ignoring route metadata default_registry", wantClient: ruleV4},
		{name: "route metadata when reghost is up", backend: backendReghost,
			req: envoyRequest{Method: "GET", Path: manifest, DirectRemote: ruleV4 + ":5555",
				Metadata: map[string]any{"default_registry": "mirror.gcr.io"}},
			wantStatus: "302", wantLocation: mirrorLoc, wantClient: ruleV4},

		// TRUST_XFF = true: the client is Envoy's downstreamRemoteAddress,
		// which the connection manager derives from X-Forwarded-For.
		{name: "TRUST_XFF rule client behind a load balancer", script: scriptTrustXFF, backend: backendReghost,
			req:        envoyRequest{Method: "GET", Path: manifest, DirectRemote: "10.1.2.3:4444", Remote: ruleV4 + ":0"},
			wantStatus: "302", wantLocation: mirrorLoc, wantClient: ruleV4},
		{name: "TRUST_XFF off ignores the derived address", backend: backendReghost,
			req:        envoyRequest{Method: "GET", Path: manifest, DirectRemote: "10.1.2.3:4444", Remote: ruleV4 + ":0"},
			wantStatus: "302", wantLocation: reghostDefLo, wantClient: "10.1.2.3"},

		// The original one-line script against reghost's GET /: the
		// registry's host, without its repository prefix.
		{name: "original script rule client", script: scriptOriginal, backend: backendReghost, req: get(ruleV4+":5555", manifest),
			wantStatus: "302", wantLocation: "https://" + mirrorHost + manifest, wantClient: ruleV4},
		{name: "original script default client IPv6", script: scriptOriginal, backend: backendReghost, req: get("["+otherV6+"]:443", manifest),
			wantStatus: "302", wantLocation: reghostDefLo, wantClient: otherV6},
	}
}

// scripts returns the source of each script variant.
func scripts(t *testing.T) map[scriptVariant]string {
	t.Helper()
	shipped := readFile(t, filepath.Join(envoyDir(t), "reghost.lua"))
	const off, on = "local TRUST_XFF = false\n", "local TRUST_XFF = true\n"
	if strings.Count(shipped, off) != 1 {
		t.Fatalf("reghost.lua: want exactly one line %q", strings.TrimSpace(off))
	}
	return map[scriptVariant]string{
		scriptShipped:  shipped,
		scriptTrustXFF: strings.Replace(shipped, off, on, 1),
		scriptOriginal: readFile(t, filepath.Join("testdata", "original.lua")),
	}
}

var (
	defaultRegistryRE = regexp.MustCompile(`(?m)^local DEFAULT_REGISTRY = "([^"]*)"$`)
	redirectStatusRE  = regexp.MustCompile(`(?m)^local REDIRECT_STATUS = "([^"]*)"$`)
	hostRE            = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]+)?$`)
)

// luaConstant returns a string constant set at the top of reghost.lua.
func luaConstant(t *testing.T, script string, re *regexp.Regexp) string {
	t.Helper()
	m := re.FindAllStringSubmatch(script, -1)
	if len(m) != 1 {
		t.Fatalf("reghost.lua: want one line matching %s, found %d", re, len(m))
	}
	return m[0][1]
}

// clusterURLs starts what the backend needs and returns the clusters
// Envoy would have. reghost is the real reghost's base URL.
func clusterURLs(t *testing.T, b backend, reghost string) map[string]string {
	var u string
	switch b {
	case backendReghost:
		u = reghost
	case backendDown:
		u = closedURL(t)
	case backendSlow:
		u = slowURL(t)
	case backend500:
		u = stubURL(t, func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "boom", http.StatusInternalServerError)
		})
	case backendEmpty200:
		u = stubURL(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	case backendBadLocation:
		u = stubURL(t, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("X-Reghost-Location", "//evil.example/v2/")
			_, _ = w.Write([]byte("//evil.example/v2/"))
		})
	case backendNoCluster:
		return map[string]string{"other": reghost}
	default:
		loc, ok := strings.CutPrefix(string(b), backendLocationPrefix)
		if !ok {
			t.Fatalf("unknown backend %q", b)
		}
		u = stubURL(t, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("X-Reghost-Location", loc)
			w.WriteHeader(http.StatusOK)
		})
	}
	return map[string]string{"reghost": u, "reg-host-authority": u}
}

// luaRun is one case's result under gopher-lua.
type luaRun struct {
	c   luaCase
	res envoyResult
	dur time.Duration
}

// runLuaCases runs every case under gopher-lua, one Lua state per script
// as Envoy keeps one per worker, and returns the results in case order.
func runLuaCases(t *testing.T) []luaRun {
	t.Helper()
	src := scripts(t)
	fallback := luaConstant(t, src[scriptShipped], defaultRegistryRE)
	reghost := startReghost(t, reghostYAML(t, "X-Real-IP", 1))
	states := map[scriptVariant]*lua.LState{}
	var runs []luaRun
	for _, c := range luaCases(fallback) {
		if c.script == "" {
			c.script = scriptShipped
		}
		L := states[c.script]
		if L == nil {
			L = loadScript(t, src[c.script])
			states[c.script] = L
		}
		shim := &envoyShim{Clusters: clusterURLs(t, c.backend, reghost), LocalAddress: "10.0.0.2"}
		start := time.Now()
		res := shim.run(L, c.req)
		runs = append(runs, luaRun{c: c, res: res, dur: time.Since(start)})
	}
	return runs
}

// checkLuaResult checks what the filter did against the case. It serves
// both engines.
func checkLuaResult(t *testing.T, c luaCase, r envoyResult, redirectStatus string) {
	t.Helper()
	if r.Violation != "" {
		t.Fatalf("handle misuse: %s", r.Violation)
	}
	if r.ScriptError != "" {
		t.Fatalf("script error (Envoy would pass the request to the router): %s", r.ScriptError)
	}
	if !r.Responded {
		t.Fatal("the script did not respond (Envoy would pass the request to the router)")
	}
	want := c.wantStatus
	if want == "302" {
		want = redirectStatus
	}
	if r.Status != want {
		t.Errorf("status %s, want %s", r.Status, want)
	}
	if r.Body != nil && *r.Body != "" {
		t.Errorf("body %q, want none", *r.Body)
	}
	wantHeaders := map[string]string{"location": c.wantLocation, "cache-control": "private, no-store"}
	switch {
	case c.wantStatus == "405":
		wantHeaders = map[string]string{"allow": "GET, HEAD"}
	case c.script == scriptOriginal:
		wantHeaders = map[string]string{"location": c.wantLocation}
	}
	for k, v := range r.Headers {
		if wantHeaders[k] != v {
			t.Errorf("header %s: %q, want %q", k, v, wantHeaders[k])
		}
	}
	for k, v := range wantHeaders {
		if _, ok := r.Headers[k]; !ok {
			t.Errorf("header %s missing, want %q", k, v)
		}
	}
	if r.warned() != c.wantWarn {
		t.Errorf("warned %v, want %v; logs: %v", r.warned(), c.wantWarn, r.Logs)
	}
	if c.wantWarnHas != "" && !slices.ContainsFunc(r.Logs, func(l logLine) bool {
		return l.Level == "warn" && strings.Contains(l.Message, c.wantWarnHas)
	}) {
		t.Errorf("no warning says %q; logs: %v", c.wantWarnHas, r.Logs)
	}
	if c.wantClient == "" {
		if len(r.Calls) != 0 {
			t.Errorf("made %d httpCalls, want none", len(r.Calls))
		}
		return
	}
	if len(r.Calls) != 1 {
		t.Fatalf("made %d httpCalls, want 1", len(r.Calls))
	}
	call := r.Calls[0]
	if c.script == scriptOriginal {
		if !slices.Equal(call.Headers["x-real-ip"], []string{c.wantClient}) {
			t.Errorf("X-Real-IP %v, want %s", call.Headers["x-real-ip"], c.wantClient)
		}
		return
	}
	if call.Cluster != "reghost" || call.TimeoutMS <= 0 || call.TimeoutMS > 1000 {
		t.Errorf("httpCall to cluster %q with timeout %dms, want cluster reghost and a timeout of at most 1s", call.Cluster, call.TimeoutMS)
	}
	if call.Body != nil {
		t.Errorf("httpCall body %q, want none", *call.Body)
	}
	wantReq := map[string][]string{
		":method": {"GET"}, ":path": {"/decide"}, ":authority": {"reghost"},
		"x-real-ip": {c.wantClient}, "x-original-path": {c.req.Path}, "x-original-method": {c.req.Method},
	}
	if call.Raised == "" || len(call.Headers) > 0 {
		for k, v := range wantReq {
			if !slices.Equal(call.Headers[k], v) {
				t.Errorf("httpCall header %s: %q, want %q", k, call.Headers[k], v)
			}
		}
		for k := range call.Headers {
			if _, ok := wantReq[k]; !ok {
				t.Errorf("httpCall sends unexpected header %s", k)
			}
		}
	}
}

// TestLuaFilterGopherLua runs reghost.lua under gopher-lua against a real
// reghost and the failures Envoy can report for it.
func TestLuaFilterGopherLua(t *testing.T) {
	src := scripts(t)
	status := luaConstant(t, src[scriptShipped], redirectStatusRE)
	if status != "302" && status != "307" {
		t.Errorf("REDIRECT_STATUS %q, want 302 (the original setup's) or 307", status)
	}
	if fb := luaConstant(t, src[scriptShipped], defaultRegistryRE); !hostRE.MatchString(fb) {
		t.Errorf("DEFAULT_REGISTRY %q is not a host", fb)
	}
	for _, run := range runLuaCases(t) {
		t.Run(run.c.name, func(t *testing.T) {
			checkLuaResult(t, run.c, run.res, status)
			if run.c.backend == backendSlow {
				if got := run.res.Calls[0].Response[":status"]; got != "504" {
					t.Errorf("httpCall status %s, want Envoy's 504", got)
				}
			}
			if run.c.backend == backendDown {
				if got := run.res.Calls[0].Response[":status"]; got != "503" {
					t.Errorf("httpCall status %s, want Envoy's 503", got)
				}
			}
		})
	}
}

// globalNames lists the names in _G.
func globalNames(L *lua.LState) []string {
	var names []string
	L.G.Global.ForEach(func(k, _ lua.LValue) { names = append(names, k.String()) })
	slices.Sort(names)
	return names
}

// TestLuaFilterDefinesNoGlobals loads the script and serves requests in a
// state whose globals are compared before and after, and in which reading
// an undefined global is an error (it would be nil in Envoy: a typo).
func TestLuaFilterDefinesNoGlobals(t *testing.T) {
	src := scripts(t)[scriptShipped]
	L := lua.NewState()
	defer L.Close()
	before := globalNames(L)
	if err := L.DoString(src); err != nil {
		t.Fatal(err)
	}
	allowed := []string{"envoy_on_request", "envoy_on_response"}
	diff := func(when string) {
		for _, n := range globalNames(L) {
			if !slices.Contains(before, n) && !slices.Contains(allowed, n) {
				t.Errorf("%s: the script defines the global %q", when, n)
			}
		}
	}
	diff("after loading")
	if _, ok := L.GetGlobal("envoy_on_request").(*lua.LFunction); !ok {
		t.Fatal("no global function envoy_on_request")
	}
	strictGlobals(t, L)
	reghost := startReghost(t, reghostYAML(t, "X-Real-IP", 1))
	for _, req := range []envoyRequest{
		{Method: "GET", Path: manifest, DirectRemote: ruleV4 + ":1"},
		{Method: "HEAD", Path: manifest, DirectRemote: "[" + ruleV6 + "]:1", Metadata: map[string]any{"default_registry": "x.example"}},
		{Method: "POST", Path: manifest, DirectRemote: ruleV4 + ":1"},
		{Method: "GET", Path: manifest, DirectRemote: "/run/envoy.sock"},
	} {
		for _, b := range []backend{backendReghost, backendDown, backendNoCluster} {
			shim := &envoyShim{Clusters: clusterURLs(t, b, reghost), LocalAddress: "10.0.0.2"}
			res := shim.run(L, req)
			if res.ScriptError != "" || res.Violation != "" || !res.Responded {
				t.Errorf("%s %s via %s: responded %v, script error %q, misuse %q", req.Method, req.DirectRemote, b, res.Responded, res.ScriptError, res.Violation)
			}
		}
	}
	diff("after serving requests")
}

// TestLuaFilterNeedsXRealIP shows why reghost must read X-Real-IP behind
// the Lua filter: Envoy's async client appends Envoy's own address to
// X-Forwarded-For, so a reghost reading that header decides for Envoy.
func TestLuaFilterNeedsXRealIP(t *testing.T) {
	src := scripts(t)[scriptShipped]
	reghost := startReghost(t, reghostYAML(t, "X-Forwarded-For", 1))
	L := loadScript(t, src)
	shim := &envoyShim{Clusters: map[string]string{"reghost": reghost}, LocalAddress: "10.0.0.2"}
	res := shim.run(L, envoyRequest{Method: "GET", Path: manifest, DirectRemote: ruleV4 + ":5555"})
	if !res.Responded || res.Headers["location"] != reghostDefLo {
		t.Fatalf("location %q, want %q: reghost reading X-Forwarded-For should have decided for Envoy's address", res.Headers["location"], reghostDefLo)
	}
}

// TestShimCatchesRespondInsidePcall makes sure the shim reports a script
// that goes on after respond(), which Envoy would have stopped.
func TestShimCatchesRespondInsidePcall(t *testing.T) {
	L := loadScript(t, `
function envoy_on_request(h)
  pcall(function() h:respond({[":status"] = "302", location = "https://a.example/"}, "") end)
  h:respond({[":status"] = "302", location = "https://b.example/"}, "")
end`)
	res := (&envoyShim{}).run(L, envoyRequest{Method: "GET", Path: "/", DirectRemote: ruleV4 + ":1"})
	if res.Violation == "" {
		t.Fatalf("no misuse reported; result %+v", res)
	}
}
