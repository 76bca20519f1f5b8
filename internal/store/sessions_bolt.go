package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/bbolt"
)

// bucketSessions holds the admin page's sessions, by key. It is created
// on first use, so that databases written before sessions existed open
// as they are.
var bucketSessions = []byte("sessions")

// CreateSession stores s under key, replacing any session there, and
// forgets the sessions that have ended: a store keeps no more sessions
// than were started within their longest lifetime.
func (b *Bolt) CreateSession(ctx context.Context, key string, s Session) error {
	if key == "" {
		return errors.New("store: session key is empty")
	}
	data, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return b.update(ctx, func(tx *bbolt.Tx) error {
		bk, err := tx.CreateBucketIfNotExists(bucketSessions)
		if err != nil {
			return err
		}
		now := time.Now()
		var ended [][]byte
		err = bk.ForEach(func(k, v []byte) error {
			var old Session
			if json.Unmarshal(v, &old) != nil || !old.Live(now) {
				ended = append(ended, k) // an unreadable session is as good as ended
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range ended {
			if err := bk.Delete(k); err != nil {
				return err
			}
		}
		return bk.Put([]byte(key), data)
	})
}

// Session returns the live session under key, or ErrNotFound when there
// is none or it has ended.
func (b *Bolt) Session(ctx context.Context, key string) (Session, error) {
	var s Session
	err := b.view(ctx, func(tx *bbolt.Tx) error {
		var v []byte
		if bk := tx.Bucket(bucketSessions); bk != nil {
			v = bk.Get([]byte(key))
		}
		if v == nil {
			return fmt.Errorf("%w: session", ErrNotFound)
		}
		return json.Unmarshal(v, &s)
	})
	if err == nil && !s.Live(time.Now()) {
		return Session{}, fmt.Errorf("%w: session ended", ErrNotFound)
	}
	return s, err
}

// TouchSession extends the live session under key to idleUntil, but
// never past its ExpiresAt, and returns it; ErrNotFound when it has
// ended.
func (b *Bolt) TouchSession(ctx context.Context, key string, idleUntil time.Time) (Session, error) {
	var s Session
	err := b.update(ctx, func(tx *bbolt.Tx) error {
		var v []byte
		bk := tx.Bucket(bucketSessions)
		if bk != nil {
			v = bk.Get([]byte(key))
		}
		if v == nil {
			return fmt.Errorf("%w: session", ErrNotFound)
		}
		if err := json.Unmarshal(v, &s); err != nil {
			return err
		}
		if !s.Live(time.Now()) {
			return fmt.Errorf("%w: session ended", ErrNotFound)
		}
		if idleUntil.After(s.ExpiresAt) {
			idleUntil = s.ExpiresAt
		}
		if idleUntil.After(s.IdleUntil) {
			s.IdleUntil = idleUntil
		}
		data, err := json.Marshal(s)
		if err != nil {
			return err
		}
		return bk.Put([]byte(key), data)
	})
	if err != nil {
		return Session{}, err
	}
	return s, nil
}

// DeleteSession ends the session under key; ending one that has ended
// already is not an error.
func (b *Bolt) DeleteSession(ctx context.Context, key string) error {
	return b.update(ctx, func(tx *bbolt.Tx) error {
		if bk := tx.Bucket(bucketSessions); bk != nil {
			return bk.Delete([]byte(key))
		}
		return nil
	})
}

// update runs fn in a write transaction of the open database. It does
// not take writeMu: that orders the writes that bump the version and
// notify, and sessions do neither.
func (b *Bolt) update(ctx context.Context, fn func(tx *bbolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return errClosed
	}
	err := b.db.Update(fn)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("%w: writing %s: %w", ErrUnavailable, b.path, err)
	}
	return err
}
