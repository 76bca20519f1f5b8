package envoytest

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/reghost/reghost/internal/app/apptest"
)

// envoyDir is deploy/envoy, whatever the working directory.
func envoyDir(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("runtime.Caller failed")
	}
	return filepath.Dir(filepath.Dir(file))
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Registries of the test reghost. The default registry differs from the
// Lua filter's DEFAULT_REGISTRY, so that a location reghost chose can
// never be mistaken for the filter's own fallback.
const (
	reghostDefaultHost = "default.example.org"
	mirrorHost         = "mirror.example.net"
	// ruleV4 and ruleV6 are in the prefixes the mirror rules match;
	// otherV4 and otherV6 are not.
	ruleV4  = "203.0.113.7"
	ruleV6  = "2001:db8::1"
	otherV4 = "198.51.100.9"
	otherV6 = "2600::1"
)

// reghostYAML is the test reghost's config: the mirror, which has a
// repository path prefix, for the two rule prefixes; the default registry
// for everyone else. header is client_ip.header and hops
// client_ip.xff_trusted_hops; trusted proxies keep their default
// (loopback), which is where the shims' requests come from.
func reghostYAML(t *testing.T, header string, hops int) string {
	return fmt.Sprintf(`
listen: "127.0.0.1:0"
admin_listen: "127.0.0.1:0"
data_dir: %q
client_ip:
  header: %s
  xff_trusted_hops: %d
geoip: {asn: "", country: ""}
cloud_ranges: {}
registries:
  - name: default
    url: https://%s
    default: true
  - name: mirror
    url: https://%s/images
rules:
  - match: {cidr: 203.0.113.0/24}
    registries: [mirror]
  - match: {cidr: "2001:db8::/32"}
    registries: [mirror]
`, t.TempDir(), header, hops, reghostDefaultHost, mirrorHost)
}

// startReghost runs an in-process reghost until the test ends and returns
// its public listener's base URL.
func startReghost(t *testing.T, yamlText string) string {
	t.Helper()
	return "http://" + apptest.Start(t, yamlText).PublicAddr()
}

// closedURL is the base URL of a port on which nothing listens.
func closedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

// stubURL serves h until the test ends.
func stubURL(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s.URL
}

// slowURL answers like reghost, but only after two seconds: far past the
// filter's timeout.
func slowURL(t *testing.T) string {
	return stubURL(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(2 * time.Second):
		case <-r.Context().Done():
			return
		}
		w.Header().Set("X-Reghost-Location", "https://"+mirrorHost+"/too-late")
		w.WriteHeader(http.StatusOK)
	})
}
