package loader

import (
	"context"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/reghost/reghost/internal/loader/loadertest"
)

// memState is a StateStore kept in memory: the state outlives the data
// directory, as it does in Redis.
type memState struct {
	mu sync.Mutex
	st State
}

func (m *memState) Load(context.Context) (State, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := State{Version: stateVersion, Sets: map[string]SetState{}}
	for k, v := range m.st.Sets {
		st.Sets[k] = v
	}
	return st, nil
}

func (m *memState) Save(_ context.Context, st State) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.st = st
	return nil
}

// memPublished is a Publisher and a Restorer: what it was told of is
// what it gives back, as a Redis holding the published data sets does.
type memPublished struct {
	mu       sync.Mutex
	content  map[string][]byte // set -> content
	sums     map[string]string // set -> SHA-256
	restored int
}

func newMemPublished() *memPublished {
	return &memPublished{content: map[string][]byte{}, sums: map[string]string{}}
}

func (m *memPublished) Publish(_ context.Context, in Installed) error {
	b, err := os.ReadFile(in.File)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.content[in.Set.String()], m.sums[in.Set.String()] = b, in.SHA256
	return nil
}

func (m *memPublished) Restore(_ context.Context, set Set, sum string, w io.Writer) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sums[set.String()] != sum {
		return false, nil
	}
	m.restored++
	_, err := w.Write(m.content[set.String()])
	return err == nil, err
}

// A loader whose data directory is new but whose state and data sets are
// kept elsewhere (a CronJob pod without a volume, Redis) downloads nothing
// that is installed: it restores the files from where they are published
// and then finds nothing new. Without a Restorer it fetches again; with a
// Restorer that holds something else too.
func TestRestoreInFreshDataDir(t *testing.T) {
	t.Parallel()
	mm := loadertest.NewMaxMind(t)
	db := loadertest.ASNDB(t, time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), "Google LLC")
	mm.Publish("GeoLite2-ASN", loadertest.Release{Date: "20261201", Archive: loadertest.Archive(t, "GeoLite2-ASN", "20261201", db)})
	prov := loadertest.NewProviders(t)
	prov.Set("/gcp.json", loadertest.Snapshot(t, "gcp-cloud.json"), time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))

	state, pub := &memState{}, newMemPublished()
	// Every run has a new data directory, at the same place (a new pod).
	dataDir := filepath.Join(t.TempDir(), "data")
	run := func(restorer Restorer) (GeoIPReport, CloudReport) {
		t.Helper()
		if err := os.RemoveAll(dataDir); err != nil {
			t.Fatal(err)
		}
		l, err := New(Config{DataDir: dataDir, State: state, Publishers: []Publisher{pub}, Restorer: restorer,
			HTTP: HTTPConfig{RetryWait: time.Millisecond}})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		g, err := l.GeoIP(t.Context(), GeoIPRequest{BaseURL: mm.URL, AccountID: mm.AccountID, LicenseKey: mm.LicenseKey,
			Editions: []Edition{{ID: "GeoLite2-ASN", Role: RoleASN, Dest: filepath.Join(dataDir, "asn.mmdb")}},
			Probes:   []netip.Addr{netip.MustParseAddr("8.8.8.8")}})
		if err != nil {
			t.Fatal(err)
		}
		c, err := l.Cloud(t.Context(), CloudRequest{Providers: []Provider{{Name: "gcp", URL: prov.URL + "/gcp.json", Dest: filepath.Join(dataDir, "gcp.json")}}})
		if err != nil {
			t.Fatal(err)
		}
		return g, c
	}

	g, c := run(pub)
	if g.Results[0].Action != ActionInstalled || c.Results[0].Action != ActionInstalled {
		t.Fatalf("first run: %+v %+v", g, c)
	}
	downloads := mm.Count("STORAGE")

	g, c = run(pub)
	if g.Results[0].Action != ActionUnchanged || c.Results[0].Action != ActionUnchanged {
		t.Errorf("a fresh data directory with a Restorer: %+v %+v", g, c)
	}
	if n := mm.Count("STORAGE"); n != downloads {
		t.Errorf("the database was downloaded again (%d downloads, was %d)", n, downloads)
	}
	if pub.restored != 2 {
		t.Errorf("restored %d data sets, want 2", pub.restored)
	}
	if b, err := os.ReadFile(filepath.Join(dataDir, "asn.mmdb")); err != nil || string(b) != string(db) {
		t.Errorf("the restored database is not the one installed (%v)", err)
	}
	// The cloud file was restored and is the baseline: the provider was
	// asked with its ETag and answered 304.
	if got := prov.Requests("GET", "/gcp.json"); got != 2 {
		t.Errorf("%d GETs of the ranges, want 2", got)
	}

	// Without a Restorer, or with one that holds something else, the
	// fresh directory has nothing, and the data sets are fetched again.
	g, _ = run(nil)
	if g.Results[0].Action != ActionInstalled || mm.Count("STORAGE") != downloads+1 {
		t.Errorf("without a Restorer: %+v, %d downloads", g, mm.Count("STORAGE"))
	}
	pub.sums["geoip/asn"] = "something else"
	g, _ = run(pub)
	if g.Results[0].Action != ActionInstalled || mm.Count("STORAGE") != downloads+2 {
		t.Errorf("with another data set published: %+v, %d downloads", g, mm.Count("STORAGE"))
	}
}
