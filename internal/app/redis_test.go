package app

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reghost/reghost/internal/config"
	"github.com/reghost/reghost/internal/rules"
	"github.com/reghost/reghost/internal/store/redistest"
)

// replica is one reghost server of several sharing a Redis.
type replica struct {
	*App
	dataDir string
	stop    func() error
}

const sharedToken = "shared-admin-token-0123456789"

// startReplica runs a reghost whose store is the Redis at url, with its
// own data_dir (dir, or a new one).
func startReplica(t testing.TB, url, dir string) *replica {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	cfg, err := config.Parse(fmt.Appendf(nil, baseConfig+`store: %q
health_defaults: {enabled: false}
`, dir, url), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(cfg, Options{Getenv: func(k string) string {
		if k == "REGHOST_ADMIN_TOKEN" {
			return sharedToken
		}
		return ""
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Listen(); err != nil {
		t.Fatal(err)
	}
	return &replica{App: a, dataDir: dir, stop: serve(t, a)}
}

// admin calls the replica's admin API and returns the status code and
// body.
func (r *replica) admin(t testing.TB, method, path, body string) (int, string) {
	t.Helper()
	return adminCall(t, r.App, sharedToken, method, path, body)
}

// adminCall calls a's admin API with token and returns the status code
// and body.
func adminCall(t testing.TB, a *App, token, method, path, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+a.AdminAddr()+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// eventually waits up to limit for ip to go to host on r.
func (r *replica) eventually(t *testing.T, what, ip, host string, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for hostFor(t, r.App, ip) != host {
		if time.Since(start) > limit {
			t.Fatalf("%s: %s goes to %s after %v, want %s", what, ip, hostFor(t, r.App, ip), limit, host)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

func (r *replica) readyz(t *testing.T) Readiness {
	t.Helper()
	resp, err := http.Get("http://" + r.PublicAddr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ready Readiness
	if err := json.NewDecoder(resp.Body).Decode(&ready); err != nil || resp.StatusCode != 200 {
		t.Fatalf("/readyz: %d %v", resp.StatusCode, err)
	}
	return ready
}

// Two replicas on one Redis: a change made through one's admin API
// decides on the other within a second, as do deletes and drains, and
// the audit trail names the token.
func TestRedisReplicasShare(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	a, b := startReplica(t, rs.URL(), ""), startReplica(t, rs.URL(), "")
	const ip = "198.51.100.7"
	if code, body := a.admin(t, "POST", "/api/v1/overrides", `{"id":"x","match":{"cidr":"198.51.100.0/24"},"registries":["aws"]}`); code != 201 {
		t.Fatalf("create on a: %d %s", code, body)
	}
	t.Logf("an override created on a decides on b after %v", b.eventually(t, "create", ip, "aws.example", time.Second))
	if code, body := b.admin(t, "POST", "/api/v1/registries/aws/drain", `{"note":"test"}`); code != 200 {
		t.Fatalf("drain on b: %d %s", code, body)
	}
	a.eventually(t, "drain", ip, "k8s.example", time.Second)
	if code, body := a.admin(t, "POST", "/api/v1/registries/aws/undrain", ""); code != 200 {
		t.Fatalf("undrain on a: %d %s", code, body)
	}
	b.eventually(t, "undrain", ip, "aws.example", time.Second)
	if code, body := b.admin(t, "DELETE", "/api/v1/overrides/x", ""); code != 200 {
		t.Fatalf("delete on b: %d %s", code, body)
	}
	a.eventually(t, "delete", ip, "k8s.example", time.Second)
	code, body := a.admin(t, "GET", "/api/v1/audit", "")
	var audit struct {
		Entries []struct{ Op, Who, ID string }
	}
	if err := json.Unmarshal([]byte(body), &audit); err != nil || code != 200 || len(audit.Entries) != 4 {
		t.Fatalf("audit: %d %s", code, body)
	}
	for _, e := range audit.Entries {
		if e.Who != "admin" {
			t.Errorf("audit entry %+v: who %q, want the token's name", e, e.Who)
		}
	}
}

// Redis down under load: decisions go on from the snapshot without one
// failing, writes answer 503 within a second, /readyz says so; Redis
// back: a write on one replica reaches the other.
func TestRedisOutage(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t, redistest.Persistent()) // it comes back with its data
	a, b := startReplica(t, rs.URL(), ""), startReplica(t, rs.URL(), "")
	if code, body := a.admin(t, "POST", "/api/v1/overrides", `{"match":{"cidr":"198.51.100.0/24"},"registries":["aws"]}`); code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	b.eventually(t, "create", "198.51.100.7", "aws.example", time.Second)

	var decisions, failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, r := range []*replica{a, b} {
		wg.Go(func() {
			c := http.Client{Timeout: 2 * time.Second}
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest("GET", "http://"+r.PublicAddr()+"/", nil)
				req.Header.Set("X-Real-IP", "198.51.100.7")
				resp, err := c.Do(req)
				decisions.Add(1)
				if err != nil {
					failed.Add(1)
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || string(body) != "aws.example" {
					failed.Add(1)
				}
			}
		})
	}
	rs.Stop()
	start := time.Now()
	code, body := a.admin(t, "POST", "/api/v1/overrides", `{"match":{"country":"SE"},"registries":["aws"]}`)
	if took := time.Since(start); code != http.StatusServiceUnavailable || took > time.Second {
		t.Errorf("a write with Redis down: %d after %v, want 503 within a second: %s", code, took, body)
	}
	deadline := time.Now().Add(5 * time.Second)
	for r := a.readyz(t); r.Status != "degraded" || r.Store == "ok"; r = a.readyz(t) {
		if time.Now().After(deadline) {
			t.Fatalf("/readyz with Redis down: %+v", r)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // decisions go on meanwhile
	rs.Restart()
	deadline = time.Now().Add(10 * time.Second)
	for {
		if code, _ := b.admin(t, "POST", "/api/v1/overrides", `{"match":{"cidr":"203.0.113.0/24"},"registries":["aws"]}`); code == 201 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("writes did not resume after Redis came back")
		}
		time.Sleep(50 * time.Millisecond)
	}
	a.eventually(t, "a write after the outage", "203.0.113.7", "aws.example", 5*time.Second)
	close(stop)
	wg.Wait()
	if n, f := decisions.Load(), failed.Load(); f != 0 || n < 50 {
		t.Errorf("%d decisions while Redis was down and back, %d failed", n, f)
	} else {
		t.Logf("%d decisions while Redis went down and came back, none failed", n)
	}
}

// A replica restarted while Redis is down serves the set it kept on
// disk, and says so; a new one with an empty data_dir serves the config
// alone, and says so too.
func TestRedisColdStartDown(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t, redistest.Persistent())
	a := startReplica(t, rs.URL(), "")
	if code, body := a.admin(t, "POST", "/api/v1/overrides", `{"match":{"cidr":"198.51.100.0/24"},"registries":["aws"]}`); code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	snap := filepath.Join(a.dataDir, "store-snapshot.json")
	waitFile := time.Now().Add(5 * time.Second)
	for {
		if b, err := os.ReadFile(snap); err == nil && strings.Contains(string(b), "198.51.100.0/24") {
			break
		}
		if time.Now().After(waitFile) {
			t.Fatal("the set was not kept on local disk")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if v, _ := metric(t, http.DefaultClient, "http://"+a.AdminAddr(), "reghost_store_snapshot_written_timestamp_seconds"); v < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("reghost_store_snapshot_written_timestamp_seconds = %v after the snapshot was written", v)
	}
	if v, ok := metric(t, http.DefaultClient, "http://"+a.AdminAddr(), "reghost_store_serving_snapshot"); !ok || v != 0 {
		t.Errorf("reghost_store_serving_snapshot = %v, %v while Redis answers", v, ok)
	}
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	rs.Stop()
	again := startReplica(t, rs.URL(), a.dataDir)
	if v, _ := metric(t, http.DefaultClient, "http://"+again.AdminAddr(), "reghost_store_serving_snapshot"); v != 1 {
		t.Errorf("reghost_store_serving_snapshot = %v, restarted with Redis down", v)
	}
	if got := hostFor(t, again.App, "198.51.100.7"); got != "aws.example" {
		t.Errorf("restarted with Redis down: %s, want the override kept on disk", got)
	}
	if r := again.readyz(t); r.Status != "degraded" || !slices.ContainsFunc(r.Problems, func(p string) bool { return strings.Contains(p, "kept on local disk") }) {
		t.Errorf("/readyz: %+v", r)
	}
	fresh := startReplica(t, rs.URL(), "")
	if got := hostFor(t, fresh.App, "198.51.100.7"); got != "k8s.example" {
		t.Errorf("new with Redis down: %s, want the config's rules alone", got)
	}
	if r := fresh.readyz(t); !slices.ContainsFunc(r.Problems, func(p string) bool { return strings.Contains(p, "config's rules alone") }) {
		t.Errorf("/readyz of a new replica: %+v", r)
	}
	rs.Restart()
	again.eventually(t, "Redis back", "198.51.100.7", "aws.example", 5*time.Second)
	tlsWaitFor(t, "reghost_store_serving_snapshot 0 with Redis back", func() bool {
		v, _ := metric(t, http.DefaultClient, "http://"+again.AdminAddr(), "reghost_store_serving_snapshot")
		return v == 0
	})
	fresh.eventually(t, "Redis back", "198.51.100.7", "aws.example", 5*time.Second)
}

// A Redis that comes back empty does not empty the replicas: they keep
// serving, report it, refuse writes until an admin restores the set (one
// call) or accepts the empty one; the restore starts a new epoch.
func TestRedisFlushAndRestore(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	a, b := startReplica(t, rs.URL(), ""), startReplica(t, rs.URL(), "")
	if code, body := a.admin(t, "POST", "/api/v1/overrides", `{"id":"kept","match":{"cidr":"198.51.100.0/24"},"registries":["aws"]}`); code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	b.eventually(t, "create", "198.51.100.7", "aws.example", time.Second)
	_, before := a.admin(t, "GET", "/api/v1/overrides", "")
	rs.Flush()
	deadline := time.Now().Add(5 * time.Second)
	for r := b.readyz(t); !slices.ContainsFunc(r.Problems, func(p string) bool { return strings.Contains(p, "restore") }); r = b.readyz(t) {
		if time.Now().After(deadline) {
			t.Fatalf("/readyz after a flush: %+v", r)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, r := range []*replica{a, b} {
		if got := hostFor(t, r.App, "198.51.100.7"); got != "aws.example" {
			t.Errorf("after a flush: %s, want the last set served", got)
		}
	}
	if code, body := b.admin(t, "POST", "/api/v1/overrides", `{"match":{"country":"SE"},"registries":["aws"]}`); code != 503 {
		t.Errorf("a write to a flushed Redis: %d %s, want 503", code, body)
	}
	code, body := a.admin(t, "POST", "/api/v1/overrides/restore", "")
	if code != 200 {
		t.Fatalf("restore: %d %s", code, body)
	}
	_, after := a.admin(t, "GET", "/api/v1/overrides", "")
	var v0, v1 struct {
		Version struct{ Epoch, N uint64 }
	}
	json.Unmarshal([]byte(before), &v0)
	json.Unmarshal([]byte(after), &v1)
	if v1.Version.Epoch <= v0.Version.Epoch || !strings.Contains(after, `"kept"`) {
		t.Errorf("restore: from %s to %s, want the set back in a new epoch", before, after)
	}
	deadline = time.Now().Add(5 * time.Second)
	for r := b.readyz(t); r.Status != "ok"; r = b.readyz(t) {
		if time.Now().After(deadline) {
			t.Fatalf("/readyz after the restore: %+v", r)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, body := b.admin(t, "POST", "/api/v1/overrides", `{"match":{"country":"SE"},"registries":["aws"]}`); code != 201 {
		t.Errorf("a write after the restore: %d %s", code, body)
	}
}

// redis.password_env: the server takes the Redis password from the
// variable it names, and refuses to start when it is not set.
func TestRedisPasswordFromEnvironment(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, redistest.Args("--requirepass", "env-password-0123"))
	text := fmt.Sprintf(baseConfig+"store: %q\nredis: {password_env: REDIS_PASSWORD}\nhealth_defaults: {enabled: false}\n", t.TempDir(), srv.URL())
	cfg, err := config.Parse([]byte(text), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"REDIS_PASSWORD": "env-password-0123"}
	a, err := New(cfg, Options{Getenv: func(k string) string { return env[k] }})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Listen(); err != nil {
		t.Fatal(err)
	}
	serve(t, a)
	if _, _, err := a.overrides.Create(t.Context(), "admin", rules.Override{Match: rules.Match{CIDR: netip.MustParsePrefix("192.0.2.0/24")}, Registries: []string{"aws"}}); err != nil {
		t.Fatalf("a write with the password from the environment: %v", err)
	}

	_, err = New(cfg, Options{Getenv: func(string) string { return "" }})
	if err == nil || !strings.Contains(err.Error(), "redis.password_env: the environment variable REDIS_PASSWORD is empty or not set") {
		t.Errorf("REDIS_PASSWORD not set: %v", err)
	}
}
