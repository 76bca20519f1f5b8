package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Sessions in Redis: each under its own key, {prefix}:session:<key>,
// expiring with the session (at the earlier of its idle and absolute
// ends), so that Redis forgets ended ones by itself and a sign-out on
// one replica ends the session on all of them.

func (r *Redis) sessionKey(key string) string { return "{" + r.opts.Prefix + "}:session:" + key }

// sessionEnd is when Redis may forget s.
func sessionEnd(s Session) time.Time {
	if s.IdleUntil.Before(s.ExpiresAt) {
		return s.IdleUntil
	}
	return s.ExpiresAt
}

// CreateSession stores s under key, replacing any session there.
func (r *Redis) CreateSession(ctx context.Context, key string, s Session) error {
	if key == "" {
		return errors.New("store: session key is empty")
	}
	data, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return r.done("session", r.withPrimary(ctx, func(ctx context.Context, c *redis.Client) error {
		return c.SetArgs(ctx, r.sessionKey(key), data, redis.SetArgs{ExpireAt: sessionEnd(s)}).Err()
	}))
}

// Session returns the live session under key, or ErrNotFound when there
// is none or it has ended.
func (r *Redis) Session(ctx context.Context, key string) (Session, error) {
	var s Session
	err := r.read(ctx, "session", func(ctx context.Context) error {
		v, err := r.rdb.Get(ctx, r.sessionKey(key)).Bytes()
		if errors.Is(err, redis.Nil) {
			return fmt.Errorf("%w: session", ErrNotFound)
		}
		if err != nil {
			return err
		}
		return json.Unmarshal(v, &s)
	})
	if err == nil && !s.Live(time.Now()) {
		return Session{}, fmt.Errorf("%w: session ended", ErrNotFound)
	}
	return s, err
}

// touchSession extends a session only if it is still there, in one step:
// a sign-out on another replica between reading and writing it must not
// bring it back. KEYS[1] the session; ARGV[1] the new JSON, ARGV[2] the
// Unix ms it may be forgotten at.
var touchSession = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[2])
return 1`)

// TouchSession extends the live session under key to idleUntil, but
// never past its ExpiresAt, and returns it; ErrNotFound when it has
// ended.
func (r *Redis) TouchSession(ctx context.Context, key string, idleUntil time.Time) (Session, error) {
	s, err := r.Session(ctx, key)
	if err != nil {
		return Session{}, err
	}
	if idleUntil.After(s.ExpiresAt) {
		idleUntil = s.ExpiresAt
	}
	if idleUntil.After(s.IdleUntil) {
		s.IdleUntil = idleUntil
	}
	data, err := json.Marshal(s)
	if err != nil {
		return Session{}, err
	}
	var touched int64
	err = r.done("session", r.withPrimary(ctx, func(ctx context.Context, c *redis.Client) error {
		var err error
		touched, err = touchSession.Run(ctx, c, []string{r.sessionKey(key)}, data, sessionEnd(s).UnixMilli()).Int64()
		return err
	}))
	if err != nil {
		return Session{}, err
	}
	if touched == 0 {
		return Session{}, fmt.Errorf("%w: session ended", ErrNotFound)
	}
	return s, nil
}

// DeleteSession ends the session under key; ending one that has ended
// already is not an error.
func (r *Redis) DeleteSession(ctx context.Context, key string) error {
	return r.done("session", r.withPrimary(ctx, func(ctx context.Context, c *redis.Client) error {
		return c.Del(ctx, r.sessionKey(key)).Err()
	}))
}

// withPrimary runs steps on the primary, which holds the sessions' keys
// (in a Cluster, in the slot of every other key), within the store's
// timeouts.
func (r *Redis) withPrimary(ctx context.Context, steps ...func(context.Context, *redis.Client) error) error {
	if r.closed.Load() {
		return errRedisClosed
	}
	ctx, cancel := context.WithTimeout(ctx, r.readTimeout())
	defer cancel()
	c, err := r.primary(ctx)
	if err != nil {
		return err
	}
	for _, step := range steps {
		if err := step(ctx, c); err != nil {
			return err
		}
	}
	return nil
}
