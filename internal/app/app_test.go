package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/reghost/reghost/internal/config"
	"github.com/reghost/reghost/internal/logtest"
	"github.com/reghost/reghost/internal/rules"
)

const baseConfig = `
listen: "127.0.0.1:0"
admin_listen: "127.0.0.1:0"
data_dir: %s
registries:
  - {name: k8s, url: "https://k8s.example/images", default: true}
  - {name: aws, url: "https://aws.example"}
rules:
  - {match: {cloud: aws, region: us-east-2}, registries: [aws]}
`

func newApp(t *testing.T, extra string, opts Options) *App {
	t.Helper()
	dir := t.TempDir()
	cfg, err := config.Parse([]byte(fmt.Sprintf(baseConfig, dir)+extra), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if opts.Getenv == nil {
		opts.Getenv = func(string) string { return "" }
	}
	a, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Listen(); err != nil {
		t.Fatal(err)
	}
	return a
}

func serve(t testing.TB, a *App) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx) }()
	var once bool
	stop = func() error {
		if once {
			return nil
		}
		once = true
		cancel()
		return <-done
	}
	t.Cleanup(func() { stop() })
	return stop
}

// A request that is in flight when SIGTERM comes (Serve's context ends)
// is answered before the server stops. A one-second CPU profile from the
// admin listener is a real request that is still running when asked to.
func TestGracefulShutdownFinishesInFlight(t *testing.T) {
	t.Parallel()
	a := newApp(t, "", Options{})
	// The admin listener reports when the request is being read, which
	// makes it in flight: Shutdown waits for it.
	active := make(chan struct{}, 1)
	a.admin.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateActive {
			select {
			case active <- struct{}{}:
			default:
			}
		}
	}
	stop := serve(t, a)

	type result struct {
		code int
		size int
		err  error
	}
	got := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest("GET", "http://"+a.AdminAddr()+"/debug/pprof/profile?seconds=1", nil)
		req.Header.Set("Authorization", "Bearer "+a.AdminToken())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			got <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		got <- result{resp.StatusCode, len(b), err}
	}()
	<-active
	start := time.Now()
	if err := stop(); err != nil {
		t.Errorf("Serve: %v", err)
	}
	r := <-got
	if r.err != nil || r.code != http.StatusOK || r.size == 0 {
		t.Fatalf("in-flight request: %+v", r)
	}
	if waited := time.Since(start); waited < 400*time.Millisecond {
		t.Errorf("Serve returned after %s, before the in-flight request could finish", waited)
	}
	if _, err := net.DialTimeout("tcp", a.PublicAddr(), time.Second); err == nil {
		t.Error("still accepting connections after shutdown")
	}
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.mmdb")
	os.WriteFile(bad, []byte("not a database"), 0o600)
	badJSON := filepath.Join(dir, "aws.json")
	os.WriteFile(badJSON, []byte(`{"syncToken": "1", "createDate": "x", "prefixes": [{"ip_prefix": "10.0.0/8", "region": "x", "service": "EC2"}], "ipv6_prefixes": []}`), 0o600)
	shortToken := filepath.Join(dir, "token")
	os.WriteFile(shortToken, []byte("short\n"), 0o600)
	tests := []struct {
		name, extra, want string
	}{
		{"corrupt mmdb", "geoip: {asn: " + bad + "}", "bad.mmdb"},
		{"bad cloud file", "cloud_ranges: {aws: " + badJSON + "}", `aws: prefixes[0].ip_prefix`},
		{"redis password file missing", "store: \"redis://127.0.0.1:1/0\"\nredis: {password_file: " + filepath.Join(dir, "nope") + "}", "nope"},
		{"short token file", "admin: {token_file: " + shortToken + "}", "token shorter than 16 characters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := config.Parse([]byte(fmt.Sprintf(baseConfig, t.TempDir())+tt.extra), "test.yaml")
			if err != nil {
				t.Fatal(err)
			}
			_, err = New(cfg, Options{Getenv: func(string) string { return "" }})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestAdminToken(t *testing.T) {
	t.Parallel()
	a := newApp(t, "", Options{Getenv: func(k string) string {
		if k == "REGHOST_ADMIN_TOKEN" {
			return "from-the-environment-0123"
		}
		return ""
	}})
	if a.AdminToken() != "from-the-environment-0123" {
		t.Errorf("token = %q", a.AdminToken())
	}
	// A token file comes first, trimmed of the newline editors add.
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte("from-a-file-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := newApp(t, "admin: {token_file: "+file+"}\n", Options{Getenv: func(string) string { return "from-the-environment-0123" }})
	if f.AdminToken() != "from-a-file-0123456789" {
		t.Errorf("token with a token file = %q", f.AdminToken())
	}
	// A token no Authorization header can carry is refused at start,
	// without the token in the error.
	bad := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(bad, []byte("first-half-01234\nsecond-half-0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ config, env, want string }{
		{"admin: {token_file: " + bad + "}\n", "", "admin.token_file: " + bad + ": token has a control character at byte 16"},
		{"", "half\x00and-half-0123456789", "REGHOST_ADMIN_TOKEN: token has a control character at byte 4"},
		{"", "short", "REGHOST_ADMIN_TOKEN: token shorter than 16 characters"},
	} {
		cfg, err := config.Parse([]byte(fmt.Sprintf(baseConfig, t.TempDir())+tc.config), "test.yaml")
		if err != nil {
			t.Fatal(err)
		}
		_, err = New(cfg, Options{Getenv: func(string) string { return tc.env }})
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "half-") {
			t.Errorf("token file %q, env %q: err %v, want %q", tc.config, tc.env, err, tc.want)
		}
	}
	// Spaces inside a token are carried whole ("Bearer" is cut at the
	// first space only): a passphrase works.
	if a := newApp(t, "", Options{Getenv: func(string) string { return "a pass phrase 0123456789" }}); a.AdminToken() != "a pass phrase 0123456789" {
		t.Errorf("token with spaces = %q", a.AdminToken())
	}
	b := newApp(t, "", Options{})
	data, err := os.ReadFile(filepath.Join(b.cfg.DataDir, "admin-token"))
	if err != nil || strings.TrimSpace(string(data)) != b.AdminToken() || len(b.AdminToken()) < 32 {
		t.Errorf("generated token %q, file %q (%v)", b.AdminToken(), data, err)
	}
	if fi, _ := os.Stat(filepath.Join(b.cfg.DataDir, "admin-token")); fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %v", fi.Mode())
	}
}

// A generated token is kept across restarts, unless its file is no
// longer private: then it is replaced, never written through.
func TestGeneratedAdminTokenKept(t *testing.T) {
	t.Parallel()
	cfg, err := config.Parse([]byte(fmt.Sprintf(baseConfig, t.TempDir())), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(cfg.DataDir, "admin-token")
	start := func() string {
		t.Helper()
		a, err := New(cfg, Options{Getenv: func(string) string { return "" }})
		if err != nil {
			t.Fatal(err)
		}
		a.close()
		if fi, err := os.Lstat(path); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 {
			t.Fatalf("token file: %v, %v", fi.Mode(), err)
		}
		return a.AdminToken()
	}
	first := start()
	if again := start(); again != first {
		t.Errorf("restart generated a new token")
	}

	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if third := start(); third == first {
		t.Errorf("a token others could read was kept")
	}

	other := filepath.Join(t.TempDir(), "elsewhere")
	if err := os.WriteFile(other, []byte("someone-elses-file-0123456789\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(other, path); err != nil {
		t.Fatal(err)
	}
	if got := start(); got == "someone-elses-file-0123456789" {
		t.Errorf("a symbolic link's target was taken as the token")
	}
	if data, _ := os.ReadFile(other); string(data) != "someone-elses-file-0123456789\n" {
		t.Errorf("the link's target was written through: %q", data)
	}
	if entries, _ := os.ReadDir(cfg.DataDir); slices.ContainsFunc(entries, func(e os.DirEntry) bool { return strings.HasPrefix(e.Name(), ".admin-token-") }) {
		t.Errorf("a temporary token file was left behind: %v", entries)
	}
}

// A server that cannot listen lets go of its store, so that another can
// open it.
func TestListenFailureReleasesStore(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg, err := config.Parse([]byte(fmt.Sprintf(baseConfig, t.TempDir())), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen = busy.Addr().String()
	a, err := New(cfg, Options{Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Serve(t.Context()); err == nil {
		t.Fatal("Serve on a busy port succeeded")
	}
	cfg.Listen = "127.0.0.1:0"
	b, err := New(cfg, Options{Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatalf("a second server on the same data: %v", err)
	}
	b.close()
}

// Cloud ranges missing at start leave cloud rules inactive and /readyz
// degraded but 200; the file appearing later is picked up by the poll.
func TestCloudRangesAppear(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	awsFile := filepath.Join(dir, "aws.json")
	a := newApp(t, "cloud_ranges: {aws: "+awsFile+"}", Options{CloudPollInterval: 20 * time.Millisecond})
	serve(t, a)
	public := "http://" + a.PublicAddr()

	where := func() string { return hostFor(t, a, "99.77.162.1") }
	if got := where(); got != "k8s.example" {
		t.Fatalf("before the file exists: %s", got)
	}
	resp, err := http.Get(public + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	var ready Readiness
	json.NewDecoder(resp.Body).Decode(&ready)
	resp.Body.Close()
	if resp.StatusCode != 200 || ready.Status != "degraded" || ready.Cloud["aws"] {
		t.Errorf("readyz: %d %+v", resp.StatusCode, ready)
	}

	data, err := os.ReadFile("../../testdata/cloud/aws-ip-ranges.json")
	if err != nil {
		t.Fatal(err)
	}
	tmp := awsFile + ".tmp"
	os.WriteFile(tmp, data, 0o600)
	os.Rename(tmp, awsFile)
	deadline := time.Now().Add(5 * time.Second)
	for where() != "aws.example" {
		if time.Now().After(deadline) {
			t.Fatal("the cloud ranges file was not picked up")
		}
		time.Sleep(20 * time.Millisecond)
	}

	// A bad replacement is refused, and reported in the admin API's data
	// sets; the last good table keeps serving.
	os.WriteFile(tmp, []byte("{"), 0o600)
	os.Rename(tmp, awsFile)
	for {
		b, _ := json.Marshal(a.dataSets())
		if strings.Contains(string(b), `"error":"cloud_ranges.aws: `) {
			break
		}
		if time.Now().After(deadline.Add(5 * time.Second)) {
			t.Fatalf("datasets do not report the bad file: %s", b)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := where(); got != "aws.example" {
		t.Errorf("after a bad file: %s", got)
	}
}

// With no GeoIP or cloud data configured, the data sets list none as empty
// lists, not nulls.
func TestDataSetsEmptyLists(t *testing.T) {
	t.Parallel()
	a := newApp(t, "", Options{})
	b, err := json.Marshal(a.dataSets())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"geoip":[]`, `"cloud":[]`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("data sets %s: no %s", b, want)
		}
	}
}

// A write to the store that did not come through this server's admin API
// (as from another replica, once stores are shared) reaches the engine
// through the change notifications.
func TestStoreChangesApply(t *testing.T) {
	t.Parallel()
	a := newApp(t, "", Options{})
	serve(t, a)
	where := func() string { return hostFor(t, a, "198.51.100.7") }
	if got := where(); got != "k8s.example" {
		t.Fatalf("before: %s", got)
	}
	_, err := a.store.Put(t.Context(), "elsewhere", rules.Override{ID: "elsewhere", Registries: []string{"aws"},
		Match: rules.Match{CIDR: netip.MustParsePrefix("198.51.100.0/24")}})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for where() != "aws.example" {
		if time.Now().After(deadline) {
			t.Fatal("a store change did not reach the engine")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if v := a.overrides.Version(); v.N != 1 {
		t.Errorf("applied version %s, want n 1", v)
	}
}

// A write that lands after the start-up apply but before the watcher
// subscribes (another process writing the store, or an early admin call)
// sends its notification to no one; the watcher catches up when it starts.
func TestStoreChangeBeforeWatchingApplies(t *testing.T) {
	t.Parallel()
	a := newApp(t, "", Options{})
	_, err := a.store.Put(t.Context(), "elsewhere", rules.Override{ID: "early", Registries: []string{"aws"},
		Match: rules.Match{CIDR: netip.MustParsePrefix("198.51.100.0/24")}})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, a)
	deadline := time.Now().Add(5 * time.Second)
	for hostFor(t, a, "198.51.100.7") != "aws.example" {
		if time.Now().After(deadline) {
			t.Fatal("a write made before the watcher started never reached the engine")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// hostFor asks the original "GET /" contract where client ip goes.
func hostFor(t *testing.T, a *App, ip string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+a.PublicAddr()+"/", nil)
	req.Header.Set("X-Real-IP", ip)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// The public listener cuts off clients that trickle a request's header,
// sit idle, or stop reading their answers, each after its own limit (the
// others being far longer); a well-behaved client is served.
func TestPublicListenerSlowClients(t *testing.T) {
	t.Parallel()
	const limit, long = 300 * time.Millisecond, time.Hour
	tests := []struct {
		name string
		opts Options
		// misbehave does what the client does wrong, and returns once the
		// server has closed the connection.
		misbehave func(t *testing.T, c net.Conn) error
	}{
		{"trickled header", Options{HeaderTimeout: limit, WriteTimeout: long, IdleTimeout: long}, func(t *testing.T, c net.Conn) error {
			if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n"); err != nil {
				return err
			}
			return readUntilClosed(c)
		}},
		{"idle", Options{HeaderTimeout: long, WriteTimeout: long, IdleTimeout: limit}, func(t *testing.T, c net.Conn) error {
			if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
				return err
			}
			return readUntilClosed(c) // the answer, then nothing
		}},
		{"answers not read", Options{HeaderTimeout: long, WriteTimeout: limit, IdleTimeout: long}, func(t *testing.T, c net.Conn) error {
			// Requests keep coming, their answers are never read: once the
			// socket buffers are full, the server's write waits, until
			// its deadline. Then writes here fail.
			req := []byte(strings.Repeat("GET /v2/pause/manifests/3.9 HTTP/1.1\r\nHost: x\r\n\r\n", 64))
			for {
				if _, err := c.Write(req); err != nil {
					return nil
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := newApp(t, "", tt.opts)
			serve(t, a)
			c, err := net.Dial("tcp", a.PublicAddr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			// Far above the limit, so that only a server that never cuts
			// the connection fails here.
			_ = c.SetDeadline(time.Now().Add(20 * time.Second))
			start := time.Now()
			if err := tt.misbehave(t, c); err != nil {
				t.Fatalf("%v after %v: want the connection closed by the server", err, time.Since(start))
			}
			t.Logf("closed after %v", time.Since(start).Round(time.Millisecond))
			if got := hostFor(t, a, "192.0.2.1"); got != "k8s.example" {
				t.Errorf("a well-behaved client after a slow one: %q", got)
			}
		})
	}
}

// readUntilClosed reads c until the server closes it (nil), or fails on a
// deadline.
func readUntilClosed(c net.Conn) error {
	_, err := io.Copy(io.Discard, c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return err
	}
	return nil
}

// The data set gauges report GeoIP databases and cloud ranges files, as
// they are at the scrape.
func TestDataSetMetrics(t *testing.T) {
	t.Parallel()
	a := newApp(t, "geoip: {asn: ../../testdata/maxmind/GeoLite2-ASN-Test.mmdb}\ncloud_ranges: {aws: ../../testdata/cloud/aws-ip-ranges.json}", Options{})
	serve(t, a)
	resp, err := http.Get("http://" + a.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	built := a.geo.DataSets()[0].BuildTime.Unix()
	for _, want := range []string{
		fmt.Sprintf(`reghost_dataset_build_timestamp_seconds{dataset="geoip/asn"} %.9e`, float64(built)),
		`reghost_dataset_loaded_timestamp_seconds{dataset="geoip/asn"} `,
		`reghost_dataset_build_timestamp_seconds{dataset="cloud/aws"} `,
		`reghost_dataset_loaded_timestamp_seconds{dataset="cloud/aws"} `,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if built < time.Date(2010, 1, 1, 0, 0, 0, 0, time.UTC).Unix() {
		t.Errorf("the test database's build time %d is not a real one", built)
	}
}

// The quick start: the embedded example, with no GeoIP or cloud data
// downloaded, serves. Its CIDR rule decides, the rules that need data are
// inactive, each missing file is logged once, and /readyz says which
// data is not loaded. (Only the ports and the data directory are not the
// example's, so that the test runs anywhere.)
func TestEmbeddedExampleServesWithoutData(t *testing.T) {
	t.Parallel()
	cfg, err := config.Parse(config.Example(), "example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen, cfg.AdminListen, cfg.DataDir = "127.0.0.1:0", "127.0.0.1:0", t.TempDir()
	for _, f := range append([]string{cfg.GeoIP.ASN, cfg.GeoIP.Country}, slices.Collect(maps.Values(cfg.CloudRanges))...) {
		if _, err := os.Stat(f); err == nil {
			t.Fatalf("%s exists here; the test wants the example's data missing", f)
		}
	}
	var logged logtest.Buffer
	a, err := New(cfg, Options{Getenv: func(string) string { return "" }, Logger: slog.New(slog.NewJSONHandler(&logged, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Listen(); err != nil {
		t.Fatal(err)
	}
	serve(t, a)
	if got := hostFor(t, a, "192.168.0.7"); got != "registry-1.docker.io" {
		t.Errorf("192.168.0.7 (cidr rule) went to %q", got)
	}
	if got := hostFor(t, a, "89.160.20.112"); got != "us-west1-docker.pkg.dev" {
		t.Errorf("89.160.20.112 (SE, but no GeoIP data) went to %q, want the default", got)
	}
	hostFor(t, a, "89.160.20.112") // a second decision logs nothing more
	for _, f := range []string{cfg.GeoIP.ASN, cfg.GeoIP.Country} {
		if n := strings.Count(logged.String(), `"file":"`+f+`"`); n != 1 {
			t.Errorf("%s is mentioned in %d log lines, want 1:\n%s", f, n, logged.String())
		}
	}
	resp, err := http.Get("http://" + a.PublicAddr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ready struct {
		GeoIP map[string]bool `json:"geoip"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&ready); err != nil || resp.StatusCode != 200 || ready.GeoIP["asn"] || ready.GeoIP["country"] {
		t.Errorf("/readyz: %d %+v (%v); want 200 with GeoIP not loaded", resp.StatusCode, ready, err)
	}
}

// With the store failing, /readyz still answers 200, says so, and
// decisions go on; it says so from what the server knows, without
// asking the store.
func TestReadyzStoreFailing(t *testing.T) {
	t.Parallel()
	a := newApp(t, "", Options{})
	serve(t, a)
	if err := a.store.Close(); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", "http://"+a.AdminAddr()+"/api/v1/overrides", strings.NewReader(`{"match":{"country":"SE"},"registries":["aws"]}`))
	req.Header.Set("Authorization", "Bearer "+a.AdminToken())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("a write to a closed store: %d, want 503", resp.StatusCode)
	}
	resp, err = http.Get("http://" + a.PublicAddr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ready Readiness
	if err := json.NewDecoder(resp.Body).Decode(&ready); err != nil || resp.StatusCode != 200 ||
		ready.Status != "degraded" || ready.Store != "failing" || len(ready.Problems) != 1 {
		t.Errorf("/readyz: %d %+v (%v); want 200, degraded, the store failing", resp.StatusCode, ready, err)
	}
	if got := hostFor(t, a, "192.0.2.1"); got != "k8s.example" {
		t.Errorf("a decision with the store failing went to %q", got)
	}
}

// GET /api/v1/datasets reports what is loaded, from the files themselves:
// file, type, build time, record counts and when this server loaded it.
func TestAdminDataSets(t *testing.T) {
	t.Parallel()
	a := newApp(t, `geoip: {asn: ../../testdata/maxmind/GeoLite2-ASN-Test.mmdb, country: ../../testdata/maxmind/GeoIP2-Country-Test.mmdb}
cloud_ranges: {aws: ../../testdata/cloud/aws-ip-ranges.json}
`, Options{})
	serve(t, a)
	req, _ := http.NewRequest("GET", "http://"+a.AdminAddr()+"/api/v1/datasets", nil)
	req.Header.Set("Authorization", "Bearer "+a.AdminToken())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct {
		GeoIP []struct {
			Kind         string    `json:"kind"`
			File         string    `json:"file"`
			DatabaseType string    `json:"database_type"`
			BuildTime    time.Time `json:"build_time"`
			Networks     int       `json:"networks"`
			Records      int       `json:"records"`
			LoadedAt     time.Time `json:"loaded_at"`
		} `json:"geoip"`
		Cloud []struct {
			Provider string    `json:"provider"`
			File     string    `json:"file"`
			Records  int       `json:"records"`
			ModTime  time.Time `json:"mod_time"`
			LoadedAt time.Time `json:"loaded_at"`
		} `json:"cloud"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%d, %v", resp.StatusCode, err)
	}
	wantGeo := map[string]string{"asn": "GeoLite2-ASN", "country": "GeoIP2-Country"}
	if len(got.GeoIP) != 2 {
		t.Fatalf("geoip: %+v", got.GeoIP)
	}
	for _, g := range got.GeoIP {
		if wantGeo[g.Kind] != g.DatabaseType || !strings.HasSuffix(g.File, ".mmdb") || g.BuildTime.IsZero() ||
			g.Networks == 0 || g.Records == 0 || g.LoadedAt.IsZero() {
			t.Errorf("geoip data set %+v", g)
		}
	}
	if len(got.Cloud) != 1 || got.Cloud[0].Provider != "aws" || !strings.HasSuffix(got.Cloud[0].File, "aws-ip-ranges.json") ||
		got.Cloud[0].Records < 1000 || got.Cloud[0].ModTime.IsZero() || got.Cloud[0].LoadedAt.IsZero() {
		t.Errorf("cloud data sets %+v", got.Cloud)
	}
}

// Risky settings are warned of at start, and a rule or override naming a
// region no loaded ranges file publishes is warned of once the ranges
// are loaded: once each.
func TestStartWarnings(t *testing.T) {
	t.Parallel()
	var logged logtest.Buffer
	cfg, err := config.Parse(fmt.Appendf(nil, `
listen: "127.0.0.1:0"
admin_listen: "0.0.0.0:0"
data_dir: %s
client_ip: {trusted_proxies: ["0.0.0.0/0"]}
cloud_ranges: {aws: ../../testdata/cloud/aws-ip-ranges.json}
registries:
  - {name: k8s, url: "https://k8s.example/images", default: true}
  - {name: aws, url: "https://aws.example"}
rules:
  - {match: {cloud: aws, region: mars-1}, registries: [aws]}
  - {match: {cloud: aws, region: us-east-2}, registries: [aws]}
`, t.TempDir()), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(cfg, Options{Logger: slog.New(slog.NewJSONHandler(&logged, nil)), Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Listen(); err != nil {
		t.Fatal(err)
	}
	serve(t, a)
	for _, want := range []string{`admin_listen \"0.0.0.0:0\" is on every interface`, "client_ip.trusted_proxies holds 0.0.0.0/0", `"region":"mars-1"`} {
		if n := strings.Count(logged.String(), want); n != 1 {
			t.Errorf("%q logged %d times, want once:\n%s", want, n, logged.String())
		}
	}
	if strings.Contains(logged.String(), `"region":"us-east-2"`) {
		t.Error("a published region was warned of")
	}
	req, _ := http.NewRequest("POST", "http://"+a.AdminAddr()+"/api/v1/overrides", strings.NewReader(`{"match":{"cloud":"aws","region":"venus-2"},"registries":["aws"]}`))
	req.Header.Set("Authorization", "Bearer "+a.AdminToken())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 || !strings.Contains(logged.String(), `"region":"venus-2"`) {
		t.Errorf("an override naming an unpublished region: %d, logged:\n%s", resp.StatusCode, logged.String())
	}
}

// /readyz stays 200 but says degraded, and why, for each kind of trouble
// that leaves decisions working: a GeoIP file refused on reload (the
// last good one serves), a cloud ranges file missing, and the store's
// file removed (written again, and reported).
func TestReadyzSaysWhy(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	asn := filepath.Join(dir, "asn.mmdb")
	data, err := os.ReadFile("../../testdata/maxmind/GeoLite2-ASN-Test.mmdb")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(asn, data, 0o600); err != nil {
		t.Fatal(err)
	}
	a := newApp(t, fmt.Sprintf("geoip: {asn: %s}\ncloud_ranges: {aws: %s}\n", asn, filepath.Join(dir, "aws.json")),
		Options{StoreCheckInterval: 20 * time.Millisecond})
	serve(t, a)
	ready := func() Readiness {
		resp, err := http.Get("http://" + a.PublicAddr() + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r Readiness
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || resp.StatusCode != 200 {
			t.Fatalf("/readyz: %d, %v", resp.StatusCode, err)
		}
		return r
	}
	says := func(what string, want ...string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			r := ready()
			all := r.Status == "degraded"
			for _, w := range want {
				all = all && slices.ContainsFunc(r.Problems, func(p string) bool { return strings.Contains(p, w) })
			}
			if all {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: /readyz %+v, want degraded with %q", what, r, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	says("cloud file missing", "cloud_ranges.aws: not loaded")
	tmp := asn + ".tmp"
	if err := os.WriteFile(tmp, []byte("not a database"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, asn); err != nil {
		t.Fatal(err)
	}
	says("GeoIP file refused", "geoip.asn: serving the last good database")
	if err := os.Remove(filepath.Join(a.cfg.DataDir, "reghost.db")); err != nil {
		t.Fatal(err)
	}
	says("store file removed", "geoip.asn", "cloud_ranges.aws", "was removed")
	if r := ready(); r.Store != "failing" {
		t.Errorf("store: %q", r.Store)
	}
}

// Named admin tokens, from a file and from the environment: each signs
// the changes made with it, in the overrides and in the audit trail.
func TestNamedAdminTokens(t *testing.T) {
	t.Parallel()
	aliceFile := filepath.Join(t.TempDir(), "alice-token")
	if err := os.WriteFile(aliceFile, []byte("alice-token-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"CI_TOKEN": "ci-token-0123456789abc"}
	a := newApp(t, fmt.Sprintf("admin: {tokens: [{name: alice, file: %s}, {name: ci, env: CI_TOKEN}]}\n", aliceFile),
		Options{Getenv: func(k string) string { return env[k] }})
	serve(t, a)
	call := func(token, method, path, body string) (int, string) {
		return adminCall(t, a, token, method, path, body)
	}
	for _, who := range []struct{ name, token, cidr string }{
		{"alice", "alice-token-0123456789", "192.0.2.0/24"},
		{"ci", "ci-token-0123456789abc", "198.51.100.0/24"},
	} {
		code, body := call(who.token, "POST", "/api/v1/overrides", `{"match":{"cidr":"`+who.cidr+`"},"registries":["aws"]}`)
		if code != http.StatusCreated || !strings.Contains(body, `"created_by":"`+who.name+`"`) {
			t.Errorf("create with %s's token: %d %s", who.name, code, body)
		}
	}
	if code, _ := call("not-a-token-0123456789", "GET", "/api/v1/overrides", ""); code != http.StatusUnauthorized {
		t.Errorf("an unknown token: %d, want 401", code)
	}
	_, audit := call("alice-token-0123456789", "GET", "/api/v1/audit", "")
	for _, name := range []string{"alice", "ci"} {
		if !strings.Contains(audit, `"who":"`+name+`"`) {
			t.Errorf("the audit trail does not name %s: %s", name, audit)
		}
	}

	// A variable that is not set is refused at start, naming it.
	cfg, err := config.Parse([]byte(fmt.Sprintf(baseConfig, t.TempDir())+"admin: {tokens: [{name: ops, env: OPS_TOKEN}]}\n"), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(cfg, Options{Getenv: func(string) string { return "" }})
	if err == nil || !strings.Contains(err.Error(), "admin.tokens[0] (ops): environment variable OPS_TOKEN") {
		t.Errorf("a token variable that is not set: %v", err)
	}
}
