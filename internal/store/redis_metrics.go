package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/reghost/reghost/internal/promreg"
)

// redisMetrics are the Redis store's collectors. Labels are operation
// and command names, never addresses or keys.
type redisMetrics struct {
	reachable      prometheus.Gauge
	epoch, version prometheus.Gauge
	lastMessageAge prometheus.Gauge
	delivered      *prometheus.CounterVec
	errors         *prometheus.CounterVec
	latency        *prometheus.HistogramVec
}

func newRedisMetrics(reg prometheus.Registerer) (*redisMetrics, error) {
	m := &redisMetrics{
		reachable: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "reghost", Subsystem: "store_redis", Name: "up",
			Help: "1 when the last Redis command succeeded, 0 when it failed (down, loading, refusing).",
		}),
		epoch: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "reghost", Subsystem: "store", Name: "epoch",
			Help: "The epoch of the newest store version seen; a new one starts with a restore or after lost writes.",
		}),
		version: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "reghost", Subsystem: "store", Name: "version",
			Help: "The number of the newest store version seen, within its epoch.",
		}),
		lastMessageAge: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "reghost", Subsystem: "store_redis", Name: "last_message_age_seconds",
			Help: "Seconds since the change subscription last heard from Redis (a change, or the answer to a ping sent after a poll interval of silence).",
		}),
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "reghost", Subsystem: "store_redis", Name: "changes_delivered_total",
			Help: "Changes delivered to readers: delta (one write, applied as it is) or reload (a gap, a resubscription, the poll).",
		}, []string{"kind"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "reghost", Subsystem: "store_redis", Name: "errors_total",
			Help: "Store operations that failed on Redis, by operation (load, get, version, audit, poll, create, put, delete, replace, drain, undrain, wait).",
		}, []string{"op"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "reghost", Subsystem: "store_redis", Name: "command_duration_seconds",
			Help:    "Time of Redis commands and pipelines, failed ones included, by command.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"command"}),
	}
	m.reachable.Set(0)
	// A store opened again on the same registerer carries on the
	// collectors already there.
	var errs [7]error
	m.reachable, errs[0] = promreg.Register(reg, m.reachable)
	m.epoch, errs[1] = promreg.Register(reg, m.epoch)
	m.version, errs[2] = promreg.Register(reg, m.version)
	m.lastMessageAge, errs[3] = promreg.Register(reg, m.lastMessageAge)
	m.delivered, errs[4] = promreg.Register(reg, m.delivered)
	m.errors, errs[5] = promreg.Register(reg, m.errors)
	m.latency, errs[6] = promreg.Register(reg, m.latency)
	if err := errors.Join(errs[:]...); err != nil {
		return nil, fmt.Errorf("store: registering metrics: %w", err)
	}
	return m, nil
}

// hook times every command through go-redis's hooks.
func (m *redisMetrics) hook() redis.Hook { return latencyHook{m.latency} }

type latencyHook struct{ h *prometheus.HistogramVec }

func (latencyHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (l latencyHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmd)
		l.h.WithLabelValues(commandName(cmd.Name())).Observe(time.Since(start).Seconds())
		return err
	}
}

func (l latencyHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmds)
		name := "pipeline"
		if len(cmds) > 0 && cmds[0].Name() == "multi" {
			name = "multi"
		}
		l.h.WithLabelValues(name).Observe(time.Since(start).Seconds())
		return err
	}
}

// commandName keeps the label's values to the commands the store uses.
func commandName(name string) string {
	switch name = strings.ToLower(name); name {
	case "evalsha", "eval", "hmget", "hget", "hgetall", "xrevrange", "info", "wait", "ping", "subscribe", "script":
		return name
	}
	return "other"
}

// RedisLogger adapts l for go-redis's global logger, which otherwise
// writes to stderr: redis.SetLogger(store.RedisLogger(l)). Its messages
// name addresses and errors, never passwords (as of go-redis v9.23); they
// are logged at WARN.
func RedisLogger(l *slog.Logger) interface {
	Printf(ctx context.Context, format string, v ...any)
} {
	return redisLogger{l}
}

type redisLogger struct{ l *slog.Logger }

func (r redisLogger) Printf(ctx context.Context, format string, v ...any) {
	r.l.WarnContext(ctx, "go-redis: "+fmt.Sprintf(format, v...))
}
