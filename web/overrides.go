package web

import (
	"cmp"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/reghost/reghost/internal/rules"
)

// overrideRow is one override as the table shows it.
type overrideRow struct {
	ID         string
	Kind       string
	Match      string
	Registries []string
	Note       string
	CreatedBy  string
	CreatedAt  time.Time
	ExpiresAt  time.Time
	Expired    bool
	TimeLeft   string // "" when it does not expire
}

// sortColumn is a sortable column's header: a link that sorts by it, or
// reverses the order when it is the column sorted by.
type sortColumn struct {
	Key, Label, Href string
	AriaSort         string // "ascending", "descending" or "none"
}

type overridesView struct {
	Rows     []overrideRow
	Total    int
	Version  string
	Q        string
	Kind     string
	Registry string
	Kinds    []string
	Regs     []string
	Columns  []sortColumn
	Error    string
}

// sortKeys are the columns the table sorts by, in order, and their
// labels.
var sortKeys = []struct{ key, label string }{
	{"id", "ID"}, {"kind", "Match"}, {"registry", "Registries"}, {"expiry", "Expires"}, {"who", "Created by"},
}

// kindNames are the kinds of match a form or filter offers.
var kindNames = []string{"cidr", "asn", "cloud", "country", "continent"}

func (h *handler) overrides(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	v := overridesView{Q: strings.TrimSpace(q.Get("q")), Kind: q.Get("kind"), Registry: q.Get("registry"), Kinds: kindNames, Regs: h.registryNames()}
	sortBy, desc := q.Get("sort"), q.Get("dir") == "desc"
	if !slices.ContainsFunc(sortKeys, func(k struct{ key, label string }) bool { return k.key == sortBy }) {
		sortBy, desc = "kind", false
	}
	ovs, ver, err := h.cfg.Overrides.List(r.Context())
	if err != nil {
		v.Error = "The override store failed: " + err.Error() + ". The table cannot be shown; decisions go on with the overrides last loaded."
	}
	v.Version, v.Total = ver.String(), len(ovs)
	now := h.now()
	for _, o := range ovs {
		row := rowOf(o, now)
		if v.matches(row) {
			v.Rows = append(v.Rows, row)
		}
	}
	slices.SortStableFunc(v.Rows, func(a, b overrideRow) int {
		c := compareRows(sortBy, a, b)
		if desc {
			c = -c
		}
		return cmp.Or(c, cmp.Compare(a.ID, b.ID))
	})
	for _, k := range sortKeys {
		col := sortColumn{Key: k.key, Label: k.label, AriaSort: "none"}
		next := url.Values{}
		for _, name := range []string{"q", "kind", "registry"} {
			if s := q.Get(name); s != "" {
				next.Set(name, s)
			}
		}
		next.Set("sort", k.key)
		if k.key == sortBy {
			col.AriaSort = "ascending"
			if desc {
				col.AriaSort = "descending"
			} else {
				next.Set("dir", "desc")
			}
		}
		col.Href = Prefix + "/overrides?" + next.Encode()
		v.Columns = append(v.Columns, col)
	}
	h.render(w, r, http.StatusOK, "overrides", page{Title: "Overrides", Nav: "overrides", Flash: flash(q), Data: v})
}

func rowOf(o rules.Override, now time.Time) overrideRow {
	row := overrideRow{ID: o.ID, Kind: o.Match.Kind().String(), Match: o.Match.String(), Registries: o.Registries,
		Note: o.Note, CreatedBy: o.CreatedBy, CreatedAt: o.CreatedAt, ExpiresAt: o.ExpiresAt, Expired: o.Expired(now)}
	if !o.ExpiresAt.IsZero() && !row.Expired {
		row.TimeLeft = human(o.ExpiresAt.Sub(now))
	}
	return row
}

func (v *overridesView) matches(row overrideRow) bool {
	if v.Kind != "" && row.Kind != v.Kind {
		return false
	}
	if v.Registry != "" && !slices.Contains(row.Registries, v.Registry) {
		return false
	}
	if v.Q == "" {
		return true
	}
	q := strings.ToLower(v.Q)
	for _, s := range []string{row.ID, row.Match, row.Note, row.CreatedBy, strings.Join(row.Registries, " ")} {
		if strings.Contains(strings.ToLower(s), q) {
			return true
		}
	}
	return false
}

// compareRows orders rows by a column. Kinds go in decision order, most
// specific first; overrides that never expire go after those that do.
func compareRows(by string, a, b overrideRow) int {
	switch by {
	case "id":
		return cmp.Compare(a.ID, b.ID)
	case "registry":
		return slices.Compare(a.Registries, b.Registries)
	case "expiry":
		switch {
		case a.ExpiresAt.IsZero() || b.ExpiresAt.IsZero():
			return cmp.Compare(b2i(a.ExpiresAt.IsZero()), b2i(b.ExpiresAt.IsZero()))
		}
		return a.ExpiresAt.Compare(b.ExpiresAt)
	case "who":
		return cmp.Compare(a.CreatedBy, b.CreatedBy)
	}
	return cmp.Or(cmp.Compare(slices.Index(kindNames, a.Kind), slices.Index(kindNames, b.Kind)), cmp.Compare(a.Match, b.Match))
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// registryNames are the configured registries, the default first.
func (h *handler) registryNames() []string {
	regs, _ := h.cfg.Engine.Registries()
	names := make([]string, 0, len(regs))
	for _, r := range regs {
		if r.Default {
			names = append([]string{r.Name}, names...)
		} else {
			names = append(names, r.Name)
		}
	}
	return names
}

// flash is what the last change did, from the query its redirect set.
// Only fixed sentences are said, so a crafted link can say nothing else.
func flash(q url.Values) string {
	id, v := q.Get("id"), q.Get("v")
	what := map[string]string{
		"created": "Created override %s.", "updated": "Saved override %s.", "deleted": "Deleted override %s.",
		"drained": "Drained registry %s: no client is sent there until it is undrained.", "undrained": "Undrained registry %s: clients may be sent there again.",
	}[q.Get("done")]
	if what == "" || id == "" {
		return ""
	}
	s := strings.Replace(what, "%s", id, 1)
	if v != "" {
		s += " Store version " + v + "."
	}
	return s
}
