package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/reghost/reghost/internal/app/apptest"
)

// The clients the rules tell apart, and the repository they pull.
const (
	clientA = "203.0.113.7"  // rule 203.0.113.0/24 -> registry a
	clientB = "198.51.100.9" // rule 198.51.100.0/24 -> registry b
	repo    = "library/pause"
	tag     = "3.9"
	// otherTag is pushed too, and sorts first, so that a tags/list with
	// n=1 answers it alone: the answer shows whether the query arrived.
	otherTag = "3.8"
	// mirrorPrefix is registry b's repository prefix: its copy of repo
	// lives at mirror/library/pause, and its url in reghost's config
	// ends in /mirror.
	mirrorPrefix = "mirror"
)

// testRegistry is an in-memory OCI registry whose access log a test
// reads. The registry logs a request after answering it, so a client can
// hold the whole answer before the line is written; requests therefore
// waits until no request is in flight, which makes the log complete for
// everything a client has finished, without sleeping.
type testRegistry struct {
	srv  *httptest.Server
	host string // host:port

	mu       sync.Mutex
	idle     sync.Cond
	inflight int
	log      bytes.Buffer
}

func startRegistry(t *testing.T) *testRegistry {
	t.Helper()
	return startRegistryWith(t, nil)
}

// startRegistryWith starts a registry that serves HTTPS with cert, or
// plain HTTP when cert is nil.
func startRegistryWith(t *testing.T, cert *tls.Certificate) *testRegistry {
	t.Helper()
	r := &testRegistry{}
	r.idle.L = &r.mu
	h := registry.New(registry.Logger(log.New(logWriter{r}, "", 0)))
	r.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if isProbe(req) {
			w.WriteHeader(http.StatusOK) // up: the API root answers
			return
		}
		r.mu.Lock()
		r.inflight++
		r.mu.Unlock()
		defer func() {
			r.mu.Lock()
			if r.inflight--; r.inflight == 0 {
				r.idle.Broadcast()
			}
			r.mu.Unlock()
		}()
		h.ServeHTTP(w, req)
	}))
	if cert != nil {
		r.srv.TLS = &tls.Config{Certificates: []tls.Certificate{*cert}}
		r.srv.StartTLS()
	} else {
		r.srv.Start()
	}
	t.Cleanup(r.srv.Close)
	r.host = r.srv.Listener.Addr().String()
	return r
}

// logWriter is the registry's log output; the buffer is shared with the
// test goroutine, so it is written under the registry's lock.
type logWriter struct{ r *testRegistry }

func (w logWriter) Write(p []byte) (int, error) {
	w.r.mu.Lock()
	defer w.r.mu.Unlock()
	return w.r.log.Write(p)
}

// requests returns the access log lines ("GET /v2/...") since the last
// reset, once every request that reached the registry has been answered
// and logged.
func (r *testRegistry) requests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	for r.inflight > 0 {
		r.idle.Wait()
	}
	s := strings.TrimSpace(r.log.String())
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func (r *testRegistry) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for r.inflight > 0 {
		r.idle.Wait()
	}
	r.log.Reset()
}

// isProbe reports whether r is reghost's health check, which probes
// every registry, rather than a client.
func isProbe(r *http.Request) bool {
	return strings.HasPrefix(r.UserAgent(), "reghost-healthcheck/")
}

// neverHit is the default registry of the tests: no client in them may
// be sent there, so any request it gets fails the test.
func neverHit(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isProbe(r) {
			w.WriteHeader(http.StatusOK)
			return
		}
		t.Errorf("default registry got %s %s; no client should have been sent there", r.Method, r.URL)
		http.Error(w, "the default registry must not be used in this test", http.StatusTeapot)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// testImage is a random image with a few layers larger than a network
// buffer, so that reading them fully takes more than one write.
func testImage(t *testing.T) v1.Image {
	t.Helper()
	img, err := random.Image(16<<10, 3)
	if err != nil {
		t.Fatalf("random image: %v", err)
	}
	return img
}

// push writes img to host/repository under every tag, directly, not
// through reghost.
func push(t *testing.T, img v1.Image, host, repository string, tags ...string) {
	t.Helper()
	pushWith(t, img, nil, host, repository, tags...)
}

// pushWith is push with more remote options, such as the transport of a
// registry that needs its own trust.
func pushWith(t *testing.T, img v1.Image, opts []remote.Option, host, repository string, tags ...string) {
	t.Helper()
	for _, tg := range tags {
		ref, err := name.NewTag(host+"/"+repository+":"+tg, name.Insecure)
		if err != nil {
			t.Fatalf("tag: %v", err)
		}
		if err := remote.Write(ref, img, append(opts, remote.WithContext(t.Context()))...); err != nil {
			t.Fatalf("push %s: %v", ref, err)
		}
	}
}

// reghost is a running in-process reghost.
type reghost struct {
	public, admin string // host:port
	token         string
}

// startReghost runs reghost with the config text until the test ends.
func startReghost(t *testing.T, yamlText string) *reghost {
	t.Helper()
	a := apptest.Start(t, yamlText)
	return &reghost{public: a.PublicAddr(), admin: a.AdminAddr(), token: a.AdminToken()}
}

// configYAML is a direct-mode config with registries a and b, the
// default registry def and the two client rules. trusted is the YAML
// value of client_ip.trusted_proxies.
func configYAML(t *testing.T, a, b, def, trusted string) string {
	return fmt.Sprintf(`
listen: "127.0.0.1:0"
admin_listen: "127.0.0.1:0"
data_dir: %q
client_ip:
  header: X-Forwarded-For
  trusted_proxies: %s
  xff_trusted_hops: 1
geoip: {asn: "", country: ""}
cloud_ranges: {}
registries:
  - name: default
    url: %s
    default: true
  - name: a
    url: %s
  - name: b
    url: %s
rules:
  - match: {cidr: 203.0.113.0/24}
    registries: [a]
  - match: {cidr: 198.51.100.0/24}
    registries: [b]
`, t.TempDir(), trusted, def, a, b)
}

// forwardedFor makes requests to reghost look as if a trusted proxy had
// forwarded them for client: reghost's peer is loopback, which the
// default config trusts. Requests to other hosts (the registries a
// redirect leads to) go out unchanged.
type forwardedFor struct {
	client, reghost string
	next            http.RoundTripper
}

func (f forwardedFor) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Host == f.reghost {
		r = r.Clone(r.Context())
		r.Header.Set("X-Forwarded-For", f.client)
	}
	return f.next.RoundTrip(r)
}

// clientTransport is the transport of one client of rh.
func clientTransport(t *testing.T, rh *reghost, client string) http.RoundTripper {
	base := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(base.CloseIdleConnections)
	return forwardedFor{client: client, reghost: rh.public, next: base}
}

// pulled is what a pull through reghost saw.
type pulled struct {
	manifest v1.Hash
	config   v1.Hash
	layers   []v1.Hash // digests of the bytes read
}

// pull pulls repo:tag through rh with go-containerregistry as client,
// reading the config and every layer fully, and hashing the bytes read.
func pull(t *testing.T, rh *reghost, client string) pulled {
	t.Helper()
	ref, err := name.ParseReference(rh.public+"/"+repo+":"+tag, name.Insecure)
	if err != nil {
		t.Fatalf("reference: %v", err)
	}
	opts := []remote.Option{remote.WithContext(t.Context()), remote.WithTransport(clientTransport(t, rh, client))}
	img, err := remote.Image(ref, opts...)
	if err != nil {
		t.Fatalf("pull %s as %s: %v", ref, client, err)
	}
	var p pulled
	if p.manifest, err = img.Digest(); err != nil {
		t.Fatalf("pull %s as %s: manifest digest: %v", ref, client, err)
	}
	raw, err := img.RawConfigFile()
	if err != nil {
		t.Fatalf("pull %s as %s: config: %v", ref, client, err)
	}
	p.config = sha256Hash(raw)
	layers, err := img.Layers()
	if err != nil {
		t.Fatalf("pull %s as %s: layers: %v", ref, client, err)
	}
	for i, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatalf("pull %s as %s: layer %d: %v", ref, client, i, err)
		}
		data, err := io.ReadAll(rc)
		if cerr := rc.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatalf("pull %s as %s: layer %d: read: %v", ref, client, i, err)
		}
		p.layers = append(p.layers, sha256Hash(data))
	}
	return p
}

func sha256Hash(b []byte) v1.Hash {
	sum := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

// want is what a pull of img must see.
func want(t *testing.T, img v1.Image) pulled {
	t.Helper()
	var w pulled
	var err error
	if w.manifest, err = img.Digest(); err != nil {
		t.Fatal(err)
	}
	if w.config, err = img.ConfigName(); err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		w.layers = append(w.layers, d)
	}
	return w
}

func checkPulled(t *testing.T, got, want pulled) {
	t.Helper()
	if got.manifest != want.manifest {
		t.Errorf("manifest digest = %s; want %s", got.manifest, want.manifest)
	}
	if got.config != want.config {
		t.Errorf("config digest = %s; want %s", got.config, want.config)
	}
	if len(got.layers) != len(want.layers) {
		t.Fatalf("%d layers pulled; want %d", len(got.layers), len(want.layers))
	}
	for i := range want.layers {
		if got.layers[i] != want.layers[i] {
			t.Errorf("layer %d digest = %s; want %s", i, got.layers[i], want.layers[i])
		}
	}
}

// pullRequests are the access log lines a registry writes when img is
// pulled from it, under the registry's repository path pathRepo.
func pullRequests(w pulled, pathRepo string) []string {
	lines := []string{"GET /v2/" + pathRepo + "/manifests/" + tag,
		"GET /v2/" + pathRepo + "/blobs/" + w.config.String()}
	for _, l := range w.layers {
		lines = append(lines, "GET /v2/"+pathRepo+"/blobs/"+l.String())
	}
	return lines
}

// checkServed fails unless every line of wantLines is in r's log.
func checkServed(t *testing.T, what string, r *testRegistry, wantLines []string) {
	t.Helper()
	got := r.requests()
	for _, w := range wantLines {
		if !contains(got, w) {
			t.Errorf("registry %s did not log %q; its log:\n%s", what, w, strings.Join(got, "\n"))
		}
	}
}

// checkIdle fails if r logged any request.
func checkIdle(t *testing.T, what string, r *testRegistry) {
	t.Helper()
	if got := r.requests(); len(got) > 0 {
		t.Errorf("registry %s served another client's requests:\n%s", what, strings.Join(got, "\n"))
	}
}

func contains(lines []string, s string) bool {
	for _, l := range lines {
		if l == s {
			return true
		}
	}
	return false
}

// adminDo sends a JSON request to rh's admin API and decodes a JSON
// answer into out (if not nil), failing unless the status is wantStatus.
func adminDo(t *testing.T, rh *reghost, method, path string, body any, wantStatus int, out any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, "http://"+rh.admin+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+rh.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	if resp.StatusCode != wantStatus {
		t.Fatalf("%s %s: %s; want %d; body: %s", method, path, resp.Status, wantStatus, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: decoding %s: %v", method, path, data, err)
		}
	}
}

// noRedirects is a client that hands back redirects instead of following
// them.
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error {
	return http.ErrUseLastResponse
}}

// get sends GET url through c with extra headers and returns the
// response with its body read.
func get(ctx context.Context, c *http.Client, url string, header http.Header) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, nil, err
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, errors.Join(fmt.Errorf("GET %s: reading body", url), err)
	}
	return resp, body, nil
}
