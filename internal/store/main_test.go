package store_test

import (
	"os"
	"testing"

	"github.com/redis/go-redis/v9/logging"
	"go.uber.org/goleak"
)

// TestMain checks that every goroutine a store starts is gone once the
// tests end: Close stops them all. go-redis's own log of dial failures
// (expected here: servers are stopped on purpose) is silenced.
//
// When REGHOST_BOLT_WRITER names a directory, this test binary is a
// writer for TestBoltKill9LosesNothing instead (see writer).
func TestMain(m *testing.M) {
	if dir := os.Getenv("REGHOST_BOLT_WRITER"); dir != "" {
		os.Exit(writer(dir, os.Getenv("REGHOST_BOLT_WRITER_REPLACE") != ""))
	}
	logging.Disable()
	goleak.VerifyTestMain(m,
		// go-redis probes a server that refused PoolSize dials once a
		// second, and sees that its pool was closed only when it wakes:
		// it ends within a second of Close, and is not the store's.
		goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial"))
}
