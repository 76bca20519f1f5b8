package app

import (
	"github.com/prometheus/client_golang/prometheus"
)

// snapshotMetrics reports the overrides kept on local disk: whether the
// server serves them because the store cannot be read, and how old the
// file is, so that an alert can say a replica serves a stale set.
func (a *App) snapshotMetrics() error {
	serving := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "reghost", Subsystem: "store", Name: "serving_snapshot",
		Help: "1 while the overrides served came from the snapshot on local disk, because the store could not be read since start.",
	}, func() float64 {
		if on, _ := a.overrides.Snapshot(); on {
			return 1
		}
		return 0
	})
	written := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "reghost", Subsystem: "store", Name: "snapshot_written_timestamp_seconds",
		Help: "When this server last wrote the overrides it applies to the snapshot on local disk, as a Unix time; 0 before it has.",
	}, func() float64 {
		if _, t := a.overrides.Snapshot(); !t.IsZero() {
			return float64(t.UnixNano()) / 1e9
		}
		return 0
	})
	reg := a.metrics.Registry()
	if err := reg.Register(serving); err != nil {
		return err
	}
	return reg.Register(written)
}
