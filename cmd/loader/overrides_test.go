package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/reghost/reghost/internal/httpapi"
	"github.com/reghost/reghost/internal/rules"
	"github.com/reghost/reghost/internal/store"
	"github.com/reghost/reghost/internal/store/redistest"
)

// overridesConfig writes a server config for the overrides commands into
// a new directory: data_dir data beside it, and storeURL ("" for the
// embedded store). It returns the config's path and the data directory.
func overridesConfig(t *testing.T, storeURL string) (cfg, dataDir string) {
	t.Helper()
	dir := t.TempDir()
	cfg = filepath.Join(dir, "reghost.yaml")
	text := fmt.Sprintf(`listen: "127.0.0.1:0"
admin_listen: "127.0.0.1:0"
data_dir: data
store: %q
registries:
  - {name: k8s, url: "https://k8s.example", default: true}
  - {name: hub, url: "https://hub.example"}
  - {name: aws, url: "https://aws.example"}
health_defaults: {enabled: false}
`, storeURL)
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg, filepath.Join(dir, "data")
}

// writeFile writes a test file into dir and returns its path.
func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const testCSV = `# the lab, and two countries
id,kind,value,region,registries,expires_at,note,created_by,created_at
lab,cidr,192.0.2.0/24,,hub;k8s,,"the lab network, level 2",alice,2026-01-02T03:04:05Z
east,cloud,aws,us-east-2,aws,,,,
se,country,SE,,hub,2030-01-01T00:00:00Z,,,
as,asn,15169,,hub,,,,
old,continent,EU,,k8s,2020-01-01T00:00:00Z,expired: kept until the retention ends,,
`

// exported reads an export's JSON.
func exported(t *testing.T, text string) httpapi.OverrideSet {
	t.Helper()
	var set httpapi.OverrideSet
	if err := json.Unmarshal([]byte(text), &set); err != nil {
		t.Fatalf("export is not JSON: %v\n%s", err, text)
	}
	return set
}

// importReportOf reads an import's --output json report.
func importReportOf(t *testing.T, r result) importReport {
	t.Helper()
	var rep importReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, r.stdout)
	}
	return rep
}

// A CSV import, exported, imported into another store and exported
// again gives the same overrides: the export is a backup the import (and
// the admin API) restores as it is. Its dry run against the first store
// finds nothing to change.
func TestOverridesRoundTrip(t *testing.T) {
	t.Parallel()
	cfg, _ := overridesConfig(t, "")
	dir := filepath.Dir(cfg)
	csvFile := writeFile(t, dir, "overrides.csv", testCSV)
	r := runLoader(t, nil, "overrides", "import", "--config", cfg, "--file", csvFile, "--output", "json")
	r.want(t, exitOK)
	if rep := importReportOf(t, r); len(rep.Added) != 5 || rep.DryRun || rep.Version == nil {
		t.Errorf("first import: %+v", rep)
	}
	r = runLoader(t, nil, "overrides", "export", "--config", cfg)
	r.want(t, exitOK)
	first := exported(t, r.stdout)
	if len(first.Overrides) != 5 {
		t.Fatalf("exported %d overrides, want 5:\n%s", len(first.Overrides), r.stdout)
	}
	byID := map[string]httpapi.OverrideView{}
	for _, o := range first.Overrides {
		byID[o.ID] = o
	}
	lab := byID["lab"]
	if lab.Match.CIDR.String() != "192.0.2.0/24" || !slices.Equal(lab.Registries, []string{"hub", "k8s"}) ||
		lab.Note != "the lab network, level 2" || lab.CreatedBy != "alice" || !lab.CreatedAt.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Errorf("lab: %+v", lab)
	}
	if e := byID["east"]; e.Match != (rules.Match{Cloud: "aws", Region: "us-east-2"}) || e.CreatedBy != who {
		t.Errorf("east: %+v", e)
	}
	if o := byID["old"]; !o.Expired {
		t.Errorf("old is not marked expired: %+v", o)
	}

	backup := filepath.Join(t.TempDir(), "backup.json")
	runLoader(t, nil, "overrides", "export", "--config", cfg, "--file", backup).want(t, exitOK)
	r = runLoader(t, nil, "overrides", "import", "--config", cfg, "--file", backup, "--dry-run", "--output", "json")
	r.want(t, exitOK)
	if rep := importReportOf(t, r); len(rep.Added)+len(rep.Removed)+len(rep.Changed) != 0 || rep.Unchanged != 5 || !rep.DryRun {
		t.Errorf("dry run of the backup against its store: %+v", rep)
	}

	cfg2, _ := overridesConfig(t, "")
	runLoader(t, nil, "overrides", "import", "--config", cfg2, "--file", backup).want(t, exitOK)
	r = runLoader(t, nil, "overrides", "export", "--config", cfg2)
	r.want(t, exitOK)
	second := exported(t, r.stdout)
	if !reflect.DeepEqual(first.Overrides, second.Overrides) {
		t.Errorf("after export and import:\n%+v\nwant\n%+v", second.Overrides, first.Overrides)
	}
}

// A dry run reports what the import would add, remove and change, and
// changes nothing in the data directory: not the database's bytes, not
// its modification time. Where there is no store yet, it creates none.
func TestOverridesDryRunChangesNothing(t *testing.T) {
	t.Parallel()
	cfg, dataDir := overridesConfig(t, "")
	dir := filepath.Dir(cfg)
	runLoader(t, nil, "overrides", "import", "--config", cfg, "--file", writeFile(t, dir, "first.json", `{"overrides": [
		{"id": "keep", "match": {"country": "SE"}, "registries": ["hub"], "created_at": "2026-01-01T00:00:00Z", "created_by": "alice"},
		{"id": "move", "match": {"country": "NO"}, "registries": ["hub"], "created_at": "2026-01-01T00:00:00Z", "created_by": "alice"},
		{"id": "gone", "match": {"country": "DK"}, "registries": ["hub"]}
	]}`)).want(t, exitOK)
	before := snapDir(t, dataDir)

	next := writeFile(t, dir, "next.json", `[
		{"id": "keep", "match": {"country": "SE"}, "registries": ["hub"], "created_at": "2026-01-01T00:00:00Z", "created_by": "alice"},
		{"id": "move", "match": {"country": "NO"}, "registries": ["k8s", "hub"], "created_at": "2026-01-01T00:00:00Z", "created_by": "alice", "note": "moved"},
		{"id": "new", "match": {"asn": 64500}, "registries": ["aws"]}
	]`)
	r := runLoader(t, nil, "overrides", "import", "--config", cfg, "--file", next, "--dry-run", "--output", "json")
	r.want(t, exitOK)
	rep := importReportOf(t, r)
	want := importReport{File: next, Format: "json", Overrides: 3, Added: []string{"new"}, Removed: []string{"gone"},
		Changed: []changedFields{{"move", []string{"registries", "note"}}}, Unchanged: 1, DryRun: true}
	if !reflect.DeepEqual(rep, want) {
		t.Errorf("dry run report:\n%+v\nwant\n%+v", rep, want)
	}
	r = runLoader(t, nil, "overrides", "import", "--config", cfg, "--file", next, "--dry-run")
	r.want(t, exitOK)
	for _, s := range []string{"added      1  new", "removed    1  gone", "changed    1  move (registries, note)", "unchanged  1", "dry run: nothing was written"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("text report lacks %q:\n%s", s, r.stdout)
		}
	}
	untouched(t, dataDir, before)

	fresh, freshData := overridesConfig(t, "")
	r = runLoader(t, nil, "overrides", "import", "--config", fresh, "--file", next, "--dry-run")
	r.want(t, exitOK)
	if !strings.Contains(r.stdout, "there is no store yet") {
		t.Errorf("dry run without a store:\n%s", r.stdout)
	}
	if _, err := os.Stat(freshData); !os.IsNotExist(err) {
		t.Errorf("a dry run created %s: %v", freshData, err)
	}
	runLoader(t, nil, "overrides", "export", "--config", fresh).want(t, exitFail, "no store at")
	if _, err := os.Stat(freshData); !os.IsNotExist(err) {
		t.Errorf("an export created %s: %v", freshData, err)
	}
}

// A file that does not parse, or an override that is not valid, fails
// the import with the line and column (CSV) or the override (JSON) at
// fault, and nothing is written.
func TestOverridesBadInput(t *testing.T) {
	t.Parallel()
	cfg, dataDir := overridesConfig(t, "")
	dir := filepath.Dir(cfg)
	runLoader(t, nil, "overrides", "import", "--config", cfg, "--file", writeFile(t, dir, "seed.csv", testCSV)).want(t, exitOK)
	before := snapDir(t, dataDir)
	const header = "id,kind,value,region,registries\n"
	tests := []struct {
		name, file, text, want string
	}{
		{"unknown registry", "a.csv", header + "a,cidr,192.0.2.0/24,,hub\nb,country,SE,,hub;nope\n",
			`line 3, column registries: registries[1]: unknown registry "nope"; nothing was changed`},
		{"bad cidr", "a.csv", header + "a,cidr,192.0.2.1/24,,hub\n",
			`line 2, column value: match.cidr: 192.0.2.1/24 has host bits set; did you mean 192.0.2.0/24?`},
		{"not a prefix", "a.csv", header + "# comment\n\na,cidr,192.0.2.0,,hub\n",
			`line 4, column value: "192.0.2.0" is not a CIDR prefix, such as 192.0.2.0/24`},
		{"bad country", "a.csv", header + "a,country,se,,hub\n", `line 2, column value: match.country: "se" is not an ISO 3166-1 alpha-2 country code`},
		{"bad kind", "a.csv", header + "a,region,x,,hub\n", `line 2, column kind: "region": want one of cidr, asn, cloud, country, continent`},
		{"region without cloud", "a.csv", header + "a,country,SE,eu-north-1,hub\n", `line 2, column region: "eu-north-1": a region goes with kind cloud only`},
		{"bad asn", "a.csv", header + "a,asn,AS15169,,hub\n", `line 2, column value: "AS15169" is not an AS number, such as 15169`},
		{"bad id", "a.csv", header + "-a,asn,15169,,hub\n", `line 2, column id: id: "-a" must be 1-128 letters`},
		{"no registries", "a.csv", header + "a,asn,15169,,\n", `line 2, column registries: registries: empty`},
		{"duplicate id", "a.csv", header + "a,asn,15169,,hub\nb,asn,15170,,hub\na,asn,15171,,hub\n", `line 4, column id: "a" is also line 2's id`},
		{"bad time", "a.csv", "kind,value,registries,expires_at\nasn,15169,hub,tomorrow\n", `line 2, column expires_at: "tomorrow" is not an RFC 3339 time`},
		{"unknown column", "a.csv", "kind,value,registries,colour\n", `line 1, column 4: unknown column "colour"; known: id, kind, value`},
		{"column twice", "a.csv", "kind,value,registries,kind\n", `line 1, column 4: column "kind" given twice`},
		{"missing column", "a.csv", "kind,registries\n", `the header row has no value column`},
		{"too many fields", "a.csv", header + "a,asn,15169,,hub,extra\n", `line 2: 6 fields, but the header has 5 columns`},
		{"bad quote", "a.csv", header + "a,asn,15\"169,,hub\n", `line 2, column 9: bare " in non-quoted-field`},
		{"empty", "a.csv", "", `empty: no the header row`},
		{"json: unknown registry", "a.json", `{"overrides":[{"id":"a","match":{"asn":1},"registries":["hub"]},{"id":"b","match":{"asn":2},"registries":["x"]}]}`,
			`overrides[1] (b): registries[0]: unknown registry "x"; nothing was changed`},
		{"json: bad field", "a.json", `[{"id":"a","match":{"asn":"1"},"registries":["hub"]}]`,
			`overrides[0].match.asn: a JSON string where a number from 0 to 4294967295 belongs`},
		{"json: not json", "a.txt", `id,kind`, `body: invalid JSON at byte 0`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			file := writeFile(t, t.TempDir(), tt.file, tt.text)
			r := runLoader(t, nil, "overrides", "import", "--config", cfg, "--file", file)
			r.want(t, exitFail, tt.want)
		})
	}
	untouched(t, dataDir, before)
}

// Flags: what a command needs, and --help.
func TestOverridesUsage(t *testing.T) {
	t.Parallel()
	cfg, _ := overridesConfig(t, "")
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"no command", []string{"overrides"}, exitUsage, "", "loader overrides export --config FILE"},
		{"unknown command", []string{"overrides", "list"}, exitUsage, "", `unknown command "list"`},
		{"help", []string{"overrides", "--help"}, exitOK, "Drains are not part of the set", ""},
		{"help overrides", []string{"help", "overrides"}, exitOK, "loader overrides import --config FILE", ""},
		{"help overrides import", []string{"help", "overrides", "import"}, exitOK, "id,kind,value,region,registries,expires_at,note", ""},
		{"export --help", []string{"overrides", "export", "--help"}, exitOK, "-file", ""},
		{"import -h", []string{"overrides", "import", "-h"}, exitOK, "-dry-run", ""},
		{"no config", []string{"overrides", "export"}, exitUsage, "", "give --config FILE"},
		{"no file", []string{"overrides", "import", "--config", cfg}, exitUsage, "", "give --file FILE"},
		{"bad format", []string{"overrides", "import", "--config", cfg, "--file", "x", "--format", "yaml"}, exitUsage, "", "want json or csv"},
		{"data-dir", []string{"overrides", "export", "--data-dir", "data"}, exitUsage, "", "flag provided but not defined: -data-dir"},
		{"missing file", []string{"overrides", "import", "--config", cfg, "--file", "missing.json"}, exitFail, "", "missing.json"},
		{"missing config", []string{"overrides", "export", "--config", "missing.yaml"}, exitFail, "", "missing.yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := runLoader(t, nil, tt.args...)
			r.want(t, tt.code, tt.stderr)
			if !strings.Contains(r.stdout, tt.stdout) {
				t.Errorf("stdout lacks %q:\n%s", tt.stdout, r.stdout)
			}
		})
	}
}

// A server running on the embedded store holds it (bbolt's lock): export
// and import say so, and point at the admin API, and change nothing.
func TestOverridesStoreHeldByServer(t *testing.T) {
	t.Parallel()
	cfg, dataDir := overridesConfig(t, "")
	dir := filepath.Dir(cfg)
	// Nothing expired: the server would remove it, changing the store.
	seed := "kind,value,registries\ncidr,192.0.2.0/24,hub\n"
	runLoader(t, nil, "overrides", "import", "--config", cfg, "--file", writeFile(t, dir, "seed.csv", seed)).want(t, exitOK)
	text, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	startServer(t, strings.Replace(string(text), "data_dir: data", "data_dir: "+dataDir, 1))
	db := filepath.Join(dataDir, store.BoltFile)
	before, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	empty := writeFile(t, dir, "empty.json", `{"overrides": []}`)
	for _, args := range [][]string{
		{"overrides", "export", "--config", cfg},
		{"overrides", "import", "--config", cfg, "--file", empty},
		{"overrides", "import", "--config", cfg, "--file", empty, "--dry-run"},
	} {
		method := "PUT"
		if args[1] == "export" {
			method = "GET"
		}
		r := runLoader(t, nil, args...)
		r.want(t, exitFail, "locked by another process", "A running reghost server holds the embedded store",
			"admin_listen 127.0.0.1:0): "+method+" /api/v1/overrides")
		if r.stdout != "" {
			t.Errorf("%v wrote to stdout:\n%s", args, r.stdout)
		}
	}
	if after, _ := os.ReadFile(db); !slices.Equal(before, after) {
		t.Error("the store changed")
	}
}

// With a Redis store, export and import work while servers run, and a
// server applies an import at once.
func TestOverridesRedis(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	cfg, dataDir := overridesConfig(t, rs.URL())
	dir := filepath.Dir(cfg)
	text, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	addr := startServer(t, strings.Replace(string(text), "data_dir: data", "data_dir: "+dataDir, 1))
	registry := func(ip string) string {
		req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
		req.Header.Set("X-Real-IP", ip)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if got := registry("192.0.2.7"); got != "k8s.example" {
		t.Fatalf("before the import 192.0.2.7 goes to %q", got)
	}

	r := runLoader(t, nil, "overrides", "import", "--config", cfg, "--file", writeFile(t, dir, "o.csv", testCSV), "--output", "json")
	r.want(t, exitOK)
	if rep := importReportOf(t, r); len(rep.Added) != 5 || rep.Version == nil {
		t.Errorf("import: %+v", rep)
	}
	deadline := time.Now().Add(10 * time.Second)
	for registry("192.0.2.7") != "hub.example" {
		if time.Now().After(deadline) {
			t.Fatalf("the running server did not apply the import: 192.0.2.7 goes to %q", registry("192.0.2.7"))
		}
		time.Sleep(10 * time.Millisecond)
	}

	r = runLoader(t, nil, "overrides", "export", "--config", cfg)
	r.want(t, exitOK)
	if set := exported(t, r.stdout); len(set.Overrides) != 5 {
		t.Errorf("export: %d overrides at %s", len(set.Overrides), set.Version)
	}
	r = runLoader(t, nil, "overrides", "import", "--config", cfg, "--file", writeFile(t, dir, "backup.json", r.stdout), "--dry-run", "--output", "json")
	r.want(t, exitOK)
	if rep := importReportOf(t, r); rep.Unchanged != 5 || rep.Version != nil {
		t.Errorf("dry run of the export: %+v", rep)
	}

	runLoader(t, nil, "overrides", "import", "--config", cfg, "--file", writeFile(t, dir, "none.json", `[]`)).want(t, exitOK)
	deadline = time.Now().Add(10 * time.Second)
	for registry("192.0.2.7") != "k8s.example" {
		if time.Now().After(deadline) {
			t.Fatalf("the running server did not apply the empty set: 192.0.2.7 goes to %q", registry("192.0.2.7"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
