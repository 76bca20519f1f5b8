package app

import (
	"fmt"
	"time"

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
	for _, p := range a.dataSyncProblems() {
		problem("%s", p)
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
// database and cloud ranges file, loaded or not. Each one serving has
// its age: the time since it was built, by the clock of this call (a
// cloud ranges file's build time is its modification time, which the
// loader sets only when it installs a changed file).
func (a *App) dataSets() any {
	type geoSet struct {
		geo.DataSet
		AgeSeconds *int64 `json:"age_seconds,omitempty"`
	}
	type cloudSet struct {
		cloud.DataSet
		AgeSeconds *int64 `json:"age_seconds,omitempty"`
	}
	now := time.Now()
	out := struct {
		GeoIP []geoSet   `json:"geoip"`
		Cloud []cloudSet `json:"cloud"`
	}{[]geoSet{}, []cloudSet{}}
	for _, d := range a.geo.DataSets() {
		out.GeoIP = append(out.GeoIP, geoSet{d, ageSeconds(d.Loaded, d.BuildTime, now)})
	}
	for _, d := range a.cloud.DataSets() {
		out.Cloud = append(out.Cloud, cloudSet{d, ageSeconds(d.Loaded, d.ModTime, now)})
	}
	return out
}

// ageSeconds is how long before now a serving data set was built, in
// whole seconds (0 for a build time ahead of the clock); nil when it is
// not serving or its build time is unknown.
func ageSeconds(loaded bool, built, now time.Time) *int64 {
	if !loaded || built.IsZero() {
		return nil
	}
	age := max(0, int64(now.Sub(built)/time.Second))
	return &age
}
