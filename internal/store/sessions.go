package store

import "time"

// Session is someone signed in to the admin page. A store keeps it under
// a key the caller chooses (the page uses a digest of its cookie, so that
// what is stored cannot be replayed as a cookie) until IdleUntil or
// ExpiresAt, whichever comes first, and forgets it then. Sessions live
// in the shared store so that signing out on one replica ends the
// session on all of them.
//
// Sessions are not overrides: they take no version, no audit entry and
// no change notification.
type Session struct {
	Who       string    `json:"who"` // the admin token's name
	CreatedAt time.Time `json:"created_at"`
	IdleUntil time.Time `json:"idle_until"` // ends unless touched before
	ExpiresAt time.Time `json:"expires_at"` // ends however often it is touched
}

// Live reports whether s has not ended at now.
func (s Session) Live(now time.Time) bool { return now.Before(s.IdleUntil) && now.Before(s.ExpiresAt) }
