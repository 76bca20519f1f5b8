package policy

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/reghost/reghost/internal/rules"
)

// Errors for request input that cannot be put in a redirect. Callers
// answer 400 (or send the client to the default registry's root).
var (
	ErrInvalidPath  = errors.New("invalid path")
	ErrInvalidQuery = errors.New("invalid query")
)

// maxPathLen bounds what is copied into a Location header. Registry
// paths are short; anything near this is not a client pulling images.
const maxPathLen = 4096

// Target is a configured registry prepared for building redirects.
type Target struct {
	Name    string
	URL     string // as configured
	Host    string // host[:port], the body of the original "GET /" contract
	Default bool

	origin string // scheme://host[:port]
	prefix string // repository prefix, "" or "/a/b" without a trailing slash
}

func newTarget(r rules.Registry) (Target, error) {
	u, err := url.Parse(r.URL)
	if err != nil {
		return Target{}, fmt.Errorf("registry %q: url: %w", r.Name, err)
	}
	switch {
	case u.Scheme != "https" && u.Scheme != "http":
		return Target{}, fmt.Errorf("registry %q: url %q: scheme must be https or http", r.Name, r.URL)
	case u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "":
		return Target{}, fmt.Errorf("registry %q: url %q: want scheme://host[:port][/repository/prefix] and nothing else", r.Name, r.URL)
	}
	prefix := strings.TrimRight(u.EscapedPath(), "/")
	if prefix != "" {
		if err := checkPath(prefix); err != nil {
			return Target{}, fmt.Errorf("registry %q: url %q: %w", r.Name, r.URL, err)
		}
	}
	return Target{
		Name:    r.Name,
		URL:     r.URL,
		Host:    u.Host,
		Default: r.Default,
		origin:  u.Scheme + "://" + u.Host,
		prefix:  prefix,
	}, nil
}

// Location returns the redirect URL for a request path and raw query on
// this registry. Under /v2/ the repository prefix goes after /v2, so with
// https://h/k8s-artifacts-prod/images, /v2/pause/manifests/3.9 becomes
// https://h/v2/k8s-artifacts-prod/images/pause/manifests/3.9; /v2/ itself
// and paths outside /v2/ are kept as they are. The query is kept.
//
// Path and query are checked character by character, so nothing a client
// sends can end the host part, add a header or climb out of the prefix:
// the host in the result is always the registry's.
func (t *Target) Location(path, rawQuery string) (string, error) {
	if err := checkPath(path); err != nil {
		return "", err
	}
	if err := checkQuery(rawQuery); err != nil {
		return "", err
	}
	q := ""
	if rawQuery != "" {
		q = "?"
	}
	rest, ok := strings.CutPrefix(path, "/v2/")
	if !ok || rest == "" || t.prefix == "" {
		if path == "/v2" {
			path = "/v2/"
		}
		return t.origin + path + q + rawQuery, nil
	}
	return t.origin + "/v2" + t.prefix + "/" + rest + q + rawQuery, nil
}

// checkPath accepts an absolute path of RFC 3986 path characters with
// well-formed escapes, no empty, "." or ".." segments, and nothing that a
// client or proxy could read as the end of the URL or of the header:
// escapes of control characters (%0d%0a, %00) and of slashes (%2f, %5c,
// which a registry that decodes them would see as "../") are refused too.
// Registry paths never need any of them.
func checkPath(p string) error {
	switch {
	case p == "" || p[0] != '/':
		return fmt.Errorf("%w: must start with /", ErrInvalidPath)
	case len(p) > maxPathLen:
		return fmt.Errorf("%w: longer than %d bytes", ErrInvalidPath, maxPathLen)
	}
	if err := checkChars(p, false); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidPath, err)
	}
	for rest := p; ; {
		i := strings.IndexByte(rest, '%')
		if i < 0 {
			break
		}
		// checkChars saw two hex digits after every '%'.
		if c := unhex(rest[i+1])<<4 | unhex(rest[i+2]); c < ' ' || c == 0x7f || c == '/' || c == '\\' {
			return fmt.Errorf("%w: escaped %q not allowed", ErrInvalidPath, c)
		}
		rest = rest[i+3:]
	}
	if strings.Contains(p, "//") {
		return fmt.Errorf("%w: empty segment", ErrInvalidPath)
	}
	for seg := range strings.SplitSeq(p[1:], "/") {
		if isDotSegment(seg) {
			return fmt.Errorf("%w: dot segment %q", ErrInvalidPath, seg)
		}
	}
	return nil
}

func checkQuery(q string) error {
	if len(q) > maxPathLen {
		return fmt.Errorf("%w: longer than %d bytes", ErrInvalidQuery, maxPathLen)
	}
	if err := checkChars(q, true); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidQuery, err)
	}
	return nil
}

// isDotSegment reports "." or "..", also percent-encoded ("%2e%2E").
func isDotSegment(seg string) bool {
	if len(seg) == 0 || len(seg) > 6 || seg[0] != '.' && seg[0] != '%' {
		return false
	}
	s := strings.ReplaceAll(strings.ReplaceAll(seg, "%2e", "."), "%2E", ".")
	return s == "." || s == ".."
}

// checkChars allows RFC 3986 pchar and "/" (plus "?" in a query), with
// every "%" followed by two hex digits.
func checkChars(s string, query bool) error {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case pathChars[c]:
		case c == '?' && query:
		case c == '%':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return fmt.Errorf("bad escape at byte %d", i)
			}
			i += 2
		default:
			return fmt.Errorf("character %q at byte %d not allowed", c, i)
		}
	}
	return nil
}

// pathChars are RFC 3986 pchar and "/", less "%", which must start an escape.
var pathChars = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range []byte("-._~!$&'()*+,;=:@/") {
		t[c] = true
	}
	return t
}()

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
