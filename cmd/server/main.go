// Command server runs reghost: the public redirect listener and the admin
// listener, from a config file or, without one, the embedded example.
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
	"syscall"

	"github.com/reghost/reghost/internal/app"
	"github.com/reghost/reghost/internal/config"
	"github.com/reghost/reghost/internal/httpapi"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "config file (default: the embedded example, see internal/config/example.yaml)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	accessLog := fs.Bool("access-log", true, "log one line per request, on both listeners")
	printConfig := fs.Bool("print-example-config", false, "print the embedded example config and exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "server: unexpected argument %q; flags only (see -h)\n", fs.Arg(0))
		return 2
	}
	if *printConfig {
		_, _ = stdout.Write(config.Example())
		return 0
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "server: -log-level: %v\n", err)
		return 2
	}
	out := newLogWriter(stdout)
	defer out.Close()
	logger := slog.New(slog.NewJSONHandler(out, &slog.HandlerOptions{Level: level}))

	cfg, err := loadConfig(*configPath)
	if err != nil {
		logger.Error("config", "err", err)
		return 1
	}
	if *configPath == "" {
		logger.Info("no -config given; running with the embedded example config")
	}
	opts := app.Options{Logger: logger}
	if *accessLog {
		// The same writer, so that access lines and the other logs come
		// out whole and in one stream; the access log has no level.
		opts.AccessLog = httpapi.NewAccessLogHandler(out)
	}
	a, err := app.New(cfg, opts)
	if err != nil {
		logger.Error("start", "err", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // a second signal stops the process at once, shutting down or not
	}()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go reloadOnHUP(ctx, hup, *configPath, a, logger)
	if err := a.Serve(ctx); err != nil {
		logger.Error("serve", "err", err)
		return 1
	}
	return 0
}

// reloadOnHUP reads the config file again at every SIGHUP and applies
// it; a config that does not load or apply is logged, and the one
// serving keeps serving.
func reloadOnHUP(ctx context.Context, hup <-chan os.Signal, path string, a *app.App, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		log.Info("SIGHUP: reloading the config and the data files", "config", path)
		cfg, err := loadConfig(path)
		if err != nil {
			log.Error("config not reloaded; the old one keeps serving", "err", err)
			continue
		}
		if err := a.Reload(cfg); err != nil {
			log.Error("reload", "err", err)
		}
	}
}

func loadConfig(path string) (*config.Config, error) {
	if path == "" {
		return config.Parse(config.Example(), "embedded example config")
	}
	cfg, err := config.Load(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w (run with no -config for the embedded example)", err)
	}
	return cfg, err
}
