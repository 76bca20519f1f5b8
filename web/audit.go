package web

import (
	"bytes"
	"encoding/json"
	"net/http"
	"time"
)

type auditRow struct {
	At            time.Time
	Who, Op, ID   string
	Version       string
	Before, After string // indented JSON; "" when there was none
}

type auditView struct {
	Rows  []auditRow
	Error string
}

// auditLimit is how many changes the page shows.
const auditLimit = 100

func (h *handler) audit(w http.ResponseWriter, r *http.Request) {
	var v auditView
	entries, err := h.cfg.Overrides.Audit(r.Context(), auditLimit)
	if err != nil {
		v.Error = "The override store failed: " + err.Error() + ". Try again in a moment."
	}
	for _, e := range entries {
		v.Rows = append(v.Rows, auditRow{At: e.At, Who: e.Who, Op: e.Op, ID: e.ID, Version: e.Version.String(),
			Before: indent(e.Before), After: indent(e.After)})
	}
	h.render(w, r, http.StatusOK, "audit", page{Title: "Audit trail", Nav: "audit", Data: v})
}

func indent(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var b bytes.Buffer
	if json.Indent(&b, raw, "", "  ") != nil {
		return string(raw)
	}
	return b.String()
}
