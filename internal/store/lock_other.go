//go:build !unix

package store

import "log/slog"

// lockFile does not lock where flock is missing; reghost's deployments
// are all unix, and this keeps the embedded store usable for development
// elsewhere.
func lockFile(path string, logger *slog.Logger) (func() error, error) {
	logger.Warn("file locking is not supported on this system; do not open the override store from two processes", "lock", path)
	return func() error { return nil }, nil
}
