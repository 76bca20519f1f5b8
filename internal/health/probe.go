package health

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The classes of a probe result, in Result.Class, LastErrorClass and the
// class label of reghost_registry_probe_errors_total.
const (
	ClassDNS       = "dns"       // the registry's name did not resolve
	ClassConnect   = "connect"   // TCP failed: refused, unreachable, reset while connecting
	ClassTimeout   = "timeout"   // no answer within Timeout (Err says at which step)
	ClassTLS       = "tls"       // the handshake or the certificate failed verification
	ClassProxy     = "proxy"     // the proxy could not be reached or refused the tunnel
	ClassStatus    = "status"    // an answer with a status code not in Expect
	ClassChallenge = "challenge" // a 401 without a Basic or Bearer challenge
	ClassProtocol  = "protocol"  // connected, but the answer was cut off or not HTTP
	ClassThrottled = "throttled" // a 429: neither a success nor a failure
)

const (
	// maxBody is as much of an answer as a probe reads: enough to let a
	// registry finish writing a small /v2/ answer, never a large object
	// that a misconfigured path might point at.
	maxBody = 4 << 10

	// maxHeaderBytes bounds the answer's header for the same reason.
	maxHeaderBytes = 64 << 10

	// maxRetryAfter caps a 429's Retry-After, so that a registry that
	// asks for an hour is still looked at every few minutes; its state
	// meanwhile stays what it was.
	maxRetryAfter = 5 * time.Minute
)

// prober probes one registry. Its transport keeps no connection between
// probes, so that every probe resolves, connects and verifies the
// certificate again: a probe that reused a connection would report a
// registry up after its name, address or certificate had gone bad.
type prober struct {
	url       string // scheme://host[:port] + Settings.Path
	https     bool
	settings  Settings
	userAgent string
	transport *http.Transport
}

func newProber(t Target, s Settings, cfg *Config) (*prober, error) {
	u, err := url.Parse(t.URL)
	if err != nil {
		return nil, fmt.Errorf("registry %s: url: %w", t.Name, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || u.Opaque != "" {
		return nil, fmt.Errorf("registry %s: url: must be http:// or https:// with a host, got %q", t.Name, t.URL)
	}
	if u.User != nil {
		return nil, fmt.Errorf("registry %s: url: must not carry credentials", t.Name)
	}
	proxy := cfg.Proxy
	if proxy == nil {
		proxy = http.ProxyFromEnvironment
	}
	tr := &http.Transport{
		Proxy: func(r *http.Request) (*url.URL, error) {
			u, err := proxy(r)
			pt := traceFrom(r.Context())
			if err != nil {
				return nil, &proxyError{err: err}
			}
			if u != nil && pt != nil {
				pt.set(func(pt *probeTrace) { pt.proxy = u.Redacted() })
			}
			return u, nil
		},
		// The probe's context bounds everything; these only stop a dial
		// that net/http detached from it from outliving the probe by long.
		DialContext:         (&net.Dialer{Timeout: s.Timeout, Resolver: cfg.resolver}).DialContext,
		TLSHandshakeTimeout: s.Timeout,
		TLSClientConfig:     &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12},
		OnProxyConnectResponse: func(ctx context.Context, proxyURL *url.URL, _ *http.Request, resp *http.Response) error {
			if resp.StatusCode != http.StatusOK {
				return &proxyError{err: fmt.Errorf("CONNECT answered %s", resp.Status)}
			}
			if pt := traceFrom(ctx); pt != nil {
				pt.set(func(pt *probeTrace) { pt.tunnel = true })
			}
			return nil
		},
		DisableKeepAlives: true,
		// Without this net/http asks for gzip and would inflate the body,
		// and maxBody would no longer bound what crosses the network.
		DisableCompression:     true,
		MaxResponseHeaderBytes: maxHeaderBytes,
	}
	return &prober{
		url:       u.Scheme + "://" + u.Host + s.Path,
		https:     u.Scheme == "https",
		settings:  s,
		userAgent: "reghost-healthcheck/" + cfg.Version,
		transport: tr,
	}, nil
}

// outcome is a probe's result with what only the scheduler needs.
type outcome struct {
	Result
	retryAfter time.Duration // from a 429's Retry-After, capped
}

// probe requests the registry once. A result for a probe cut short by
// ctx (shutdown) means nothing; the caller drops it.
func (p *prober) probe(ctx context.Context) outcome {
	ctx, cancel := context.WithTimeout(ctx, p.settings.Timeout)
	defer cancel()
	pt := &probeTrace{}
	ctx = httptrace.WithClientTrace(context.WithValue(ctx, traceKey{}, pt), pt.clientTrace())

	start := time.Now()
	o := p.do(ctx, pt)
	o.At = time.Now()
	o.Latency = o.At.Sub(start)
	o.OK = o.Class == ""
	o.Addr = pt.addrPort()
	return o
}

func (p *prober) do(ctx context.Context, pt *probeTrace) outcome {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url, nil)
	if err != nil {
		return outcome{Result: Result{Class: ClassProtocol, Err: err.Error()}}
	}
	req.Header.Set("User-Agent", p.userAgent)
	req.Header.Set("Accept", "application/json, */*")
	// RoundTrip, not a Client: it follows no redirects, so a 3xx is
	// judged like any other code.
	resp, err := p.transport.RoundTrip(req)
	if err != nil {
		return p.failure(err, pt)
	}
	defer resp.Body.Close()
	var o outcome
	o.Status = resp.StatusCode
	o.Class, o.Err = p.judge(resp)
	if o.Class == ClassThrottled {
		o.retryAfter = retryAfter(resp.Header.Get("Retry-After"), time.Now())
		if o.retryAfter > 0 {
			o.Err += fmt.Sprintf("; Retry-After %v", o.retryAfter.Round(time.Second))
		}
	}
	// Reading a little lets a healthy registry finish its answer; a read
	// that fails counts only when the status alone would have passed.
	if _, err := io.CopyN(io.Discard, resp.Body, maxBody); err != nil && err != io.EOF && o.Class == "" {
		f := p.failure(err, pt)
		o.Class, o.Err = f.Class, f.Err
	}
	return o
}

// judge returns the class of an answer and why, or "" for a healthy one.
func (p *prober) judge(resp *http.Response) (class, reason string) {
	code := resp.StatusCode
	switch {
	case code == http.StatusUnauthorized && p.settings.expects(code):
		if c := resp.Header.Values("WWW-Authenticate"); !registryChallenge(c) {
			if len(c) == 0 {
				return ClassChallenge, "401 without a WWW-Authenticate challenge: not a registry's answer"
			}
			return ClassChallenge, fmt.Sprintf("401 with challenge %q, not Basic or Bearer: not a registry's answer", truncate(strings.Join(c, ", "), 80))
		}
		return "", ""
	case p.settings.expects(code):
		return "", ""
	case code == http.StatusTooManyRequests:
		return ClassThrottled, "429: the registry throttles this prober"
	case code == http.StatusProxyAuthRequired:
		return ClassProxy, "407: the proxy wants credentials"
	default:
		return ClassStatus, fmt.Sprintf("unexpected status %s (expected %s)", statusText(code), codes(p.settings.Expect))
	}
}

// registryChallenge reports whether a 401's WWW-Authenticate values hold
// a Basic or Bearer challenge, as every registry's API root sends.
// Values may hold several challenges separated by commas, among the
// auth-params, which are name=value and so never a bare scheme token.
func registryChallenge(values []string) bool {
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			scheme, _, _ := strings.Cut(strings.TrimSpace(part), " ")
			if strings.EqualFold(scheme, "Bearer") || strings.EqualFold(scheme, "Basic") {
				return true
			}
		}
	}
	return false
}

// retryAfter reads a Retry-After value, delay-seconds or an HTTP date,
// relative to now; 0 when absent or unreadable.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.ParseUint(v, 10, 32); err == nil {
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}

// failure classifies a transport error by what it is and, where its type
// does not say, by how far the probe got.
func (p *prober) failure(err error, pt *probeTrace) outcome {
	t := pt.snapshot()
	class, reason := ClassProtocol, err.Error()
	var (
		pe   *proxyError
		op   *net.OpError
		dns  *net.DNSError
		netE net.Error
	)
	switch {
	case errors.As(err, &pe) || errors.As(err, &op) && op.Op == "proxyconnect":
		class, reason = ClassProxy, t.proxyName()+": "+err.Error()
	case t.proxy != "" && p.https && !t.tunnel && !t.gotConn:
		// The tunnel was never opened: whatever went wrong went wrong
		// at the proxy, even a timeout.
		class, reason = ClassProxy, t.proxyName()+": no tunnel to the registry: "+err.Error()
	case errors.As(err, &dns):
		class = ClassDNS
	case certificateError(err):
		class, reason = ClassTLS, "bad certificate: "+err.Error()
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &netE) && netE.Timeout():
		class, reason = ClassTimeout, fmt.Sprintf("no answer within %v (%s)", p.settings.Timeout, t.step())
	case t.tlsErr != nil:
		class = ClassTLS
	case !t.connected:
		class = ClassConnect
	}
	return outcome{Result: Result{Class: class, Err: reason}}
}

// certificateError reports whether err is a failed verification of the
// registry's certificate (not a handshake that failed for other reasons).
func certificateError(err error) bool {
	var (
		verr *tls.CertificateVerificationError
		ua   x509.UnknownAuthorityError
		ci   x509.CertificateInvalidError
		hn   x509.HostnameError
	)
	return errors.As(err, &verr) || errors.As(err, &ua) || errors.As(err, &ci) || errors.As(err, &hn)
}

// proxyError marks an error as the proxy's: its function failed, or it
// refused the CONNECT.
type proxyError struct{ err error }

func (e *proxyError) Error() string { return e.err.Error() }
func (e *proxyError) Unwrap() error { return e.err }

type traceKey struct{}

func traceFrom(ctx context.Context) *probeTrace {
	pt, _ := ctx.Value(traceKey{}).(*probeTrace)
	return pt
}

// probeTrace is how far a probe got. net/http calls its hooks from the
// goroutine that dials as well as from the probe's, and the dial may
// still be running when the probe has given up, hence the lock.
type probeTrace struct {
	mu sync.Mutex
	probeSteps
}

type probeSteps struct {
	proxy                   string // the proxy's URL, redacted; "" when direct
	dnsStarted, dnsDone     bool
	connectStarted          bool
	connected               bool // a TCP connection (to the registry or the proxy) was made
	addr                    string
	tunnel                  bool // the proxy answered the CONNECT with 200
	tlsStarted, tlsDone     bool
	tlsErr                  error
	gotConn, wroteRequest   bool
	gotFirstByte            bool
	connectAddr, remoteAddr string
}

func (pt *probeTrace) set(f func(*probeTrace)) {
	pt.mu.Lock()
	defer pt.mu.Unlock()
	f(pt)
}

func (pt *probeTrace) snapshot() probeSteps {
	pt.mu.Lock()
	defer pt.mu.Unlock()
	return pt.probeSteps
}

func (pt *probeTrace) clientTrace() *httptrace.ClientTrace {
	return &httptrace.ClientTrace{
		DNSStart: func(httptrace.DNSStartInfo) { pt.set(func(pt *probeTrace) { pt.dnsStarted = true }) },
		DNSDone:  func(httptrace.DNSDoneInfo) { pt.set(func(pt *probeTrace) { pt.dnsDone = true }) },
		ConnectStart: func(_, addr string) {
			pt.set(func(pt *probeTrace) { pt.connectStarted, pt.addr = true, addr })
		},
		ConnectDone: func(_, addr string, err error) {
			if err == nil {
				pt.set(func(pt *probeTrace) { pt.connected, pt.connectAddr = true, addr })
			}
		},
		TLSHandshakeStart: func() { pt.set(func(pt *probeTrace) { pt.tlsStarted = true }) },
		TLSHandshakeDone: func(_ tls.ConnectionState, err error) {
			pt.set(func(pt *probeTrace) { pt.tlsDone, pt.tlsErr = true, err })
		},
		GotConn: func(info httptrace.GotConnInfo) {
			pt.set(func(pt *probeTrace) { pt.gotConn, pt.remoteAddr = true, info.Conn.RemoteAddr().String() })
		},
		WroteRequest:         func(httptrace.WroteRequestInfo) { pt.set(func(pt *probeTrace) { pt.wroteRequest = true }) },
		GotFirstResponseByte: func() { pt.set(func(pt *probeTrace) { pt.gotFirstByte = true }) },
	}
}

// addrPort is the address the probe connected to, or last tried to:
// the registry's, or the proxy's when it went through one.
func (pt *probeTrace) addrPort() netip.AddrPort {
	t := pt.snapshot()
	for _, s := range []string{t.remoteAddr, t.connectAddr, t.addr} {
		if ap, err := netip.ParseAddrPort(s); err == nil {
			return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		}
	}
	return netip.AddrPort{}
}

func (t probeSteps) proxyName() string {
	if t.proxy == "" {
		return "proxy"
	}
	return "proxy " + t.proxy
}

// step says where a probe that ran out of time was.
func (t probeSteps) step() string {
	switch {
	case t.gotFirstByte:
		return "reading the answer"
	case t.wroteRequest:
		return "waiting for the answer"
	case t.gotConn:
		return "sending the request"
	case t.tlsStarted && !t.tlsDone:
		return "in the TLS handshake"
	case t.proxy != "" && t.connected:
		return "waiting for the proxy"
	case t.connectStarted && !t.connected:
		return "connecting to " + t.addr
	case t.dnsStarted && !t.dnsDone:
		return "resolving the name"
	default:
		return "connecting"
	}
}

func statusText(code int) string {
	if t := http.StatusText(code); t != "" {
		return strconv.Itoa(code) + " " + t
	}
	return strconv.Itoa(code)
}

func codes(cs []int) string {
	s := make([]string, len(cs))
	for i, c := range cs {
		s[i] = strconv.Itoa(c)
		if c == http.StatusUnauthorized {
			s[i] += " with a Basic or Bearer challenge"
		}
	}
	return strings.Join(s, ", ")
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
