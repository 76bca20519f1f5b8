package web

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/reghost/reghost/internal/rules"
	"github.com/reghost/reghost/internal/store"
)

// overrideForm is the override form's fields as typed.
type overrideForm struct {
	ID, Kind, Value, Region, Registries, Expires, Note string
	// Addrs are addresses to preview, one per line or separated by
	// spaces or commas.
	Addrs string
}

type formView struct {
	Edit    bool
	Action  string // where the form posts
	F       overrideForm
	Errors  map[string]string // by field name
	Error   string            // not about one field
	Preview *previewView
	Kinds   []string
	Regs    []string
	Expires string // the override's expiry, when editing one that has it
}

// maxForm bounds a form's body: an override and a few hundred addresses.
const maxForm = 64 << 10

// previewID stands in for a new override's ID while previewing it: the
// service makes one up only when it is saved.
const previewID = "new-override"

func (h *handler) newOverride(w http.ResponseWriter, r *http.Request) {
	h.renderForm(w, r, http.StatusOK, &formView{Action: Prefix + "/overrides/new", F: overrideForm{Kind: "cidr"}})
}

func (h *handler) editOverride(w http.ResponseWriter, r *http.Request) {
	o, err := h.cfg.Overrides.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		h.storeError(w, r, err)
		return
	}
	f := overrideForm{ID: o.ID, Kind: o.Match.Kind().String(), Registries: strings.Join(o.Registries, ", "), Note: o.Note}
	switch m := o.Match; m.Kind() {
	case rules.KindCIDR:
		f.Value = m.CIDR.String()
	case rules.KindASN:
		f.Value = strconv.FormatUint(uint64(m.ASN), 10)
	case rules.KindCloud, rules.KindCloudRegion:
		f.Value, f.Region = m.Cloud, m.Region
	case rules.KindCountry:
		f.Value = m.Country
	case rules.KindContinent:
		f.Value = m.Continent
	}
	if !o.ExpiresAt.IsZero() {
		f.Expires = o.ExpiresAt.UTC().Format(time.RFC3339)
	}
	h.renderForm(w, r, http.StatusOK, &formView{Edit: true, Action: editPath(o.ID), F: f})
}

func editPath(id string) string { return Prefix + "/overrides/" + url.PathEscape(id) + "/edit" }

func (h *handler) postNewOverride(w http.ResponseWriter, r *http.Request) {
	h.postOverride(w, r, &formView{Action: Prefix + "/overrides/new"})
}

func (h *handler) postEditOverride(w http.ResponseWriter, r *http.Request) {
	h.postOverride(w, r, &formView{Edit: true, Action: editPath(r.PathValue("id"))})
}

// postOverride previews or saves the form, by the button pressed.
func (h *handler) postOverride(w http.ResponseWriter, r *http.Request, v *formView) {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		h.renderError(w, r, http.StatusBadRequest, "The form could not be read", err.Error())
		return
	}
	v.F = overrideForm{ID: strings.TrimSpace(r.PostFormValue("id")), Kind: r.PostFormValue("kind"),
		Value: strings.TrimSpace(r.PostFormValue("value")), Region: strings.TrimSpace(r.PostFormValue("region")),
		Registries: r.PostFormValue("registries"), Expires: strings.TrimSpace(r.PostFormValue("expires")),
		Note: strings.TrimSpace(r.PostFormValue("note")), Addrs: r.PostFormValue("addrs")}
	if v.Edit {
		v.F.ID = r.PathValue("id")
	}
	now := h.now()
	o, errs := v.F.override(now)
	v.Errors = errs
	var prev rules.Override
	if v.Edit {
		var err error
		if prev, err = h.cfg.Overrides.Get(r.Context(), v.F.ID); err != nil {
			h.storeError(w, r, err)
			return
		}
	}
	if r.PostFormValue("action") != "save" {
		h.preview(w, r, v, o, prev, now)
		return
	}
	if len(v.Errors) > 0 {
		h.renderForm(w, r, http.StatusBadRequest, v)
		return
	}
	var ver store.Version
	var err error
	done := "updated"
	if v.Edit {
		o, _, ver, err = h.cfg.Overrides.Put(r.Context(), who(r), o)
	} else {
		done = "created"
		o, ver, err = h.cfg.Overrides.Create(r.Context(), who(r), o)
	}
	if err != nil {
		h.formError(w, r, v, err)
		return
	}
	h.log.Info("admin page: override saved", "who", who(r), "id", o.ID, "match", o.Match.String(), "version", ver.String())
	http.Redirect(w, r, Prefix+"/overrides?"+url.Values{"done": {done}, "id": {o.ID}, "v": {ver.String()}}.Encode(), http.StatusSeeOther)
}

// preview shows the form again with what saving it would move.
func (h *handler) preview(w http.ResponseWriter, r *http.Request, v *formView, o, prev rules.Override, now time.Time) {
	addrs, err := parseAddrs(v.F.Addrs)
	if err != nil {
		v.setError("addrs", err.Error())
	}
	if len(v.Errors) > 0 {
		h.renderForm(w, r, http.StatusBadRequest, v)
		return
	}
	if o.ID == "" {
		o.ID = previewID
	}
	// As the service would save it: the new one is the newest of its
	// match, an edit keeps its age.
	o.CreatedAt = prev.CreatedAt
	if o.CreatedAt.IsZero() {
		o.CreatedAt = now.UTC()
	}
	if err := h.cfg.Engine.ValidateOverride(o); err != nil {
		h.formError(w, r, v, err)
		return
	}
	ovs, _, err := h.cfg.Overrides.List(r.Context())
	if err != nil {
		h.formError(w, r, v, err)
		return
	}
	candidate := withOverride(ovs, o)
	if !v.Edit && v.F.ID != "" && len(candidate) == len(ovs) {
		v.setError("id", fmt.Sprintf("id: an override %q exists already; choose another ID, or leave it empty for one to be made up", o.ID))
		h.renderForm(w, r, http.StatusConflict, v)
		return
	}
	v.Preview = h.previewOf(candidate, addrs, now)
	h.renderForm(w, r, http.StatusOK, v)
}

// withOverride is ovs with o added, or replacing the one with its ID.
func withOverride(ovs []rules.Override, o rules.Override) []rules.Override {
	out := make([]rules.Override, 0, len(ovs)+1)
	for _, x := range ovs {
		if x.ID != o.ID {
			out = append(out, x)
		}
	}
	return append(out, o)
}

// formError shows a failed save or preview: a validation error next to
// its field, anything else above the form.
func (h *handler) formError(w http.ResponseWriter, r *http.Request, v *formView, err error) {
	code := http.StatusBadRequest
	switch {
	case errors.Is(err, store.ErrConflict):
		code = http.StatusConflict
		v.setError("id", fmt.Sprintf("id: an override %q exists already; choose another ID, or leave it empty for one to be made up", v.F.ID))
	case errors.Is(err, store.ErrNotFound):
		code = http.StatusNotFound
		v.Error = "This override no longer exists: someone deleted it meanwhile. Nothing was saved."
	case errors.Is(err, store.ErrUnavailable):
		code = http.StatusServiceUnavailable
		v.Error = "The override store failed, and nothing was saved: " + err.Error() + ". Try again in a moment."
	default:
		v.setError(fieldOf(err.Error()), err.Error())
	}
	h.renderForm(w, r, code, v)
}

func (v *formView) setError(field, msg string) {
	if field == "" {
		v.Error = msg
		return
	}
	if v.Errors == nil {
		v.Errors = map[string]string{}
	}
	if _, ok := v.Errors[field]; !ok {
		v.Errors[field] = msg
	}
}

// fieldOf maps a validation message, which starts with the field at
// fault ("match.country: ..."), to the form field it belongs next to.
func fieldOf(msg string) string {
	name, _, ok := strings.Cut(msg, ":")
	if !ok {
		return ""
	}
	switch {
	case name == "id":
		return "id"
	case name == "match.region":
		return "region"
	case name == "match" || strings.HasPrefix(name, "match."):
		return "value"
	case strings.HasPrefix(name, "registries"):
		return "registries"
	case name == "expires_at":
		return "expires"
	case name == "note":
		return "note"
	}
	return ""
}

func (h *handler) renderForm(w http.ResponseWriter, r *http.Request, code int, v *formView) {
	v.Kinds, v.Regs = kindNames, h.registryNames()
	title := "New override"
	if v.Edit {
		title = "Edit override " + v.F.ID
	}
	h.render(w, r, code, "override", page{Title: title, Nav: "overrides", Data: v})
}

// override turns the form into an override, with what cannot be parsed
// reported by field. Messages start with the field's name as the API
// calls it, as the service's do.
func (f overrideForm) override(now time.Time) (rules.Override, map[string]string) {
	errs := map[string]string{}
	o := rules.Override{ID: f.ID, Note: f.Note}
	switch f.Kind {
	case "cidr":
		if p, err := netip.ParsePrefix(f.Value); err == nil {
			o.Match.CIDR = p
		} else if a, err := netip.ParseAddr(f.Value); err == nil && a.Zone() == "" {
			// One address is the prefix of it alone.
			o.Match.CIDR = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		} else if f.Value != "" {
			errs["value"] = fmt.Sprintf("match.cidr: %q is neither an address nor a CIDR prefix such as 192.0.2.0/24", f.Value)
		}
	case "asn":
		s := strings.TrimPrefix(strings.ToUpper(f.Value), "AS")
		if n, err := strconv.ParseUint(s, 10, 32); err == nil {
			o.Match.ASN = uint32(n)
		} else if f.Value != "" {
			errs["value"] = fmt.Sprintf("match.asn: %q is not an AS number such as 16509", f.Value)
		}
	case "cloud":
		o.Match.Cloud, o.Match.Region = strings.ToLower(f.Value), f.Region
	case "country":
		o.Match.Country = strings.ToUpper(f.Value)
	case "continent":
		o.Match.Continent = strings.ToUpper(f.Value)
	default:
		errs["kind"] = "match: choose what to match: cidr, asn, cloud, country or continent"
	}
	if f.Kind != "cloud" && f.Region != "" {
		errs["region"] = "match.region: a region narrows a cloud match only; clear it, or match a cloud"
	}
	if f.Value == "" && errs["kind"] == "" {
		errs["value"] = "match." + f.Kind + ": empty; say what to match"
	}
	o.Registries = strings.FieldsFunc(f.Registries, func(c rune) bool { return c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r' })
	if f.Expires != "" {
		t, err := parseExpiry(f.Expires, now)
		switch {
		case err != nil:
			errs["expires"] = "expires_at: " + err.Error()
		case !t.After(now):
			errs["expires"] = fmt.Sprintf("expires_at: %s is not in the future", t.UTC().Format(time.RFC3339))
		}
		o.ExpiresAt = t
	}
	if len(errs) == 0 {
		errs = nil
	}
	return o, errs
}

// parseExpiry reads an expiry as a time from now ("90m", "4h", "2d") or
// an RFC 3339 time.
func parseExpiry(s string, now time.Time) (time.Time, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		if days, err := strconv.ParseFloat(n, 64); err == nil && days > 0 && days < 3650 {
			return now.Add(time.Duration(days * 24 * float64(time.Hour))).UTC(), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(d).UTC(), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q is neither a time from now (90m, 4h, 2d) nor an RFC 3339 time such as 2030-01-01T00:00:00Z", s)
}

// maxPreviewAddrs bounds the addresses typed for a preview.
const maxPreviewAddrs = 100

func parseAddrs(s string) ([]netip.Addr, error) {
	fields := strings.FieldsFunc(s, func(c rune) bool { return c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r' })
	if len(fields) > maxPreviewAddrs {
		return nil, fmt.Errorf("addresses: %d given; preview at most %d at a time", len(fields), maxPreviewAddrs)
	}
	addrs := make([]netip.Addr, 0, len(fields))
	for _, f := range fields {
		a, err := netip.ParseAddr(f)
		if err != nil || a.Zone() != "" {
			return nil, fmt.Errorf("addresses: %q is not an IP address", f)
		}
		addrs = append(addrs, a.Unmap())
	}
	return addrs, nil
}

// storeError answers a failed read of an override.
func (h *handler) storeError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, store.ErrNotFound) {
		h.renderError(w, r, http.StatusNotFound, "No such override", "There is no override "+r.PathValue("id")+" (any more). The overrides page lists those there are.")
		return
	}
	h.renderError(w, r, http.StatusServiceUnavailable, "The override store failed", err.Error()+". Try again in a moment.")
}
