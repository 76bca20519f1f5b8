// Command genstore writes an embedded-store file holding n synthetic
// overrides, so that the load test starts reghost with a full-scale store
// without a hundred thousand admin API calls.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/reghost/reghost/internal/policy/policytest"
	"github.com/reghost/reghost/internal/store"
)

func main() {
	n := flag.Int("n", 100_000, "number of overrides")
	out := flag.String("out", "data/overrides.json", "store file to write")
	flag.Parse()
	if err := run(*n, *out); err != nil {
		fmt.Fprintln(os.Stderr, "genstore:", err)
		os.Exit(1)
	}
}

func run(n int, out string) error {
	ovs := policytest.Overrides(n, []string{"hub", "k8s", "aws-us-east-2"})
	data, err := json.Marshal(map[string]any{"version": 1, "overrides": ovs})
	if err != nil {
		return err
	}
	if err := os.WriteFile(out, data, 0o600); err != nil {
		return err
	}
	// Open it the way the server will, so a format mistake fails here.
	s, err := store.OpenFile(out, nil)
	if err != nil {
		return err
	}
	return s.Close()
}
