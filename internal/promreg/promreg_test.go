package promreg

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestRegister(t *testing.T) {
	reg := prometheus.NewRegistry()
	opts := prometheus.GaugeOpts{Name: "reghost_test", Help: "A test."}
	first, err := Register(reg, prometheus.NewGauge(opts))
	if err != nil {
		t.Fatal(err)
	}
	first.Set(7)
	// Built again: the first one is handed back, with its value.
	again, err := Register(reg, prometheus.NewGauge(opts))
	if err != nil || again != first {
		t.Fatalf("a second registration: %v, %v; want the first collector", again, err)
	}
	// Another type under the same name is an error.
	if _, err := Register(reg, prometheus.NewGaugeVec(opts, []string{"x"})); err == nil {
		t.Error("a collector of another kind under the same name: no error")
	}
	if g, err := Register[prometheus.Gauge](nil, prometheus.NewGauge(opts)); err != nil || g == nil {
		t.Errorf("nil registerer: %v, %v", g, err)
	}
}
