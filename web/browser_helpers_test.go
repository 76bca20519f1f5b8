package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/reghost/reghost/internal/app"
	"github.com/reghost/reghost/internal/config"
	"github.com/reghost/reghost/internal/store/redistest"
)

// chromium is Debian's browser; scripts/test installs it when missing.
const chromium = "/usr/bin/chromium"

// registries are the test's registries: httptest servers answering the
// API root, so that health checks probe real servers; failing makes one
// answer 500.
type registries struct {
	urls    map[string]string
	failing map[string]*atomic.Bool
}

func startRegistries(t *testing.T, names ...string) *registries {
	t.Helper()
	r := &registries{urls: map[string]string{}, failing: map[string]*atomic.Bool{}}
	for _, name := range names {
		failing := new(atomic.Bool)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if failing.Load() {
				http.Error(w, "failing on purpose", http.StatusInternalServerError)
				return
			}
			w.Header().Set("Docker-Distribution-Api-Version", "registry/2.0")
			w.WriteHeader(http.StatusOK)
		}))
		t.Cleanup(srv.Close)
		r.urls[name], r.failing[name] = srv.URL, failing
	}
	return r
}

// replicas starts two reghost replicas sharing a Redis (a redis-server
// of the test's own), with the registries regs.
func replicas(t *testing.T, regs *registries) (first, other *app.App, token string) {
	t.Helper()
	dir := t.TempDir()
	token = "e2e-admin-token-0123456789abcdef"
	tokenFile := filepath.Join(dir, "admin-token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	abs := func(p string) string {
		a, err := filepath.Abs(filepath.Join("..", p))
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	rs := redistest.Start(t)
	const n = 2
	var apps []*app.App
	for i := range n {
		storeLine := fmt.Sprintf("store: %q\n", rs.URL())
		yaml := fmt.Sprintf(`
listen: "127.0.0.1:0"
admin_listen: "127.0.0.1:0"
data_dir: %q
admin: {token_file: %q}
%sgeoip: {asn: %q, country: %q}
cloud_ranges: {aws: %q}
registries:
  - {name: k8s, url: "%s/images", default: true}
  - {name: hub, url: %q}
  - {name: mirror, url: %q}
rules:
  - {match: {cidr: 10.0.0.0/8}, registries: [mirror, hub]}
  - {match: {continent: EU}, registries: [hub]}
health_defaults: {interval: 200ms, fast_interval: 100ms, timeout: 150ms, rise: 1, fall: 2}
`, filepath.Join(dir, fmt.Sprint("data", i)), tokenFile, storeLine,
			abs("testdata/maxmind/GeoLite2-ASN-Test.mmdb"), abs("testdata/maxmind/GeoLite2-Country-Test.mmdb"),
			abs("testdata/cloud/aws-ip-ranges.json"), regs.urls["k8s"], regs.urls["hub"], regs.urls["mirror"])
		cfg, err := config.Parse([]byte(yaml), filepath.Join(dir, "reghost.yaml"))
		if err != nil {
			t.Fatalf("config: %v\n%s", err, yaml)
		}
		a, err := app.New(cfg, app.Options{Getenv: func(string) string { return "" }})
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Listen(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.Serve(ctx) }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("replica %d: %v", i, err)
			}
		})
		apps = append(apps, a)
	}
	return apps[0], apps[1], token
}

// browser is one headless Chromium tab, with what the page reports
// collected: console errors, uncaught exceptions, browser log errors
// (among them the CSP's "Refused to ..." lines).
type browser struct {
	t     *testing.T
	ctx   context.Context
	axe   string
	shots string

	mu       sync.Mutex
	problems []problem
}

// problem is something a page reported. A network error for the page
// itself is its status, which the test checks where it matters (a 401
// for a wrong token is right); one for anything the page loads is not.
type problem struct {
	text    string
	network bool
	url     string
}

// cspListener runs before any script of every page, and keeps what the
// page's Content-Security-Policy refused.
const cspListener = `window.__csp = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__csp.push(e.violatedDirective + " refused " + (e.blockedURI || "inline") + " at " + e.sourceFile + ":" + e.lineNumber);
});`

func newBrowser(t *testing.T) *browser {
	t.Helper()
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("the browser test needs Chromium at %s (%v): install it with apt-get install chromium, as scripts/test does", chromium, err)
	}
	axe, err := os.ReadFile("testdata/axe.min.js")
	if err != nil {
		t.Fatal(err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1366, 768),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(acancel)
	bctx, bcancel := chromedp.NewContext(actx)
	t.Cleanup(bcancel)
	b := &browser{t: t, ctx: bctx, axe: string(axe), shots: os.Getenv("REGHOST_SCREENSHOTS")}
	if err := chromedp.Do(bctx); err != nil { // starts the browser
		t.Fatalf("starting %s: %v", chromium, err)
	}
	err = chromedp.Listen(bctx, func(ev any) {
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert {
				var args []string
				for _, a := range ev.Args {
					args = append(args, string(a.Value)+a.Description)
				}
				b.problem(problem{text: "console." + string(ev.Type) + ": " + strings.Join(args, " ")})
			}
		case *runtime.EventExceptionThrown:
			b.problem(problem{text: "exception: " + ev.ExceptionDetails.Text + " " + describe(ev.ExceptionDetails.Exception)})
		case *cdplog.EventEntryAdded:
			if ev.Entry.Level == cdplog.EntryLevelError {
				b.problem(problem{"log (" + string(ev.Entry.Source) + "): " + ev.Entry.Text + " " + ev.Entry.URL,
					ev.Entry.Source == cdplog.EntrySourceNetwork, ev.Entry.URL})
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(bctx, cdplog.Enable, cdp.Empty{}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(bctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: cspListener}); err != nil {
		t.Fatal(err)
	}
	b.do(chromedp.EmulateViewport(1366, 768))
	if b.shots != "" {
		if err := os.MkdirAll(b.shots, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

func describe(o *runtime.RemoteObject) string {
	if o == nil {
		return ""
	}
	return o.Description
}

func (b *browser) problem(p problem) {
	b.mu.Lock()
	b.problems = append(b.problems, p)
	b.mu.Unlock()
}

// takeProblems returns what was reported since the last call.
func (b *browser) takeProblems() []problem {
	// Log entries come on their own: give any from the last action a
	// moment to arrive.
	time.Sleep(50 * time.Millisecond)
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.problems
	b.problems = nil
	return p
}

func (b *browser) do(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, actions...); err != nil {
		b.t.Fatalf("browser: %v (at %s)", err, b.url())
	}
}

// load runs actions that navigate, and returns the new page's status.
func (b *browser) load(actions ...chromedp.Action[chromedp.Void]) int64 {
	b.t.Helper()
	resp, err := chromedp.RunResponse(b.ctx, actions...)
	if err != nil {
		b.t.Fatalf("browser: %v (at %s)", err, b.url())
	}
	return resp.Status
}

func (b *browser) url() string {
	u, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`location.href`))
	return u
}

func (b *browser) text(sel string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS(sel), chromedp.NodeVisible))
	if err != nil {
		b.t.Fatalf("browser: text of %s: %v (at %s)", sel, err, b.url())
	}
	return s
}

func eval[T any](b *browser, js string, opts ...chromedp.EvaluateOption) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](js, opts...))
	if err != nil {
		b.t.Fatalf("browser: %s: %v (at %s)", js, err, b.url())
	}
	return v
}

// check fails the test for anything wrong with the page now shown: a
// console error, an exception, a CSP violation, a serious or critical
// WCAG A/AA issue. It saves a screenshot as name.png when
// REGHOST_SCREENSHOTS names a directory.
func (b *browser) check(name string) {
	b.t.Helper()
	b.screenshot(name)
	here := b.url()
	for _, p := range b.takeProblems() {
		if !p.network || p.url != here {
			b.t.Errorf("%s: %s", name, p.text)
		}
	}
	csp := eval[[]string](b, `window.__csp || ["the CSP listener is missing"]`)
	for _, v := range csp {
		b.t.Errorf("%s: CSP: %s", name, v)
	}
	for _, v := range b.axeViolations() {
		b.t.Errorf("%s: axe: %s", name, v)
	}
}

// axeViolations runs axe-core on the page: WCAG 2.0, 2.1 and 2.2, A and
// AA, serious and critical only.
func (b *browser) axeViolations() []string {
	b.t.Helper()
	eval[chromedp.Void](b, b.axe)
	return eval[[]string](b, `axe.run(document, {
  runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]},
  resultTypes: ["violations"]
}).then(function (r) {
  return r.violations.filter(function (v) { return v.impact === "serious" || v.impact === "critical"; })
    .map(function (v) {
      return v.id + " (" + v.impact + "): " + v.help + ": " +
        v.nodes.slice(0, 3).map(function (n) { return n.target.join(" ") + " " + n.failureSummary; }).join("; ");
    });
})`, chromedp.EvalAwaitPromise)
}

func (b *browser) screenshot(name string) {
	b.t.Helper()
	if b.shots == "" {
		return
	}
	png, err := chromedp.Run(b.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(b.shots, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot: %s", path)
}

// tabTo presses Tab until the focused element matches sel, as someone
// with a keyboard would.
func (b *browser) tabTo(sel string) {
	b.t.Helper()
	js := fmt.Sprintf(`document.activeElement !== null && document.activeElement.matches(%q)`, sel)
	for range 60 {
		if eval[bool](b, js) {
			return
		}
		b.do(chromedp.KeyEvent(kb.Tab))
	}
	b.t.Fatalf("Tab never reached %s (at %s; focus on %s)", sel, b.url(), eval[string](b, `document.activeElement ? document.activeElement.outerHTML.slice(0, 120) : "nothing"`))
}

// key presses keys and waits for the page they lead to.
func (b *browser) keyLoad(keys string) int64 {
	b.t.Helper()
	return b.load(chromedp.KeyEvent(keys))
}

// decision is what the public listener decides for a client address.
type decision struct {
	Registry string `json:"registry"`
	Reason   string `json:"reason"`
	Source   string `json:"source"`
}

func decide(t *testing.T, a *app.App, ip string) decision {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+a.PublicAddr()+"/decide", nil)
	req.Header.Set("X-Real-IP", ip)
	req.Header.Set("X-Original-Path", "/v2/pause/manifests/3.9")
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var d decision
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		t.Fatalf("/decide for %s: %v", ip, err)
	}
	return d
}

// pull makes a client's request through the public listener, as traffic
// for the traffic page and the preview's sample.
func pull(t *testing.T, a *app.App, ip string) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+a.PublicAddr()+"/v2/pause/manifests/3.9", nil)
	req.Header.Set("X-Real-IP", ip)
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
