package loader

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpproxy"
)

// HTTPConfig configures downloads.
type HTTPConfig struct {
	// Proxy chooses the proxy for a request; nil: ProxyFromEnv(os.Getenv).
	Proxy func(*http.Request) (*url.URL, error)
	// TLS is the client's TLS configuration; nil: the system's roots.
	TLS *tls.Config
	// IdleTimeout cuts a request that receives nothing for this long,
	// while connecting, waiting for the answer or reading the body;
	// 0: 60 s.
	IdleTimeout time.Duration
	// Attempts is how many times a request is tried when it fails in a way
	// worth retrying (5xx, 408, network errors, stalls); 0: 4. 401, 403,
	// 429 and other 4xx are never retried.
	Attempts int
	// RetryWait is the wait before the first retry, doubled for each
	// further one (with jitter), at most a minute; 0: 2 s.
	RetryWait time.Duration
	// UserAgent is sent with every request; "": "reghost-loader".
	UserAgent string
	// Progress shows downloads as they arrive; nil: log lines only.
	Progress Progress
}

// Progress shows one download: it is called when the body starts, with its
// size (-1 when unknown), and the writer it returns is given every byte as
// it arrives, then closed.
type Progress func(label string, size int64) io.WriteCloser

// ProxyFromEnv is the proxy choice of HTTPS_PROXY, HTTP_PROXY and
// NO_PROXY (or their lower-case forms) as getenv reads them, with the
// rules of net/http's ProxyFromEnvironment; getenv makes it testable.
func ProxyFromEnv(getenv func(string) string) func(*http.Request) (*url.URL, error) {
	env := func(upper string) string {
		return cmp.Or(getenv(upper), getenv(strings.ToLower(upper)))
	}
	pf := (&httpproxy.Config{
		HTTPProxy:  env("HTTP_PROXY"),
		HTTPSProxy: env("HTTPS_PROXY"),
		NoProxy:    env("NO_PROXY"),
		CGI:        getenv("REQUEST_METHOD") != "",
	}).ProxyFunc()
	return func(r *http.Request) (*url.URL, error) { return pf(r.URL) }
}

// StatusError is an HTTP answer other than the one asked for.
type StatusError struct {
	Method, URL string // URL without credentials
	Code        int
	Body        string // the start of the answer's body, for the server's reason
	RetryAfter  time.Duration
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("%s %s: HTTP %d %s", e.Method, e.URL, e.Code, http.StatusText(e.Code))
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

// retryable reports whether trying again may help: 5xx and 408 may pass;
// 401 and 403 will not, and 429 from MaxMind means the day's downloads are
// spent, so asking again only makes it worse.
func (e *StatusError) retryable() bool {
	return e.Code >= 500 || e.Code == http.StatusRequestTimeout
}

// ErrStalled is wrapped by the error of a transfer cut by the idle
// deadline.
var ErrStalled = errors.New("the transfer stalled")

// transientError marks a failure of the connection (not of the content)
// that another attempt may not meet.
type transientError struct{ err error }

func (e *transientError) Error() string { return e.err.Error() }
func (e *transientError) Unwrap() error { return e.err }

func isRetryable(err error) bool {
	if se, ok := errors.AsType[*StatusError](err); ok {
		return se.retryable()
	}
	_, ok := errors.AsType[*transientError](err)
	return ok
}

// fetcher is the HTTP client of every download.
type fetcher struct {
	client    *http.Client
	log       *slog.Logger
	idle      time.Duration
	attempts  int
	wait      time.Duration
	userAgent string
	progress  Progress
}

func newFetcher(cfg HTTPConfig, log *slog.Logger) (*fetcher, error) {
	if cfg.IdleTimeout < 0 || cfg.Attempts < 0 || cfg.RetryWait < 0 {
		return nil, errors.New("loader: negative HTTP timeout, attempts or retry wait")
	}
	proxy := cfg.Proxy
	if proxy == nil {
		proxy = ProxyFromEnv(os.Getenv)
	}
	tr := &http.Transport{
		Proxy:                 proxy,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       cfg.TLS,
		TLSHandshakeTimeout:   15 * time.Second,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          10,
		IdleConnTimeout:       30 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	f := &fetcher{
		client: &http.Client{
			Transport:     &authTransport{base: tr},
			CheckRedirect: checkRedirect,
		},
		log:       log,
		idle:      cmp.Or(cfg.IdleTimeout, 60*time.Second),
		attempts:  cmp.Or(cfg.Attempts, 4),
		wait:      cmp.Or(cfg.RetryWait, 2*time.Second),
		userAgent: cmp.Or(cfg.UserAgent, "reghost-loader"),
		progress:  cfg.Progress,
	}
	return f, nil
}

func (f *fetcher) close() { f.client.CloseIdleConnections() }

// checkRedirect follows up to 10 redirects, never from HTTPS to plain
// HTTP (the data would then arrive unauthenticated).
func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	if via[0].URL.Scheme == "https" && req.URL.Scheme != "https" {
		return fmt.Errorf("refusing a redirect from HTTPS to %s", req.URL.Redacted())
	}
	return nil
}

// credentials are HTTP basic auth for one origin only.
type credentials struct {
	scheme, host string // the origin they are for: scheme and host:port
	user, pass   string
}

type credentialsKey struct{}

// authTransport adds basic auth to a request that goes to the origin the
// credentials (in the request's context) are for, and to no other. They
// are kept out of the request's header on purpose: net/http copies an
// Authorization header to a redirect's target when its host name matches,
// whatever its port, and MaxMind redirects downloads to object storage
// that must never see the license key.
type authTransport struct{ base http.RoundTripper }

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the
// transport underneath.
func (t *authTransport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

func (t *authTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	c, ok := req.Context().Value(credentialsKey{}).(*credentials)
	if ok && strings.EqualFold(req.URL.Host, c.host) && req.URL.Scheme == c.scheme {
		req = req.Clone(req.Context())
		req.SetBasicAuth(c.user, c.pass)
	}
	return t.base.RoundTrip(req)
}

// request is one download.
type request struct {
	method string // "" is GET
	url    string
	auth   *credentials // sent to url's origin only
	header http.Header
	label  string // names the download in logs and the progress bar
	// accept lists the statuses handed to use besides 200 (304 for a
	// conditional GET).
	accept []int
}

// do sends r, trying again when that may help, and hands the answer to
// use, which reads the body. The body is cut when nothing arrives for the
// idle timeout; a body that breaks off is retried from the start like a
// failed request. An error of use's own (the content is wrong) is
// returned at once.
func (f *fetcher) do(ctx context.Context, r request, use func(*http.Response, io.Reader) error) error {
	for attempt := 1; ; attempt++ {
		err := f.once(ctx, r, use)
		if err == nil || !isRetryable(err) || ctx.Err() != nil {
			return err
		}
		if attempt >= f.attempts {
			return fmt.Errorf("%w (gave up after %d attempts)", err, attempt)
		}
		wait := f.backoff(attempt, err)
		f.log.Warn("download failed; trying again", "what", r.label, "attempt", attempt, "in", wait.String(), "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (stopped before trying again: %v)", err, context.Cause(ctx))
		case <-t.C:
		}
	}
}

// backoff is the wait before retry number attempt: RetryWait doubled each
// time, ±20%, at least what a Retry-After asked if that is under a
// minute, and at most a minute.
func (f *fetcher) backoff(attempt int, err error) time.Duration {
	d := f.wait << (attempt - 1)
	if d <= 0 || d > time.Minute {
		d = time.Minute
	}
	d = time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
	if se, ok := errors.AsType[*StatusError](err); ok && se.RetryAfter > d && se.RetryAfter <= time.Minute {
		d = se.RetryAfter
	}
	return d
}

func (f *fetcher) once(parent context.Context, r request, use func(*http.Response, io.Reader) error) error {
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)
	// One timer covers connecting, waiting for the answer and every read
	// of the body: it is pushed back whenever data arrives.
	idle := time.AfterFunc(f.idle, func() { cancel(ErrStalled) })
	defer idle.Stop()
	if r.auth != nil {
		ctx = context.WithValue(ctx, credentialsKey{}, r.auth)
	}
	req, err := http.NewRequestWithContext(ctx, cmp.Or(r.method, http.MethodGet), r.url, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", r.label, err)
	}
	for k, v := range r.header {
		req.Header[k] = v
	}
	req.Header.Set("User-Agent", f.userAgent)
	shown := redact(r.url)
	resp, err := f.client.Do(req)
	if err != nil {
		return f.transportError(ctx, parent, shown, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK && !slices.Contains(r.accept, resp.StatusCode) {
		return statusError(req.Method, shown, resp)
	}
	body := &watchedBody{r: resp.Body, idle: idle, timeout: f.idle}
	var rd io.Reader = body
	if f.progress != nil && req.Method != http.MethodHead && resp.StatusCode == http.StatusOK {
		w := f.progress(r.label, resp.ContentLength)
		defer w.Close()
		rd = io.TeeReader(body, w)
	}
	start := time.Now()
	err = use(resp, rd)
	if body.err != nil && !errors.Is(body.err, io.EOF) {
		// The connection broke off (or stalled): whatever use made of
		// the partial body, the cause is the transfer, worth retrying.
		return f.transportError(ctx, parent, shown, body.err)
	}
	if err != nil {
		return err
	}
	if req.Method != http.MethodHead && body.n > 0 {
		f.log.Debug("downloaded", "what", r.label, "bytes", body.n, "took", time.Since(start).Round(time.Millisecond).String())
	}
	return nil
}

// transportError says what went wrong with the connection, and marks it
// worth retrying unless the run itself was stopped.
func (f *fetcher) transportError(ctx, parent context.Context, shown string, err error) error {
	if parent.Err() != nil {
		return fmt.Errorf("%s: %w", shown, context.Cause(parent))
	}
	if errors.Is(context.Cause(ctx), ErrStalled) {
		return &transientError{fmt.Errorf("%s: %w: nothing received for %s (the idle timeout, --idle-timeout)", shown, ErrStalled, f.idle)}
	}
	if ue, ok := errors.AsType[*url.Error](err); ok {
		err = ue.Err // the URL is said once, redacted
	}
	return &transientError{fmt.Errorf("%s: %w", shown, err)}
}

func statusError(method, shown string, resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	msg := strings.Join(strings.Fields(string(b)), " ")
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	if !isPrintable(msg) {
		msg = ""
	}
	e := &StatusError{Method: method, URL: shown, Code: resp.StatusCode, Body: msg}
	if s := resp.Header.Get("Retry-After"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n >= 0 {
			e.RetryAfter = time.Duration(n) * time.Second
		}
	}
	return e
}

func isPrintable(s string) bool {
	for _, r := range s {
		if r < ' ' || r == 0x7f {
			return false
		}
	}
	return true
}

// watchedBody pushes the idle deadline back whenever data arrives, counts
// bytes, and keeps the first error of the connection itself (as opposed
// to what the reader of the body makes of the bytes).
type watchedBody struct {
	r       io.Reader
	idle    *time.Timer
	timeout time.Duration
	n       int64
	err     error
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if n > 0 {
		b.idle.Reset(b.timeout)
		b.n += int64(n)
	}
	if err != nil && b.err == nil {
		b.err = err
	}
	return n, err
}

// redact is u without a password, for logs and errors.
func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparsable URL)"
	}
	return p.Redacted()
}
