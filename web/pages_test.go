package web

import (
	"context"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/reghost/reghost/internal/cloud"
	"github.com/reghost/reghost/internal/geo"
	"github.com/reghost/reghost/internal/policy"
	"github.com/reghost/reghost/internal/rules"
	"github.com/reghost/reghost/internal/traffic"
)

func TestRegistriesShowHealth(t *testing.T) {
	t.Parallel()
	since := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	e := newEnv(t, func(c *Config) {
		c.Health = func(name string) (RegistryHealth, bool) {
			if name != "hub" {
				return RegistryHealth{}, false
			}
			return RegistryHealth{Probed: true, Up: false, Since: since, LastProbe: since.Add(time.Minute), Latency: 1500 * time.Microsecond,
				LastError: "dial tcp 192.0.2.10:443: connect: connection refused", ErrorClass: "connect", LastErrorAt: since.Add(time.Minute),
				Results: []ProbeResult{{At: since, OK: true}, {At: since.Add(time.Second), Class: "connect"}, {At: since.Add(2 * time.Second), Class: "connect"}}}, true
		}
	})
	c := e.signIn(t)
	body := bodyOf(t, e.do("GET", "/admin/registries", nil, c))
	for _, want := range []string{
		"<strong>down</strong> since 2030-01-02 03:04:05 UTC",
		"last error (connect), 2030-01-02 03:05:05 UTC: dial tcp 192.0.2.10:443: connect: connection refused",
		"1.5 ms",
		`<title id="strip-hub">1 of the last 3 probes succeeded</title>`,
		`class="fail"><title>03:04:06 failed: connect</title>`,
		"no health checks report on this registry", // k8s
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the registries page lacks %q", want)
		}
	}
}

func TestDrainFromThePage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	c := e.signIn(t)
	resp := e.do("POST", "/admin/registries/hub/drain", url.Values{"note": {"disk full"}}, c)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("drain: %d", resp.StatusCode)
	}
	d := e.svc.Drains()
	if len(d) != 1 || d[0].Registry != "hub" || d[0].By != "alice" || d[0].Note != "disk full" {
		t.Fatalf("drains: %+v, want hub drained by alice", d)
	}
	body := bodyOf(t, e.do("GET", "/admin/registries?done=drained&id=hub&v=1.1", nil, c))
	if !strings.Contains(body, "Drained registry hub") || !strings.Contains(body, "drained by alice") {
		t.Error("the page does not show the drain")
	}
	if resp := e.do("POST", "/admin/registries/nope/drain", url.Values{}, c); resp.StatusCode != http.StatusNotFound {
		t.Errorf("draining an unknown registry: %d", resp.StatusCode)
	}
	if resp := e.do("POST", "/admin/registries/hub/undrain", url.Values{}, c); resp.StatusCode != http.StatusSeeOther || len(e.svc.Drains()) != 0 {
		t.Errorf("undrain: %d, drains %+v", resp.StatusCode, e.svc.Drains())
	}
}

// Validation errors, the form's and the service's, are shown next to
// their fields, and nothing is saved.
func TestOverrideFormErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	c := e.signIn(t)
	tests := []struct {
		name  string
		form  url.Values
		field string
		msg   string
	}{
		{"bad country", url.Values{"kind": {"country"}, "value": {"XX"}, "registries": {"hub"}}, "value", "match.country: &#34;XX&#34; is not an ISO 3166-1"},
		{"bad prefix", url.Values{"kind": {"cidr"}, "value": {"192.0.2.1/40"}, "registries": {"hub"}}, "value", "match.cidr: &#34;192.0.2.1/40&#34; is neither"},
		{"host bits", url.Values{"kind": {"cidr"}, "value": {"192.0.2.1/24"}, "registries": {"hub"}}, "value", "match.cidr: 192.0.2.1/24 has host bits set"},
		{"unknown registry", url.Values{"kind": {"asn"}, "value": {"AS16509"}, "registries": {"hub nowhere"}}, "registries", "registries[1]: unknown registry &#34;nowhere&#34;"},
		{"no registry", url.Values{"kind": {"asn"}, "value": {"16509"}}, "registries", "registries: empty"},
		{"past expiry", url.Values{"kind": {"asn"}, "value": {"16509"}, "registries": {"hub"}, "expires": {"2001-01-01T00:00:00Z"}}, "expires", "expires_at: 2001-01-01T00:00:00Z is not in the future"},
		{"bad expiry", url.Values{"kind": {"asn"}, "value": {"16509"}, "registries": {"hub"}, "expires": {"soon"}}, "expires", "expires_at: &#34;soon&#34; is neither"},
		{"region without cloud", url.Values{"kind": {"country"}, "value": {"SE"}, "region": {"eu-north-1"}, "registries": {"hub"}}, "region", "match.region: a region narrows a cloud match only"},
		{"bad id", url.Values{"id": {"no spaces please"}, "kind": {"country"}, "value": {"SE"}, "registries": {"hub"}}, "id", "id: &#34;no spaces please&#34; must be"},
		{"bad preview address", url.Values{"kind": {"country"}, "value": {"SE"}, "registries": {"hub"}, "addrs": {"192.0.2.1 nope"}, "action": {"preview"}}, "addrs", "addresses: &#34;nope&#34; is not an IP address"},
	}
	for _, tt := range tests {
		if tt.form.Get("action") == "" {
			tt.form.Set("action", "save")
		}
		resp := e.do("POST", "/admin/overrides/new", tt.form, c)
		body := bodyOf(t, resp)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", tt.name, resp.StatusCode)
		}
		want := `<p class="error" id="` + tt.field + `-error">` + tt.msg
		if !strings.Contains(body, want) {
			t.Errorf("%s: no %q in the page", tt.name, want)
		}
		if !strings.Contains(body, `aria-invalid="true"`) {
			t.Errorf("%s: the field is not marked invalid", tt.name)
		}
	}
	if ovs, _, _ := e.svc.List(context.Background()); len(ovs) != 0 {
		t.Errorf("invalid forms saved %d overrides", len(ovs))
	}
	// An ID that exists is a conflict, shown at the ID.
	form := url.Values{"id": {"se"}, "kind": {"country"}, "value": {"se"}, "registries": {"hub"}, "action": {"save"}}
	if resp := e.do("POST", "/admin/overrides/new", form, c); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("first save: %d", resp.StatusCode)
	}
	resp := e.do("POST", "/admin/overrides/new", form, c)
	if body := bodyOf(t, resp); resp.StatusCode != http.StatusConflict || !strings.Contains(body, `id="id-error">id: an override &#34;se&#34; exists already`) {
		t.Errorf("a second override \"se\": %d", resp.StatusCode)
	}
}

// The preview decides typed addresses and the traffic sample with the
// candidate, and saves nothing.
func TestPreview(t *testing.T) {
	t.Parallel()
	rec := traffic.New(traffic.Config{Registries: []string{"k8s", "hub"}})
	for range 3 {
		rec.Record(netip.MustParseAddr("192.0.2.9"), "default", "k8s")
	}
	rec.Record(netip.MustParseAddr("198.51.100.1"), "default", "k8s")
	e := newEnv(t, func(c *Config) { c.Traffic = rec })
	c := e.signIn(t)
	form := url.Values{"kind": {"cidr"}, "value": {"192.0.2.0/24"}, "registries": {"hub"}, "addrs": {"192.0.2.7\n203.0.113.1"}, "action": {"preview"}}
	resp := e.do("POST", "/admin/overrides/new", form, c)
	body := bodyOf(t, resp)
	if resp.StatusCode != 200 {
		t.Fatalf("preview: %d\n%s", resp.StatusCode, body)
	}
	for _, want := range []string{
		"<strong>yes: k8s → hub</strong>",
		"Of 4 addresses sampled from this replica's requests in the last hour (busy clients count more), <strong>3</strong> would move.",
		`<tr><td>k8s</td><td>hub</td><td class="num">3</td></tr>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the preview lacks %q", want)
		}
	}
	if strings.Count(body, "yes: ") != 1 {
		t.Error("an address the override does not match is shown moving")
	}
	if strings.Contains(body, "198.51.100.1") || strings.Contains(body, "192.0.2.9") {
		t.Error("the preview shows sampled addresses; it must show counts only")
	}
	if ovs, _, _ := e.svc.List(context.Background()); len(ovs) != 0 {
		t.Errorf("a preview saved %d overrides", len(ovs))
	}
}

func TestOverridesTableFilterAndSort(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := context.Background()
	now := e.clock.now()
	for _, o := range []rules.Override{
		{ID: "a-country", Match: rules.Match{Country: "SE"}, Registries: []string{"hub"}, ExpiresAt: now.Add(3 * time.Hour)},
		{ID: "b-cidr", Match: rules.Match{CIDR: netip.MustParsePrefix("192.0.2.0/24")}, Registries: []string{"k8s"}, Note: "incident"},
		{ID: "c-asn", Match: rules.Match{ASN: 16509}, Registries: []string{"hub", "k8s"}, ExpiresAt: now.Add(time.Hour)},
	} {
		if _, _, err := e.svc.Create(ctx, "bob", o); err != nil {
			t.Fatal(err)
		}
	}
	c := e.signIn(t)
	ids := func(q string) []string {
		body := bodyOf(t, e.do("GET", "/admin/overrides?"+q, nil, c))
		var out []string
		for _, part := range strings.Split(body, `<td><code>`)[1:] {
			if id, _, ok := strings.Cut(part, "</code>"); ok && strings.Contains(id, "-") && !strings.Contains(id, ":") {
				out = append(out, id)
			}
		}
		return out
	}
	tests := []struct{ q, want string }{
		{"", "b-cidr c-asn a-country"}, // by kind, most specific first
		{"sort=kind&dir=desc", "a-country c-asn b-cidr"},
		{"sort=expiry", "c-asn a-country b-cidr"}, // soonest first, never last
		{"sort=id", "a-country b-cidr c-asn"},
		{"kind=asn", "c-asn"},
		{"registry=hub&sort=id", "a-country c-asn"},
		{"q=INCIDENT", "b-cidr"},
		{"q=nothing-matches", ""},
	}
	for _, tt := range tests {
		if got := strings.Join(ids(tt.q), " "); got != tt.want {
			t.Errorf("?%s: %q, want %q", tt.q, got, tt.want)
		}
	}
	body := bodyOf(t, e.do("GET", "/admin/overrides?sort=expiry", nil, c))
	if !strings.Contains(body, `aria-sort="ascending"><a href="/admin/overrides?dir=desc&amp;sort=expiry">Expires`) {
		t.Error("the sorted column does not say so, or does not offer the reverse order")
	}
	if !strings.Contains(body, "1h 0m left") || !strings.Contains(body, "3h 0m left") {
		t.Error("expiring overrides do not show the time left")
	}
}

func TestDataMarksStale(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	now := e.clock.now()
	e2 := newEnv(t, func(c *Config) {
		c.Now = e.clock.now
		c.DataSets = func() DataSets {
			return DataSets{GeoIP: []geo.DataSet{
				{Kind: "asn", File: "/data/asn.mmdb", DatabaseType: "GeoLite2-ASN", BuildTime: now.Add(-20 * 24 * time.Hour), Loaded: true},
				{Kind: "country", File: "/data/country.mmdb", DatabaseType: "GeoLite2-Country", BuildTime: now.Add(-2 * 24 * time.Hour), Loaded: true},
			}}
		}
	})
	c := e2.signIn(t)
	body := bodyOf(t, e2.do("GET", "/admin/data", nil, c))
	if strings.Count(body, `<tr class="stale">`) != 1 || !strings.Contains(body, "20d <span class=\"badge bad\">stale</span>") {
		t.Errorf("the 20-day-old database is not the one marked stale:\n%s", body)
	}
}

func TestExplainPage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	c := e.signIn(t)
	body := bodyOf(t, e.do("GET", "/admin/explain?ip=192.0.2.1", nil, c))
	if !strings.Contains(body, `<code id="decision-reason">default</code>`) || !strings.Contains(body, "https://k8s.example/v2/") {
		t.Errorf("explain:\n%s", body)
	}
	resp := e.do("GET", "/admin/explain?ip=not-an-address", nil, c)
	if body := bodyOf(t, resp); resp.StatusCode != 400 || !strings.Contains(body, "is not an IP address") {
		t.Errorf("a bad address: %d", resp.StatusCode)
	}

	// The facts, from MaxMind's test databases and AWS's published ranges.
	db, err := geo.Open(geo.Config{ASN: "../testdata/maxmind/GeoLite2-ASN-Test.mmdb", Country: "../testdata/maxmind/GeoLite2-Country-Test.mmdb"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	table, _, err := cloud.Load(map[string]string{"aws": "../testdata/cloud/aws-ip-ranges.json"})
	if err != nil {
		t.Fatal(err)
	}
	e.engine.SetSources(func(s *policy.Sources) { *s = policy.Sources{ASN: db, Country: db, Cloud: table} })
	for ip, want := range map[string][]string{
		"89.160.20.112": {"<dt>AS number</dt><dd>29518</dd>", "<dt>AS organisation</dt><dd>Bredband2 AB</dd>",
			"<dt>Country</dt><dd>SE</dd>", "<dt>Continent</dt><dd>EU</dd>", "<dt>Cloud</dt><dd>none known</dd>"},
		"3.132.0.1": {"<dt>Cloud</dt><dd>aws</dd>", "<dt>Region</dt><dd>us-east-2</dd>"},
	} {
		body := bodyOf(t, e.do("GET", "/admin/explain?ip="+ip, nil, c))
		for _, w := range want {
			if !strings.Contains(body, w) {
				t.Errorf("explain %s lacks %s", ip, w)
			}
		}
	}
}

func TestTrafficChart(t *testing.T) {
	t.Parallel()
	rec := traffic.New(traffic.Config{Registries: []string{"k8s", "hub"}})
	for range 4 {
		rec.Record(netip.Addr{}, "default", "k8s")
	}
	rec.Record(netip.Addr{}, "country:SE", "hub")
	e := newEnv(t, func(c *Config) { c.Traffic = rec; c.Now = time.Now })
	c := e.signIn(t)
	body := bodyOf(t, e.do("GET", "/admin/traffic", nil, c))
	for _, want := range []string{
		`<desc id="by-registry-desc">5 decisions in the last hour: k8s 4, hub 1</desc>`,
		`height="144" class="s0"`, // 4 of the tallest minute's 5 is 4/5 of 180
		`this replica's only`,
		`<td class="num">80%</td>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the traffic page lacks %q", want)
		}
	}
	if strings.Contains(body, "style=") {
		t.Error("a style attribute: the CSP forbids them")
	}
}

func TestFieldOf(t *testing.T) {
	t.Parallel()
	for msg, want := range map[string]string{
		"id: bad":                           "id",
		"match.region: x":                   "region",
		"match.country: x":                  "value",
		"match: empty; set one":             "value",
		"registries[2]: unknown":            "registries",
		"registries: empty":                 "registries",
		"expires_at: past":                  "expires",
		"note: longer than 1024 bytes":      "note",
		"created_by: longer than 256 bytes": "",
		"something else":                    "",
	} {
		if got := fieldOf(msg); got != want {
			t.Errorf("fieldOf(%q) = %q, want %q", msg, got, want)
		}
	}
}

// The audit page shows who changed what, with the override before and
// after each change, newest first.
func TestAuditPage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := t.Context()
	o := rules.Override{ID: "x1", Match: rules.Match{CIDR: netip.MustParsePrefix("192.0.2.0/24")}, Registries: []string{"hub"}}
	if _, _, err := e.svc.Create(ctx, "alice", o); err != nil {
		t.Fatal(err)
	}
	o.Registries = []string{"k8s"}
	if _, _, _, err := e.svc.Put(ctx, "bob", o); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Delete(ctx, "carol", "x1"); err != nil {
		t.Fatal(err)
	}
	body := bodyOf(t, e.do("GET", "/admin/audit", nil, e.signIn(t)))
	rows := strings.Split(body, "<tr>")[2:] // the head's row, then the changes'
	if len(rows) != 3 {
		t.Fatalf("%d rows, want 3:\n%s", len(rows), body)
	}
	for i, want := range []struct{ who, op, before, after string }{
		{"carol", "delete", `&#34;k8s&#34;`, "<td>—</td>"},
		{"bob", "replace", `&#34;hub&#34;`, `&#34;k8s&#34;`},
		{"alice", "create", "<td>—</td>", `&#34;hub&#34;`},
	} {
		row := rows[i]
		cells := strings.Split(row, "</td>")
		if len(cells) < 6 || !strings.Contains(cells[1], want.who) || !strings.Contains(cells[2], want.op+" <code>x1</code>") ||
			!strings.Contains(cells[4]+"</td>", want.before) || !strings.Contains(cells[5]+"</td>", want.after) {
			t.Errorf("row %d, want %+v:\n%s", i, want, row)
		}
	}
}
