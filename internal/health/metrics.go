package health

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/reghost/reghost/internal/promreg"
)

// metrics are the checker's collectors. Labels are registry names and
// fixed words, never addresses.
type metrics struct {
	up          *prometheus.GaugeVec
	duration    *prometheus.HistogramVec
	transitions *prometheus.CounterVec
	errors      *prometheus.CounterVec
	panic       prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "reghost",
			Name:      "registry_up",
			Help:      "1 when the registry counts as up (always, when its health checks are disabled), 0 when probes took it down.",
		}, []string{"registry"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "reghost",
			Name:      "registry_probe_duration_seconds",
			Help:      "Time a health probe took, connecting included (every probe connects afresh), successful or not.",
			Buckets:   []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"registry"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "reghost",
			Name:      "registry_transitions_total",
			Help:      "Changes of a registry's state, by the state it changed to (up or down).",
		}, []string{"registry", "to"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "reghost",
			Name:      "registry_probe_errors_total",
			Help:      "Health probes that did not succeed, by class (dns, connect, timeout, tls, proxy, status, challenge, protocol, throttled).",
		}, []string{"registry", "class"}),
		panic: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "reghost",
			Name:      "health_panic",
			Help:      "1 while fewer than the panic threshold's share of probed registries are up, so that routing ignores health.",
		}),
	}
	// A checker built again (a config reload) on the same registerer
	// carries on the collectors already there.
	var errs [5]error
	m.up, errs[0] = promreg.Register(reg, m.up)
	m.duration, errs[1] = promreg.Register(reg, m.duration)
	m.transitions, errs[2] = promreg.Register(reg, m.transitions)
	m.errors, errs[3] = promreg.Register(reg, m.errors)
	m.panic, errs[4] = promreg.Register(reg, m.panic)
	if err := errors.Join(errs[:]...); err != nil {
		return nil, fmt.Errorf("health: registering metrics: %w", err)
	}
	return m, nil
}

// target prepares a registry's series, so that its rates and its up
// gauge exist from the start rather than from its first change.
func (m *metrics) target(name string, up bool) {
	m.setUp(name, up)
	m.transitions.WithLabelValues(name, "up")
	m.transitions.WithLabelValues(name, "down")
}

func (m *metrics) setUp(name string, up bool) {
	v := 0.0
	if up {
		v = 1
	}
	m.up.WithLabelValues(name).Set(v)
}

func (m *metrics) setPanic(inPanic bool) {
	v := 0.0
	if inPanic {
		v = 1
	}
	m.panic.Set(v)
}
