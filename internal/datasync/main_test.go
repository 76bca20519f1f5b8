package datasync

import (
	"testing"

	"github.com/redis/go-redis/v9/logging"
	"go.uber.org/goleak"
)

// TestMain checks that every goroutine a Syncer starts is gone once the
// tests end. go-redis's own log of dial failures (servers are stopped on
// purpose) is silenced.
func TestMain(m *testing.M) {
	logging.Disable()
	goleak.VerifyTestMain(m,
		// go-redis probes a server that refused dials once a second, and
		// sees that its pool was closed only when it wakes.
		goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial"))
}
