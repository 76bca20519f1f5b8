package health

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// The defaults, as Envoy's and HAProxy's active checks would be set for a
// registry that is far away and shared with others: a probe every 10 s,
// 1 s while a change is being confirmed, 2 s to answer.
const (
	DefaultPath         = "/v2/"
	DefaultInterval     = 10 * time.Second
	DefaultFastInterval = 1 * time.Second
	DefaultTimeout      = 2 * time.Second
	DefaultRise         = 2
	DefaultFall         = 3

	// DefaultPanicThreshold is the share of probed registries that must
	// be up for health to count in routing (see Config.PanicThreshold).
	DefaultPanicThreshold = 0.5

	// MinInterval is the shortest interval or fast_interval allowed.
	// Every replica probes every registry, so a registry sees
	// replicas/interval probes a second: at 100 ms ten replicas already
	// send it 100, the rate at which public registries start throttling
	// or blocking a client. Shorter is also less than one probe of a
	// registry on another continent takes (DNS, TCP, TLS and the request
	// are several round trips), and probes of a registry never overlap,
	// so the state would be no fresher.
	MinInterval = 100 * time.Millisecond
)

// Settings are one registry's probe settings. A zero field takes its
// default (see WithDefaults), so the same type holds a config file's
// health_defaults, a registry's own health block, and the two layered.
type Settings struct {
	// Disabled: the registry is never probed, always counts as up, and
	// is left out of the panic threshold's share.
	Disabled bool

	// Path is requested on the registry's API root, scheme://host[:port],
	// whatever repository prefix its URL has; it may carry a query.
	Path string

	// Expect lists the status codes that mean healthy. A 401 counts only
	// with a Basic or Bearer challenge (WWW-Authenticate), even when
	// listed: a bare 401 is what an authenticating proxy or a host that
	// is no registry answers, while a registry that asks for a token is
	// alive. A 429 is never a failure (see the package comment).
	Expect []int

	// Interval is the time between probes while results agree with the
	// registry's state; each wait is jittered by ±10% so that replicas
	// started together do not probe together.
	Interval time.Duration

	// FastInterval replaces Interval after a result that disagrees with
	// the state, until the state changes or a result agrees again, so
	// that a change is confirmed in about fall × fast_interval.
	FastInterval time.Duration

	// Timeout bounds one probe: connecting (DNS, TCP, TLS, proxy), the
	// request and the first few KB of the answer.
	Timeout time.Duration

	// Rise is how many successes in a row bring a down registry back;
	// Fall how many failures in a row take an up registry down.
	Rise, Fall int
}

// DefaultSettings returns the defaults, for the bottom layer of
// WithDefaults.
func DefaultSettings() Settings {
	return Settings{
		Path:         DefaultPath,
		Expect:       []int{200, 401},
		Interval:     DefaultInterval,
		FastInterval: DefaultFastInterval,
		Timeout:      DefaultTimeout,
		Rise:         DefaultRise,
		Fall:         DefaultFall,
	}
}

// WithDefaults returns s with each zero field taken from d, so a config
// layers a registry's settings over health_defaults over
// DefaultSettings():
//
//	reg.WithDefaults(defaults.WithDefaults(health.DefaultSettings()))
//
// Disabled, being a bool, has no "unset": it is true when either layer
// sets it. A config that lets a registry say enabled: true under
// health_defaults' enabled: false resolves that itself (it knows which
// keys were written) and passes the result in s with d.Disabled false.
func (s Settings) WithDefaults(d Settings) Settings {
	s.Disabled = s.Disabled || d.Disabled
	if s.Path == "" {
		s.Path = d.Path
	}
	if len(s.Expect) == 0 {
		s.Expect = slices.Clone(d.Expect)
	} else {
		s.Expect = slices.Clone(s.Expect)
	}
	if s.Interval == 0 {
		s.Interval = d.Interval
	}
	if s.FastInterval == 0 {
		s.FastInterval = d.FastInterval
	}
	if s.Timeout == 0 {
		s.Timeout = d.Timeout
	}
	if s.Rise == 0 {
		s.Rise = d.Rise
	}
	if s.Fall == 0 {
		s.Fall = d.Fall
	}
	return s
}

// FieldError is one problem with one setting. Field is the config key
// (path, expect, interval, fast_interval, timeout, rise, fall), so that a
// config loader can point at the line.
type FieldError struct {
	Field   string
	Problem string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Problem }

// Validate checks complete settings (after WithDefaults): it reports
// every problem, each a *FieldError, joined with errors.Join. Disabled
// settings are checked too, so that enabling them later cannot fail.
func (s Settings) Validate() error { return s.validate(MinInterval) }

// validate is Validate with the interval floor as a parameter: the
// package's tests probe every few tens of milliseconds.
func (s Settings) validate(floor time.Duration) error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Problem: fmt.Sprintf(format, args...)})
	}

	switch u, err := url.ParseRequestURI(s.Path); {
	case s.Path == "":
		bad("path", "must not be empty")
	case !strings.HasPrefix(s.Path, "/") || strings.HasPrefix(s.Path, "//"):
		bad("path", "must be an absolute path such as /v2/, got %q", s.Path)
	case err != nil || u.Host != "" || strings.ContainsAny(s.Path, "# \t"):
		bad("path", "must be a URL path with an optional query, got %q", s.Path)
	}

	if len(s.Expect) == 0 {
		bad("expect", "must list at least one status code")
	}
	for _, code := range s.Expect {
		if code < 100 || code > 599 {
			bad("expect", "%d is not an HTTP status code (100-599)", code)
		}
	}

	if s.Interval < floor {
		bad("interval", "must be at least %v (every replica probes every registry), got %v", floor, s.Interval)
	}
	switch {
	case s.FastInterval < floor:
		bad("fast_interval", "must be at least %v, got %v", floor, s.FastInterval)
	case s.FastInterval > s.Interval:
		bad("fast_interval", "must not be longer than interval (%v), got %v", s.Interval, s.FastInterval)
	}
	switch {
	case s.Timeout <= 0:
		bad("timeout", "must be more than 0, got %v", s.Timeout)
	case s.Timeout > s.Interval:
		bad("timeout", "must not be longer than interval (%v), got %v", s.Interval, s.Timeout)
	}

	if s.Rise < 1 {
		bad("rise", "must be at least 1, got %d", s.Rise)
	}
	if s.Fall < 1 {
		bad("fall", "must be at least 1, got %d", s.Fall)
	}
	return errors.Join(errs...)
}

// expects reports whether code is one of s.Expect.
func (s Settings) expects(code int) bool { return slices.Contains(s.Expect, code) }
