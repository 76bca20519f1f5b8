// Package health checks registries actively, as Envoy's active health
// checks and HAProxy's rise/fall do, and keeps for each one whether it
// is up, so that routing can skip a registry that is down.
//
// # Probes
//
// Every registry whose checks are enabled is probed by its own goroutine,
// one probe at a time: GET scheme://host[:port]/v2/ (Settings.Path; a
// repository prefix in the registry's URL is not part of the API root),
// on a fresh connection each time, so that a name that stopped
// resolving, an address that stopped answering or a certificate that
// expired is seen by the next probe rather than hidden behind a kept-alive
// connection. TLS is verified (Config.RootCAs, else the system's roots);
// the proxy environment is honoured (Config.Proxy, else HTTPS_PROXY and
// friends); redirects are not followed, a 3xx being judged by
// Settings.Expect like any code; at most 4 KB of an answer is read. A
// probe is healthy on a code in Expect (by default 200, and 401 with a
// Basic or Bearer challenge, which is how a registry asking for a token
// answers). A failure has a class (dns, connect, timeout, tls, proxy,
// status, challenge, protocol) and a reason for people.
//
// # State
//
// At start every registry counts as up, unconfirmed: a restart of reghost
// must not move anyone. The first success confirms it at once, but going
// down always takes Fall failures in a row, and coming back Rise
// successes in a row; a single failure changes nothing. A result that
// disagrees with the state switches the registry to FastInterval until
// the state changes or a result agrees again, so a dead registry is left
// within Interval + (Fall-1) × FastInterval and the probes' own time (see
// Tuning), while a healthy one costs one probe per Interval. Intervals are jittered by ±10%. A registry that
// fails one probe in three never goes down with Fall ≥ 2.
//
// A 429 means the prober is throttled, not that clients are refused: it
// changes no state, does not count toward Rise or Fall (nor break a run
// of them), and the next probe waits at least Interval, or Retry-After
// (seconds or an HTTP date, capped at 5 minutes) when that is longer.
//
// # Panic
//
// When fewer than Config.PanicThreshold (default half) of the probed
// registries are up, so many failing at once is more likely reghost's
// own trouble (egress, DNS, a proxy, a CA bundle) than theirs, and
// sending every client to the default registry would make it worse:
// Status and Down report panic, and routing should then ignore health.
// Registries whose checks are disabled count in neither share. Entering
// and leaving panic are logged once each and exported as
// reghost_health_panic.
//
// # Cost to a registry
//
// Every replica probes every registry on its own: a registry receives
// replicas / Interval probes a second in the steady state (10 replicas at
// the default 10 s: one a second), and up to replicas / FastInterval
// while its state is in doubt; all registries together receive
// replicas × registries / Interval. Each probe is a new TCP connection
// and TLS handshake. Public registries throttle and block busy clients,
// which is why Interval and FastInterval have a floor (MinInterval,
// 100 ms) and why a 429 slows probing down rather than marking anything.
//
// # Tuning
//
// A registry that dies is left after its next scheduled probe (within
// Interval) and Fall-1 more at FastInterval, each of which may take up to
// Timeout when the registry stops answering rather than refusing: at
// worst Interval + (Fall-1) × FastInterval + Fall × Timeout, about 18 s
// with the defaults. It is taken back after Interval + (Rise-1) ×
// FastInterval at most. To leave sooner, shorten FastInterval before
// Fall: FastInterval costs probes only while a registry is in doubt,
// while Fall is what keeps a flaky path from moving clients (a run of
// Fall failures must happen by chance for a false alarm). Raise Fall on
// a lossy path; raise Rise for a registry that tends to come back half
// way. Keep Timeout well above the registry's slowest healthy answer.
//
// The panic threshold is a share: with two probed registries one down
// is not panic (half are up) and both down is; with one, its going down
// is always panic, so its probes never move anyone. Lower it (or set
// PanicOff) only when registries failing together is believable, as
// when they share a provider; raise it to distrust mass failures sooner.
//
// # Use
//
// New validates a Config; Run probes until its context is done and
// returns once every goroutine it started has stopped. Status returns a
// copy of everything for the admin API; Down is one atomic load for the
// decision engine's snapshot builder, which Config.OnChange tells when
// something changed. State changes are logged (WARN down, INFO up) with
// the registry, from, to and reason, and counted in Prometheus metrics
// on Config.Registerer: reghost_registry_up, reghost_registry_probe_duration_seconds,
// reghost_registry_transitions_total, reghost_registry_probe_errors_total
// and reghost_health_panic.
package health
