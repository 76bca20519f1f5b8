package httpapi

import (
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestMetricsCounting(t *testing.T) {
	t.Parallel()
	m := NewMetrics()
	for range 3 {
		m.decided("cidr:10.0.0.0/8", "hub")
	}
	m.decided("cidr:192.168.0.0/16", "hub")
	m.decided("fallback:all-down", "k8s")
	m.decided("default", "k8s")
	m.observe("public", "/v2/*", 307, time.Millisecond)
	m.observe("public", "/v2/*", 307, time.Millisecond)
	want := `
# HELP reghost_decisions_total Decisions by the kind of reason (cidr, asn, cloud, country, continent, default, fallback) and registry.
# TYPE reghost_decisions_total counter
reghost_decisions_total{kind="cidr",registry="hub"} 4
reghost_decisions_total{kind="default",registry="k8s"} 1
reghost_decisions_total{kind="fallback",registry="k8s"} 1
# HELP reghost_fallbacks_total Decisions that fell back to the default registry, by why.
# TYPE reghost_fallbacks_total counter
reghost_fallbacks_total{why="all-down"} 1
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "reghost_decisions_total", "reghost_fallbacks_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(m.duration); n != 1 {
		t.Errorf("%d duration series, want 1", n)
	}
	// The per-label cache is bounded by kinds, not by rules.
	if got := len(*m.counters.m.Load()); got != 3 {
		t.Errorf("%d cached counters, want 3", got)
	}
}

// A reason is a piece of its snapshot's text; what metrics keep of it
// must not be, or a replaced snapshot's text would stay alive with it.
func TestDecidedKeepsNoPieceOfTheReason(t *testing.T) {
	text := strings.Repeat("override:o1", 1000) + "asn:15169" + "cloud:aws/us-east-2" + "weird:kind"
	for _, reason := range []string{text[11000:11009], text[11009:11028], text[11028:]} {
		kind, _, _ := strings.Cut(reason, ":")
		got := labelKind(kind)
		if got != kind {
			t.Errorf("labelKind(%q) = %q", kind, got)
		}
		if unsafe.StringData(got) == unsafe.StringData(kind) {
			t.Errorf("labelKind(%q) shares the reason's memory", kind)
		}
	}
	m := NewMetrics()
	m.decided(text[11000:11009], "hub")
	for k := range *m.counters.m.Load() {
		if p := unsafe.StringData(k.kind); p == unsafe.StringData(text[11000:]) {
			t.Errorf("the decision counter's key %q shares the reason's memory", k.kind)
		}
	}
}
