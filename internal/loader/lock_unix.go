//go:build unix

package loader

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// FileLock is an exclusive flock on a file, created if need be and left
// in place (removing it on release would let two later loaders lock two
// different files of the same name). The kernel releases it when the
// process dies, so a killed loader never leaves it held.
type FileLock struct{ Path string }

// lockPoll is how often a waiting Lock tries again.
const lockPoll = 50 * time.Millisecond

// Lock takes the lock, trying again until ctx is done.
func (l FileLock) Lock(ctx context.Context) (func() error, error) {
	f, err := os.OpenFile(l.Path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening the lock file: %w", err)
	}
	start := time.Now()
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return f.Close, nil // closing the descriptor releases the flock
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", l.Path, err)
		}
		t := time.NewTimer(lockPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			f.Close()
			return nil, fmt.Errorf("%w: %s is held by another loader; gave up after %s (wait longer with --lock-wait, or find the loader still running)",
				ErrLocked, l.Path, time.Since(start).Round(time.Millisecond))
		case <-t.C:
		}
	}
}
