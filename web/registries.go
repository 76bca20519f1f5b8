package web

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/reghost/reghost/internal/store"
)

type registryRow struct {
	Name, URL, Host string
	Default         bool
	// State is what decisions see: "up", "down", "drained", or "down
	// (ignored)" when health is in panic.
	State   string
	Up      bool
	Drain   *store.Drain
	Health  *RegistryHealth
	Strip   []stripBar
	OKCount int
}

// stripBar is one recent probe in the strip: its place and outcome.
type stripBar struct {
	X     int
	OK    bool
	Label string
}

type registriesView struct {
	Panic bool
	Rows  []registryRow
}

func (h *handler) registries(w http.ResponseWriter, r *http.Request) {
	regs, panic := h.cfg.Engine.Registries()
	drains := map[string]store.Drain{}
	for _, d := range h.cfg.Overrides.Drains() {
		drains[d.Registry] = d
	}
	v := registriesView{Panic: panic}
	for _, reg := range regs {
		row := registryRow{Name: reg.Name, URL: reg.URL, Host: reg.Host, Default: reg.Default, Up: reg.Up, State: "up"}
		switch {
		case reg.Drained:
			row.State = "drained"
		case reg.Down && panic:
			row.State = "down (ignored: most registries look down)"
		case reg.Down:
			row.State = "down"
		}
		if d, ok := drains[reg.Name]; ok {
			row.Drain = &d
		}
		if h.cfg.Health != nil {
			if hl, ok := h.cfg.Health(reg.Name); ok {
				row.Health = &hl
				row.Strip, row.OKCount = strip(hl.Results)
			}
		}
		v.Rows = append(v.Rows, row)
	}
	h.render(w, r, http.StatusOK, "registries", page{Title: "Registries", Nav: "registries", Flash: flash(r.URL.Query()), Data: v})
}

// strip lays out recent probe results as bars, oldest on the left.
func strip(results []ProbeResult) ([]stripBar, int) {
	bars := make([]stripBar, len(results))
	ok := 0
	for i, res := range results {
		label := res.At.UTC().Format("15:04:05") + " ok"
		if res.OK {
			ok++
		} else {
			label = res.At.UTC().Format("15:04:05") + " failed: " + res.Class
		}
		if res.Latency > 0 {
			label += fmt.Sprintf(", %.0f ms", float64(res.Latency)/float64(time.Millisecond))
		}
		bars[i] = stripBar{X: i * 8, OK: res.OK, Label: label}
	}
	return bars, ok
}

// drain and undrain change routing on every replica, through the
// overrides service.
func (h *handler) drain(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	ver, err := h.cfg.Overrides.Drain(r.Context(), who(r), name, strings.TrimSpace(r.PostFormValue("note")))
	h.drained(w, r, "drained", name, ver, err)
}

func (h *handler) undrain(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	ver, err := h.cfg.Overrides.Undrain(r.Context(), who(r), name)
	h.drained(w, r, "undrained", name, ver, err)
}

func (h *handler) drained(w http.ResponseWriter, r *http.Request, done, name string, ver store.Version, err error) {
	if err != nil {
		code := http.StatusServiceUnavailable
		if errors.Is(err, store.ErrNotFound) {
			code = http.StatusNotFound
		}
		h.renderError(w, r, code, "Registry "+name+" was not "+done, err.Error()+".")
		return
	}
	h.log.Info("admin page: registry "+done, "who", who(r), "registry", name, "version", ver.String())
	http.Redirect(w, r, Prefix+"/registries?"+url.Values{"done": {done}, "id": {name}, "v": {ver.String()}}.Encode(), http.StatusSeeOther)
}
