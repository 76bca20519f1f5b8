//go:build unix

package store

import (
	"errors"
	"fmt"
	"log/slog"
	"os"

	"golang.org/x/sys/unix"
)

// lockFile takes an exclusive flock on path, creating it if needed, and
// returns the function that releases it. The lock file is left in place:
// removing it on release would let two later openers lock two different
// files of the same name.
func lockFile(path string, _ *slog.Logger) (func() error, error) {
	lf, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("store: opening lock file: %w", err)
	}
	for {
		err = unix.Flock(int(lf.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		_ = lf.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is held; is another reghost running with the same data directory?", ErrLocked, path)
		}
		return nil, fmt.Errorf("store: locking %s: %w", path, err)
	}
	// Closing the descriptor releases the flock.
	return lf.Close, nil
}
