package app

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/reghost/reghost/internal/config"
	"github.com/reghost/reghost/internal/datasync"
	"github.com/reghost/reghost/internal/loader"
	"github.com/reghost/reghost/internal/loader/loadertest"
	"github.com/reghost/reghost/internal/store"
	"github.com/reghost/reghost/internal/store/redistest"
)

// dataConfig is a replica whose data files are in its own data_dir:
// 8.8.8.8 goes to aws when the country database puts it in SE, and
// 3.132.0.1 (AWS us-east-2) when the AWS ranges are there.
const dataConfig = `
listen: "127.0.0.1:0"
admin_listen: "127.0.0.1:0"
data_dir: %[1]s
store: %[2]q
geoip: {country: %[1]s/geo/country.mmdb}
cloud_ranges: {aws: %[1]s/geo/aws.json}
health_defaults: {enabled: false}
registries:
  - {name: k8s, url: "https://k8s.example/images", default: true}
  - {name: aws, url: "https://aws.example"}
rules:
  - {match: {cloud: aws, region: us-east-2}, registries: [aws]}
  - {match: {country: SE}, registries: [aws]}
`

const (
	geoIP   = "8.8.8.8"
	cloudIP = "3.132.0.1"
)

func dataCfg(t testing.TB, dir, url string) *config.Config {
	t.Helper()
	cfg, err := config.Parse(fmt.Appendf(nil, dataConfig, dir, url), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// startDataReplica starts a server on the Redis at url with a new data
// directory. New returns once it has what Redis holds (or the timeout
// passed): the replica is ready when it returns.
func startDataReplica(t testing.TB, url string, opts Options) *replica {
	t.Helper()
	dir := t.TempDir()
	opts.Getenv = func(k string) string {
		if k == "REGHOST_ADMIN_TOKEN" {
			return sharedToken
		}
		return ""
	}
	a, err := New(dataCfg(t, dir, url), opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Listen(); err != nil {
		t.Fatal(err)
	}
	return &replica{App: a, dataDir: dir, stop: serve(t, a)}
}

// upstream is the fakes of MaxMind and AWS the loader fetches from.
type upstream struct {
	mm   *loadertest.MaxMind
	prov *loadertest.Providers
}

func newUpstream(t *testing.T, country string) *upstream {
	u := &upstream{mm: loadertest.NewMaxMind(t), prov: loadertest.NewProviders(t)}
	u.release(t, "20261201", country)
	u.prov.Set("/aws.json", loadertest.Snapshot(t, "aws-ip-ranges.json"), time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	return u
}

// release makes a GeoLite2-Country release that puts 8.8.8.8 in country
// current, and returns its database.
func (u *upstream) release(t *testing.T, date, country string) []byte {
	built, _ := time.Parse("20060102", date)
	db := loadertest.CountryDB(t, built, country)
	u.mm.Publish("GeoLite2-Country", loadertest.Release{Date: date, Archive: loadertest.Archive(t, "GeoLite2-Country", date, db)})
	return db
}

// runLoader runs `loader geoip` and `loader cloud` in-process with a new
// data directory (a CronJob pod), publishing to the Redis at url as
// cmd/loader does: the Redis client as app.OpenDataSets makes it, its
// Publisher, State and Restorer.
func (u *upstream) runLoader(t *testing.T, url string, lockWait time.Duration) error {
	t.Helper()
	dir := t.TempDir()
	cfg := dataCfg(t, dir, url)
	var c *datasync.Client
	if lockWait == 0 {
		var err error
		if c, err = OpenDataSets(cfg, nil); err != nil {
			t.Fatal(err)
		}
	} else {
		rdb, err := store.NewRedisClient(store.RedisOptions{URL: url})
		if err != nil {
			t.Fatal(err)
		}
		if c, err = datasync.NewClient(datasync.ClientConfig{Redis: rdb, LockWait: lockWait}); err != nil {
			t.Fatal(err)
		}
	}
	defer c.Close()
	l, err := loader.New(loader.Config{DataDir: dir, Publishers: []loader.Publisher{c}, State: c.State(), Restorer: c,
		HTTP: loader.HTTPConfig{RetryWait: time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, gerr := l.GeoIP(t.Context(), loader.GeoIPRequest{BaseURL: u.mm.URL, AccountID: u.mm.AccountID, LicenseKey: u.mm.LicenseKey,
		Editions: []loader.Edition{{ID: "GeoLite2-Country", Role: loader.RoleCountry, Dest: cfg.GeoIP.Country}},
		Probes:   []netip.Addr{netip.MustParseAddr(geoIP)}})
	_, cerr := l.Cloud(t.Context(), loader.CloudRequest{Providers: []loader.Provider{{Name: "aws", URL: u.prov.URL + "/aws.json", Dest: cfg.CloudRanges["aws"]}}})
	return errors.Join(gerr, cerr)
}

// hasProblem reports whether r's /readyz lists a problem containing s.
func (r *replica) hasProblem(t *testing.T, s string) bool {
	return slices.ContainsFunc(r.readyz(t).Problems, func(p string) bool { return strings.Contains(p, s) })
}

// Issue 19: the loader publishes once to Redis, and every replica gets
// the data sets with no shared volume: the two running switch at once, a
// third started later with an empty data_dir has them before it is
// ready. A version corrupted in Redis is refused by every replica, which
// keep serving the last good one, until a good one comes. A loader in a
// fresh container downloads nothing that is published already.
func TestDataSetsThroughRedis(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	up := newUpstream(t, "SE")
	a, b := startDataReplica(t, rs.URL(), Options{}), startDataReplica(t, rs.URL(), Options{})
	for _, r := range []*replica{a, b} {
		if hostFor(t, r.App, geoIP) != "k8s.example" || hostFor(t, r.App, cloudIP) != "k8s.example" {
			t.Fatal("a replica decides by data it should not have yet")
		}
	}

	if err := up.runLoader(t, rs.URL(), 0); err != nil {
		t.Fatal(err)
	}
	// The AWS file is the real one, 2.6 MB: fetching it checks it and
	// installing it parses it again, about 2 s under the race detector
	// alone and more with the rest of the suite on two CPUs. The time
	// is logged; the limit only catches a replica that never switches.
	for _, r := range []*replica{a, b} {
		t.Logf("published once, GeoIP serving after %v, cloud ranges after %v",
			r.eventually(t, "the published country database", geoIP, "aws.example", 5*time.Second),
			r.eventually(t, "the published AWS ranges", cloudIP, "aws.example", 20*time.Second))
	}

	// A loader in a new pod: the state and the data are in Redis, so it
	// asks MaxMind with a HEAD and AWS with its ETag, and downloads
	// nothing.
	downloads, gets := up.mm.Count("GET"), up.mm.Count("STORAGE")
	if err := up.runLoader(t, rs.URL(), 0); err != nil {
		t.Fatal(err)
	}
	if up.mm.Count("GET") != downloads || up.mm.Count("STORAGE") != gets {
		t.Errorf("a loader in a fresh data directory downloaded again: %q", up.mm.Requests())
	}
	if n := up.prov.Requests("GET", "/aws.json"); n != 2 {
		t.Errorf("%d GETs of the AWS ranges, want 2 (the second answered 304)", n)
	}
	if n := len(rs.Do("KEYS", "{reghost}:data:geoip/country:*").([]any)); n != 1 {
		t.Errorf("%d versions of the country database in Redis, want 1", n)
	}

	// A replica started now with an empty data_dir: ready with the data.
	c := startDataReplica(t, rs.URL(), Options{})
	if r := c.readyz(t); r.Status != "ok" || !r.GeoIP["country"] || !r.Cloud["aws"] {
		t.Errorf("a new replica's /readyz: %+v", r)
	}
	if hostFor(t, c.App, geoIP) != "aws.example" || hostFor(t, c.App, cloudIP) != "aws.example" {
		t.Error("a new replica served before it had the data sets in Redis")
	}

	// A version whose chunk is corrupted in Redis: every replica refuses
	// it and keeps serving SE.
	bad := loadertest.CountryDB(t, time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC), "US")
	sum := sha256.Sum256(bad)
	corrupt := append([]byte(nil), bad...)
	corrupt[len(corrupt)/2] ^= 0xff
	rs.Do("HSET", "{reghost}:data:geoip/country:corrupt", "0", corrupt)
	rs.Do("HSET", "{reghost}:data:geoip/country", "version", "20261205", "id", "corrupt", "sha256", hex.EncodeToString(sum[:]),
		"size", len(bad), "chunks", 1, "source", "", "build_time", "", "published_at", "")
	rs.Do("PUBLISH", "{reghost}:data", `{"name":"geoip/country","id":"corrupt"}`)
	for name, r := range map[string]*replica{"a": a, "b": b, "c": c} {
		tlsWaitFor(t, "replica "+name+" to refuse the corrupt version", func() bool { return r.hasProblem(t, "geoip/country: refused") })
		if got := hostFor(t, r.App, geoIP); got != "aws.example" {
			t.Errorf("replica %s after a corrupt version: %s, want the last good database serving", name, got)
		}
		if v, ok := metric(t, http.DefaultClient, "http://"+r.AdminAddr(), `reghost_dataset_sync_total{dataset="geoip/country",result="refused"}`); !ok || v != 1 {
			t.Errorf("replica %s: refused %v times (%v), want 1", name, v, ok)
		}
	}

	// A good new release: every replica takes it, and is in step again.
	up.release(t, "20261208", "US")
	if err := up.runLoader(t, rs.URL(), 0); err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]*replica{"a": a, "b": b, "c": c} {
		r.eventually(t, "a good release after a corrupt one", geoIP, "k8s.example", 5*time.Second)
		tlsWaitFor(t, "replica "+name+" to be in step again", func() bool { return r.readyz(t).Status == "ok" })
	}
}

// A loader that finds another publishing the same data set waits for it,
// and gives up after its lock wait: nothing of its own is published, and
// its state records nothing, so that its next run publishes.
func TestDataSetPublishLocked(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	up := newUpstream(t, "SE")
	rs.Do("SET", "{reghost}:data-lock:geoip/country", "another-loader", "PX", 60000)
	err := up.runLoader(t, rs.URL(), 300*time.Millisecond)
	if !errors.Is(err, datasync.ErrLocked) || !strings.Contains(err.Error(), "geoip/country") {
		t.Fatalf("a loader while another publishes: %v", err)
	}
	if rs.Do("EXISTS", "{reghost}:data:geoip/country") != int64(0) {
		t.Error("a publisher without the lock switched the pointer")
	}
	if rs.Do("EXISTS", "{reghost}:data:cloud/aws") != int64(1) {
		t.Error("the lock of one data set held up another")
	}
	if rs.Do("HEXISTS", "{reghost}:loader-state", "geoip/country") != int64(0) {
		t.Error("a data set not published was recorded")
	}
	rs.Do("DEL", "{reghost}:data-lock:geoip/country")
	if err := up.runLoader(t, rs.URL(), 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if rs.Do("EXISTS", "{reghost}:data:geoip/country") != int64(1) {
		t.Error("not published once the lock was free")
	}
}

// A start that cannot get the data sets within DataSyncTimeout serves
// without them and says so, and takes them as soon as it can.
func TestDataSyncStartTimeout(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	up := newUpstream(t, "SE")
	if err := up.runLoader(t, rs.URL(), 0); err != nil {
		t.Fatal(err)
	}
	a, err := New(dataCfg(t, t.TempDir(), rs.URL()), Options{DataSyncTimeout: time.Nanosecond, Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	// What /readyz says once it listens, before anything runs.
	ready := a.readiness()
	if ready.Status != "degraded" || ready.GeoIP["country"] || !slices.ContainsFunc(ready.Problems, func(p string) bool {
		return strings.Contains(p, "datasync: the data sets in Redis were not all fetched within 1ns")
	}) {
		t.Errorf("/readyz after a start that timed out: %+v", ready)
	}
	if err := a.Listen(); err != nil {
		t.Fatal(err)
	}
	r := &replica{App: a, stop: serve(t, a)}
	r.eventually(t, "the data sets after the start", geoIP, "aws.example", 5*time.Second)
	tlsWaitFor(t, "the replica to be in step", func() bool { return r.readyz(t).Status == "ok" })
}
