package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/reghost/reghost/internal/config"
)

func TestRunPrintsExampleConfig(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"-print-example-config"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if _, err := config.Parse(out.Bytes(), "printed"); err != nil {
		t.Errorf("the printed example does not load: %v", err)
	}
}

func TestRunRefusesBadConfig(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("listen: \":8080\"\nlisen: typo\n"), 0o600)
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-config", bad}, 1, "lisen"},
		{[]string{"-config", filepath.Join(dir, "missing.yaml")}, 1, "run with no -config for the embedded example"},
		{[]string{"-log-level", "loud"}, 2, "-log-level"},
		{[]string{"-no-such-flag"}, 2, "no-such-flag"},
		{[]string{"-config", bad, "serve"}, 2, `unexpected argument "serve"`},
	}
	for _, tt := range tests {
		var out, errb bytes.Buffer
		code := run(tt.args, &out, &errb)
		if code != tt.code || !strings.Contains(out.String()+errb.String(), tt.want) {
			t.Errorf("%v: exit %d, output %q %q; want exit %d mentioning %q", tt.args, code, out.String(), errb.String(), tt.code, tt.want)
		}
	}
}
