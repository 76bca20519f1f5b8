package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/reghost/reghost/internal/store"
)

func TestBoltSessions(t *testing.T) {
	t.Parallel()
	testSessions(t, func(t *testing.T) sessionStore {
		s, err := store.OpenBolt(t.TempDir(), store.BoltOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// Sessions outlive a restart, ended ones are swept when another starts,
// and a closed store says it is unavailable.
func TestBoltSessionsPersistAndSweep(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	s, err := store.OpenBolt(dir, store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	keep := store.Session{Who: "a", CreatedAt: now, IdleUntil: now.Add(time.Hour), ExpiresAt: now.Add(time.Hour)}
	ended := store.Session{Who: "b", CreatedAt: now, IdleUntil: now.Add(50 * time.Millisecond), ExpiresAt: now.Add(time.Hour)}
	if err := s.CreateSession(ctx, "keep", keep); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateSession(ctx, "ended", ended); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := s.CreateSession(ctx, "x", keep); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("CreateSession on a closed store: %v, want ErrUnavailable", err)
	}
	if _, err := s.Session(ctx, "keep"); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Session on a closed store: %v, want ErrUnavailable", err)
	}

	time.Sleep(60 * time.Millisecond)
	s, err = store.OpenBolt(dir, store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, err := s.Session(ctx, "keep"); err != nil || got.Who != "a" {
		t.Fatalf("after reopening: %+v, %v", got, err)
	}
	if err := s.CreateSession(ctx, "new", keep); err != nil {
		t.Fatal(err)
	}
	// The ended one is gone from the database, not only hidden.
	if n := store.CountSessions(t, s); n != 2 {
		t.Errorf("%d sessions kept, want 2 (the ended one swept)", n)
	}
}
