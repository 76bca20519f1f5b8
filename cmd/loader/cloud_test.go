package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/reghost/reghost/internal/loader/loadertest"
)

// snapshotFiles are the real provider files in testdata/cloud, by
// provider.
var snapshotFiles = map[string]string{
	"aws":          "aws-ip-ranges.json",
	"gcp":          "gcp-cloud.json",
	"azure":        "azure-servicetags.json",
	"oracle":       "oracle-public-ip-ranges.json",
	"digitalocean": "digitalocean-geofeed.csv",
}

// gcpToken is the syncToken of the GCP snapshot; gcpCreated its
// creationTime.
const gcpToken = 1769717571194

var gcpCreated = time.Date(2026, 1, 29, 12, 12, 51, 0, time.UTC)

// cloudSetup is a fake of the providers' servers, serving the snapshots,
// and a data directory.
type cloudSetup struct {
	srv *loadertest.Providers
	dir string
	// urls are the --url flags for every provider; Azure's has {date}.
	urls map[string]string
	// azureDate is the date of the served Azure file.
	azureDate time.Time
}

func newCloudSetup(t *testing.T) *cloudSetup {
	t.Helper()
	s := &cloudSetup{srv: loadertest.NewProviders(t), dir: t.TempDir(), urls: map[string]string{}}
	mod := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// Three days ago: the loader tries today, then the days before.
	s.azureDate = time.Now().UTC().AddDate(0, 0, -3)
	for provider, name := range snapshotFiles {
		path := "/" + provider + "/" + name
		if provider == "azure" {
			path = "/azure/ServiceTags_Public_" + s.azureDate.Format("20060102") + ".json"
			s.urls[provider] = s.srv.URL + "/azure/ServiceTags_Public_{date}.json"
		} else {
			s.urls[provider] = s.srv.URL + path
		}
		s.srv.Set(path, loadertest.Snapshot(t, name), mod)
	}
	return s
}

// args are the flags to fetch providers (all when none) into the data
// directory.
func (s *cloudSetup) args(providers ...string) []string {
	args := []string{"cloud", "--data-dir", s.dir, "--retry-wait", "10ms", "--idle-timeout", "5s"}
	for _, p := range slices.Sorted(func(yield func(string) bool) {
		for p := range s.urls {
			if !yield(p) {
				return
			}
		}
	}) {
		if len(providers) == 0 || slices.Contains(providers, p) {
			args = append(args, "--url", p+"="+s.urls[p])
			if len(providers) > 0 {
				args = append(args, "--provider", p)
			}
		}
	}
	return args
}

type cloudReport struct {
	Cloud []struct {
		Provider, Action, Stamp, URL, Error string
		Prefixes                            int
		PreviousPrefixes                    int `json:"previous_prefixes"`
		Added, Removed                      int
		Regions                             []struct {
			Region         string
			Added, Removed []string
			New, Gone      bool
			Ruled          bool
		}
		RuleRegionsMissing []string `json:"rule_regions_missing"`
	}
}

func parseReport(t *testing.T, out string) cloudReport {
	t.Helper()
	var rep cloudReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("JSON report: %v\n%s", err, out)
	}
	return rep
}

// Every provider's file is fetched (Azure's found by its date), parsed
// and installed as served; a second run finds nothing new and rewrites
// nothing.
func TestCloudInstallAllThenNothingNew(t *testing.T) {
	t.Parallel()
	s := newCloudSetup(t)
	r := runLoader(t, nil, append(s.args(), "--output", "json")...)
	r.want(t, exitOK)
	for provider, name := range snapshotFiles {
		got, err := os.ReadFile(filepath.Join(s.dir, defaultFile(provider)))
		if err != nil || string(got) != string(loadertest.Snapshot(t, name)) {
			t.Errorf("%s: installed file is not the served one (err %v)", provider, err)
		}
	}
	rep := parseReport(t, r.stdout)
	if len(rep.Cloud) != 5 {
		t.Fatalf("report has %d providers", len(rep.Cloud))
	}
	for _, res := range rep.Cloud {
		if res.Action != "installed" || res.Prefixes == 0 {
			t.Errorf("%s: %+v", res.Provider, res)
		}
		if res.Provider == "azure" && !strings.Contains(res.URL, s.azureDate.Format("20060102")) {
			t.Errorf("azure fetched from %s", res.URL)
		}
		if res.Provider == "gcp" && res.Stamp != fmt.Sprintf("creationTime=2026-01-29T12:12:51.194698 syncToken=%d", gcpToken) {
			t.Errorf("gcp stamp %q", res.Stamp)
		}
	}

	before := snapDir(t, s.dir)
	r = runLoader(t, nil, append(s.args(), "--output", "json")...)
	r.want(t, exitOK)
	untouched(t, s.dir, before)
	for _, res := range parseReport(t, r.stdout).Cloud {
		if res.Action != "unchanged" {
			t.Errorf("%s: %s on a second run, want unchanged", res.Provider, res.Action)
		}
	}
}

// Each bad download is refused with the reason, exit status 1, and the
// installed file untouched.
func TestCloudRefusals(t *testing.T) {
	t.Parallel()
	shrunk := func(keep float64) func([]map[string]any) []map[string]any {
		return func(ps []map[string]any) []map[string]any { return ps[:int(float64(len(ps))*keep)] }
	}
	tests := []struct {
		name string
		body func(t *testing.T) []byte // nil: no file served
		code int                       // the status served instead, if set
		args []string
		want string
	}{
		{name: "empty file", body: func(*testing.T) []byte { return nil }, want: "empty file"},
		{name: "does not parse", body: func(*testing.T) []byte { return []byte(`{"syncToken": "1", "prefixes": [`) }, want: "does not parse"},
		{name: "another provider's file", body: func(t *testing.T) []byte { return loadertest.Snapshot(t, "oracle-public-ip-ranges.json") }, want: `missing top-level key "syncToken"`},
		{name: "older than installed", body: func(t *testing.T) []byte {
			return loadertest.GCP(t, gcpToken-86_400_000, gcpCreated.Add(-24*time.Hour), nil)
		}, want: "older than the installed file"},
		{name: "shrank by 30%", body: func(t *testing.T) []byte {
			return loadertest.GCP(t, gcpToken+1000, gcpCreated.Add(time.Hour), shrunk(0.7))
		}, want: "more than the 20% allowed"},
		{name: "shrank by 30%, 25% allowed", body: func(t *testing.T) []byte {
			return loadertest.GCP(t, gcpToken+1000, gcpCreated.Add(time.Hour), shrunk(0.7))
		}, args: []string{"--max-shrink", "25"}, want: "more than the 25% allowed"},
		{name: "HTTP 500, retried", code: http.StatusInternalServerError, args: []string{"--retries", "1"}, want: "gave up after 2 attempts"},
		{name: "HTTP 404", code: http.StatusNotFound, want: "HTTP 404"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newCloudSetup(t)
			runLoader(t, nil, s.args("gcp")...).want(t, exitOK)
			before := snapDir(t, s.dir)
			path := "/gcp/gcp-cloud.json"
			if tt.body != nil {
				s.srv.Set(path, tt.body(t), time.Now())
			}
			if tt.code != 0 {
				s.srv.FailWith(path, tt.code)
			}
			gets := s.srv.Requests("GET", path)
			r := runLoader(t, nil, append(s.args("gcp"), tt.args...)...)
			r.want(t, exitFail, tt.want)
			untouched(t, s.dir, before)
			if !strings.Contains(r.stdout, "cloud/gcp  failed") {
				t.Errorf("report:\n%s", r.stdout)
			}
			if tt.code == http.StatusNotFound {
				if n := s.srv.Requests("GET", path) - gets; n != 1 {
					t.Errorf("a 404 was asked %d times; it must not be retried", n)
				}
			}
		})
	}
}

// --force installs what the checks refuse; --max-shrink lets a larger
// drop through.
func TestCloudForceAndMaxShrink(t *testing.T) {
	t.Parallel()
	s := newCloudSetup(t)
	runLoader(t, nil, s.args("gcp")...).want(t, exitOK)
	older := loadertest.GCP(t, gcpToken-1, gcpCreated.Add(-time.Hour), nil)
	s.srv.Set("/gcp/gcp-cloud.json", older, time.Now())
	runLoader(t, nil, append(s.args("gcp"), "--force")...).want(t, exitOK, "installing older ranges (forced)")
	if got, _ := os.ReadFile(filepath.Join(s.dir, "gcp-cloud.json")); string(got) != string(older) {
		t.Error("--force did not install the older file")
	}
	smaller := loadertest.GCP(t, gcpToken+1, gcpCreated.Add(time.Hour), func(ps []map[string]any) []map[string]any { return ps[:len(ps)*7/10] })
	s.srv.Set("/gcp/gcp-cloud.json", smaller, time.Now().Add(time.Minute))
	runLoader(t, nil, append(s.args("gcp"), "--max-shrink", "35")...).want(t, exitOK)
	if got, _ := os.ReadFile(filepath.Join(s.dir, "gcp-cloud.json")); string(got) != string(smaller) {
		t.Error("--max-shrink 35 did not let a 30% drop through")
	}
}

// --dry-run fetches, checks and reports the difference per region, and
// changes nothing; the same run without it installs. With --config the
// report says which regions rules name.
func TestCloudDryRunDiff(t *testing.T) {
	t.Parallel()
	s := newCloudSetup(t)
	cfgPath := filepath.Join(t.TempDir(), "reghost.yaml")
	cfg := fmt.Sprintf(`data_dir: %s
cloud_ranges:
  gcp: %s
registries:
  - {name: k8s, url: "https://k8s.example", default: true}
rules:
  - {match: {cloud: gcp, region: moon-central1}, registries: [k8s]}
  - {match: {cloud: gcp, region: mars-west1}, registries: [k8s]}
`, s.dir, filepath.Join(s.dir, "gcp-cloud.json"))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"cloud", "--config", cfgPath, "--url", "gcp=" + s.urls["gcp"], "--retry-wait", "10ms"}
	runLoader(t, nil, args...).want(t, exitOK)
	before := snapDir(t, s.dir)

	var removed []string
	edited := loadertest.GCP(t, gcpToken+1000, gcpCreated.Add(time.Hour), func(ps []map[string]any) []map[string]any {
		for _, p := range ps[:2] {
			removed = append(removed, p["ipv4Prefix"].(string))
		}
		ps = ps[2:]
		return append(ps,
			map[string]any{"ipv4Prefix": "198.51.100.0/24", "service": "Google Cloud", "scope": "moon-central1"},
			map[string]any{"ipv6Prefix": "2001:db8:1::/48", "service": "Google Cloud", "scope": "moon-central1"},
			map[string]any{"ipv4Prefix": "203.0.113.0/24", "service": "Google Cloud", "scope": "europe-west1"},
		)
	})
	s.srv.Set("/gcp/gcp-cloud.json", edited, time.Now())

	r := runLoader(t, nil, append(args, "--dry-run", "--output", "json")...)
	r.want(t, exitOK)
	untouched(t, s.dir, before)
	rep := parseReport(t, r.stdout)
	if len(rep.Cloud) != 1 || rep.Cloud[0].Action != "new" || rep.Cloud[0].Added != 3 || rep.Cloud[0].Removed != 2 {
		t.Fatalf("report: %+v", rep)
	}
	var gotRemoved []string
	for _, d := range rep.Cloud[0].Regions {
		gotRemoved = append(gotRemoved, d.Removed...)
		switch d.Region {
		case "moon-central1":
			if !d.New || !d.Ruled || !slices.Equal(d.Added, []string{"198.51.100.0/24", "2001:db8:1::/48"}) {
				t.Errorf("moon-central1: %+v", d)
			}
		case "europe-west1":
			if d.New || !slices.Contains(d.Added, "203.0.113.0/24") {
				t.Errorf("europe-west1: %+v", d)
			}
		}
	}
	slices.Sort(gotRemoved)
	slices.Sort(removed)
	if !slices.Equal(gotRemoved, removed) {
		t.Errorf("removed %q, want %q", gotRemoved, removed)
	}
	if !slices.Equal(rep.Cloud[0].RuleRegionsMissing, []string{"mars-west1"}) {
		t.Errorf("rule regions missing: %q", rep.Cloud[0].RuleRegionsMissing)
	}

	r = runLoader(t, nil, append(args, "--dry-run")...)
	r.want(t, exitOK)
	for _, want := range []string{"cloud/gcp  new", "moon-central1: +2 -0 (new region)", "+ 198.51.100.0/24", "- " + removed[0], "rules name regions this file does not have: mars-west1"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("text report lacks %q:\n%s", want, r.stdout)
		}
	}
	untouched(t, s.dir, before)

	runLoader(t, nil, args...).want(t, exitOK)
	if got, _ := os.ReadFile(filepath.Join(s.dir, "gcp-cloud.json")); string(got) != string(edited) {
		t.Error("the run after the dry run did not install")
	}
}

// Azure: the newest dated file of the last two weeks is taken; an older
// one still is, with a warning; none at all is an error.
func TestCloudAzureDatedFile(t *testing.T) {
	t.Parallel()
	s := newCloudSetup(t)
	data := loadertest.Snapshot(t, snapshotFiles["azure"])
	newer := s.azureDate.AddDate(0, 0, 2)
	s.srv.Set("/azure/ServiceTags_Public_"+newer.Format("20060102")+".json", data, time.Now())
	r := runLoader(t, nil, append(s.args("azure"), "--output", "json")...)
	r.want(t, exitOK)
	if u := parseReport(t, r.stdout).Cloud[0].URL; !strings.HasSuffix(u, newer.Format("20060102")+".json") {
		t.Errorf("fetched %s, want the newest file", u)
	}
	if strings.Contains(r.stderr, "more than two weeks old") {
		t.Errorf("warned about a fresh file:\n%s", r.stderr)
	}

	s2 := newCloudSetup(t)
	s2.urls["azure"] = s2.srv.URL + "/old/ServiceTags_Public_{date}.json"
	s2.srv.Set("/old/ServiceTags_Public_"+time.Now().UTC().AddDate(0, 0, -20).Format("20060102")+".json", data, time.Now())
	runLoader(t, nil, s2.args("azure")...).want(t, exitOK, "more than two weeks old")

	s3 := newCloudSetup(t)
	s3.urls["azure"] = s3.srv.URL + "/none/ServiceTags_Public_{date}.json"
	runLoader(t, nil, s3.args("azure")...).want(t, exitFail, "no file found for any of the last")
}

// A file already in place (copied by hand, or left by another tool) that
// is the download is recorded, not rewritten; the next run asks
// conditionally.
func TestCloudAdoptsIdenticalFile(t *testing.T) {
	t.Parallel()
	s := newCloudSetup(t)
	if err := os.WriteFile(filepath.Join(s.dir, "gcp-cloud.json"), loadertest.Snapshot(t, "gcp-cloud.json"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := snapDir(t, s.dir)
	r := runLoader(t, nil, append(s.args("gcp"), "--output", "json")...)
	r.want(t, exitOK)
	if res := parseReport(t, r.stdout).Cloud[0]; res.Action != "unchanged" {
		t.Errorf("action %q, want unchanged", res.Action)
	}
	after := snapDir(t, s.dir)
	if !after["gcp-cloud.json"].mod.Equal(before["gcp-cloud.json"].mod) {
		t.Error("an identical file was rewritten")
	}
	if _, ok := after["loader-state.json"]; !ok {
		t.Error("the file was not recorded")
	}
}
