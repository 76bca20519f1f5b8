package envoytest

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	luav3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/lua/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	downstreamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/resource_monitors/downstream_connections/v3"
	fixedheapv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/resource_monitors/fixed_heap/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"

	"github.com/reghost/reghost/internal/config"
)

// Importing the extension packages above registers their types, so that
// protojson and Any.UnmarshalNew resolve the typed_config of each filter.
// A typed_config naming a type that no imported package registers fails
// to decode: add the package to the imports when the config gains one.

// validator is what protoc-gen-validate generates on every message.
type validator interface{ ValidateAll() error }

// envoyConfig is a decoded Envoy bootstrap and the typed_config messages
// found in it, by their path in the config.
type envoyConfig struct {
	boot  *bootstrapv3.Bootstrap
	typed []typedConfig
}

type typedConfig struct {
	path string
	msg  proto.Message
}

// decodeEnvoyConfig decodes YAML as Envoy does (YAML to JSON to proto3
// JSON, unknown fields refused), validates it with Envoy's
// protoc-gen-validate rules, and decodes and validates every Any in it,
// recursively: ValidateAll does not look inside an Any.
func decodeEnvoyConfig(yamlText string) (*envoyConfig, []string) {
	j, err := yaml.YAMLToJSON([]byte(yamlText))
	if err != nil {
		return nil, []string{"YAML: " + err.Error()}
	}
	boot := &bootstrapv3.Bootstrap{}
	if err := protojson.Unmarshal(j, boot); err != nil {
		return nil, []string{"decoding into envoy.config.bootstrap.v3.Bootstrap: " + err.Error()}
	}
	var problems []string
	if err := boot.ValidateAll(); err != nil {
		problems = append(problems, "bootstrap: "+err.Error())
	}
	cfg := &envoyConfig{boot: boot}
	walkAnys(boot.ProtoReflect(), "", func(path string, a *anypb.Any) {
		msg, err := a.UnmarshalNew()
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %s: %v", path, a.GetTypeUrl(), err))
			return
		}
		v, ok := msg.(validator)
		if !ok {
			problems = append(problems, fmt.Sprintf("%s: %s has no validation rules", path, a.GetTypeUrl()))
			return
		}
		if err := v.ValidateAll(); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %s: %v", path, a.GetTypeUrl(), err))
		}
		cfg.typed = append(cfg.typed, typedConfig{path: path, msg: msg})
	})
	return cfg, problems
}

// walkAnys calls visit for every google.protobuf.Any in m, and walks the
// message inside each Any too.
func walkAnys(m protoreflect.Message, path string, visit func(string, *anypb.Any)) {
	var walk func(m protoreflect.Message, path string)
	walk = func(m protoreflect.Message, path string) {
		if a, ok := m.Interface().(*anypb.Any); ok {
			visit(path, a)
			if inner, err := a.UnmarshalNew(); err == nil {
				walk(inner.ProtoReflect(), path+"<"+string(inner.ProtoReflect().Descriptor().Name())+">")
			}
			return
		}
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			p := path + "." + string(fd.Name())
			switch {
			case fd.IsList() && fd.Message() != nil:
				for i := 0; i < v.List().Len(); i++ {
					walk(v.List().Get(i).Message(), fmt.Sprintf("%s[%d]", p, i))
				}
			case fd.IsMap() && fd.MapValue().Message() != nil:
				v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
					walk(mv.Message(), fmt.Sprintf("%s[%s]", p, k.String()))
					return true
				})
			case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
				walk(v.Message(), p)
			}
			return true
		})
	}
	walk(m, path)
}

// typedOf returns the typed configs of type T.
func typedOf[T proto.Message](c *envoyConfig) []T {
	var out []T
	for _, tc := range c.typed {
		if m, ok := tc.msg.(T); ok {
			out = append(out, m)
		}
	}
	return out
}

// reghostPort is the port of reghost's default public listener.
func reghostPort(t *testing.T) uint32 {
	t.Helper()
	cfg, err := config.Parse([]byte("registries: [{name: d, url: \"https://d.example\", default: true}]\n"), "defaults.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, port, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		t.Fatalf("reghost's default listen %q: %v", cfg.Listen, err)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(n)
}

// wiring is what the Envoy configs must agree on with reghost and with
// reghost.lua.
type wiring struct {
	envoyDir        string // deploy/envoy, where /etc/envoy/ files are
	reghostPort     uint32 // reghost's default listen port
	defaultRegistry string // DEFAULT_REGISTRY in reghost.lua
	luaCluster      string // REGHOST_CLUSTER in reghost.lua
	lua             bool   // the config must use the Lua filter, else ext_authz
}

var luaClusterRE = regexp.MustCompile(`(?m)^local REGHOST_CLUSTER = "([^"]*)"$`)

// check returns every way the config c does not fit w.
func (w wiring) check(c *envoyConfig) []string {
	var p []string
	bad := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }
	b := c.boot

	if a := b.GetAdmin().GetAddress().GetSocketAddress(); a.GetAddress() != "127.0.0.1" || a.GetPortValue() != 9901 {
		bad("admin listens on %s:%d, want 127.0.0.1:9901", a.GetAddress(), a.GetPortValue())
	}
	clusters := map[string]*clusterv3.Cluster{}
	for _, cl := range b.GetStaticResources().GetClusters() {
		clusters[cl.GetName()] = cl
	}
	referenced := map[string]string{} // cluster -> who uses it

	listeners := b.GetStaticResources().GetListeners()
	if len(listeners) != 1 {
		bad("%d listeners, want 1", len(listeners))
	}
	for _, l := range listeners {
		if a := l.GetAddress().GetSocketAddress(); a.GetAddress() != "0.0.0.0" || a.GetPortValue() != listenerPort {
			bad("listener %s on %s:%d, want 0.0.0.0:%d", l.GetName(), a.GetAddress(), a.GetPortValue(), listenerPort)
		}
	}
	hcms := typedOf[*hcmv3.HttpConnectionManager](c)
	if len(hcms) != 1 {
		bad("%d HTTP connection managers, want 1", len(hcms))
		return p
	}
	hcm := hcms[0]
	if !hcm.GetUseRemoteAddress().GetValue() {
		bad("use_remote_address is not true: clients could choose their address with X-Forwarded-For")
	}

	// Edge hardening, per Envoy's "Configuring Envoy as an edge proxy":
	// load shed before memory runs out, connections bounded.
	om := b.GetOverloadManager()
	monitors := map[string]bool{}
	for _, m := range om.GetResourceMonitors() {
		monitors[m.GetName()] = true
	}
	heaps := typedOf[*fixedheapv3.FixedHeapConfig](c)
	if len(heaps) != 1 || !monitors["envoy.resource_monitors.fixed_heap"] || heaps[0].GetMaxHeapSizeBytes() == 0 || heaps[0].GetMaxHeapSizeBytes() > 256<<20*4/5 {
		bad("overload_manager: want one fixed_heap monitor, at most 80%% of the Kubernetes container's 256 MiB, so that Envoy sheds load before the kernel kills it; got %v", heaps)
	}
	conns := typedOf[*downstreamv3.DownstreamConnectionsConfig](c)
	if len(conns) != 1 || !monitors["envoy.resource_monitors.global_downstream_max_connections"] || conns[0].GetMaxActiveDownstreamConnections() <= 0 {
		bad("overload_manager: want a global_downstream_max_connections monitor with a limit; got %v", conns)
	}
	onHeap := map[string]bool{} // actions the heap triggers below its limit
	for _, a := range om.GetActions() {
		for _, tr := range a.GetTriggers() {
			if v := tr.GetThreshold().GetValue(); tr.GetName() == "envoy.resource_monitors.fixed_heap" && v > 0 && v < 1 {
				onHeap[a.GetName()] = true
			}
		}
	}
	for _, action := range []string{"envoy.overload_actions.stop_accepting_requests", "envoy.overload_actions.reject_incoming_connections"} {
		if !onHeap[action] {
			bad("overload_manager: the heap does not trigger %s below its limit: new requests or connections would keep coming", action)
		}
	}
	if !b.GetAdmin().GetIgnoreGlobalConnLimit() {
		bad("admin: ignore_global_conn_limit is not set: at the connection limit, operators could not reach /stats")
	}

	// Buffers and timeouts bounded, headers with underscores refused.
	for _, l := range listeners {
		if n := l.GetPerConnectionBufferLimitBytes(); n == nil || n.GetValue() == 0 || n.GetValue() > 32<<10 {
			bad("listener %s per_connection_buffer_limit_bytes %v, want at most 32 KiB (Envoy's default is 1 MiB)", l.GetName(), n.GetValue())
		}
	}
	if d := hcm.GetRequestHeadersTimeout().AsDuration(); d <= 0 || d > 10*time.Second {
		bad("request_headers_timeout %v, want at most 10s (unset or 0 waits for headers forever)", d)
	}
	if d := hcm.GetStreamIdleTimeout().AsDuration(); hcm.GetStreamIdleTimeout() == nil || d <= 0 || d > 300*time.Second {
		bad("stream_idle_timeout %v, want set and at most 300s", d)
	}
	opts := hcm.GetCommonHttpProtocolOptions()
	if d := opts.GetIdleTimeout().AsDuration(); d <= 0 || d > 120*time.Second {
		bad("common_http_protocol_options.idle_timeout %v, want at most 120s, reghost's own (unset is 1h)", d)
	}
	if a := opts.GetHeadersWithUnderscoresAction(); a != corev3.HttpProtocolOptions_REJECT_REQUEST {
		bad("common_http_protocol_options.headers_with_underscores_action %v, want REJECT_REQUEST", a)
	}

	// Filters: Lua or ext_authz first, the router last.
	filters := hcm.GetHttpFilters()
	var names []string
	for _, f := range filters {
		names = append(names, f.GetName())
	}
	first := "envoy.filters.http.ext_authz"
	if w.lua {
		first = "envoy.filters.http.lua"
	}
	if !slices.Equal(names, []string{first, "envoy.filters.http.router"}) {
		bad("http_filters %v, want [%s envoy.filters.http.router]", names, first)
	}
	if len(typedOf[*routerv3.Router](c)) != 1 {
		bad("want one router filter")
	}
	luas, authzs := typedOf[*luav3.Lua](c), typedOf[*extauthzv3.ExtAuthz](c)
	if w.lua {
		if len(luas) != 1 || len(authzs) != 0 {
			bad("%d Lua and %d ext_authz filters, want 1 and 0", len(luas), len(authzs))
		}
		for _, l := range luas {
			file := l.GetDefaultSourceCode().GetFilename()
			if l.GetInlineCode() != "" || len(l.GetSourceCodes()) != 0 || file == "" {
				bad("the Lua filter must load its script with default_source_code.filename only")
			}
			rel, ok := strings.CutPrefix(file, "/etc/envoy/")
			if !ok {
				bad("Lua script %s is not under /etc/envoy/", file)
			} else if _, err := os.Stat(filepath.Join(w.envoyDir, rel)); err != nil {
				bad("Lua script %s: deploy/envoy/%s does not exist", file, rel)
			} else if rel != "reghost.lua" {
				bad("Lua script %s is not reghost.lua, the script the tests run", file)
			}
		}
		referenced[w.luaCluster] = "reghost.lua httpCall"
	} else {
		if len(luas) != 0 || len(authzs) != 1 {
			bad("%d Lua and %d ext_authz filters, want 0 and 1", len(luas), len(authzs))
		}
		for _, a := range authzs {
			hs := a.GetHttpService()
			uri := hs.GetServerUri()
			referenced[uri.GetCluster()] = "ext_authz server_uri"
			if hs == nil || hs.GetPathPrefix() != "/ext_authz" {
				bad("ext_authz http_service.path_prefix %q, want /ext_authz", hs.GetPathPrefix())
			}
			if d := uri.GetTimeout().AsDuration(); d <= 0 || d > time.Second {
				bad("ext_authz timeout %v, want at most 1s", d)
			}
			if !a.GetFailureModeAllow() {
				bad("ext_authz failure_mode_allow is false: clients would get 403 when reghost is down")
			}
			if !slices.ContainsFunc(hs.GetAuthorizationRequest().GetHeadersToAdd(), func(h *corev3.HeaderValue) bool {
				return strings.EqualFold(h.GetKey(), "x-real-ip") && h.GetValue() == "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"
			}) {
				bad("ext_authz does not set x-real-ip to %%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%%")
			}
			var client []string
			for _, m := range hs.GetAuthorizationResponse().GetAllowedClientHeaders().GetPatterns() {
				client = append(client, m.GetExact())
			}
			for _, h := range []string{"location", "cache-control", "allow"} {
				if !slices.Contains(client, h) {
					bad("ext_authz allowed_client_headers lacks %s", h)
				}
			}
		}
	}

	// Routes: everything ends at a redirect to the default registry.
	rc := hcm.GetRouteConfig()
	if rc == nil {
		bad("no static route_config")
		return p
	}
	for _, vh := range rc.GetVirtualHosts() {
		routes := vh.GetRoutes()
		for _, r := range routes {
			if cl := r.GetRoute().GetCluster(); cl != "" {
				referenced[cl] = "route " + r.GetName()
			}
		}
		if len(routes) == 0 {
			bad("virtual host %s has no routes", vh.GetName())
			continue
		}
		last := routes[len(routes)-1]
		rd := last.GetRedirect()
		switch {
		case last.GetMatch().GetPrefix() != "/":
			bad("the last route of %s does not match prefix /", vh.GetName())
		case rd == nil:
			bad("the last route of %s is not a redirect", vh.GetName())
		default:
			if rd.GetHostRedirect() != w.defaultRegistry || rd.GetSchemeRedirect() != "https" ||
				rd.GetResponseCode() != routev3.RedirectAction_FOUND || rd.GetPathRedirect() != "" ||
				rd.GetPrefixRewrite() != "" || rd.GetStripQuery() {
				bad("fallback route redirects to %s://%s (code %v), want https://%s keeping path and query (FOUND)",
					rd.GetSchemeRedirect(), rd.GetHostRedirect(), rd.GetResponseCode(), w.defaultRegistry)
			}
		}
		if w.lua {
			md := last.GetMetadata().GetFilterMetadata()["envoy.filters.http.lua"].GetFields()["default_registry"]
			if md.GetStringValue() != w.defaultRegistry {
				bad("fallback route metadata default_registry %q, want %q as in reghost.lua", md.GetStringValue(), w.defaultRegistry)
			}
		}
		if !slices.Contains(vh.GetDomains(), "*") {
			bad("virtual host %s does not take every domain", vh.GetName())
		}
	}

	// Clusters: every reference resolves; reghost's is health checked.
	for name, by := range referenced {
		if clusters[name] == nil {
			bad("cluster %q (used by %s) is not defined", name, by)
		}
	}
	for name := range clusters {
		if _, ok := referenced[name]; !ok {
			bad("cluster %q is not used", name)
		}
	}
	rh := clusters["reghost"]
	if rh == nil {
		bad("no cluster named reghost")
		return p
	}
	if rh.GetType() != clusterv3.Cluster_STRICT_DNS {
		bad("cluster reghost has type %v, want STRICT_DNS", rh.GetType())
	}
	if d := rh.GetConnectTimeout().AsDuration(); d <= 0 || d > time.Second {
		bad("cluster reghost connect_timeout %v, want at most 1s", d)
	}
	if !rh.GetIgnoreHealthOnHostRemoval() {
		bad("cluster reghost keeps replicas gone from DNS while they pass health checks; set ignore_health_on_host_removal")
	}
	var ports []uint32
	for _, e := range rh.GetLoadAssignment().GetEndpoints() {
		for _, le := range e.GetLbEndpoints() {
			sa := le.GetEndpoint().GetAddress().GetSocketAddress()
			ports = append(ports, sa.GetPortValue())
			if sa.GetPortValue() != w.reghostPort {
				bad("cluster reghost endpoint %s:%d, want port %d, reghost's default listen", sa.GetAddress(), sa.GetPortValue(), w.reghostPort)
			}
		}
	}
	if len(ports) == 0 {
		bad("cluster reghost has no endpoints")
	}
	hcs := rh.GetHealthChecks()
	if len(hcs) != 1 {
		bad("cluster reghost has %d health checks, want 1", len(hcs))
	}
	for _, hc := range hcs {
		if hc.GetHttpHealthCheck().GetPath() != "/healthz" {
			bad("reghost health check path %q, want /healthz", hc.GetHttpHealthCheck().GetPath())
		}
		if hc.GetInterval() == nil || hc.GetTimeout() == nil || hc.GetHealthyThreshold() == nil || hc.GetUnhealthyThreshold() == nil {
			bad("reghost health check without interval, timeout or thresholds")
		}
	}
	if rh.GetOutlierDetection() == nil {
		bad("cluster reghost has no outlier_detection")
	}
	if len(rh.GetCircuitBreakers().GetThresholds()) == 0 {
		bad("cluster reghost has no circuit_breakers")
	}
	// Envoy must drop an idle connection before reghost does (120s), or a
	// request sent as reghost closes it fails.
	var upstream upstreamhttpv3.HttpProtocolOptions
	opt := rh.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
	if opt == nil || opt.UnmarshalTo(&upstream) != nil {
		bad("cluster reghost has no upstream HttpProtocolOptions: idle connections stay an hour, past reghost's 120s")
	} else if d := upstream.GetCommonHttpProtocolOptions().GetIdleTimeout().AsDuration(); d <= 0 || d >= 120*time.Second {
		bad("cluster reghost upstream idle_timeout %v, want under 120s, reghost's own", d)
	}
	return p
}

func testWiring(t *testing.T, lua bool) wiring {
	t.Helper()
	dir := envoyDir(t)
	script := readFile(t, filepath.Join(dir, "reghost.lua"))
	return wiring{
		envoyDir:        dir,
		reghostPort:     reghostPort(t),
		defaultRegistry: luaConstant(t, script, defaultRegistryRE),
		luaCluster:      luaConstant(t, script, luaClusterRE),
		lua:             lua,
	}
}

var envoyFiles = []struct {
	file string
	lua  bool
}{
	{"envoy.yaml", true},
	{"envoy-ext-authz.yaml", false},
}

// TestEnvoyConfigs decodes and validates every Envoy config in
// deploy/envoy and checks its wiring.
func TestEnvoyConfigs(t *testing.T) {
	matches, err := filepath.Glob(filepath.Join(envoyDir(t), "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, m := range matches {
		if !slices.Contains(sdsFiles, filepath.Base(m)) { // checked by TestEnvoyTLS
			found = append(found, filepath.Base(m))
		}
	}
	for _, f := range envoyFiles {
		if !slices.Contains(found, f.file) {
			t.Errorf("%s is missing", f.file)
		}
	}
	if len(found) != len(envoyFiles) {
		t.Errorf("deploy/envoy has %v; every Envoy config there must be listed in envoyFiles", found)
	}
	for _, f := range envoyFiles {
		t.Run(f.file, func(t *testing.T) {
			c, problems := decodeEnvoyConfig(readFile(t, filepath.Join(envoyDir(t), f.file)))
			if c != nil {
				problems = append(problems, testWiring(t, f.lua).check(c)...)
				if len(c.typed) < 3 {
					t.Errorf("found %d typed configs, want the connection manager and two HTTP filters at least", len(c.typed))
				}
			}
			for _, p := range problems {
				t.Error(p)
			}
		})
	}
}

// TestEnvoyConfigHealthCheckPathAnswers asks a real reghost for the path
// the clusters health check.
func TestEnvoyConfigHealthCheckPathAnswers(t *testing.T) {
	base := startReghost(t, reghostYAML(t, "X-Real-IP", 1))
	for _, f := range envoyFiles {
		c, problems := decodeEnvoyConfig(readFile(t, filepath.Join(envoyDir(t), f.file)))
		if len(problems) > 0 {
			t.Fatalf("%s: %v", f.file, problems)
		}
		for _, cl := range c.boot.GetStaticResources().GetClusters() {
			for _, hc := range cl.GetHealthChecks() {
				resp, err := http.Get(base + hc.GetHttpHealthCheck().GetPath())
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Errorf("%s: cluster %s health check %s: reghost answers %d", f.file, cl.GetName(), hc.GetHttpHealthCheck().GetPath(), resp.StatusCode)
				}
			}
		}
	}
}

// TestEnvoyConfigCheckerFails breaks envoy.yaml and envoy-ext-authz.yaml
// in ways the checks must notice.
func TestEnvoyConfigCheckerFails(t *testing.T) {
	for _, tt := range []struct {
		file, old, new, want string
	}{
		{"envoy.yaml", "use_remote_address: true", "use_remote_adress: true", "unknown field"},
		{"envoy.yaml", "connect_timeout: 0.25s", "connect_timeout: -1s", "ConnectTimeout"},
		{"envoy.yaml", "- timeout: 1s\n      interval: 5s\n", "- timeout: 1s\n      interval: 0s\n", "Interval"},
		{"envoy.yaml", "filename: /etc/envoy/reghost.lua", "filename: \"\"", "envoy.extensions.filters.http.lua.v3.Lua"},
		{"envoy.yaml", "filename: /etc/envoy/reghost.lua", "filename: /etc/envoy/missing.lua", "does not exist"},
		{"envoy.yaml", "path: /healthz", "path: /health", "health check path"},
		{"envoy.yaml", "host_redirect: registry.k8s.io", "host_redirect: mirror.gcr.io", "fallback route redirects"},
		{"envoy.yaml", "default_registry: registry.k8s.io", "default_registry: mirror.gcr.io", "metadata default_registry"},
		{"envoy.yaml", "{address: reghost, port_value: 8080}", "{address: reghost, port_value: 9090}", "reghost's default listen"},
		{"envoy.yaml", "  - name: reghost\n", "  - name: reghost-v2\n", `cluster "reghost" (used by reghost.lua httpCall) is not defined`},
		{"envoy.yaml", "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router", "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer", "unable to resolve"},
		{"envoy-ext-authz.yaml", "cluster: reghost", "cluster: reghost-v2", `cluster "reghost-v2" (used by ext_authz server_uri) is not defined`},
		{"envoy-ext-authz.yaml", "failure_mode_allow: true", "failure_mode_allow: false", "failure_mode_allow is false"},
		{"envoy-ext-authz.yaml", `value: "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"`, `value: "%REQ(x-real-ip)%"`, "does not set x-real-ip"},
		{"envoy-ext-authz.yaml", "path_prefix: /ext_authz", "path_prefix: /authz", "path_prefix"},
		{"envoy-ext-authz.yaml", "response_code: FOUND", "response_code: MOVED_PERMANENTLY", "fallback route redirects"},
		{"envoy.yaml", "per_connection_buffer_limit_bytes: 32768", "per_connection_buffer_limit_bytes: 1048576", "per_connection_buffer_limit_bytes"},
		{"envoy.yaml", "request_headers_timeout: 10s", "request_headers_timeout: 0s", "request_headers_timeout"},
		{"envoy.yaml", "idle_timeout: 120s", "idle_timeout: 3600s", "common_http_protocol_options.idle_timeout"},
		{"envoy-ext-authz.yaml", "stream_idle_timeout: 60s", "stream_idle_timeout: 0s", "stream_idle_timeout"},
		{"envoy-ext-authz.yaml", "headers_with_underscores_action: REJECT_REQUEST", "headers_with_underscores_action: ALLOW", "headers_with_underscores_action"},
		{"envoy-ext-authz.yaml", "    per_connection_buffer_limit_bytes: 32768\n", "", "per_connection_buffer_limit_bytes"},
		{"envoy.yaml", "idle_timeout: 60s\n        explicit_http_config", "idle_timeout: 3600s\n        explicit_http_config", "upstream idle_timeout"},
		{"envoy-ext-authz.yaml", "envoy.extensions.upstreams.http.v3.HttpProtocolOptions:", "envoy.extensions.upstreams.http.v3.HttpProtocolOptionz:", "no upstream HttpProtocolOptions"},
		{"envoy.yaml", "ignore_health_on_host_removal: true", "ignore_health_on_host_removal: false", "ignore_health_on_host_removal"},
		{"envoy-ext-authz.yaml", "    ignore_health_on_host_removal: true\n", "", "ignore_health_on_host_removal"},
	} {
		t.Run(tt.file+": "+tt.new, func(t *testing.T) {
			lua := tt.file == "envoy.yaml"
			text := readFile(t, filepath.Join(envoyDir(t), tt.file))
			if strings.Count(text, tt.old) != 1 {
				t.Fatalf("%q occurs %d times in %s, want once", tt.old, strings.Count(text, tt.old), tt.file)
			}
			c, problems := decodeEnvoyConfig(strings.Replace(text, tt.old, tt.new, 1))
			if c != nil {
				problems = append(problems, testWiring(t, lua).check(c)...)
			}
			if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, tt.want) }) {
				t.Errorf("no problem mentions %q; got %q", tt.want, problems)
			}
		})
	}
}
