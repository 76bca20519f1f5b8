package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reghost/reghost/internal/overrides"
	"github.com/reghost/reghost/internal/policy"
	"github.com/reghost/reghost/internal/store"
)

const testToken = "test-token-0123456789abcdef"

type adminEnv struct {
	admin, public *httptest.Server
	engine        *policy.Engine
	store         *store.Bolt
	// now is the overrides service's clock, in Unix nanoseconds, when
	// newAdminEnv made the env.
	now atomic.Int64
}

func newAdminEnv(t testing.TB) *adminEnv {
	t.Helper()
	var env *adminEnv
	env = newAdminEnvAt(t, func() time.Time { return time.Unix(0, env.now.Load()).UTC() })
	env.now.Store(time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC).UnixNano())
	return env
}

// newAdminEnvAt is newAdminEnv with the admin API's clock.
func newAdminEnvAt(t testing.TB, now func() time.Time) *adminEnv {
	t.Helper()
	engine := testEngine(t)
	st, err := store.OpenBolt(t.TempDir(), store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	svc, err := overrides.New(t.Context(), overrides.Config{Store: st, Engine: engine, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	m := NewMetrics()
	adm, err := NewAdmin(AdminConfig{Engine: engine, Overrides: svc, Tokens: map[string]string{"tester": testToken}, Metrics: m,
		DataSets: func() any { return map[string]string{"geoip": "test"} }})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := NewPublic(PublicConfig{Engine: engine, Metrics: m,
		ClientIP: ClientIPConfig{TrustedProxies: testTrusted}})
	if err != nil {
		t.Fatal(err)
	}
	env := &adminEnv{admin: httptest.NewServer(adm), public: httptest.NewServer(pub), engine: engine, store: st}
	t.Cleanup(env.admin.Close)
	t.Cleanup(env.public.Close)
	return env
}

func (env *adminEnv) call(t testing.TB, method, path, body string) (int, map[string]any) {
	t.Helper()
	return callWith(t, method, env.admin.URL+path, body, "Bearer "+testToken)
}

func callWith(t testing.TB, method, url, body, auth string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	req.Header.Set("Content-Type", "application/json")
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	raw, _ := io.ReadAll(r.Body)
	var out map[string]any
	if len(bytes.TrimSpace(raw)) > 0 && raw[0] == '{' {
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, url, err, raw)
		}
	} else {
		out = map[string]any{"raw": string(raw)}
	}
	return r.StatusCode, out
}

// versionN is the n of a response's version.
func versionN(body map[string]any) float64 {
	v, _ := body["version"].(map[string]any)
	n, _ := v["n"].(float64)
	return n
}

func TestAdminAuth(t *testing.T) {
	t.Parallel()
	env := newAdminEnv(t)
	for _, auth := range []string{"", "Bearer ", "Bearer wrong-token-0123456789abcdef", "Basic " + testToken, testToken, "Bearer " + testToken + "x"} {
		for _, path := range []string{"/api/v1/overrides", "/api/v1/explain?ip=1.2.3.4", "/api/v1/registries", "/api/v1/datasets",
			"/api/v1/overrides/x", "/debug/pprof/", "/debug/pprof/heap"} {
			code, body := callWith(t, "GET", env.admin.URL+path, "", auth)
			if code != http.StatusUnauthorized || body["error"] != "missing or wrong bearer token" {
				t.Errorf("%q %s: %d %v", auth, path, code, body)
			}
		}
		if code, _ := callWith(t, "POST", env.admin.URL+"/api/v1/overrides", `{"match":{"asn":1},"registries":["hub"]}`, auth); code != 401 {
			t.Errorf("%q POST: %d", auth, code)
		}
	}
	for _, auth := range []string{"Bearer " + testToken, "bearer " + testToken, "Bearer   " + testToken} {
		if code, _ := callWith(t, "GET", env.admin.URL+"/api/v1/overrides", "", auth); code != 200 {
			t.Errorf("right token, %q: %d", auth, code)
		}
	}
	// A method a route does not take is 405, saying which it does.
	req, _ := http.NewRequest("PATCH", env.admin.URL+"/api/v1/overrides/x", strings.NewReader("{}"))
	req.Header.Set("Authorization", "Bearer "+testToken)
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if allow := r.Header.Get("Allow"); r.StatusCode != http.StatusMethodNotAllowed || !strings.Contains(allow, "PUT") || !strings.Contains(allow, "DELETE") {
		t.Errorf("PATCH: %d, Allow %q", r.StatusCode, allow)
	}
	if _, err := NewAdmin(AdminConfig{Tokens: map[string]string{"x": "short"}}); err == nil {
		t.Error("short token accepted")
	}
	if _, err := NewAdmin(AdminConfig{}); err == nil {
		t.Error("no token accepted")
	}
}

func TestAdminOverridesCRUD(t *testing.T) {
	t.Parallel()
	env := newAdminEnv(t)
	publicHost := func(ip string) string {
		return do(t, "GET", env.public.URL+"/", map[string]string{"X-Real-Ip": ip}).body
	}
	if got := publicHost("89.160.20.112"); got != "registry-1.docker.io" {
		t.Fatalf("before: %s", got)
	}

	code, body := env.call(t, "POST", "/api/v1/overrides",
		`{"id":"se-to-eu","match":{"country":"SE"},"registries":["eu"],"note":"hub is slow from SE","created_by":"alice","created_at":"2026-11-01T08:00:00Z"}`)
	if v, _ := body["version"].(map[string]any); code != http.StatusCreated || v["n"] != 1.0 || v["epoch"] != 1.0 {
		t.Fatalf("create: %d %v", code, body)
	}
	// The write took effect on this server before the response.
	if got := publicHost("89.160.20.112"); got != "eu.example" {
		t.Errorf("after create: %s", got)
	}
	if code, _ := env.call(t, "POST", "/api/v1/overrides", `{"id":"se-to-eu","match":{"country":"SE"},"registries":["eu"]}`); code != http.StatusConflict {
		t.Errorf("duplicate create: %d", code)
	}

	code, body = env.call(t, "GET", "/api/v1/overrides/se-to-eu", "")
	if code != 200 || body["note"] != "hub is slow from SE" || body["created_by"] != "alice" || body["created_at"] != "2026-11-01T08:00:00Z" {
		t.Errorf("get: %d %v", code, body)
	}

	code, body = env.call(t, "PUT", "/api/v1/overrides/se-to-eu", `{"match":{"country":"SE"},"registries":["k8s"]}`)
	if code != 200 || versionN(body) != 2 {
		t.Errorf("put: %d %v", code, body)
	}
	if got := publicHost("89.160.20.112"); got != "us-west1-docker.pkg.dev" {
		t.Errorf("after put: %s", got)
	}
	// A replacement that leaves out who created the override, and when,
	// keeps them.
	code, body = env.call(t, "GET", "/api/v1/overrides/se-to-eu", "")
	if code != 200 || body["created_by"] != "alice" || body["created_at"] != "2026-11-01T08:00:00Z" || body["note"] != nil {
		t.Errorf("get after put: %d %v", code, body)
	}

	code, body = env.call(t, "POST", "/api/v1/overrides", `{"match":{"cidr":"10.0.0.0/8"},"registries":["hub"],"expires_at":"2026-11-24T00:00:00Z"}`)
	if code != 201 || !strings.HasPrefix(body["override"].(map[string]any)["id"].(string), "ovr-") {
		t.Errorf("create with a generated id: %d %v", code, body)
	}
	code, body = env.call(t, "GET", "/api/v1/overrides", "")
	if list, _ := body["overrides"].([]any); code != 200 || len(list) != 2 || versionN(body) != 3 {
		t.Errorf("list: %d %v", code, body)
	}
	// Marked once expired, by the service's clock.
	env.now.Store(time.Date(2026, 11, 24, 0, 0, 1, 0, time.UTC).UnixNano())
	_, body = env.call(t, "GET", "/api/v1/overrides", "")
	for _, o := range body["overrides"].([]any) {
		o := o.(map[string]any)
		if expiring := o["expires_at"] != nil; (o["expired"] == true) != expiring {
			t.Errorf("expired = %v for %v", o["expired"], o)
		}
	}
	env.now.Store(time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC).UnixNano())

	code, body = env.call(t, "DELETE", "/api/v1/overrides/se-to-eu", "")
	if code != 200 || versionN(body) != 4 {
		t.Errorf("delete: %d %v", code, body)
	}
	if got := publicHost("89.160.20.112"); got != "registry-1.docker.io" {
		t.Errorf("after delete: %s", got)
	}
	if code, _ := env.call(t, "DELETE", "/api/v1/overrides/se-to-eu", ""); code != 404 {
		t.Errorf("delete again: %d", code)
	}
	if code, _ := env.call(t, "GET", "/api/v1/overrides/nope", ""); code != 404 {
		t.Errorf("get missing: %d", code)
	}
	// PUT of a new id creates it (201), stamped now; again, it replaces it (200).
	code, body = env.call(t, "PUT", "/api/v1/overrides/new-by-put", `{"match":{"asn":64500},"registries":["hub"]}`)
	if o, _ := body["override"].(map[string]any); code != 201 || o["created_at"] != "2026-11-23T12:00:00Z" || o["created_by"] != "tester" {
		t.Errorf("put of a new id: %d %v", code, body)
	}
	if code, body = env.call(t, "PUT", "/api/v1/overrides/new-by-put", `{"match":{"asn":64501},"registries":["hub"]}`); code != 200 {
		t.Errorf("put of an existing id: %d %v", code, body)
	}
}

// Of two overrides with the same match, the newer wins however close
// together they were made. (created_at was once cut to the second, and
// a tie went to whichever random ID sorted first: with ten pairs, the
// older would have won at least once but for one time in a thousand.)
func TestAdminNewerOverrideWins(t *testing.T) {
	t.Parallel()
	var tick atomic.Int64
	env := newAdminEnvAt(t, func() time.Time {
		return time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC).Add(time.Duration(tick.Add(1)) * time.Millisecond)
	})
	for i := range 10 {
		cidr := fmt.Sprintf("203.0.%d.0/24", i)
		for _, registry := range []string{"eu", "hub"} {
			if code, body := env.call(t, "POST", "/api/v1/overrides", `{"match":{"cidr":"`+cidr+`"},"registries":["`+registry+`"]}`); code != 201 {
				t.Fatalf("create %s -> %s: %d %v", cidr, registry, code, body)
			}
		}
		client := fmt.Sprintf("203.0.%d.1", i)
		if r := do(t, "GET", env.public.URL+"/", map[string]string{"X-Real-Ip": client}); r.body != "registry-1.docker.io" {
			t.Errorf("%s went to %q; want the newer override's hub", client, r.body)
		}
	}
}

func TestAdminOverrideValidation(t *testing.T) {
	t.Parallel()
	env := newAdminEnv(t)
	tests := []struct {
		name, body, field, msg string
	}{
		{"unknown registry", `{"match":{"asn":1},"registries":["nope"]}`, "registries[0]", `registries[0]: unknown registry "nope"`},
		{"bad cidr", `{"match":{"cidr":"10.0.0.300/8"},"registries":["hub"]}`, "match.cidr", `match.cidr: "10.0.0.300/8" is not a CIDR prefix`},
		{"host bits", `{"match":{"cidr":"10.0.0.1/8"},"registries":["hub"]}`, "match.cidr", "match.cidr: 10.0.0.1/8 has host bits set; did you mean 10.0.0.0/8?"},
		{"bad country", `{"match":{"country":"se"},"registries":["hub"]}`, "match.country", `match.country: "se" is not an ISO 3166-1 alpha-2 country code (two upper-case letters, such as SE)`},
		{"unassigned country", `{"match":{"country":"XX"},"registries":["hub"]}`, "match.country", `match.country: "XX" is not an ISO 3166-1 alpha-2 country code (two upper-case letters, such as SE)`},
		{"two kinds", `{"match":{"asn":1,"country":"SE"},"registries":["hub"]}`, "match", "match: sets asn and country; a match sets exactly one kind"},
		{"empty match", `{"match":{},"registries":["hub"]}`, "match", "match: empty; set one of cidr, asn, cloud (with optional region), country, continent"},
		{"unknown cloud", `{"match":{"cloud":"ibm"},"registries":["hub"]}`, "match.cloud", `match.cloud: unknown provider "ibm"; known: aws, gcp, azure, oracle, digitalocean`},
		{"no registries", `{"match":{"asn":1},"registries":[]}`, "registries", "registries: empty; list at least one registry"},
		{"bad id", `{"id":"a b","match":{"asn":1},"registries":["hub"]}`, "id", `id: "a b" must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit`},
		{"expired already", `{"match":{"asn":1},"registries":["hub"],"expires_at":"2026-11-23T11:00:00Z"}`, "expires_at", "expires_at: 2026-11-23T11:00:00Z is not in the future"},
		{"unknown field", `{"match":{"asn":1},"registries":["hub"],"colour":"red"}`, "colour", "colour: unknown field"},
		{"unknown match field", `{"match":{"asn":1,"colour":"red"},"registries":["hub"]}`, "match.colour", "match.colour: unknown field"},
		{"top-level field in match", `{"match":{"asn":1,"note":"x"},"registries":["hub"]}`, "match.note", "match.note: unknown field"},
		{"a key in another case", `{"match":{"asn":1},"Registries":["hub"]}`, "Registries", "Registries: unknown field"},
		{"match keys in another case", `{"MATCH":{"COUNTRY":"DE"},"registries":["hub"]}`, "MATCH", "MATCH: unknown field"},
		{"a key twice", `{"match":{"asn":1},"registries":["hub"],"registries":["eu"]}`, "registries", "registries: given more than once"},
		{"a match key twice", `{"match":{"asn":1,"asn":2},"registries":["hub"]}`, "match.asn", "match.asn: given more than once"},
		{"unknown in both", `{"match":{"asn":1,"colour":1},"registries":["hub"],"shade":2}`, "match.colour", "match.colour: unknown field"},
		{"not JSON", `{"match":`, "body", "body: invalid JSON at byte 9: unexpected EOF"},
		{"created_by too long", `{"match":{"asn":1},"registries":["hub"],"created_by":"` + strings.Repeat("x", 257) + `"}`, "created_by", "created_by: longer than 256 bytes"},
		{"trailing brackets", `{"match":{"asn":1},"registries":["hub"]}}]`, "body", "body: more after the JSON object"},
		{"two objects", `{"match":{"asn":1},"registries":["hub"]} {}`, "body", "body: more after the JSON object"},
		{"asn as a string", `{"match":{"asn":"15169"},"registries":["hub"]}`, "match.asn", "match.asn: a JSON string where a number from 0 to 4294967295 belongs"},
		{"negative asn", `{"match":{"asn":-1},"registries":["hub"]}`, "match.asn", "match.asn: a JSON number -1 where a number from 0 to 4294967295 belongs"},
		{"registries as a string", `{"match":{"asn":1},"registries":"hub"}`, "registries", "registries: a JSON string where an array belongs"},
		{"bad time", `{"match":{"asn":1},"registries":["hub"],"expires_at":"tomorrow"}`, "expires_at", `expires_at: "tomorrow" is not an RFC 3339 time, such as 2030-01-01T00:00:00Z`},
		{"offset of 24 hours", `{"match":{"asn":1},"registries":["hub"],"expires_at":"2030-01-01T00:00:00+24:00"}`, "expires_at", `expires_at: "2030-01-01T00:00:00+24:00" is not an RFC 3339 time, such as 2030-01-01T00:00:00Z`},
		{"bad created_at", `{"match":{"asn":1},"registries":["hub"],"created_at":"2026-11-23"}`, "created_at", `created_at: "2026-11-23" is not an RFC 3339 time, such as 2030-01-01T00:00:00Z`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := env.call(t, "POST", "/api/v1/overrides", tt.body)
			if code != 400 || body["field"] != tt.field || body["error"] != tt.msg {
				t.Errorf("got %d field=%v error=%v\nwant 400 field=%s error=%s", code, body["field"], body["error"], tt.field, tt.msg)
			}
		})
	}
	code, body := env.call(t, "PUT", "/api/v1/overrides/a", `{"id":"b","match":{"asn":1},"registries":["hub"]}`)
	if code != 400 || body["field"] != "id" {
		t.Errorf("id mismatch: %d %v", code, body)
	}
	if v, _ := env.store.Version(context.Background()); v.N != 0 {
		t.Errorf("invalid writes reached the store: version %s", v)
	}
}

func TestAdminExplainRegistriesDataSetsMetrics(t *testing.T) {
	t.Parallel()
	env := newAdminEnv(t)
	code, body := env.call(t, "GET", "/api/v1/explain?ip=2a02:d180::1&path=/v2/pause/tags/list?n=1", "")
	if code != 200 || body["registry"] != "eu" || body["reason"] != "continent:EU" ||
		body["location"] != "https://eu.example/v2/pause/tags/list?n=1" || len(body["trail"].([]any)) < 3 {
		t.Errorf("explain: %d %v", code, body)
	}
	if code, body := env.call(t, "GET", "/api/v1/explain?ip=bogus", ""); code != 400 || body["field"] != "ip" {
		t.Errorf("explain bogus: %d %v", code, body)
	}
	if code, body := env.call(t, "GET", "/api/v1/explain", ""); code != 400 || body["error"] != "missing ?ip=, the client address to explain" {
		t.Errorf("explain without ?ip=: %d %v", code, body)
	}

	req, _ := http.NewRequest("GET", env.admin.URL+"/api/v1/registries", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var regsResp registriesResponse
	json.NewDecoder(r.Body).Decode(&regsResp)
	r.Body.Close()
	regs := regsResp.Registries
	if len(regs) != 4 || regs[0].Name != "k8s" || !regs[0].Default || !regs[0].Up || regs[1].Host != "registry-1.docker.io" {
		t.Errorf("registries: %+v", regs)
	}
	if code, body := env.call(t, "GET", "/api/v1/datasets", ""); code != 200 || body["geoip"] != "test" {
		t.Errorf("datasets: %d %v", code, body)
	}

	// Traffic on the public listener, then /metrics without a token.
	do(t, "GET", env.public.URL+"/v2/a/manifests/1", map[string]string{"X-Real-Ip": "89.160.20.112"})
	do(t, "GET", env.public.URL+"/", map[string]string{"X-Real-Ip": "1.0.0.1"})
	resp, err := http.Get(env.admin.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := string(raw)
	for _, want := range []string{
		`reghost_decisions_total{kind="country",registry="hub"} 1`,
		`reghost_decisions_total{kind="asn",registry="hub"} 1`,
		`reghost_http_request_duration_seconds_count{code="307",listener="public",route="/v2/*"} 1`,
		`reghost_http_request_duration_seconds_count{code="200",listener="public",route="/"} 1`,
		`reghost_build_info{`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	for _, leak := range []string{"89.160.20.112", "1.0.0.1", "/v2/a/manifests/1", testToken} {
		if strings.Contains(text, leak) {
			t.Errorf("/metrics contains %q", leak)
		}
	}
}

// BenchmarkAdminWrites: overrides created one by one through the admin
// API (HTTP, validation, the embedded store synced to disk, applied to
// the engine before the answer), 5,000 of them, and an import of 100,000
// in one call (PUT /api/v1/overrides).
func BenchmarkAdminWrites(b *testing.B) {
	b.Run("create-5000", func(b *testing.B) {
		for b.Loop() {
			env := newAdminEnv(b)
			start := time.Now()
			for i := range 5000 {
				body := fmt.Sprintf(`{"match":{"cidr":"10.%d.%d.0/24"},"registries":["hub"]}`, i>>8, i&0xff)
				if code, resp := env.call(b, "POST", "/api/v1/overrides", body); code != http.StatusCreated {
					b.Fatalf("create %d: %d %v", i, code, resp)
				}
			}
			b.ReportMetric(time.Since(start).Seconds(), "s/5000")
		}
	})
	b.Run("import-100000", func(b *testing.B) {
		var body strings.Builder
		body.WriteString(`{"overrides":[`)
		for i := range 100_000 {
			if i > 0 {
				body.WriteByte(',')
			}
			fmt.Fprintf(&body, `{"id":"imp-%06d","match":{"cidr":"10.%d.%d.0/24"},"registries":["hub"]}`, i, i>>8&0xff, i&0xff)
		}
		body.WriteString(`]}`)
		for b.Loop() {
			env := newAdminEnv(b)
			start := time.Now()
			if code, resp := env.call(b, "PUT", "/api/v1/overrides", body.String()); code != http.StatusOK {
				b.Fatalf("import: %d %v", code, resp)
			}
			b.ReportMetric(time.Since(start).Seconds(), "s/import")
		}
	})
}

// A list is a backup that PUT /api/v1/overrides restores as it is.
func TestAdminBackupAndRestore(t *testing.T) {
	t.Parallel()
	env := newAdminEnv(t)
	for _, body := range []string{
		`{"id":"a","match":{"country":"SE"},"registries":["eu"],"note":"n","created_by":"alice"}`,
		`{"id":"b","match":{"cidr":"2001:db8::/32"},"registries":["hub","eu"],"expires_at":"2026-11-23T13:00:00Z"}`,
	} {
		if code, resp := env.call(t, "POST", "/api/v1/overrides", body); code != 201 {
			t.Fatalf("create: %d %v", code, resp)
		}
	}
	env.now.Store(time.Date(2026, 11, 23, 14, 0, 0, 0, time.UTC).UnixNano()) // b has expired
	backup := callRaw(t, env, "GET", "/api/v1/overrides", "")
	if !strings.Contains(backup, `"expired":true`) {
		t.Fatalf("the list does not mark b expired: %s", backup)
	}
	if code, resp := env.call(t, "DELETE", "/api/v1/overrides/a", ""); code != 200 {
		t.Fatalf("delete: %d %v", code, resp)
	}
	if code, resp := env.call(t, "PUT", "/api/v1/overrides", backup); code != 200 || resp["overrides"] != 2.0 {
		t.Fatalf("restore: %d %v", code, resp)
	}
	code, got := env.call(t, "GET", "/api/v1/overrides/a", "")
	if code != 200 || got["note"] != "n" || got["created_by"] != "alice" {
		t.Errorf("after the restore: %d %v", code, got)
	}
}

// callRaw is call with the body as text.
func callRaw(t testing.TB, env *adminEnv, method, path, body string) string {
	t.Helper()
	req, _ := http.NewRequest(method, env.admin.URL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testToken)
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return string(b)
}
