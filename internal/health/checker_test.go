package health

import (
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// A fault breaks a fake registry in one way: for a single probe (once,
// where the fault allows it), for every probe, and heals it again.
type fault struct {
	name    string
	class   string // of the failures it causes
	reason  string // in their Err
	tls     bool   // the fake serves HTTPS with a certificate the checker trusts
	once    func(*tlsFake)
	breakIt func(*testing.T, *tlsFake)
	heal    func(*testing.T, *tlsFake)
}

// tlsFake is a fake whose TLS handshakes can be made to present a
// certificate nobody trusts, and which can stop listening and start
// again on the same address.
type tlsFake struct {
	*fake
	addr      string
	badCerts  atomic.Int64 // handshakes left to present the bad certificate; < 0: all
	bad       tls.Certificate
	plainText bool
}

func newTLSFake(t *testing.T, useTLS bool) *tlsFake {
	f := &tlsFake{fake: &fake{def: status(http.StatusOK)}, plainText: !useTLS}
	f.srv = httptest.NewUnstartedServer(f.fake)
	if useTLS {
		f.bad = selfSigned(t)
		f.srv.TLS = &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			for {
				n := f.badCerts.Load()
				if n == 0 {
					return nil, nil // the server's own, trusted, certificate
				}
				if n < 0 || f.badCerts.CompareAndSwap(n, n-1) {
					return &tls.Config{Certificates: []tls.Certificate{f.bad}}, nil
				}
			}
		}}
		quiet(f.srv)
		f.srv.StartTLS()
	} else {
		f.srv.Start()
	}
	f.addr = f.srv.Listener.Addr().String()
	t.Cleanup(func() { f.srv.Close() })
	return f
}

// restart listens again on the same address after a stop.
func (f *tlsFake) restart(t *testing.T) {
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		t.Fatalf("listening again on %s: %v", f.addr, err)
	}
	srv := httptest.NewUnstartedServer(f.fake)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	f.srv = srv
	t.Cleanup(srv.Close)
}

func httpFault(name, class, reason string, h http.HandlerFunc) fault {
	return fault{
		name: name, class: class, reason: reason,
		once:    func(f *tlsFake) { f.then(h) },
		breakIt: func(_ *testing.T, f *tlsFake) { f.always(h) },
		heal:    func(_ *testing.T, f *tlsFake) { f.always(status(http.StatusOK)) },
	}
}

func faults() []fault {
	return []fault{
		httpFault("500", ClassStatus, "unexpected status 500 Internal Server Error (expected 200, 401 with a Basic or Bearer challenge)", status(500)),
		httpFault("timeout", ClassTimeout, "no answer within 250ms (waiting for the answer)", hang),
		httpFault("bare 401", ClassChallenge, "401 without a WWW-Authenticate challenge", status(401)),
		httpFault("401 Negotiate", ClassChallenge, `401 with challenge "Negotiate", not Basic or Bearer`, challenge(401, "Negotiate")),
		httpFault("redirect not followed", ClassStatus, "unexpected status 302 Found", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		}),
		httpFault("connection cut", ClassProtocol, "EOF", cutOff),
		{
			name: "refused", class: ClassConnect, reason: "connection refused",
			breakIt: func(_ *testing.T, f *tlsFake) { f.srv.Close() },
			heal:    func(t *testing.T, f *tlsFake) { f.restart(t) },
		},
		{
			name: "self-signed certificate", class: ClassTLS, reason: "bad certificate: tls: failed to verify certificate: x509: certificate signed by unknown authority",
			tls:     true,
			once:    func(f *tlsFake) { f.badCerts.Store(1) },
			breakIt: func(_ *testing.T, f *tlsFake) { f.badCerts.Store(-1) },
			heal:    func(_ *testing.T, f *tlsFake) { f.badCerts.Store(0) },
		},
	}
}

// TestDownAfterFallUpAfterRise breaks a registry in each way the issue
// names: a single failure changes nothing, fall failures in a row take
// it down, rise successes bring it back, and each probe's class says
// what went wrong.
func TestDownAfterFallUpAfterRise(t *testing.T) {
	t.Parallel()
	for _, ft := range faults() {
		t.Run(ft.name, func(t *testing.T) {
			t.Parallel()
			f := newTLSFake(t, ft.tls)
			s := fast()
			cfg := Config{Targets: []Target{{Name: "a", URL: f.srv.URL, Settings: s}}}
			if ft.tls {
				cfg.RootCAs = pool(f.srv)
			}
			c := start(t, cfg)

			waitFor(t, c, "confirmed up", func(s Status) bool { r := reg(t, s, "a"); return r.Confirmed && r.Up })

			if ft.once != nil {
				ft.once(f)
				st := waitFor(t, c, "past a single failure", func(s Status) bool {
					rs := reg(t, s, "a").Results
					for i, res := range rs {
						if !res.OK {
							return len(rs)-i > 3 // and three more probes after it
						}
					}
					return false
				})
				if r := reg(t, st, "a"); !r.Up || r.Transitions != 0 {
					t.Fatalf("one failure changed the state:\n%s", dump(st))
				}
			}

			ft.breakIt(t, f)
			st := waitFor(t, c, "down", func(s Status) bool { return !reg(t, s, "a").Up })
			r := reg(t, st, "a")
			checkStreak(t, r, s.Fall, false)
			if r.ErrorClass != ft.class || !strings.Contains(r.LastError, ft.reason) {
				t.Errorf("last error: class %q, %q; want class %q, containing %q", r.ErrorClass, r.LastError, ft.class, ft.reason)
			}
			if !r.Confirmed || r.Transitions != 1 {
				t.Errorf("down: confirmed %v, transitions %d; want true, 1", r.Confirmed, r.Transitions)
			}

			ft.heal(t, f)
			st = waitFor(t, c, "up again", func(s Status) bool { return reg(t, s, "a").Up })
			r = reg(t, st, "a")
			checkStreak(t, r, s.Rise, true)
			if r.Transitions != 2 {
				t.Errorf("transitions: %d, want 2", r.Transitions)
			}
			if r.LastErrorAt.IsZero() || r.LastErrorAt.After(r.Since) {
				t.Errorf("the last error (at %v) should be kept after recovery (at %v)", r.LastErrorAt, r.Since)
			}
		})
	}
}

// checkStreak checks that the registry's last change came with exactly
// n results of the new state in a row: the one at Since, the n-1
// before it, and before those one of the old state.
func checkStreak(t *testing.T, r RegistryStatus, n int, ok bool) {
	t.Helper()
	at := -1
	for i, res := range r.Results {
		if res.At.Equal(r.Since) {
			at = i
		}
	}
	if at < 0 {
		t.Fatalf("no result at the state change (%v):\n%s", r.Since, dump(Status{Registries: []RegistryStatus{r}}))
	}
	var streak []Result
	for _, res := range r.Results[:at+1] {
		if res.Class == ClassThrottled {
			continue
		}
		streak = append(streak, res)
	}
	if len(streak) < n+1 {
		t.Fatalf("history too short to see the streak of %d before %v:\n%s", n, r.Since, dump(Status{Registries: []RegistryStatus{r}}))
	}
	for i, res := range streak[len(streak)-n-1:] {
		if want := ok == (i > 0); res.OK != want {
			t.Fatalf("changed to up=%v after other than %d results of that kind in a row:\n%s", ok, n, dump(Status{Registries: []RegistryStatus{r}}))
		}
	}
}

// TestThrottled: a 429 is the prober being throttled, not clients being
// refused. It changes no state, counts toward neither rise nor fall nor
// breaks a run of them, and its Retry-After is honoured.
func TestThrottled(t *testing.T) {
	t.Parallel()
	tooMany := status(http.StatusTooManyRequests)
	t.Run("up stays up", func(t *testing.T) {
		t.Parallel()
		f := newFake(t)
		f.always(tooMany)
		c := start(t, Config{Targets: []Target{{Name: "a", URL: f.srv.URL, Settings: fast()}}})
		st := waitFor(t, c, "six throttled probes", func(s Status) bool { return len(reg(t, s, "a").Results) >= 6 })
		r := reg(t, st, "a")
		if !r.Up || r.Confirmed || r.Transitions != 0 || r.LastError != "" {
			t.Fatalf("429s changed the state:\n%s", dump(st))
		}
		for _, res := range r.Results {
			if res.Class != ClassThrottled || res.OK {
				t.Fatalf("a 429 should be recorded as throttled:\n%s", dump(st))
			}
		}
		// Throttled is a request to slow down: never the fast interval.
		reqs := f.log()
		for i := 1; i < len(reqs); i++ {
			if gap := reqs[i].at.Sub(reqs[i-1].at); gap < fast().Interval*9/10 {
				t.Fatalf("probe %d came %v after a 429; want at least the interval less jitter (%v)", i, gap, fast().Interval*9/10)
			}
		}
	})
	t.Run("down stays down", func(t *testing.T) {
		t.Parallel()
		f := newFake(t)
		f.always(status(500))
		c := start(t, Config{Targets: []Target{{Name: "a", URL: f.srv.URL, Settings: fast()}}})
		waitFor(t, c, "down", func(s Status) bool { return !reg(t, s, "a").Up })
		f.always(tooMany)
		st := waitFor(t, c, "three throttled probes", func(s Status) bool {
			n := 0
			for _, res := range reg(t, s, "a").Results {
				if res.Class == ClassThrottled {
					n++
				}
			}
			return n >= 3
		})
		if r := reg(t, st, "a"); r.Up || r.Transitions != 1 || r.ErrorClass != ClassStatus {
			t.Fatalf("429s changed the state of a down registry:\n%s", dump(st))
		}
	})
	t.Run("runs of failures and successes go on through it", func(t *testing.T) {
		t.Parallel()
		f := newFake(t)
		// fall 3: down at the third 500 though 429s came between;
		// rise 2: up at the second 200 though a 429 came between.
		f.then(status(200), status(500), status(500), tooMany, tooMany, status(500),
			status(200), tooMany, status(200))
		c := start(t, Config{Targets: []Target{{Name: "a", URL: f.srv.URL, Settings: fast()}}})
		st := waitFor(t, c, "down and up again", func(s Status) bool { return reg(t, s, "a").Transitions == 2 })
		r := reg(t, st, "a")
		if len(r.Results) < 9 {
			t.Fatalf("fewer results than requests:\n%s", dump(st))
		}
		if !r.Up || !r.Since.Equal(r.Results[8].At) {
			t.Fatalf("want up since the 9th result:\n%s", dump(st))
		}
		// And down at the 6th, whose class is kept as the last error.
		if !r.LastErrorAt.Equal(r.Results[5].At) || r.ErrorClass != ClassStatus {
			t.Fatalf("want the last error at the 6th result:\n%s", dump(st))
		}
	})
	for _, tt := range []struct {
		name  string
		value func() string
		least time.Duration
	}{
		// The next probe comes no sooner than asked: a lower bound, not a
		// measure of speed.
		{"Retry-After in seconds", func() string { return "1" }, time.Second},
		// An HTTP date has whole seconds: 2 s ahead, cut to the second,
		// is still more than 1 s after the request that got it.
		{"Retry-After as a date", func() string { return time.Now().Add(2 * time.Second).UTC().Format(http.TimeFormat) }, time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t)
			f.then(status(200), func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Retry-After", tt.value())
				w.WriteHeader(http.StatusTooManyRequests)
			})
			c := start(t, Config{Targets: []Target{{Name: "a", URL: f.srv.URL, Settings: fast()}}})
			st := waitFor(t, c, "a probe after the 429", func(s Status) bool { return len(reg(t, s, "a").Results) >= 3 })
			reqs := f.log()
			if gap := reqs[2].at.Sub(reqs[1].at); gap < tt.least {
				t.Fatalf("the probe after a 429 with Retry-After %s came after %v; want at least %v", tt.value(), gap, tt.least)
			}
			r := reg(t, st, "a")
			if !r.Up || r.Transitions != 0 {
				t.Fatalf("the 429 changed the state:\n%s", dump(st))
			}
			if res := r.Results[1]; res.Class != ClassThrottled || !strings.Contains(res.Err, "Retry-After 1s") && !strings.Contains(res.Err, "Retry-After 2s") {
				t.Errorf("the 429's result should say throttled and when to retry: %+v", res)
			}
		})
	}
}

// TestIntermittent: a registry that fails one probe in three never
// gets fall failures in a row, so it never moves, however long it
// goes on.
func TestIntermittent(t *testing.T) {
	t.Parallel()
	for _, fall := range []int{2, 3} {
		t.Run("fall "+strconv.Itoa(fall), func(t *testing.T) {
			t.Parallel()
			var n atomic.Int64
			f := newFake(t)
			f.always(func(w http.ResponseWriter, _ *http.Request) {
				if n.Add(1)%3 == 0 {
					w.WriteHeader(500)
				}
			})
			s := fast()
			s.Fall = fall
			c := start(t, Config{Targets: []Target{{Name: "a", URL: f.srv.URL, Settings: s}}})
			st := waitFor(t, c, "15 probes", func(s Status) bool { return len(reg(t, s, "a").Results) >= 15 })
			r := reg(t, st, "a")
			fails := 0
			for _, res := range r.Results {
				if !res.OK {
					fails++
				}
			}
			if fails < 4 {
				t.Fatalf("only %d failures in %d probes: the fake did not fail one in three", fails, len(r.Results))
			}
			if !r.Up || r.Transitions != 0 {
				t.Fatalf("an intermittent registry moved:\n%s", dump(st))
			}
		})
	}
}
