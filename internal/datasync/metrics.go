package datasync

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Results of a data set's sync, the values of the result label.
const (
	resultInstalled = "installed" // fetched, checked and renamed into place
	resultRefused   = "refused"   // corrupt, truncated or invalid: the file on disk keeps serving
	resultFailed    = "failed"    // Redis or the disk failed: tried again at the next look
)

// newSyncTotal registers reghost_dataset_sync_total on reg (nil: none),
// taking over one registered already.
func newSyncTotal(reg prometheus.Registerer) (*prometheus.CounterVec, error) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "reghost", Name: "dataset_sync_total",
		Help: "Data sets fetched from Redis, by data set and result: installed, refused (corrupt or invalid; the file on disk keeps serving) or failed (Redis or the disk; tried again).",
	}, []string{"dataset", "result"})
	if reg == nil {
		return c, nil
	}
	if err := reg.Register(c); err != nil {
		if are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok {
			if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				return existing, nil
			}
		}
		return nil, fmt.Errorf("datasync: registering metrics: %w", err)
	}
	return c, nil
}
