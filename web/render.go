package web

import (
	"bytes"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

// page is what every template gets: the layout's parts, and the page's
// own data.
type page struct {
	Title string
	Nav   string // the section, to mark in the navigation
	Who   string // signed in as; "" on the sign-in page
	Flash string // what the last change did
	Data  any
}

// parsePages parses each page template with the layout.
func parsePages() (map[string]*template.Template, error) {
	layout, err := template.New("layout.html").Funcs(funcs).ParseFS(files, "templates/layout.html", "templates/parts.html")
	if err != nil {
		return nil, fmt.Errorf("web: %w", err)
	}
	names, err := fs.Glob(files, "templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := map[string]*template.Template{}
	for _, name := range names {
		base := strings.TrimSuffix(path.Base(name), ".html")
		if base == "layout" || base == "parts" {
			continue
		}
		t, err := template.Must(layout.Clone()).ParseFS(files, name)
		if err != nil {
			return nil, fmt.Errorf("web: %w", err)
		}
		pages[base] = t
	}
	return pages, nil
}

// render writes a page whole or, if the template fails, a 500: a page
// cut off in the middle would show a change half made.
func (h *handler) render(w http.ResponseWriter, r *http.Request, code int, name string, p page) {
	if p.Who == "" {
		p.Who = who(r)
	}
	var buf bytes.Buffer
	if err := h.pages[name].ExecuteTemplate(&buf, "layout.html", p); err != nil {
		h.log.Error("admin page: template failed", "page", name, "err", err)
		http.Error(w, "the page could not be rendered; the server's log says why", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

type errorView struct {
	Heading, Text string
}

func (h *handler) renderError(w http.ResponseWriter, r *http.Request, code int, heading, text string) {
	h.render(w, r, code, "error", page{Title: heading, Data: errorView{heading, text}})
}

func (h *handler) notFound(w http.ResponseWriter, r *http.Request) {
	h.renderError(w, r, http.StatusNotFound, "No such page", "There is nothing at "+r.URL.Path+". Use the navigation above.")
}

var funcs = template.FuncMap{
	"utc": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	},
	"iso":  func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"dur":  human,
	"ms":   func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) },
	"add":  func(a, b int) int { return a + b },
	"mul":  func(a, b int) int { return a * b },
	"join": strings.Join,
	"field": func(name, label, value string, errs map[string]string, hint string, readOnly bool) fieldView {
		return fieldView{Name: name, Label: label, Value: value, Error: errs[name], Hint: hint, ReadOnly: readOnly}
	},
}

// fieldView is one labelled input with its hint and error.
type fieldView struct {
	Name, Label, Value, Error, Hint string
	ReadOnly                        bool
}

// human renders a duration for people: "3d 4h", "2h 5m", "4m 10s", "9s".
func human(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	switch {
	case d >= 48*time.Hour && d%(24*time.Hour) < time.Hour:
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	case d >= 48*time.Hour:
		return fmt.Sprintf("%dd %dh", d/(24*time.Hour), d%(24*time.Hour)/time.Hour)
	case d >= time.Hour:
		return fmt.Sprintf("%dh %dm", d/time.Hour, d%time.Hour/time.Minute)
	case d >= time.Minute:
		return fmt.Sprintf("%dm %ds", d/time.Minute, d%time.Minute/time.Second)
	}
	return fmt.Sprintf("%ds", d/time.Second)
}
