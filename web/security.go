package web

import (
	"net/http"
)

// csp allows the page's own script, styles and images and nothing else:
// no inline script or style, no eval, no framing, forms posting only
// here, and no <base> to redirect relative links.
const csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"frame-ancestors 'none'; form-action 'self'; base-uri 'none'"

// headers sets what every answer carries, whatever handler or error
// writes it. Nothing is cached: pages show live state and who is signed
// in, and a shared machine's browser must not keep them.
func (h *handler) headers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", csp)
		hd.Set("Cache-Control", "no-store")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "same-origin")
		hd.Set("Cross-Origin-Opener-Policy", "same-origin")
		hd.Set("Cross-Origin-Resource-Policy", "same-origin")
		if h.cfg.TLS {
			hd.Set("Strict-Transport-Security", "max-age=31536000")
		}
		next.ServeHTTP(w, r)
	})
}

// crossOrigin answers a state change that CrossOriginProtection refused:
// it came from a page of another origin (a forged form), or through a
// proxy that changes Host.
func (h *handler) crossOrigin(w http.ResponseWriter, r *http.Request) {
	h.log.Warn("admin page: refused a change from another origin", "path", r.URL.Path,
		"origin", r.Header.Get("Origin"), "sec_fetch_site", r.Header.Get("Sec-Fetch-Site"), "peer", r.RemoteAddr)
	h.renderError(w, r, http.StatusForbidden, "Refused: this change came from another site",
		"The request was sent by a page of another origin, so nothing was changed. "+
			"If you use the admin page through a proxy that changes the Host header, add the address you open it at to admin.trusted_origins in the config.")
}
