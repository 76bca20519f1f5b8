package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"
)

// commonFlags are the flags of every command.
type commonFlags struct {
	config, dataDir string
	output          string // "text" or "json"
	logFormat       string // "", "text" or "json"
	level           slog.Level
	force, dryRun   bool
	timeout         time.Duration
	idleTimeout     time.Duration
	retries         int
	retryWait       time.Duration
	lockWait        time.Duration
}

func (f *commonFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.config, "config", "", "the server's config `file`: data paths from geoip.*, cloud_ranges.* and data_dir")
	fs.StringVar(&f.dataDir, "data-dir", "", "data `directory`, with the file names of the example config (instead of --config)")
	fs.StringVar(&f.output, "output", "text", "report `format` on stdout: text or json")
	fs.StringVar(&f.logFormat, "log-format", "", "log `format` on stderr: text or json (default: text on a terminal, else json)")
	fs.TextVar(&f.level, "log-level", slog.LevelInfo, "log `level`: debug, info, warn or error")
	fs.BoolVar(&f.force, "force", false, "install data that is older, or shrank more, than the checks allow")
	fs.BoolVar(&f.dryRun, "dry-run", false, "check and report, change nothing")
	fs.DurationVar(&f.timeout, "timeout", 30*time.Minute, "give up on the whole run after this `duration`")
	fs.DurationVar(&f.idleTimeout, "idle-timeout", time.Minute, "cut a transfer that receives nothing for this `duration`")
	fs.IntVar(&f.retries, "retries", 3, "retry a request that failed with 5xx, 408, a network error or a stall up to `n` times; 401, 403 and 429 are never retried")
	fs.DurationVar(&f.retryWait, "retry-wait", 2*time.Second, "wait before the first retry (`duration`), doubled for each further one")
	fs.DurationVar(&f.lockWait, "lock-wait", 2*time.Minute, "wait this `duration` for another loader on the same data directory to finish")
}

// check validates the common flags; the message is a usage error.
func (f *commonFlags) check() error {
	switch {
	case f.config == "" && f.dataDir == "":
		return errors.New("give --config FILE or --data-dir DIR")
	case f.config != "" && f.dataDir != "":
		return errors.New("give --config or --data-dir, not both")
	case f.output != "text" && f.output != "json":
		return fmt.Errorf("--output %q: want text or json", f.output)
	case f.logFormat != "" && f.logFormat != "text" && f.logFormat != "json":
		return fmt.Errorf("--log-format %q: want text or json", f.logFormat)
	case f.timeout <= 0 || f.idleTimeout <= 0 || f.retryWait <= 0 || f.lockWait < 0:
		return errors.New("--timeout, --idle-timeout and --retry-wait must be positive, --lock-wait not negative")
	case f.retries < 0 || f.retries > 10:
		return fmt.Errorf("--retries %d: want 0 to 10", f.retries)
	}
	return nil
}

// listFlag is a repeatable flag; commas also separate values.
type listFlag struct {
	values []string
	set    bool // given at least once: the defaults are dropped
}

func (l *listFlag) String() string { return strings.Join(l.values, ",") }

func (l *listFlag) Set(s string) error {
	if !l.set {
		l.values, l.set = nil, true
	}
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			l.values = append(l.values, v)
		}
	}
	return nil
}

// mapFlag is a repeatable key=value flag.
type mapFlag map[string]string

func (m mapFlag) String() string {
	var parts []string
	for k, v := range m {
		parts = append(parts, k+"="+v)
	}
	return strings.Join(parts, ",")
}

func (m mapFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" || v == "" {
		return fmt.Errorf("%q: want name=value", s)
	}
	if _, dup := m[k]; dup {
		return fmt.Errorf("%s given twice", k)
	}
	m[k] = v
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// setUsage gives a command's --help its text: what it does, then the
// flags.
func setUsage(fs *flag.FlagSet, synopsis, text string) {
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: %s\n\n%s\nFlags:\n", synopsis, text)
		fs.PrintDefaults()
	}
}
