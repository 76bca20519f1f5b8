package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/reghost/reghost/internal/store"
)

// sessionStore is what every store offers the admin page for sessions.
// testSessions is the suite each of them passes: the Redis store's test
// calls it as the embedded store's does.
type sessionStore interface {
	CreateSession(ctx context.Context, key string, s store.Session) error
	Session(ctx context.Context, key string) (store.Session, error)
	TouchSession(ctx context.Context, key string, idleUntil time.Time) (store.Session, error)
	DeleteSession(ctx context.Context, key string) error
}

// testSessions runs the session suite against stores from open. Times
// are real: stores end sessions by their own clock.
func testSessions(t *testing.T, open func(t *testing.T) sessionStore) {
	ctx := context.Background()
	// now is truncated as JSON and Redis keep it: to the microsecond
	// would do, the second is safe.
	now := time.Now().UTC().Truncate(time.Second)
	live := store.Session{Who: "alice", CreatedAt: now, IdleUntil: now.Add(time.Hour), ExpiresAt: now.Add(2 * time.Hour)}

	t.Run("create, get, delete", func(t *testing.T) {
		s := open(t)
		if err := s.CreateSession(ctx, "k1", live); err != nil {
			t.Fatal(err)
		}
		got, err := s.Session(ctx, "k1")
		if err != nil || !got.CreatedAt.Equal(live.CreatedAt) || got.Who != "alice" ||
			!got.IdleUntil.Equal(live.IdleUntil) || !got.ExpiresAt.Equal(live.ExpiresAt) {
			t.Fatalf("Session = %+v, %v; want %+v", got, err, live)
		}
		if err := s.DeleteSession(ctx, "k1"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Session(ctx, "k1"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("after delete: err = %v, want ErrNotFound", err)
		}
		if err := s.DeleteSession(ctx, "k1"); err != nil {
			t.Fatalf("deleting again: %v, want nil", err)
		}
	})
	t.Run("unknown key", func(t *testing.T) {
		s := open(t)
		if _, err := s.Session(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("err = %v, want ErrNotFound", err)
		}
		if _, err := s.TouchSession(ctx, "nope", now.Add(time.Hour)); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("touch: err = %v, want ErrNotFound", err)
		}
	})
	t.Run("ended sessions are not returned", func(t *testing.T) {
		s := open(t)
		idle := live
		idle.IdleUntil = now.Add(-time.Second)
		abs := live
		abs.ExpiresAt = now.Add(-time.Second)
		for key, sess := range map[string]store.Session{"idle": idle, "absolute": abs} {
			if err := s.CreateSession(ctx, key, sess); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Session(ctx, key); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("%s: err = %v, want ErrNotFound", key, err)
			}
			if _, err := s.TouchSession(ctx, key, now.Add(time.Hour)); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("%s: touch revived it: err = %v", key, err)
			}
		}
	})
	t.Run("touch extends, never past the absolute end", func(t *testing.T) {
		s := open(t)
		if err := s.CreateSession(ctx, "k", live); err != nil {
			t.Fatal(err)
		}
		got, err := s.TouchSession(ctx, "k", now.Add(90*time.Minute))
		if err != nil || !got.IdleUntil.Equal(now.Add(90*time.Minute)) {
			t.Fatalf("touch: %+v, %v; want idle until +90m", got, err)
		}
		got, err = s.TouchSession(ctx, "k", now.Add(5*time.Hour))
		if err != nil || !got.IdleUntil.Equal(live.ExpiresAt) {
			t.Fatalf("touch past the end: %+v, %v; want idle until %v", got, err, live.ExpiresAt)
		}
		if got, _ := s.Session(ctx, "k"); !got.IdleUntil.Equal(live.ExpiresAt) {
			t.Fatalf("not kept: %+v", got)
		}
		got, err = s.TouchSession(ctx, "k", now.Add(time.Minute)) // earlier: no change
		if err != nil || !got.IdleUntil.Equal(live.ExpiresAt) {
			t.Fatalf("touch to an earlier time shortened it: %+v, %v", got, err)
		}
	})
}
