package main

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/maxmind/mmdbwriter/mmdbtype"
	"go.yaml.in/yaml/v3"

	"github.com/reghost/reghost/internal/config"
	"github.com/reghost/reghost/internal/loader/loadertest"
)

// readmeBlock is one fenced code block of README.md.
type readmeBlock struct {
	lang string
	line int // of the opening fence
	text string
}

func readmeBlocks(t *testing.T) []readmeBlock {
	t.Helper()
	f, err := os.Open("README.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var (
		out []readmeBlock
		cur *readmeBlock
		n   int
	)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		n++
		line := sc.Text()
		switch {
		case cur == nil && strings.HasPrefix(line, "```"):
			cur = &readmeBlock{lang: strings.TrimPrefix(line, "```"), line: n}
		case cur != nil && line == "```":
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			cur.text += line + "\n"
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if cur != nil {
		t.Fatalf("README.md:%d: a code block is not closed", cur.line)
	}
	return out
}

// commands splits a shell block into command lines: continuations
// joined, comments and blank lines dropped.
func commands(text string) []string {
	var out []string
	var cur string
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		if cur == "" && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if more, ok := strings.CutSuffix(line, `\`); ok {
			cur += more + " "
			continue
		}
		out = append(out, cur+line)
		cur = ""
	}
	return out
}

// The command lines of README.md run as written, in order, from a
// directory laid out as the repository's root (its testdata), against
// the fakes of MaxMind and the providers: each command reaching the
// network is given --base-url or --url for a fake, and the README's
// placeholder credentials are the fake's. Every one must succeed. The
// README's CSV is the overrides.csv its commands import, and its alert
// rules must be well-formed Prometheus rule groups.
//
// It changes the working directory, so it does not run in parallel.
func TestREADMECommands(t *testing.T) {
	blocks := readmeBlocks(t)
	repoTestdata, err := filepath.Abs("../../testdata")
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	if err := os.Symlink(repoTestdata, filepath.Join(work, "testdata")); err != nil {
		t.Fatal(err)
	}

	mm := loadertest.NewMaxMind(t)
	built := time.Now().Add(-time.Hour)
	country := map[string]mmdbtype.DataType{}
	for _, n := range []string{"8.8.8.0/24", "2001:4860::/32"} {
		country[n] = mmdbtype.Map{"country": mmdbtype.Map{"iso_code": mmdbtype.String("US")}, "continent": mmdbtype.Map{"code": mmdbtype.String("NA")}}
	}
	for edition, db := range map[string][]byte{
		"GeoLite2-ASN":     loadertest.ASNDB(t, built, "Google LLC"),
		"GeoLite2-Country": loadertest.CountryDB(t, built, "US"),
		"GeoLite2-City":    loadertest.DB(t, "GeoLite2-City", built, country),
	} {
		mm.Publish(edition, loadertest.Release{Date: built.Format("20060102"), Archive: loadertest.Archive(t, edition, built.Format("20060102"), db)})
	}
	providers := loadertest.NewProviders(t)
	for _, name := range []string{"aws", "gcp", "azure", "oracle", "digitalocean"} {
		file := defaultFile(name)
		providers.Set("/"+file, loadertest.Snapshot(t, file), time.Now().Add(-time.Hour))
	}
	// The README's placeholders, for the fake's credentials.
	creds := strings.NewReplacer("123456", mm.AccountID, "xxxx", mm.LicenseKey)

	t.Chdir(work)
	ran := 0
	for _, b := range blocks {
		switch b.lang {
		case "csv":
			if err := os.WriteFile("overrides.csv", []byte(b.text), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		case "yaml":
			checkAlertRules(t, b)
			continue
		case "sh":
		default:
			continue
		}
		for _, cmd := range commands(b.text) {
			where := "README.md:" + strconv.Itoa(b.line) + ": " + cmd
			env := map[string]string{}
			fields := strings.Fields(creds.Replace(cmd))
			for len(fields) > 0 && strings.Contains(fields[0], "=") && !strings.HasPrefix(fields[0], "-") {
				k, v, _ := strings.Cut(fields[0], "=")
				env[k], fields = v, fields[1:]
			}
			var redirect string
			if n := len(fields); n >= 2 && fields[n-2] == ">" {
				redirect, fields = fields[n-1], fields[:n-2]
			}
			switch {
			case strings.Join(fields, " ") == "go run ./cmd/server -print-example-config" && redirect != "":
				if err := os.WriteFile(redirect, config.Example(), 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			case len(fields) == 2 && fields[0] == "echo" && redirect != "":
				if err := os.WriteFile(redirect, []byte(fields[1]+"\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				continue
			case len(fields) > 1 && fields[0] == "go" && fields[1] == "test":
				continue // this is the test
			case len(fields) < 3 || strings.Join(fields[:3], " ") != "go run ./cmd/loader":
				t.Errorf("%s: a command this test does not know how to run; teach it, or the README is wrong", where)
				continue
			}
			if strings.ContainsAny(cmd, `"'$*?`) {
				t.Errorf("%s: quotes and expansions are not split as a shell would here", where)
				continue
			}
			args := withFakes(fields[3:], mm.URL, providers.URL)
			r := runLoader(t, env, args...)
			if r.code != exitOK {
				t.Errorf("%s: exit status %d\nstdout:\n%s\nstderr:\n%s", where, r.code, r.stdout, r.stderr)
				continue
			}
			if r.stdout == "" && redirect == "" && !strings.Contains(cmd, "export") {
				t.Errorf("%s: printed nothing", where)
			}
			if redirect != "" {
				if err := os.WriteFile(redirect, []byte(r.stdout), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			ran++
		}
	}
	t.Logf("ran %d loader commands", ran)
	if ran < 15 {
		t.Errorf("ran %d loader commands from README.md; are its code blocks still ```sh?", ran)
	}
	for _, name := range []string{"data/GeoLite2-ASN.mmdb", "data/GeoLite2-Country.mmdb", "data/aws-ip-ranges.json", "data/reghost.db", "overrides-backup.json"} {
		if _, err := os.Stat(name); err != nil {
			t.Errorf("after the README's commands: %v", err)
		}
	}
}

// withFakes points a command that reaches the network at the fakes:
// geoip downloads at the fake MaxMind, cloud at the fake providers (each
// provider the command fetches: those of --provider, or all).
func withFakes(args []string, maxmind, providers string) []string {
	has := func(flag string) bool {
		for _, a := range args {
			if a == flag || strings.HasPrefix(a, flag+"=") {
				return true
			}
		}
		return false
	}
	out := append([]string(nil), args...)
	if len(args) == 0 || has("--help") {
		return out
	}
	switch args[0] {
	case "geoip":
		if !has("--from-file") {
			out = append(out, "--base-url", maxmind, "--retry-wait", "10ms")
		}
	case "cloud":
		var names []string
		for i, a := range args {
			if a == "--provider" && i+1 < len(args) {
				names = append(names, args[i+1])
			}
		}
		if names == nil {
			names = []string{"aws", "gcp", "azure", "oracle", "digitalocean"}
		}
		for _, name := range names {
			out = append(out, "--url", name+"="+providers+"/"+defaultFile(name))
		}
		out = append(out, "--retry-wait", "10ms")
	}
	return out
}

// checkAlertRules checks that a YAML block is a Prometheus rule file
// whose rules alert on the data set gauges.
func checkAlertRules(t *testing.T, b readmeBlock) {
	t.Helper()
	var doc struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	dec := yaml.NewDecoder(strings.NewReader(b.text))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		t.Errorf("README.md:%d: the YAML block is no rule file: %v", b.line, err)
		return
	}
	if len(doc.Groups) == 0 || len(doc.Groups[0].Rules) < 2 {
		t.Errorf("README.md:%d: no rules", b.line)
	}
	for _, g := range doc.Groups {
		for _, r := range g.Rules {
			if _, err := time.ParseDuration(r.For); r.Alert == "" || err != nil ||
				!strings.HasPrefix(r.Expr, "time() - reghost_dataset_build_timestamp_seconds{dataset=~") {
				t.Errorf("README.md:%d: rule %+v", b.line, r)
			}
		}
	}
}
