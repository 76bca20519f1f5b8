// Package promreg registers Prometheus collectors for components that
// may be built more than once on the same registerer.
package promreg

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers c on reg and returns it; when an equal collector is
// registered already (a component built again after a config reload, a
// store opened again), it returns that one instead, so that the new
// component carries on its series. A nil reg registers nothing.
func Register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if reg == nil {
		return c, nil
	}
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	if are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
		return c, fmt.Errorf("a collector of another type is registered in the place of %T", c)
	}
	return c, err
}
