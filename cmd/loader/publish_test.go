package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/reghost/reghost/internal/store/redistest"
)

// publishConfig writes a config whose store is the Redis at url and
// whose data is in a new directory (a new pod), and returns its path.
func publishConfig(t *testing.T, url string) string {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "reghost.yaml")
	err := os.WriteFile(cfg, fmt.Appendf(nil, `data_dir: data
store: %q
geoip: {asn: geo/asn.mmdb, country: geo/country.mmdb}
cloud_ranges: {gcp: geo/gcp.json}
registries: [{name: k8s, url: "https://k8s.example", default: true}]
`, url), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// With a Redis store in the config, `loader geoip` and `loader cloud`
// publish what they install there, with their state: a run in a new data
// directory downloads nothing. A Redis that cannot be reached fails the
// run, and nothing is installed unrecorded.
func TestPublishToRedis(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	g, c := newGeoIPSetup(t), newCloudSetup(t)
	run := func(cfg string) {
		t.Helper()
		runLoader(t, g.env, "geoip", "--config", cfg, "--base-url", g.mm.URL, "--retry-wait", "10ms").want(t, exitOK)
		runLoader(t, nil, "cloud", "--config", cfg, "--url", "gcp="+c.urls["gcp"], "--retry-wait", "10ms").want(t, exitOK)
	}
	run(publishConfig(t, rs.URL()))
	for _, name := range []string{"geoip/asn", "geoip/country", "cloud/gcp"} {
		if rs.Do("HGET", "{reghost}:data:"+name, "sha256") == nil {
			t.Errorf("%s was not published", name)
		}
		if rs.Do("HEXISTS", "{reghost}:loader-state", name) != int64(1) {
			t.Errorf("%s's state is not in Redis", name)
		}
	}
	downloads := g.mm.Count("STORAGE")
	fresh := publishConfig(t, rs.URL())
	run(fresh)
	if n := g.mm.Count("STORAGE"); n != downloads {
		t.Errorf("a loader with a new data directory downloaded %d databases again", n-downloads)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(fresh), "data", "loader-state.json")); err == nil {
		t.Error("the state went to the data directory, not to Redis")
	}
	asn, err := os.ReadFile(filepath.Join(filepath.Dir(fresh), "geo", "asn.mmdb"))
	if err != nil || string(asn) != string(g.asn) {
		t.Errorf("the new data directory lacks the installed ASN database (%v)", err)
	}

	rs.Stop()
	runLoader(t, g.env, "geoip", "--config", publishConfig(t, rs.URL()), "--base-url", g.mm.URL, "--retry-wait", "10ms").
		want(t, exitFail, "reading the loader state from Redis")
}
