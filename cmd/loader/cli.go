package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/reghost/reghost/internal/app"
	"github.com/reghost/reghost/internal/datasync"
	"github.com/reghost/reghost/internal/loader"
)

// Exit statuses.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

// cli is one invocation: where output goes and what it may read of the
// process. Tests build their own.
type cli struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	terminal       bool // stderr is a terminal: draw progress bars, log as text
	// ctx, when set, replaces the signal-bound context (tests).
	ctx context.Context
}

const usage = `loader fetches the data reghost decides from, checks it with the server's
own code, and installs it atomically where the servers read it.

Usage:
  loader geoip [flags]    MaxMind GeoIP databases (or a local .mmdb with --from-file)
  loader cloud [flags]    the cloud providers' published IP ranges
  loader overrides export|import [flags]
                          back up and restore the store's overrides (JSON; CSV to import)
  loader help [command]   this text, or a command's flags

geoip and cloud take --config FILE (the server's config: its data paths) or
--data-dir DIR (the file names of the example config); overrides takes
--config FILE (its store and registries). Exit status: 0 done or nothing
new, 1 failed (the installed files and the store are untouched), 2 bad
usage.
`

func (c cli) run(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(c.stderr, usage)
		return exitUsage
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "geoip":
		return c.geoip(rest)
	case "cloud":
		return c.cloud(rest)
	case "overrides":
		return c.overrides(rest)
	case "help", "-h", "-help", "--help":
		if len(rest) >= 1 && (rest[0] == "geoip" || rest[0] == "cloud" || rest[0] == "overrides") {
			return c.run(append(slices.Clone(rest), "--help"))
		}
		fmt.Fprint(c.stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(c.stderr, "loader: unknown command %q\n\n%s", cmd, usage)
		return exitUsage
	}
}

// parse parses a command's flags. done is true when the command should
// stop with code: after --help (0) or a usage error (2).
func (c cli) parse(fs *flag.FlagSet, args []string) (code int, done bool) {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(c.stdout)
		fs.Usage()
		return exitOK, true
	case err != nil:
		return c.usageError(fs, err.Error()), true
	case fs.NArg() > 0:
		return c.usageError(fs, fmt.Sprintf("unexpected argument %q", fs.Arg(0))), true
	}
	return 0, false
}

// usageError reports bad usage and returns exitUsage.
func (c cli) usageError(fs *flag.FlagSet, msg string) int {
	fmt.Fprintf(c.stderr, "loader %s: %s\nRun 'loader %s --help' for the flags.\n", fs.Name(), msg, fs.Name())
	return exitUsage
}

// context is the run's context: cancelled by SIGINT or SIGTERM (a
// Kubernetes Job's deadline), so an interrupted run stops cleanly and
// leaves the installed files as they were.
func (c cli) context(f commonFlags) (context.Context, context.CancelFunc) {
	parent := c.ctx
	var stop context.CancelFunc = func() {}
	if parent == nil {
		parent, stop = signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	}
	ctx, cancel := context.WithTimeout(parent, f.timeout)
	return ctx, func() { cancel(); stop() }
}

// logger logs to stderr: text on a terminal, JSON lines (as the server
// writes) otherwise.
func (c cli) logger(f commonFlags) *slog.Logger {
	opts := &slog.HandlerOptions{Level: f.level}
	format := f.logFormat
	if format == "" {
		format = "json"
		if c.terminal {
			format = "text"
		}
	}
	if format == "text" {
		return slog.New(slog.NewTextHandler(c.stderr, opts))
	}
	return slog.New(slog.NewJSONHandler(c.stderr, opts))
}

// errRedis marks a failure to reach the Redis a config names.
var errRedis = errors.New("the store's Redis")

// newLoader builds the Loader of a run from the common flags. With a
// config whose store is Redis, every data set it installs is published
// there for the servers (internal/datasync), its state is kept there,
// and a data set the state records is restored from there into a fresh
// data directory. done releases the Loader and its Redis client.
func (c cli) newLoader(f commonFlags, p paths, log *slog.Logger) (l *loader.Loader, done func(), err error) {
	var progress loader.Progress
	if c.terminal {
		progress = progressBar(c.stderr)
	}
	cfg := loader.Config{
		DataDir:  p.dataDir,
		Logger:   log,
		LockWait: f.lockWait,
		HTTP: loader.HTTPConfig{
			Proxy:       loader.ProxyFromEnv(c.getenv),
			IdleTimeout: f.idleTimeout,
			Attempts:    f.retries + 1,
			RetryWait:   f.retryWait,
			UserAgent:   "reghost-loader",
			Progress:    progress,
		},
	}
	var data *datasync.Client
	if p.cfg != nil {
		if data, err = app.OpenDataSets(p.cfg, log); err != nil {
			return nil, nil, fmt.Errorf("%w: %w", errRedis, err)
		}
	}
	if data != nil {
		cfg.Publishers, cfg.State, cfg.Restorer = []loader.Publisher{data}, data.State(), data
		log.Info("the data sets installed are published to the store's Redis, and the loader's state is kept there")
	}
	if l, err = loader.New(cfg); err != nil {
		if data != nil {
			data.Close()
		}
		return nil, nil, err
	}
	return l, func() {
		l.Close()
		if data != nil {
			data.Close()
		}
	}, nil
}

// startFailed reports a Loader that could not be built: a Redis that the
// config names but cannot be used fails the run (1), anything else is
// bad usage (2).
func (c cli) startFailed(fs *flag.FlagSet, err error) int {
	if errors.Is(err, errRedis) {
		fmt.Fprintf(c.stderr, "loader %s: %v\n", fs.Name(), err)
		return exitFail
	}
	return c.usageError(fs, err.Error())
}

// finish writes the report and turns the run's error into the exit
// status.
func (c cli) finish(log *slog.Logger, output string, report interface{ WriteText(io.Writer) error }, err error) int {
	var werr error
	if output == "json" {
		werr = writeJSON(c.stdout, report)
	} else {
		werr = report.WriteText(c.stdout)
	}
	if werr != nil {
		log.Error("writing the report", "err", werr)
	}
	if err != nil {
		fmt.Fprintf(c.stderr, "loader: %s\n", strings.ReplaceAll(err.Error(), "\n", "\nloader: "))
		return exitFail
	}
	if werr != nil {
		return exitFail
	}
	return exitOK
}
