package web

import (
	"cmp"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"time"

	"github.com/reghost/reghost/internal/rules"
)

// previewView is what a change would move: the addresses typed, one by
// one, and this replica's sample of the last hour's clients, in counts
// only (the sample is never shown whole).
type previewView struct {
	Typed       []moveRow
	Sampled     int    // addresses in the sample
	SampleMoved int    // of them, those that would move
	Flows       []flow // how they would move, most first
	Problem     string // an override the engine left out of the preview
	NoTraffic   bool   // no recorder: the server keeps no sample
}

type moveRow struct {
	Addr                      string
	Before, After             string // registries
	BeforeReason, AfterReason string
	Moved                     bool
}

// flow counts sampled clients that would move from one registry to
// another.
type flow struct {
	From, To string
	N        int
}

// previewOf decides the typed addresses and the sample with and without
// the candidate set of overrides.
func (h *handler) previewOf(candidate []rules.Override, typed []netip.Addr, now time.Time) *previewView {
	var sample []netip.Addr
	v := &previewView{NoTraffic: h.cfg.Traffic == nil}
	if h.cfg.Traffic != nil {
		sample = h.cfg.Traffic.Sample(now)
	}
	moves, err := h.cfg.Engine.Preview(candidate, append(slices.Clip(typed), sample...))
	if err != nil {
		v.Problem = err.Error()
	}
	for _, m := range moves[:len(typed)] {
		v.Typed = append(v.Typed, moveRow{Addr: m.Addr.String(), Before: m.Before.Registry, After: m.After.Registry,
			BeforeReason: m.Before.Reason, AfterReason: m.After.Reason, Moved: m.Moved()})
	}
	v.Sampled = len(sample)
	counts := map[[2]string]int{}
	for _, m := range moves[len(typed):] {
		if m.Moved() {
			v.SampleMoved++
			counts[[2]string{m.Before.Registry, m.After.Registry}]++
		}
	}
	for k, n := range counts {
		v.Flows = append(v.Flows, flow{From: k[0], To: k[1], N: n})
	}
	slices.SortFunc(v.Flows, func(a, b flow) int {
		return cmp.Or(cmp.Compare(b.N, a.N), cmp.Compare(a.From, b.From), cmp.Compare(a.To, b.To))
	})
	return v
}

type deleteView struct {
	Row     overrideRow
	Action  string
	Preview *previewView
}

// deleteOverride asks before deleting, and shows what deleting would
// move back.
func (h *handler) deleteOverride(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	o, err := h.cfg.Overrides.Get(r.Context(), id)
	if err != nil {
		h.storeError(w, r, err)
		return
	}
	v := deleteView{Row: rowOf(o, h.now()), Action: Prefix + "/overrides/" + url.PathEscape(id) + "/delete"}
	if ovs, _, err := h.cfg.Overrides.List(r.Context()); err == nil {
		v.Preview = h.previewOf(slices.DeleteFunc(ovs, func(x rules.Override) bool { return x.ID == id }), nil, h.now())
	}
	h.render(w, r, http.StatusOK, "delete", page{Title: "Delete override " + id, Nav: "overrides", Data: v})
}

func (h *handler) postDeleteOverride(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	ver, err := h.cfg.Overrides.Delete(r.Context(), who(r), id)
	if err != nil {
		h.storeError(w, r, err)
		return
	}
	h.log.Info("admin page: override deleted", "who", who(r), "id", id, "version", ver.String())
	http.Redirect(w, r, Prefix+"/overrides?"+url.Values{"done": {"deleted"}, "id": {id}, "v": {ver.String()}}.Encode(), http.StatusSeeOther)
}
