package health

import (
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// A fault breaks a fake registry in one way: for a single probe (once,
// where the fault allows it), for every probe, and heals it again.
type fault struct {
	name     string
	class    string // of the failures it causes
	reason   string // in their Err
	tls      bool   // the fake serves HTTPS with a certificate the checker trusts
	settings func(*Settings)
	once     func(*tlsFake)
	breakIt  func(*testing.T, *tlsFake)
	heal     func(*testing.T, *tlsFake)
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
	timeout := httpFault("timeout", ClassTimeout, "no answer within 50ms (waiting for the answer)", hang)
	timeout.settings = func(s *Settings) { s.Timeout = 50 * time.Millisecond }
	return []fault{
		httpFault("500", ClassStatus, "unexpected status 500 Internal Server Error (expected 200, 401 with a Basic or Bearer challenge)", status(500)),
		timeout,
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
			if ft.settings != nil {
				ft.settings(&s)
			}
			cfg := Config{Targets: []Target{{Name: "a", URL: f.srv.URL, Settings: s}}}
			if ft.tls {
				cfg.RootCAs = pool(f.srv)
			}
			c := start(t, cfg)

			st := waitFor(t, c, "confirmed up", func(s Status) bool { return reg(t, s, "a").Confirmed })
			if r := reg(t, st, "a"); !r.Up || len(r.Results) == 0 || !r.Results[0].OK {
				t.Fatalf("confirmed, but not by a first successful probe:\n%s", dump(st))
			}

			if ft.once != nil {
				ft.once(f)
				st = waitFor(t, c, "past a single failure", func(s Status) bool {
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
			st = waitFor(t, c, "down", func(s Status) bool { return !reg(t, s, "a").Up })
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
