package web

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/reghost/reghost/internal/traffic"
)

// chart is a stacked bar chart of decisions per minute, drawn on the
// server as SVG: no script, no style attributes (classes pick the
// colours from the stylesheet), a title and a summary for screen
// readers, and the same figures in tables beside it.
type chart struct {
	ID, Title, Desc string
	Width, Height   int
	Rects           []rect
	Legend          []legendItem
	Max             uint64 // the tallest minute, the y axis' top
	Rows            []chartRow
	Series          []string
}

type rect struct {
	X, Y, W, H int
	Class      string
	Label      string
}

type legendItem struct {
	Class, Name string
	Total       uint64
	Share       string
}

type chartRow struct {
	Start  time.Time
	Total  uint64
	Values []uint64
}

const (
	chartW   = 720
	chartH   = 180
	barW     = chartW / traffic.Minutes
	seriesNo = 9 // colours in the stylesheet, .s0 to .s8
)

type trafficView struct {
	None     bool // no recorder
	Total    uint64
	Registry chart
	Kind     chart
	Sampled  int
}

func (h *handler) traffic(w http.ResponseWriter, r *http.Request) {
	v := trafficView{None: h.cfg.Traffic == nil}
	if h.cfg.Traffic != nil {
		now := h.now()
		s := h.cfg.Traffic.Snapshot(now)
		v.Total, _, _ = s.Totals()
		v.Registry = newChart("by-registry", "Decisions per minute by registry, this replica, last hour", s.Registries, s.Minutes,
			func(m traffic.Minute) []uint64 { return m.ByRegistry })
		v.Kind = newChart("by-kind", "Decisions per minute by reason kind, this replica, last hour", traffic.Kinds, s.Minutes,
			func(m traffic.Minute) []uint64 { return m.ByKind })
		v.Sampled = len(h.cfg.Traffic.Sample(now))
	}
	h.render(w, r, http.StatusOK, "traffic", page{Title: "Traffic", Nav: "traffic", Data: v})
}

func newChart(id, title string, series []string, minutes []traffic.Minute, values func(traffic.Minute) []uint64) chart {
	c := chart{ID: id, Title: title, Width: chartW, Height: chartH, Series: series}
	totals := make([]uint64, len(series))
	var all uint64
	for _, m := range minutes {
		c.Max = max(c.Max, m.Total)
		vals := values(m)
		for i, n := range vals {
			totals[i] += n
		}
		all += m.Total
		c.Rows = append(c.Rows, chartRow{Start: m.Start, Total: m.Total, Values: vals})
	}
	for i, m := range minutes {
		y := chartH
		for j, n := range values(m) {
			if n == 0 || c.Max == 0 {
				continue
			}
			hgt := max(1, int(n*uint64(chartH)/c.Max))
			y -= hgt
			c.Rects = append(c.Rects, rect{X: i * barW, Y: y, W: barW - 2, H: hgt, Class: fmt.Sprintf("s%d", j%seriesNo),
				Label: fmt.Sprintf("%s: %d %s", m.Start.UTC().Format("15:04"), n, series[j])})
		}
	}
	var parts []string
	for i, name := range series {
		share := "0%"
		if all > 0 {
			share = fmt.Sprintf("%.0f%%", float64(totals[i])*100/float64(all))
		}
		if totals[i] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", name, totals[i]))
		}
		c.Legend = append(c.Legend, legendItem{Class: fmt.Sprintf("s%d", i%seriesNo), Name: name, Total: totals[i], Share: share})
	}
	c.Desc = fmt.Sprintf("%d decisions in the last hour", all)
	if len(parts) > 0 {
		c.Desc += ": " + strings.Join(parts, ", ")
	}
	return c
}
