package web

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/reghost/reghost/internal/store"
)

// cookieName is the session cookie. Its path is Prefix: browsers send it
// nowhere else on the listener, and nothing else there would take it.
const cookieName = "reghost_session"

// touchEvery is how stale a session's idle deadline may get before a
// request moves it: a write to the store a few times an hour per
// session, not one per page.
const touchEvery = time.Minute

type whoKey struct{}

// who is the name of the token the request's session signed in with.
func who(r *http.Request) string {
	name, _ := r.Context().Value(whoKey{}).(string)
	return name
}

// sessionKey is what the store keeps a session under: a digest of the
// cookie, so that reading the store gives nobody a cookie to replay.
func sessionKey(id string) string {
	sum := sha256.Sum256([]byte(id))
	return "web:" + hex.EncodeToString(sum[:])
}

// session returns the request's live session and its store key.
func (h *handler) session(r *http.Request) (store.Session, string, error) {
	c, err := r.Cookie(cookieName)
	if err != nil || c.Value == "" {
		return store.Session{}, "", store.ErrNotFound
	}
	key := sessionKey(c.Value)
	s, err := h.cfg.Sessions.Session(r.Context(), key)
	if err != nil {
		return store.Session{}, key, err
	}
	now := h.now()
	if !s.Live(now) {
		return store.Session{}, key, store.ErrNotFound
	}
	if _, ok := h.cfg.Tokens[s.Who]; !ok {
		// The token was removed from the config since: its sessions end.
		return store.Session{}, key, store.ErrNotFound
	}
	if want := now.Add(h.cfg.SessionIdle); want.Sub(s.IdleUntil) > touchEvery && s.IdleUntil.Before(s.ExpiresAt) {
		if s, err = h.cfg.Sessions.TouchSession(r.Context(), key, want); err != nil {
			return store.Session{}, key, err
		}
	}
	return s, key, nil
}

// signedIn runs next for a request with a live session, noting who it
// is; anyone else is sent to sign in, and back here after.
func (h *handler) signedIn(next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _, err := h.session(r)
		switch {
		case errors.Is(err, store.ErrNotFound):
			to := Prefix + "/sign-in"
			if r.Method == http.MethodGet {
				to += "?next=" + url.QueryEscape(r.URL.RequestURI())
			} else {
				to += "?expired=1"
			}
			http.Redirect(w, r, to, http.StatusSeeOther)
			return
		case err != nil:
			h.log.Error("admin page: the session store failed", "err", err)
			h.renderError(w, r, http.StatusServiceUnavailable, "The session store is not answering",
				"Sessions are kept in the override store, which failed: "+err.Error()+". Try again in a moment; the JSON API with a bearer token does not need sessions.")
			return
		}
		next(w, r.WithContext(context.WithValue(r.Context(), whoKey{}, s.Who)))
	})
}

type signInView struct {
	Next    string
	Error   string
	Message string
}

func (h *handler) signInPage(w http.ResponseWriter, r *http.Request) {
	v := signInView{Next: safeNext(r.URL.Query().Get("next"))}
	switch {
	case r.URL.Query().Has("expired"):
		v.Message = "Your session has ended. Sign in again; the change you were making was not saved."
	case r.URL.Query().Has("out"):
		v.Message = "Signed out."
	}
	h.render(w, r, http.StatusOK, "signin", page{Title: "Sign in", Data: v})
}

// signIn starts a session for a correct token, under a new ID whatever
// cookie came with the request, so that an ID planted before sign-in is
// worth nothing after it.
func (h *handler) signIn(w http.ResponseWriter, r *http.Request) {
	next := safeNext(r.PostFormValue("next"))
	if !h.limiter.allow(peerAddr(r), h.now()) {
		w.Header().Set("Retry-After", "10")
		h.log.Warn("admin page: sign-in attempts limited", "peer", r.RemoteAddr)
		h.render(w, r, http.StatusTooManyRequests, "signin", page{Title: "Sign in",
			Data: signInView{Next: next, Error: "Too many sign-in attempts. Wait a few seconds, then try again."}})
		return
	}
	name := h.tokenName(r.PostFormValue("token"))
	if name == "" {
		h.log.Warn("admin page: sign-in with a wrong token", "peer", r.RemoteAddr)
		h.render(w, r, http.StatusUnauthorized, "signin", page{Title: "Sign in",
			Data: signInView{Next: next, Error: "That is not an admin token. Paste the whole token, as the API takes it."}})
		return
	}
	if old, err := r.Cookie(cookieName); err == nil && old.Value != "" {
		_ = h.cfg.Sessions.DeleteSession(r.Context(), sessionKey(old.Value))
	}
	id := newSessionID()
	now := h.now()
	s := store.Session{Who: name, CreatedAt: now.UTC(), IdleUntil: now.Add(h.cfg.SessionIdle).UTC(), ExpiresAt: now.Add(h.cfg.SessionMax).UTC()}
	if err := h.cfg.Sessions.CreateSession(r.Context(), sessionKey(id), s); err != nil {
		h.log.Error("admin page: cannot store a session", "err", err)
		h.render(w, r, http.StatusServiceUnavailable, "signin", page{Title: "Sign in",
			Data: signInView{Next: next, Error: "Signed-in sessions are kept in the override store, which failed: " + err.Error() + ". Try again in a moment."}})
		return
	}
	h.log.Info("admin page: signed in", "who", name, "peer", r.RemoteAddr)
	http.SetCookie(w, h.cookie(id, int(h.cfg.SessionMax/time.Second)))
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// signOut ends the session in the store, on every replica, and drops
// the cookie.
func (h *handler) signOut(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(cookieName); err == nil && c.Value != "" {
		if err := h.cfg.Sessions.DeleteSession(r.Context(), sessionKey(c.Value)); err != nil {
			h.log.Error("admin page: cannot end a session", "err", err)
			h.renderError(w, r, http.StatusServiceUnavailable, "Not signed out",
				"The session store failed: "+err.Error()+". The session is still valid; try again in a moment.")
			return
		}
	}
	http.SetCookie(w, h.cookie("", -1))
	http.Redirect(w, r, Prefix+"/sign-in?out=1", http.StatusSeeOther)
}

func (h *handler) cookie(value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: cookieName, Value: value, Path: Prefix, MaxAge: maxAge,
		HttpOnly: true, Secure: h.cfg.TLS, SameSite: http.SameSiteStrictMode}
}

// tokenName is the name of the token given, or "". Every token is
// compared, in constant time, so that timing tells nothing of which one
// came close.
func (h *handler) tokenName(got string) string {
	got = strings.TrimSpace(got)
	name := ""
	for _, t := range h.tokens {
		if subtle.ConstantTimeCompare([]byte(got), t.token) == 1 {
			name = t.name
		}
	}
	return name
}

func newSessionID() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// safeNext is where to go after sign-in: a page of ours, never another
// site ("//evil.example", "/\evil.example").
func safeNext(next string) string {
	if !strings.HasPrefix(next, Prefix+"/") || strings.ContainsAny(next, "\\\r\n") ||
		strings.HasPrefix(next, Prefix+"/sign-") {
		return Prefix + "/overrides"
	}
	return next
}

func peerAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// limiter limits sign-in attempts per address, and all of them together
// to ten times that, so that many addresses guessing at once are slowed
// too. It forgets addresses when it holds too many: an attacker with
// that many is held by the overall limit.
type limiter struct {
	mu     sync.Mutex
	every  rate.Limit
	burst  int
	all    *rate.Limiter
	byAddr map[string]*rate.Limiter
}

const maxLimited = 10_000

func newLimiter(every rate.Limit, burst int) *limiter {
	return &limiter{every: every, burst: burst, all: rate.NewLimiter(every*10, burst*10), byAddr: map[string]*rate.Limiter{}}
}

func (l *limiter) allow(addr string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.byAddr[addr]
	if !ok {
		if len(l.byAddr) >= maxLimited {
			clear(l.byAddr)
		}
		lim = rate.NewLimiter(l.every, l.burst)
		l.byAddr[addr] = lim
	}
	return lim.AllowN(now, 1) && l.all.AllowN(now, 1)
}
