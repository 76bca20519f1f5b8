package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// result is what one loader invocation did.
type result struct {
	code           int
	stdout, stderr string
}

// runLoader runs the command line with env as the whole environment and
// stderr not a terminal.
func runLoader(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	c := cli{
		stdout: &stdout, stderr: &stderr,
		getenv: func(k string) string { return env[k] },
		ctx:    t.Context(),
	}
	code := c.run(args)
	return result{code, stdout.String(), stderr.String()}
}

// want checks the exit status and that stderr says something; the
// license key must never be in the output.
func (r result) want(t *testing.T, code int, stderrHas ...string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
	for _, s := range stderrHas {
		if !strings.Contains(r.stderr, s) {
			t.Errorf("stderr lacks %q:\n%s", s, r.stderr)
		}
	}
	for _, out := range []string{r.stdout, r.stderr} {
		if strings.Contains(out, testLicenseKey) {
			t.Errorf("the license key is in the output:\n%s", out)
		}
	}
}

const testLicenseKey = "test-license-key_0123" // loadertest.NewMaxMind's

// fileSnap is a file's content and modification time.
type fileSnap struct {
	data []byte
	mod  time.Time
}

// snapDir records every file in dir (not the lock file, which a run may
// create).
func snapDir(t *testing.T, dir string) map[string]fileSnap {
	t.Helper()
	out := map[string]fileSnap{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() == "loader.lock" || e.IsDir() {
			continue
		}
		p := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = fileSnap{b, fi.ModTime()}
	}
	return out
}

// untouched checks that dir holds exactly the files of before, each with
// the same bytes and modification time: no file changed, none added (no
// temporary file left behind), none removed.
func untouched(t *testing.T, dir string, before map[string]fileSnap) {
	t.Helper()
	after := snapDir(t, dir)
	for name, b := range before {
		a, ok := after[name]
		switch {
		case !ok:
			t.Errorf("%s was removed", name)
		case !bytes.Equal(a.data, b.data):
			t.Errorf("%s changed", name)
		case !a.mod.Equal(b.mod):
			t.Errorf("%s was rewritten (modification time %s, was %s)", name, a.mod, b.mod)
		}
	}
	for name := range after {
		if _, ok := before[name]; !ok {
			t.Errorf("%s appeared (a temporary file left behind?)", name)
		}
	}
}

// names lists the files in dir, sorted.
func names(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	for name := range snapDir(t, dir) {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}
