//go:build !unix

package loader

import "context"

// FileLock does not lock where flock is missing: reghost's deployments
// are all unix, and this keeps the loader usable for development
// elsewhere. Do not run two loaders on one data directory there.
type FileLock struct{ Path string }

// Lock does nothing.
func (FileLock) Lock(context.Context) (func() error, error) {
	return func() error { return nil }, nil
}
