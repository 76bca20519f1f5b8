package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// ClientIPConfig says whom to believe about the client's address.
type ClientIPConfig struct {
	// Header is "X-Real-IP" or "X-Forwarded-For".
	Header string
	// TrustedProxies are the peers whose headers are believed. Headers
	// from anyone else are ignored and the peer address is the client.
	TrustedProxies []netip.Prefix
	// XFFTrustedHops is how many proxies, counted from the right, append
	// to X-Forwarded-For: the client is the address that many entries
	// from the right end (1: the last entry).
	XFFTrustedHops int
}

// ErrBadClientIP is wrapped by errors about an address a trusted proxy
// sent that does not parse.
var ErrBadClientIP = errors.New("malformed client address")

// clientIP finds the client address of a request. Nobody but a trusted
// proxy can choose the address a decision is made for.
type clientIP struct {
	header  string
	trusted []netip.Prefix
	hops    int
}

func newClientIP(cfg ClientIPConfig) (*clientIP, error) {
	h := http.CanonicalHeaderKey(cfg.Header)
	switch h {
	case "":
		h = "X-Real-Ip"
	case "X-Real-Ip", "X-Forwarded-For":
	default:
		return nil, fmt.Errorf("client_ip.header: %q is neither X-Real-IP nor X-Forwarded-For", cfg.Header)
	}
	hops := cfg.XFFTrustedHops
	if hops < 1 {
		hops = 1
	}
	return &clientIP{header: h, trusted: cfg.TrustedProxies, hops: hops}, nil
}

// peer is the address of the connection's other end, without a zone: a
// prefix never contains a zoned address, so a proxy reaching reghost
// over a link-local address (fe80::1%eth0) would otherwise never be
// trusted.
func peer(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		a, _ := netip.ParseAddr(r.RemoteAddr)
		return a.Unmap().WithZone("")
	}
	return ap.Addr().Unmap().WithZone("")
}

// trusts reports whether a is a trusted proxy.
func (ci *clientIP) trusts(a netip.Addr) bool {
	for _, p := range ci.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// addr returns the client address from the configured header when the
// peer is trusted, or the peer. A trusted proxy's malformed header is an
// error: guessing would route the client on somebody else's address.
func (ci *clientIP) addr(r *http.Request) (netip.Addr, error) {
	return ci.from(r, ci.header)
}

// from is addr for a given header, for the original "GET /" contract,
// which always reads X-Real-IP.
func (ci *clientIP) from(r *http.Request, header string) (netip.Addr, error) {
	p := peer(r)
	if !ci.trusts(p) {
		return p, nil
	}
	values := r.Header[header]
	if len(values) == 0 {
		return p, nil
	}
	if header == "X-Forwarded-For" {
		return ci.fromXFF(values)
	}
	if len(values) > 1 {
		return netip.Addr{}, fmt.Errorf("%w: %d %s headers", ErrBadClientIP, len(values), header)
	}
	return parseClientAddr(header, values[0])
}

// fromXFF takes the entry hops places from the right of all
// X-Forwarded-For values joined, or the leftmost when there are fewer.
func (ci *clientIP) fromXFF(values []string) (netip.Addr, error) {
	n, leftmost := 0, ""
	for i := len(values) - 1; i >= 0; i-- {
		v := values[i]
		for v != "" {
			var entry string
			if j := strings.LastIndexByte(v, ','); j >= 0 {
				v, entry = v[:j], v[j+1:]
			} else {
				v, entry = "", v
			}
			n++
			if n == ci.hops {
				return parseClientAddr("X-Forwarded-For", entry)
			}
			leftmost = entry
		}
	}
	if n == 0 {
		return netip.Addr{}, fmt.Errorf("%w: empty X-Forwarded-For", ErrBadClientIP)
	}
	return parseClientAddr("X-Forwarded-For", leftmost)
}

// parseClientAddr accepts an IPv4 or IPv6 address, IPv6 optionally in
// brackets, with surrounding spaces; not a port or a zone.
func parseClientAddr(header, v string) (netip.Addr, error) {
	s := strings.TrimSpace(v)
	if len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']' {
		s = s[1 : len(s)-1]
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%w: %s %q is not an IP address", ErrBadClientIP, header, truncate(v, 64))
	}
	return a.Unmap(), nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// extractor is the Echo IPExtractor: the same rules, an empty string
// when the header is malformed, so Echo's RealIP never believes a header
// that reghost would not.
func (ci *clientIP) extractor(r *http.Request) string {
	a, err := ci.addr(r)
	if err != nil || !a.IsValid() {
		return ""
	}
	return a.String()
}
