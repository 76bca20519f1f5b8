package deploytest

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// Paths in the repository, relative to its root.
const (
	dockerfilePath   = "Dockerfile"
	dockerignorePath = ".dockerignore"
	composePath      = "docker-compose.yml"
	k8sRoot          = "deploy/k8s"      // the base, its components and overlays
	k8sDir           = "deploy/k8s/base" // the base
	envoyConfigPath  = "deploy/envoy/envoy.yaml"
	envoyLuaPath     = "deploy/envoy/reghost.lua"

	// tokenEnv is the variable app.New reads the admin token from
	// (app.Options.Getenv); the tests prove it by starting the server.
	tokenEnv = "REGHOST_ADMIN_TOKEN"
	// envoyCluster is the cluster in envoy.yaml through which the Lua
	// filter reaches reghost.
	envoyCluster = "reghost"
)

var scratch string // removed after the tests; see TestMain

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "deploytest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	scratch = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// repoRoot is the module's root: two levels up from this package.
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil || !bytes.HasPrefix(mod, []byte("module github.com/reghost/reghost\n")) {
		t.Fatalf("%s is not reghost's module root (go.mod: %v)", root, err)
	}
	return root
}

func readRepoFile(t testing.TB, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// problems collects what a check found wrong, so that a check can be run
// on the real files (want none) and on broken copies (want a given one).
type problems []string

func (p *problems) add(format string, args ...any) {
	*p = append(*p, fmt.Sprintf(format, args...))
}

// expectNone fails t with every problem.
func (p problems) expectNone(t testing.TB) {
	t.Helper()
	for _, s := range p {
		t.Error(s)
	}
}

// expect fails t unless some problem contains want.
func (p problems) expect(t testing.TB, want string) {
	t.Helper()
	for _, s := range p {
		if strings.Contains(s, want) {
			return
		}
	}
	t.Errorf("no problem contains %q; got %d:\n%s", want, len(p), strings.Join(p, "\n"))
}

// edit is a change to a file's text, for the broken-copy cases.
type edit struct {
	file     string // relative to the root of what is copied
	old, new string
}

// apply applies e to data, failing t when old is not in data: an edit
// that no longer applies would test nothing.
func (e edit) apply(t testing.TB, data []byte) []byte {
	t.Helper()
	if !bytes.Contains(data, []byte(e.old)) {
		t.Fatalf("%s: %q not found; update the test", e.file, e.old)
	}
	return bytes.Replace(data, []byte(e.old), []byte(e.new), 1)
}

// parseServerArgs parses args with cmd/server's flags (main.go: run) and
// returns -config. It mirrors their names only to read the values: the
// build test runs the real server with the same arguments, which fails
// on a flag the server does not define.
func parseServerArgs(args []string) (configPath string, err error) {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg := fs.String("config", "", "")
	fs.String("log-level", "info", "")
	fs.Bool("access-log", true, "")
	fs.Bool("print-example-config", false, "")
	if err := fs.Parse(args); err != nil {
		return "", fmt.Errorf("server arguments %q: %w", args, err)
	}
	if fs.NArg() > 0 {
		// The server would start and silently ignore them.
		return "", fmt.Errorf("server arguments %q: %q after the flags would be ignored", args, fs.Args())
	}
	return *cfg, nil
}

// splitListen splits a listen address into host and port.
func splitListen(addr string) (host string, port int, err error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err = strconv.Atoi(p)
	return host, port, err
}

// unspecifiedHost reports whether a listener on host is reachable from
// outside its own network namespace (a container or pod).
func unspecifiedHost(host string) bool {
	if host == "" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsUnspecified()
}

// covers reports whether some prefix in trusted contains all of p.
func covers(trusted []netip.Prefix, p netip.Prefix) bool {
	return slices.ContainsFunc(trusted, func(t netip.Prefix) bool {
		return t.Bits() <= p.Bits() && t.Contains(p.Addr())
	})
}

// envoyConfig is the part of envoy.yaml the deployment depends on.
type envoyConfig struct {
	StaticResources struct {
		Listeners []struct {
			Name    string       `json:"name"`
			Address envoyAddress `json:"address"`
		} `json:"listeners"`
		Clusters []envoyClusterConfig `json:"clusters"`
	} `json:"static_resources"`
	// Files are the values of every "filename" key: files Envoy reads,
	// such as the Lua filter.
	Files []string `json:"-"`
}

type envoyClusterConfig struct {
	Name           string `json:"name"`
	LoadAssignment struct {
		Endpoints []struct {
			LBEndpoints []struct {
				Endpoint struct {
					Address envoyAddress `json:"address"`
				} `json:"endpoint"`
			} `json:"lb_endpoints"`
		} `json:"endpoints"`
	} `json:"load_assignment"`
	HealthChecks []struct {
		HTTPHealthCheck *struct {
			Path string `json:"path"`
		} `json:"http_health_check"`
	} `json:"health_checks"`
}

type envoyAddress struct {
	SocketAddress struct {
		Address   string `json:"address"`
		PortValue int    `json:"port_value"`
	} `json:"socket_address"`
}

// envoyEndpoint is where a cluster sends requests, and what its active
// health check asks for.
type envoyEndpoint struct {
	Host        string
	Port        int
	HealthPaths []string
}

func parseEnvoy(data []byte) (*envoyConfig, error) {
	var c envoyConfig
	if err := yaml.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("envoy.yaml: %w", err)
	}
	var tree any
	if err := yaml.Unmarshal(data, &tree); err != nil {
		return nil, fmt.Errorf("envoy.yaml: %w", err)
	}
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && k == "filename" {
					c.Files = append(c.Files, s)
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(tree)
	slices.Sort(c.Files)
	return &c, nil
}

// ListenerPorts are the ports Envoy listens on.
func (c *envoyConfig) ListenerPorts() []int {
	var ports []int
	for _, l := range c.StaticResources.Listeners {
		ports = append(ports, l.Address.SocketAddress.PortValue)
	}
	return ports
}

// Cluster returns the single endpoint of the cluster called name.
func (c *envoyConfig) Cluster(name string) (envoyEndpoint, error) {
	for _, cl := range c.StaticResources.Clusters {
		if cl.Name != name {
			continue
		}
		var eps []envoyAddress
		for _, e := range cl.LoadAssignment.Endpoints {
			for _, lb := range e.LBEndpoints {
				eps = append(eps, lb.Endpoint.Address)
			}
		}
		if len(eps) != 1 {
			return envoyEndpoint{}, fmt.Errorf("envoy.yaml: cluster %q has %d endpoints; the deployment expects one DNS name", name, len(eps))
		}
		ep := envoyEndpoint{Host: eps[0].SocketAddress.Address, Port: eps[0].SocketAddress.PortValue}
		for _, hc := range cl.HealthChecks {
			if hc.HTTPHealthCheck != nil {
				ep.HealthPaths = append(ep.HealthPaths, hc.HTTPHealthCheck.Path)
			}
		}
		return ep, nil
	}
	return envoyEndpoint{}, fmt.Errorf("envoy.yaml: no cluster %q", name)
}

func TestHelpers(t *testing.T) {
	t.Parallel()
	t.Run("parseServerArgs", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			args    []string
			want    string
			wantErr string
		}{
			{args: []string{"-config", "/etc/reghost/config.yaml"}, want: "/etc/reghost/config.yaml"},
			{args: []string{"--config=/c.yaml", "-access-log=false"}, want: "/c.yaml"},
			{args: []string{"-conf", "/c.yaml"}, wantErr: "flag provided but not defined: -conf"},
			{args: []string{"-config", "/c.yaml", "serve"}, wantErr: `["serve"] after the flags would be ignored`},
		} {
			got, err := parseServerArgs(tc.args)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("parseServerArgs(%q) = %q, %v; want error containing %q", tc.args, got, err, tc.wantErr)
				}
				continue
			}
			if err != nil || got != tc.want {
				t.Errorf("parseServerArgs(%q) = %q, %v; want %q", tc.args, got, err, tc.want)
			}
		}
	})
	t.Run("covers", func(t *testing.T) {
		t.Parallel()
		trusted := []netip.Prefix{netip.MustParsePrefix("172.16.0.0/12")}
		for p, want := range map[string]bool{"172.17.0.0/16": true, "172.16.0.0/12": true, "172.0.0.0/8": false, "192.168.0.0/16": false} {
			if got := covers(trusted, netip.MustParsePrefix(p)); got != want {
				t.Errorf("covers(172.16.0.0/12, %s) = %v; want %v", p, got, want)
			}
		}
	})
	t.Run("parseEnvoy", func(t *testing.T) {
		t.Parallel()
		c, err := parseEnvoy(readRepoFile(t, envoyConfigPath))
		if err != nil {
			t.Fatal(err)
		}
		if len(c.ListenerPorts()) == 0 || len(c.Files) == 0 {
			t.Errorf("envoy.yaml: listener ports %v, files %v; want some of each", c.ListenerPorts(), c.Files)
		}
		if _, err := c.Cluster("no-such-cluster"); err == nil {
			t.Error("Cluster(no-such-cluster): no error")
		}
	})
}
