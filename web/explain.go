package web

import (
	"net/http"
	"net/netip"
	"strings"

	"github.com/reghost/reghost/internal/policy"
)

type explainView struct {
	IP, Path string
	Error    string // about the address or path
	Decision *policy.Decision
}

// explain shows why an address goes where it goes: the decision, every
// fact looked up, and every candidate tried.
func (h *handler) explain(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	v := explainView{IP: strings.TrimSpace(q.Get("ip")), Path: strings.TrimSpace(q.Get("path"))}
	code := http.StatusOK
	if v.IP != "" {
		addr, err := netip.ParseAddr(v.IP)
		switch {
		case err != nil || addr.Zone() != "":
			v.Error, code = "ip: \""+v.IP+"\" is not an IP address, such as 192.0.2.7 or 2001:db8::1", http.StatusBadRequest
		default:
			path, query, _ := strings.Cut(v.Path, "?")
			if path == "" {
				path = "/v2/"
			}
			d, err := h.cfg.Engine.Explain(addr.Unmap(), path, query)
			if err != nil {
				v.Error, code = "path: "+err.Error(), http.StatusBadRequest
			}
			v.Decision = &d
		}
	}
	h.render(w, r, code, "explain", page{Title: "Explain a decision", Nav: "explain", Data: v})
}
