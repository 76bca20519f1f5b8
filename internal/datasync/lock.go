package datasync

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrLocked is wrapped when another publisher held a data set's lock
// for longer than LockWait.
var ErrLocked = errors.New("datasync: another loader is publishing this data set")

// lockPoll is how often a waiting publisher tries the lock again.
const lockPoll = 100 * time.Millisecond

// A publisher's lock is SET {p}:data-lock:<name> <token> NX PX <ttl>:
// Redis forgets it when its holder dies. Only the holder's token refreshes
// or releases it, each in one script, so that a publisher whose lock
// expired (a long pause) never extends or deletes the next one's.
var (
	refreshLock = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0`)
	releaseLock = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`)
)

// lock is a held publisher's lock.
type lock struct {
	c          *Client
	key, token string
}

// lock takes data set name's lock, trying again until LockWait has
// passed or ctx is done.
func (c *Client) lock(ctx context.Context, name string) (*lock, error) {
	l := &lock{c: c, key: c.keys.lock(name), token: rand.Text()}
	start := time.Now()
	for {
		ok, err := c.rdb.SetNX(ctx, l.key, l.token, c.lockTTL).Result()
		if err != nil {
			return nil, fmt.Errorf("datasync: taking the lock of %s: %w", name, err)
		}
		if ok {
			return l, nil
		}
		if time.Since(start) >= c.lockWait {
			return nil, fmt.Errorf("%w: %s is locked (%s) by another loader; gave up after %s",
				ErrLocked, name, l.key, time.Since(start).Round(time.Millisecond))
		}
		t := time.NewTimer(lockPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// refresh extends the lock by LockTTL; an error when it is no longer
// this publisher's.
func (l *lock) refresh(ctx context.Context) error {
	n, err := refreshLock.Run(ctx, l.c.rdb, []string{l.key}, l.token, l.c.lockTTL.Milliseconds()).Int64()
	if err != nil {
		return fmt.Errorf("datasync: refreshing the lock %s: %w", l.key, err)
	}
	if n == 0 {
		return fmt.Errorf("datasync: lost the lock %s (it expired: a pause longer than %s?)", l.key, l.c.lockTTL)
	}
	return nil
}

// release deletes the lock if it is still this publisher's.
func (l *lock) release(ctx context.Context) error {
	if err := releaseLock.Run(ctx, l.c.rdb, []string{l.key}, l.token).Err(); err != nil {
		return fmt.Errorf("datasync: releasing the lock %s (it expires by itself): %w", l.key, err)
	}
	return nil
}
