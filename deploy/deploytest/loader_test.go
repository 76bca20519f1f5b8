package deploytest

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
)

// Loader commands (cmd/loader).
const (
	loaderCloud = "cloud"
	loaderGeoIP = "geoip"
)

// loaderArgs is what a loader command line sets that the deployments
// depend on.
type loaderArgs struct {
	Command         string // loaderCloud or loaderGeoIP
	Config, DataDir string
	AccountID       string
	LicenseKeyFile  string
	LicenseKey      string // on the command line, visible in the process list
	// Timeout bounds the whole run, waiting for the lock included.
	Timeout time.Duration
}

// anyValue takes any value of a repeatable flag.
type anyValue struct{}

func (anyValue) String() string   { return "" }
func (anyValue) Set(string) error { return nil }

// parseLoaderArgs parses a loader command line (without the program
// name) with cmd/loader's flags (flags.go, geoip.go, cloud.go). Like
// parseServerArgs it mirrors their names only to read the values: the
// tests also run the real loader with the same arguments and --help,
// which fails on anything the loader does not define.
func parseLoaderArgs(args []string) (loaderArgs, error) {
	var la loaderArgs
	if len(args) == 0 {
		return la, fmt.Errorf("no loader command (cloud or geoip)")
	}
	la.Command = args[0]
	fs := flag.NewFlagSet(la.Command, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&la.Config, "config", "", "")
	fs.StringVar(&la.DataDir, "data-dir", "", "")
	for _, s := range []string{"output", "log-format", "log-level", "idle-timeout", "retries", "retry-wait", "lock-wait"} {
		fs.String(s, "", "")
	}
	fs.Bool("force", false, "")
	fs.Bool("dry-run", false, "")
	fs.DurationVar(&la.Timeout, "timeout", 30*time.Minute, "")
	switch la.Command {
	case loaderGeoIP:
		fs.StringVar(&la.AccountID, "account-id", "", "")
		fs.StringVar(&la.LicenseKeyFile, "license-key-file", "", "")
		fs.StringVar(&la.LicenseKey, "license-key", "", "")
		for _, s := range []string{"edition", "probe"} {
			fs.Var(anyValue{}, s, "")
		}
		for _, s := range []string{"base-url", "from-file", "kind"} {
			fs.String(s, "", "")
		}
	case loaderCloud:
		for _, s := range []string{"url", "provider"} {
			fs.Var(anyValue{}, s, "")
		}
		fs.String("max-shrink", "", "")
	default:
		return la, fmt.Errorf("loader command %q: want cloud or geoip", la.Command)
	}
	if err := fs.Parse(args[1:]); err != nil {
		return la, fmt.Errorf("loader arguments %q: %w", args, err)
	}
	if fs.NArg() > 0 {
		return la, fmt.Errorf("loader arguments %q: unexpected %q", args, fs.Args())
	}
	switch {
	case la.Config == "":
		return la, fmt.Errorf("loader arguments %q: no --config: the loader would not write where the config's geoip and cloud_ranges are", args)
	case la.DataDir != "":
		return la, fmt.Errorf("loader arguments %q: --data-dir and --config", args)
	}
	return la, nil
}

func TestParseLoaderArgs(t *testing.T) {
	t.Parallel()
	la, err := parseLoaderArgs([]string{"geoip", "--config", "/c.yaml", "--license-key-file=/k", "--edition", "GeoLite2-City", "--timeout", "5m"})
	if err != nil || la.Command != loaderGeoIP || la.Config != "/c.yaml" || la.LicenseKeyFile != "/k" || la.Timeout != 5*time.Minute {
		t.Errorf("parseLoaderArgs: %+v, %v", la, err)
	}
	if la, err := parseLoaderArgs([]string{"cloud", "--config", "/c.yaml"}); err != nil || la.Timeout != 30*time.Minute {
		t.Errorf("parseLoaderArgs: %+v, %v; want the default --timeout 30m", la, err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "no loader command"},
		{[]string{"fetch", "--config", "/c.yaml"}, `"fetch": want cloud or geoip`},
		{[]string{"cloud", "--config", "/c.yaml", "--edition", "x"}, "flag provided but not defined: -edition"},
		{[]string{"cloud"}, "no --config"},
		{[]string{"cloud", "--config", "/c.yaml", "--data-dir", "/d"}, "--data-dir and --config"},
		{[]string{"cloud", "--config", "/c.yaml", "aws"}, `unexpected ["aws"]`},
	} {
		if _, err := parseLoaderArgs(tc.args); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseLoaderArgs(%q): %v; want an error about %q", tc.args, err, tc.want)
		}
	}
}
