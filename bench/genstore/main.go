// Command genstore writes n synthetic overrides in the JSON file the
// embedded store kept before it moved to bbolt (overrides.json), which a
// server migrates into its database when it starts: so that the load
// tests start reghost, of any version, with a full-scale store without a
// hundred thousand admin API calls. With -api it writes the body of
// PUT /api/v1/overrides instead, for a shared store.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/reghost/reghost/internal/policy/policytest"
)

func main() {
	n := flag.Int("n", 100_000, "number of overrides")
	out := flag.String("out", "data/overrides.json", "store file to write")
	api := flag.Bool("api", false, "write the body of PUT /api/v1/overrides")
	flag.Parse()
	if err := run(*n, *out, *api); err != nil {
		fmt.Fprintln(os.Stderr, "genstore:", err)
		os.Exit(1)
	}
}

func run(n int, out string, api bool) error {
	ovs := policytest.Overrides(n, []string{"hub", "k8s", "aws-us-east-2"})
	body := map[string]any{"version": 1, "overrides": ovs}
	if api {
		body = map[string]any{"overrides": ovs}
	}
	data, err := json.Marshal(body)
	if err != nil {
		return err
	}
	return os.WriteFile(out, data, 0o600)
}
