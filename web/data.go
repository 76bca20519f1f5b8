package web

import (
	"net/http"
	"time"
)

// dataRow is one GeoIP database or cloud ranges file.
type dataRow struct {
	Name    string // "geoip/asn", "cloud/aws"
	File    string
	Version string // the database type, or the provider's stamp
	Built   time.Time
	Age     string
	Stale   bool
	Loaded  bool
	Err     string
}

type dataView struct {
	Rows       []dataRow
	StaleAfter string
}

// data shows every data set's version and age; one older than
// StaleAfter is marked, as its loader has likely stopped.
func (h *handler) data(w http.ResponseWriter, r *http.Request) {
	v := dataView{StaleAfter: human(h.cfg.StaleAfter)}
	if h.cfg.DataSets != nil {
		now := h.now()
		ds := h.cfg.DataSets()
		add := func(row dataRow) {
			if !row.Built.IsZero() {
				row.Age = human(now.Sub(row.Built))
				row.Stale = now.Sub(row.Built) > h.cfg.StaleAfter
			}
			v.Rows = append(v.Rows, row)
		}
		for _, d := range ds.GeoIP {
			add(dataRow{Name: "geoip/" + d.Kind, File: d.File, Version: d.DatabaseType, Built: d.BuildTime, Loaded: d.Loaded, Err: d.Err})
		}
		for _, d := range ds.Cloud {
			// A ranges file's build time is its modification time, as
			// the metrics have it: the provider's stamp is not always a
			// time.
			add(dataRow{Name: "cloud/" + d.Provider, File: d.File, Version: d.Published, Built: d.ModTime, Loaded: d.Loaded, Err: d.Err})
		}
	}
	h.render(w, r, http.StatusOK, "data", page{Title: "Data sets", Nav: "data", Data: v})
}
