package httpapi

import (
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are reghost's Prometheus collectors. Labels are routes,
// status codes, reason kinds and registry names: never client addresses
// or raw paths.
type Metrics struct {
	registry  *prometheus.Registry
	duration  *prometheus.HistogramVec
	decisions *prometheus.CounterVec
	fallbacks *prometheus.CounterVec
	dataSets  *dataSetCollector

	// Children of the vectors by label values, so that a request costs a
	// map read instead of hashing its labels under the vector's lock.
	observers cache[durationKey, prometheus.Observer]
	counters  cache[decisionKey, incer]
}

type durationKey struct {
	listener, route string
	code            int
}

// decisionKey is bounded: reason kinds, fallback whys and registries are
// few, where reasons ("cidr:…") are as many as the rules.
type decisionKey struct{ kind, why, registry string }

type incer interface{ Inc() }

// cache is a copy-on-write map: reads are a pointer load and a map read;
// a miss, which happens once per key, copies the map.
type cache[K comparable, V any] struct {
	mu sync.Mutex
	m  atomic.Pointer[map[K]V]
}

func (c *cache[K, V]) get(k K, make func() V) V {
	if m := c.m.Load(); m != nil {
		if v, ok := (*m)[k]; ok {
			return v
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.m.Load()
	if old != nil {
		if v, ok := (*old)[k]; ok {
			return v
		}
	}
	next := make()
	m := map[K]V{k: next}
	if old != nil {
		for k2, v2 := range *old {
			m[k2] = v2
		}
	}
	c.m.Store(&m)
	return next
}

// NewMetrics registers reghost's collectors, and the Go and process
// collectors, on a new registry.
func NewMetrics() *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "reghost",
			Name:      "http_request_duration_seconds",
			Help:      "Time to answer an HTTP request, by listener, route and status code.",
			Buckets:   []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .1, .5},
		}, []string{"listener", "route", "code"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "reghost",
			Name:      "decisions_total",
			Help:      "Decisions by the kind of reason (cidr, asn, cloud, country, continent, default, fallback) and registry.",
		}, []string{"kind", "registry"}),
		fallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "reghost",
			Name:      "fallbacks_total",
			Help:      "Decisions that fell back to the default registry, by why.",
		}, []string{"why"}),
		dataSets: &dataSetCollector{
			built: prometheus.NewDesc("reghost_dataset_build_timestamp_seconds",
				"When each loaded data set was built (GeoIP: the database's build time; cloud ranges: the file's modification time), as a Unix time.",
				[]string{"dataset"}, nil),
			loaded: prometheus.NewDesc("reghost_dataset_loaded_timestamp_seconds",
				"When each data set was loaded by this server, as a Unix time.",
				[]string{"dataset"}, nil),
		},
	}
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "reghost",
		Name:      "build_info",
		Help:      "Build information; always 1.",
	}, []string{"version", "goversion"})
	version, goversion := BuildVersion()
	info.WithLabelValues(version, goversion).Set(1)
	m.registry.MustRegister(m.duration, m.decisions, m.fallbacks, m.dataSets, info,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry is where the collectors are registered, for /metrics.
func (m *Metrics) Registry() *prometheus.Registry { return m.registry }

// DataSetTimes is when a data set was built and when this server loaded
// it, for the data set gauges.
type DataSetTimes struct {
	Name          string // "geoip/asn", "cloud/aws", …
	Built, Loaded time.Time
}

// WatchDataSets has the data set gauges report, at every scrape, the data
// sets f returns. They reload on their own (GeoIP files are watched, cloud
// ranges polled), so the gauges ask rather than being told.
func (m *Metrics) WatchDataSets(f func() []DataSetTimes) { m.dataSets.f.Store(&f) }

// dataSetCollector is the two data set gauges, read from a function.
type dataSetCollector struct {
	built, loaded *prometheus.Desc
	f             atomic.Pointer[func() []DataSetTimes]
}

func (c *dataSetCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.built
	ch <- c.loaded
}

func (c *dataSetCollector) Collect(ch chan<- prometheus.Metric) {
	f := c.f.Load()
	if f == nil {
		return
	}
	for _, d := range (*f)() {
		if !d.Built.IsZero() {
			ch <- prometheus.MustNewConstMetric(c.built, prometheus.GaugeValue, float64(d.Built.Unix()), d.Name)
		}
		if !d.Loaded.IsZero() {
			ch <- prometheus.MustNewConstMetric(c.loaded, prometheus.GaugeValue, float64(d.Loaded.Unix()), d.Name)
		}
	}
}

// decided counts one decision. The reason's kind is the part before the
// first ':' ("cidr", "asn", ...), or the whole of "default"; fallbacks
// are counted by why as well.
func (m *Metrics) decided(reason, registry string) {
	kind, why, _ := strings.Cut(reason, ":")
	kind = labelKind(kind)
	if kind != "fallback" {
		why = ""
	}
	m.counters.get(decisionKey{kind, why, registry}, func() incer {
		c := m.decisions.WithLabelValues(kind, registry)
		if kind != "fallback" {
			return c
		}
		return twoCounters{c, m.fallbacks.WithLabelValues(why)}
	}).Inc()
}

// labelKind returns a reason's kind as a string of its own. A rule's
// reason is cut from its snapshot's text, all of it in one string: a
// cached label or map key that kept a piece of it would keep the whole
// text of a replaced snapshot alive, one for each label first seen in a
// different snapshot.
func labelKind(kind string) string {
	switch kind {
	case "cidr":
		return "cidr"
	case "asn":
		return "asn"
	case "cloud":
		return "cloud"
	case "country":
		return "country"
	case "continent":
		return "continent"
	case "default":
		return "default"
	case "fallback":
		return "fallback"
	}
	return strings.Clone(kind)
}

// twoCounters counts a fallback both as a decision and as a fallback.
type twoCounters [2]prometheus.Counter

func (t twoCounters) Inc() { t[0].Inc(); t[1].Inc() }

func (m *Metrics) observe(listener, route string, code int, d time.Duration) {
	m.observers.get(durationKey{listener, route, code}, func() prometheus.Observer {
		return m.duration.WithLabelValues(listener, route, strconv.Itoa(code))
	}).Observe(d.Seconds())
}

// BuildVersion is the module version and VCS revision the server was built
// from, and the Go version.
func BuildVersion() (version, goversion string) {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown", "unknown"
	}
	version = bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			version += "+" + s.Value[:12]
		}
	}
	return version, bi.GoVersion
}
