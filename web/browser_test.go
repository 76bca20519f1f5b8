package web_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/reghost/reghost/internal/app"
)

// TestBrowser drives the admin page in headless Chromium against two real
// servers sharing a Redis: sign-in, overrides with their preview,
// explain, health and drains, cross-origin refusal, the keyboard alone,
// and on every page no console error, no CSP violation and no serious
// WCAG A/AA issue.
func TestBrowser(t *testing.T) {
	start := time.Now()
	regs := startRegistries(t, "k8s", "hub", "mirror")
	first, other, token := replicas(t, regs)
	b := newBrowser(t)
	admin := "http://" + first.AdminAddr()
	otherAdmin := "http://" + other.AdminAddr()

	// Clients for the traffic page and the preview's sample: the address
	// the override will move, twice, and others it will not.
	const moving = "192.0.2.77"
	for range 2 {
		pull(t, first, moving)
	}
	for i := range 40 {
		pull(t, first, fmt.Sprintf("10.1.0.%d", i))
		pull(t, first, fmt.Sprintf("198.51.100.%d", i))
	}
	if d := decide(t, first, moving); d.Registry != "k8s" || d.Reason != "default" {
		t.Fatalf("before any override %s goes to %+v, want k8s by default", moving, d)
	}

	t.Run("the checks catch what they look for", func(t *testing.T) {
		b.t = t
		b.load(chromedp.Navigate(admin + "/admin/sign-in"))
		b.takeProblems()
		// An inline script is what the CSP forbids; an image without a
		// text alternative is a critical WCAG failure.
		eval[chromedp.Void](b, `var s = document.createElement("script"); s.textContent = "window.ran = 1"; document.body.appendChild(s);
			document.body.appendChild(document.createElement("img"));`)
		time.Sleep(100 * time.Millisecond)
		if csp := eval[[]string](b, `window.__csp`); len(csp) == 0 || !strings.Contains(csp[0], "script-src") {
			t.Errorf("the CSP listener saw %q, want the inline script refused", csp)
		}
		if ran := eval[bool](b, `window.ran === 1`); ran {
			t.Error("an inline script ran: the CSP did not hold")
		}
		if p := b.takeProblems(); len(p) == 0 {
			t.Error("the console listener saw nothing of the refused script")
		}
		if v := b.axeViolations(); len(v) == 0 || !strings.Contains(strings.Join(v, " "), "image-alt") {
			t.Errorf("axe found %q, want image-alt", v)
		}
	})

	t.Run("sign in", func(t *testing.T) {
		b.t = t
		b.load(chromedp.Navigate(admin + "/admin/overrides"))
		if u := b.url(); !strings.Contains(u, "/admin/sign-in?next=") {
			t.Fatalf("signed out, /admin/overrides led to %s, want the sign-in page", u)
		}
		b.check("sign-in")
		status := b.load(chromedp.SendKeys(chromedp.ID("token"), "not-the-admin-token-at-all"), chromedp.Submit(chromedp.ID("token")))
		if status != http.StatusUnauthorized || !strings.Contains(b.text("#token-error"), "not an admin token") {
			t.Fatalf("a wrong token: %d, %q", status, b.text("main"))
		}
		b.check("sign-in-refused")
		status = b.load(chromedp.SendKeys(chromedp.ID("token"), token), chromedp.Submit(chromedp.ID("token")))
		if status != http.StatusOK || !strings.HasSuffix(b.url(), "/admin/overrides") || b.text("#who") != "admin" {
			t.Fatalf("signed in: %d at %s as %q", status, b.url(), b.text("#who"))
		}
	})

	var id string
	t.Run("create with a preview, explain, edit, delete, audit", func(t *testing.T) {
		b.t = t
		b.load(chromedp.Click(chromedp.ID("new-override")))
		b.do(
			chromedp.SetValue(chromedp.ID("match-kind"), "cidr"),
			chromedp.SendKeys(chromedp.ID("value"), moving),
			chromedp.SendKeys(chromedp.ID("registries"), "mirror"),
			chromedp.SendKeys(chromedp.ID("expires"), "2h"),
			chromedp.SendKeys(chromedp.ID("note"), "incident 42"),
			chromedp.SendKeys(chromedp.ID("addrs"), moving+" 198.51.100.3"),
		)
		b.load(chromedp.Click(chromedp.ID("preview-button")))
		typed := b.text("#preview-typed")
		if !strings.Contains(typed, moving) || !strings.Contains(typed, "yes: k8s → mirror") || strings.Count(typed, "yes:") != 1 {
			t.Errorf("the preview of the typed addresses:\n%s\nwant %s moving from k8s to mirror, and only it", typed, moving)
		}
		// Three requests came from it: two pulls and a /decide.
		if s := b.text("#preview-sample"); !strings.Contains(s, "3 would move") {
			t.Errorf("the sample: %q, want the 3 requests of %s moving", s, moving)
		}
		if f := b.text("#preview-flows"); !strings.Contains(f, "k8s\tmirror\t3") {
			t.Errorf("the sample's flows: %q", f)
		}
		if d := decide(t, first, moving); d.Registry != "k8s" {
			t.Errorf("a preview changed routing: %+v", d)
		}
		b.check("override-preview")

		if status := b.load(chromedp.Click(chromedp.ID("save-button"))); status != http.StatusOK {
			t.Fatalf("save: %d", status)
		}
		if f := b.text(".flash"); !strings.HasPrefix(f, "Created override ovr-") {
			t.Fatalf("after saving: %q", f)
		}
		id = strings.Fields(b.text(".flash"))[2]
		id = strings.TrimSuffix(id, ".")
		row := b.text("#overrides tbody")
		if !strings.Contains(row, "cidr:"+moving+"/32") || !strings.Contains(row, "mirror") || !strings.Contains(row, "left") {
			t.Errorf("the table: %q", row)
		}
		b.check("overrides")
		if d := decide(t, other, moving); d.Registry != "mirror" || d.Source != "override:"+id {
			t.Errorf("after saving, %s goes to %+v, want mirror by override:%s", moving, d, id)
		}

		b.load(chromedp.Click(chromedp.CSS(`nav a[href="/admin/explain"]`)))
		b.do(chromedp.SendKeys(chromedp.ID("ip"), moving))
		b.load(chromedp.Submit(chromedp.ID("ip")))
		if r, s := b.text("#decision-reason"), b.text("#decision-source"); r != "cidr:"+moving+"/32" || s != "override:"+id {
			t.Errorf("explain: reason %q source %q", r, s)
		}
		if trail := b.text("#trail"); !strings.Contains(trail, "chosen") {
			t.Errorf("trail: %q", trail)
		}
		b.check("explain")

		b.load(chromedp.Navigate(admin + "/admin/overrides"))
		b.load(chromedp.Click(chromedp.CSS(fmt.Sprintf(`a[aria-label="Edit %s"]`, id))))
		b.do(chromedp.SetValue(chromedp.ID("registries"), "hub, k8s"))
		if status := b.load(chromedp.Click(chromedp.ID("save-button"))); status != http.StatusOK {
			t.Fatalf("save the edit: %d", status)
		}
		if f := b.text(".flash"); !strings.HasPrefix(f, "Saved override "+id) || !strings.Contains(b.text("#overrides tbody"), "hub, k8s") {
			t.Errorf("after the edit: %q; table %q", f, b.text("#overrides tbody"))
		}
		if d := decide(t, other, moving); d.Registry != "hub" {
			t.Errorf("after the edit %s goes to %+v, want hub", moving, d)
		}

		// A validation error is shown next to its field, and nothing is
		// saved.
		b.load(chromedp.Click(chromedp.CSS(fmt.Sprintf(`a[aria-label="Edit %s"]`, id))))
		b.do(chromedp.SetValue(chromedp.ID("registries"), "nowhere"))
		if status := b.load(chromedp.Click(chromedp.ID("save-button"))); status != http.StatusBadRequest {
			t.Errorf("an unknown registry: %d, want 400", status)
		}
		if e := b.text("#registries-error"); !strings.HasPrefix(e, `registries[0]: unknown registry "nowhere"`) {
			t.Errorf("the error next to the field: %q", e)
		}
		if focused := eval[string](b, `document.activeElement.id`); focused != "registries" {
			t.Errorf("focus on %q, want the field at fault", focused)
		}
		b.check("override-invalid")

		b.load(chromedp.Navigate(admin + "/admin/overrides"))
		b.load(chromedp.Click(chromedp.CSS(fmt.Sprintf(`a[aria-label="Delete %s"]`, id))))
		b.check("override-delete")
		b.load(chromedp.Click(chromedp.ID("delete-button")))
		if f := b.text(".flash"); !strings.HasPrefix(f, "Deleted override "+id) {
			t.Errorf("after deleting: %q", f)
		}
		if d := decide(t, other, moving); d.Registry != "k8s" {
			t.Errorf("after deleting %s goes to %+v, want k8s", moving, d)
		}

		b.load(chromedp.Click(chromedp.CSS(`nav a[href="/admin/audit"]`)))
		audit := b.text("#audit tbody")
		for _, op := range []string{"create " + id, "replace " + id, "delete " + id} {
			if !strings.Contains(audit, op) {
				t.Errorf("the audit trail lacks %q:\n%s", op, audit)
			}
		}
		if who := eval[[]string](b, `Array.from(document.querySelectorAll("#audit td.who")).map(e => e.textContent)`); len(who) < 3 || who[0] != "admin" {
			t.Errorf("who in the audit trail: %q, want the token's name", who)
		}
		b.check("audit")
	})

	t.Run("create and delete with the keyboard alone", func(t *testing.T) {
		b.t = t
		b.load(chromedp.Navigate(admin + "/admin/overrides"))
		b.keyLoad("n")
		b.tabTo("#value")
		b.do(chromedp.KeyEvent("203.0.113.0/24"))
		b.tabTo("#registries")
		b.do(chromedp.KeyEvent("hub"))
		b.tabTo("#addrs")
		b.do(chromedp.KeyEvent("203.0.113.5"))
		b.tabTo("#preview-button")
		b.keyLoad(kb.Enter)
		if typed := b.text("#preview-typed"); !strings.Contains(typed, "yes: k8s → hub") {
			t.Fatalf("keyboard preview: %q", typed)
		}
		if focused := eval[string](b, `document.activeElement.id`); focused != "preview" {
			t.Errorf("after the preview focus is on %q, want the preview", focused)
		}
		b.tabTo("#save-button")
		b.keyLoad(kb.Enter)
		f := b.text(".flash")
		if !strings.HasPrefix(f, "Created override ") {
			t.Fatalf("keyboard save: %q", f)
		}
		kid := strings.TrimSuffix(strings.Fields(f)[2], ".")
		b.tabTo(fmt.Sprintf(`a[aria-label="Delete %s"]`, kid))
		b.keyLoad(kb.Enter)
		b.tabTo("#delete-button")
		b.keyLoad(kb.Enter)
		if f := b.text(".flash"); !strings.HasPrefix(f, "Deleted override "+kid) {
			t.Fatalf("keyboard delete: %q", f)
		}
		// "/" goes to the filter.
		b.do(chromedp.KeyEvent("/"))
		if focused := eval[string](b, `document.activeElement.id`); focused != "q" {
			t.Errorf(`"/" put focus on %q, want the filter`, focused)
		}
	})

	t.Run("a change from another origin is refused", func(t *testing.T) {
		b.t = t
		evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, `<!doctype html><html lang="en"><title>Another origin</title><form method="post" action="%s/admin/overrides/new">
<input name="kind" value="cidr"><input name="value" value="203.0.113.9"><input name="registries" value="hub">
<button id="go" name="action" value="save">Send</button></form></html>`, admin)
		}))
		defer evil.Close()
		b.load(chromedp.Navigate(evil.URL))
		status := b.load(chromedp.Click(chromedp.ID("go")))
		if status != http.StatusForbidden || !strings.Contains(b.text("h1"), "Refused") {
			t.Errorf("a form from %s: %d %q, want 403", evil.URL, status, b.text("h1"))
		}
		b.check("cross-origin-refused")
		if d := decide(t, first, "203.0.113.9"); d.Registry != "k8s" {
			t.Errorf("the refused change was made: %+v", d)
		}
	})

	t.Run("the API takes no session cookie", func(t *testing.T) {
		b.t = t
		cookies, err := chromedp.Call(b.ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{admin + "/admin/overrides"}})
		if err != nil || len(cookies.Cookies) != 1 {
			t.Fatalf("cookies: %+v, %v", cookies, err)
		}
		c := cookies.Cookies[0]
		if !c.HTTPOnly || c.SameSite != network.CookieSameSiteStrict || c.Path != "/admin" {
			t.Errorf("the session cookie: %+v", c)
		}
		for _, path := range []string{"/api/v1/overrides", "/api/v1/audit", "/debug/pprof/"} {
			req, _ := http.NewRequest("GET", admin+path, nil)
			req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s with the session cookie and no bearer token: %d, want 401", path, resp.StatusCode)
			}
		}
	})

	t.Run("a registry shown down when it fails", func(t *testing.T) {
		b.t = t
		regs.failing["mirror"].Store(true)
		deadline := time.Now().Add(10 * time.Second)
		for {
			b.load(chromedp.Navigate(admin + "/admin/registries"))
			if s := b.text("#registry-mirror .state"); s == "down" {
				break
			} else if time.Now().After(deadline) {
				t.Fatalf("mirror failing: shown %q, want down", s)
			}
			time.Sleep(100 * time.Millisecond)
		}
		b.check("registries-down")
		// The other replica probes it too, and sends its clients on.
		if d := decide(t, other, "10.9.8.7"); d.Registry != "hub" {
			t.Errorf("mirror down: 10.9.8.7 goes to %+v, want hub", d)
		}
		regs.failing["mirror"].Store(false)
		for _, r := range []*app.App{first, other} {
			for deadline := time.Now().Add(10 * time.Second); decide(t, r, "10.9.8.7").Registry != "mirror"; {
				if time.Now().After(deadline) {
					t.Fatal("mirror did not come back")
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	})

	t.Run("drain from the page moves a client", func(t *testing.T) {
		b.t = t
		const client = "10.9.8.7"
		if d := decide(t, other, client); d.Registry != "mirror" {
			t.Fatalf("before draining, %s goes to %+v, want mirror", client, d)
		}
		b.load(chromedp.Navigate(admin + "/admin/registries"))
		b.do(chromedp.SendKeys(chromedp.ID("note-mirror"), "disk full"))
		b.load(chromedp.Click(chromedp.ID("drain-mirror")))
		if s := b.text("#registry-mirror .state"); s != "drained" {
			t.Errorf("mirror after draining: %q", s)
		}
		b.check("registries")
		// On another replica the drain arrives through the store.
		deadline := time.Now().Add(5 * time.Second)
		for d := decide(t, other, client); d.Registry != "hub"; d = decide(t, other, client) {
			if time.Now().After(deadline) {
				t.Fatalf("after draining mirror, %s goes to %+v, want hub", client, d)
			}
			time.Sleep(50 * time.Millisecond)
		}
		b.load(chromedp.Click(chromedp.ID("undrain-mirror")))
		if s := b.text("#registry-mirror .state"); s != "up" {
			t.Errorf("mirror after undraining: %q", s)
		}
	})

	t.Run("data and traffic", func(t *testing.T) {
		b.t = t
		b.load(chromedp.Navigate(admin + "/admin/data"))
		data := b.text("#datasets")
		for _, want := range []string{"geoip/asn", "geoip/country", "cloud/aws", "GeoLite2-ASN", "stale"} {
			if !strings.Contains(data, want) {
				t.Errorf("the data page lacks %q:\n%s", want, data)
			}
		}
		b.check("data")
		b.load(chromedp.Navigate(admin + "/admin/traffic"))
		if s := b.text("main"); !strings.Contains(s, "this replica's only") || !strings.Contains(s, "decisions in the last hour") {
			t.Errorf("traffic: %q", s)
		}
		if n := eval[int](b, `document.querySelectorAll("svg.bars rect").length`); n == 0 {
			t.Error("the traffic chart has no bars")
		}
		b.check("traffic")
	})

	t.Run("sign out ends the session on every replica", func(t *testing.T) {
		b.t = t
		b.load(chromedp.Navigate(otherAdmin + "/admin/overrides"))
		if u := b.url(); !strings.HasSuffix(u, "/admin/overrides") {
			t.Fatalf("the other replica before signing out: at %s, want the overrides", u)
		}
		b.load(chromedp.Navigate(admin + "/admin/overrides"))
		b.load(chromedp.Click(chromedp.CSS(".signout button")))
		if m := b.text(".flash"); m != "Signed out." {
			t.Errorf("after signing out: %q", m)
		}
		b.load(chromedp.Navigate(otherAdmin + "/admin/overrides"))
		if u := b.url(); !strings.Contains(u, "/admin/sign-in") {
			t.Errorf("the other replica after signing out: at %s, want the sign-in page", u)
		}
	})
	t.Logf("browser test: %v", time.Since(start).Round(time.Millisecond))
}
