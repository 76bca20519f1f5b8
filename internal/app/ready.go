package app

import (
	"fmt"

	"github.com/reghost/reghost/internal/cloud"
	"github.com/reghost/reghost/internal/geo"
)

// Readiness is the /readyz report. It is built from state the server
// already holds, never by asking the store or reading files, so that it
// answers at once whatever is slow or down. The status is "degraded",
// with the reasons in Problems, when the store or a configured data set
// is not serving as configured; the answer stays 200 because decisions
// still work, through the fallback if need be.
type Readiness struct {
	Status string          `json:"status"`
	Config bool            `json:"config"`
	Store  string          `json:"store"`
	GeoIP  map[string]bool `json:"geoip"`
	Cloud  map[string]bool `json:"cloud"`
	// Registries: how many of those health checks probe are up, and
	// whether health is ignored (panic).
	Registries registriesReady `json:"registries"`
	Problems   []string        `json:"problems,omitempty"`
}

type registriesReady struct {
	Up     int  `json:"up"`
	Probed int  `json:"probed"`
	Panic  bool `json:"panic"`
}

func (a *App) readiness() Readiness {
	r := Readiness{Status: "ok", Config: true, Store: "ok", GeoIP: map[string]bool{}, Cloud: map[string]bool{}}
	problem := func(format string, args ...any) {
		r.Status = "degraded"
		r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
	}
	if err := a.overrides.StoreError(); err != nil {
		r.Store = "failing"
		problem("store: %v", err)
	}
	hs := a.prober.status()
	r.Registries = registriesReady{Up: hs.Up, Probed: hs.Probed, Panic: hs.Panic}
	if hs.Panic {
		problem("health: only %d of %d probed registries are up: most likely reghost's own trouble (egress, DNS, proxy, CA bundle); health is ignored for routing", hs.Up, hs.Probed)
	}
	for _, d := range a.geo.DataSets() {
		r.GeoIP[d.Kind] = d.Loaded
		switch {
		case !d.Loaded:
			problem("geoip.%s: not loaded: %s", d.Kind, orNone(d.Err))
		case d.Err != "":
			problem("geoip.%s: serving the last good database: %s", d.Kind, d.Err)
		}
	}
	for _, d := range a.cloud.DataSets() {
		r.Cloud[d.Provider] = d.Loaded
		switch {
		case !d.Loaded:
			problem("cloud_ranges.%s: not loaded: %s", d.Provider, orNone(d.Err))
		case d.Err != "":
			problem("cloud_ranges.%s: serving the last good ranges: %s", d.Provider, d.Err)
		}
	}
	return r
}

func orNone(err string) string {
	if err == "" {
		return "no file yet"
	}
	return err
}

// dataSets is the admin API's /api/v1/datasets: every configured GeoIP
// database and cloud ranges file, loaded or not.
func (a *App) dataSets() any {
	return struct {
		GeoIP []geo.DataSet   `json:"geoip"`
		Cloud []cloud.DataSet `json:"cloud"`
	}{orEmpty(a.geo.DataSets()), orEmpty(a.cloud.DataSets())}
}

// orEmpty is s, or an empty slice for nil: [] in JSON, not null.
func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
