package certs

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/reghost/reghost/internal/promreg"
)

// metrics are one listener's series of the package's collectors.
type metrics struct {
	expiry   prometheus.Gauge
	ok, fail prometheus.Counter
	failing  prometheus.Gauge
}

// newMetrics registers the collectors on reg (once: a second listener
// on the same registerer shares them) and returns listener's series.
func newMetrics(reg prometheus.Registerer, listener string) (*metrics, error) {
	expiry := newExpiryVec()
	reloads := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "reghost_tls_certificate_reloads_total",
		Help: "Certificate reloads after start, by result: ok (a new pair serves) or error (a new pair was refused; the previous one serves).",
	}, []string{"listener", "result"})
	failing := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "reghost_tls_certificate_reload_error",
		Help: "1 while the certificate files on disk were refused at the last reload (the previous pair serves), else 0.",
	}, []string{"listener"})
	var errs [3]error
	expiry, errs[0] = promreg.Register(reg, expiry)
	reloads, errs[1] = promreg.Register(reg, reloads)
	failing, errs[2] = promreg.Register(reg, failing)
	if err := errors.Join(errs[:]...); err != nil {
		return nil, fmt.Errorf("certs: registering metrics: %w", err)
	}
	m := &metrics{
		expiry:  expiry.WithLabelValues(listener),
		ok:      reloads.WithLabelValues(listener, "ok"),
		fail:    reloads.WithLabelValues(listener, "error"),
		failing: failing.WithLabelValues(listener),
	}
	m.failing.Set(0) // present from the start, so that an alert on it has a series
	return m, nil
}

func newExpiryVec() *prometheus.GaugeVec {
	return prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "reghost_tls_certificate_expiry_timestamp_seconds",
		Help: "When the certificate being served expires (its NotAfter), in seconds since the Unix epoch.",
	}, []string{"listener"})
}

// ExpiryGauge returns listener's series of the expiry gauge, registered
// on reg, for a listener whose certificate does not come from files (an
// ACME CA's), so that one alert on the gauge covers every listener.
func ExpiryGauge(reg prometheus.Registerer, listener string) (prometheus.Gauge, error) {
	v, err := promreg.Register(reg, newExpiryVec())
	if err != nil {
		return nil, fmt.Errorf("certs: registering metrics: %w", err)
	}
	return v.WithLabelValues(listener), nil
}
