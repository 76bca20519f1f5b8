package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/reghost/reghost/internal/loader"
)

// Exit statuses and help: 0 for help, 2 for every kind of bad usage (with
// a message on stderr), 1 for a failure of the run itself.
func TestUsageAndExitStatus(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := map[string]string{"MAXMIND_ACCOUNT_ID": "1", "MAXMIND_LICENSE_KEY": "k"}
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string // help goes to stdout
		stderr string
	}{
		{"no command", nil, exitUsage, "", "Usage:"},
		{"unknown command", []string{"fetch"}, exitUsage, "", `unknown command "fetch"`},
		{"help", []string{"--help"}, exitOK, "loader geoip [flags]", ""},
		{"help command", []string{"help", "cloud"}, exitOK, "Usage: loader cloud", ""},
		{"geoip --help", []string{"geoip", "--help"}, exitOK, "-license-key-file", ""},
		{"geoip -h", []string{"geoip", "-h"}, exitOK, "-from-file", ""},
		{"cloud --help", []string{"cloud", "--help"}, exitOK, "-max-shrink", ""},
		{"no data dir or config", []string{"cloud"}, exitUsage, "", "give --config FILE or --data-dir DIR"},
		{"both", []string{"cloud", "--data-dir", dir, "--config", "x.yaml"}, exitUsage, "", "not both"},
		{"unknown flag", []string{"cloud", "--data-dir", dir, "--bogus"}, exitUsage, "", "flag provided but not defined"},
		{"argument", []string{"cloud", "--data-dir", dir, "aws"}, exitUsage, "", `unexpected argument "aws"`},
		{"bad output", []string{"cloud", "--data-dir", dir, "--output", "yaml"}, exitUsage, "", "want text or json"},
		{"bad url provider", []string{"cloud", "--data-dir", dir, "--url", "ibm=https://x"}, exitUsage, "", "unknown provider"},
		{"url not http", []string{"cloud", "--data-dir", dir, "--url", "aws=ftp://x"}, exitUsage, "", "want an http(s) URL"},
		{"url without value", []string{"cloud", "--data-dir", dir, "--url", "aws"}, exitUsage, "", "want name=value"},
		{"max-shrink 0", []string{"cloud", "--data-dir", dir, "--max-shrink", "0"}, exitUsage, "", "0 < N <= 100"},
		{"unknown provider", []string{"cloud", "--data-dir", dir, "--provider", "ibm"}, exitUsage, "", "--provider ibm"},
		{"negative retries", []string{"cloud", "--data-dir", dir, "--retries", "-1"}, exitUsage, "", "--retries"},
		{"bad edition", []string{"geoip", "--data-dir", dir, "--edition", "GeoIP2-Anonymous-IP"}, exitUsage, "", "not an ASN, ISP, Country, City"},
		{"two country editions", []string{"geoip", "--data-dir", dir, "--edition", "GeoLite2-Country", "--edition", "GeoLite2-City"}, exitUsage, "", "both country databases"},
		{"bad probe", []string{"geoip", "--data-dir", dir, "--probe", "8.8.8"}, exitUsage, "", "not an IP address"},
		{"kind without file", []string{"geoip", "--data-dir", dir, "--kind", "asn"}, exitUsage, "", "--kind goes with --from-file"},
		{"missing config", []string{"cloud", "--config", filepath.Join(dir, "missing.yaml")}, exitFail, "", "missing.yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := runLoader(t, env, tt.args...)
			r.want(t, tt.code, tt.stderr)
			if !strings.Contains(r.stdout, tt.stdout) {
				t.Errorf("stdout lacks %q:\n%s", tt.stdout, r.stdout)
			}
			if tt.code == exitOK && r.stderr != "" {
				t.Errorf("help wrote to stderr:\n%s", r.stderr)
			}
		})
	}
}

// The entry point returns the status rather than exiting.
func TestRun(t *testing.T) {
	t.Parallel()
	var out, errs strings.Builder
	if code := run([]string{"help"}, &out, &errs); code != exitOK || !strings.Contains(out.String(), "Usage:") {
		t.Errorf("run help: %d\n%s%s", code, out.String(), errs.String())
	}
}

// A config's data paths are used, relative to the config file, and its
// data_dir holds the lock and state; a config without GeoIP files has
// nothing for geoip to do.
func TestConfigPaths(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "reghost.yaml")
	os.WriteFile(cfg, []byte(`data_dir: state
geoip: {asn: geo/asn.mmdb}
cloud_ranges: {gcp: ranges/gcp.json}
registries: [{name: k8s, url: "https://k8s.example", default: true}]
`), 0o644)
	p, err := resolve(commonFlags{config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	if p.dataDir != filepath.Join(dir, "state") || p.geoip["asn"] != filepath.Join(dir, "geo/asn.mmdb") || p.cloud["gcp"] != filepath.Join(dir, "ranges/gcp.json") {
		t.Errorf("paths %+v", p)
	}
	if _, ok := p.geoip["country"]; ok {
		t.Error("a country file the config does not name")
	}
	env := map[string]string{"MAXMIND_ACCOUNT_ID": "1", "MAXMIND_LICENSE_KEY": "k"}
	runLoader(t, env, "geoip", "--config", cfg, "--edition", "GeoLite2-Country").want(t, exitUsage, "no geoip.country file")
	runLoader(t, env, "cloud", "--config", cfg, "--provider", "aws").want(t, exitUsage, "cloud_ranges.aws")
}

// A second loader on the same data directory waits for the first, and
// gives up after --lock-wait with a message saying so.
func TestLockHeld(t *testing.T) {
	t.Parallel()
	s := newCloudSetup(t)
	unlock, err := loader.FileLock{Path: filepath.Join(s.dir, loader.LockFileName)}.Lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	before := snapDir(t, s.dir)
	r := runLoader(t, nil, append(s.args("gcp"), "--lock-wait", "200ms")...)
	r.want(t, exitFail, "held by another loader")
	untouched(t, s.dir, before)
	done := make(chan result, 1)
	go func() { done <- runLoader(t, nil, append(s.args("gcp"), "--lock-wait", "1m")...) }()
	time.Sleep(100 * time.Millisecond) // let it wait for the lock
	unlock()
	(<-done).want(t, exitOK)
}
