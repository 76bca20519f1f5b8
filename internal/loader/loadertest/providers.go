package loadertest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Providers is a fake of the providers' download servers: it serves
// whatever file a test puts at a path, with Last-Modified and an ETag, and
// answers conditional GETs as a CDN does (304).
type Providers struct {
	URL string

	mu       sync.Mutex
	files    map[string]served
	requests map[string]int // "GET /aws.json" -> count
	status   map[string]int
}

type served struct {
	data []byte
	mod  time.Time
}

// NewProviders starts the fake, closed when the test ends.
func NewProviders(t testing.TB) *Providers {
	p := &Providers{files: map[string]served{}, requests: map[string]int{}, status: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}

// Set serves data at path (such as "/aws/ip-ranges.json"), modified at
// mod.
func (p *Providers) Set(path string, data []byte, mod time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.files[path] = served{data, mod}
}

// FailWith answers requests for path with code (0: normally again).
func (p *Providers) FailWith(path string, code int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.status[path] = code
}

// Requests counts the requests for path with method.
func (p *Providers) Requests(method, path string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.requests[method+" "+path]
}

func (p *Providers) serve(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.requests[r.Method+" "+r.URL.Path]++
	f, ok := p.files[r.URL.Path]
	code := p.status[r.URL.Path]
	p.mu.Unlock()
	switch {
	case code != 0:
		http.Error(w, http.StatusText(code), code)
		return
	case !ok:
		http.NotFound(w, r)
		return
	}
	sum := sha256.Sum256(f.data)
	w.Header().Set("ETag", `"`+hex.EncodeToString(sum[:8])+`"`)
	http.ServeContent(w, r, filepath.Base(r.URL.Path), f.mod, bytes.NewReader(f.data))
}

// SnapshotDir is the repository's testdata/cloud: real, unmodified
// provider files (testdata/README.md).
func SnapshotDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "testdata", "cloud")
}

// Snapshot reads a provider's snapshot file by name ("gcp-cloud.json").
func Snapshot(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(SnapshotDir(), name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// GCP is Google Cloud's cloud.json snapshot with its syncToken and
// creationTime set, and its prefixes passed through edit (nil: kept).
func GCP(t testing.TB, syncToken int64, created time.Time, edit func([]map[string]any) []map[string]any) []byte {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(Snapshot(t, "gcp-cloud.json"), &doc); err != nil {
		t.Fatal(err)
	}
	doc["syncToken"] = strconv.FormatInt(syncToken, 10)
	doc["creationTime"] = created.UTC().Format("2006-01-02T15:04:05.000000")
	if edit != nil {
		raw := doc["prefixes"].([]any)
		ps := make([]map[string]any, len(raw))
		for i, p := range raw {
			ps[i] = p.(map[string]any)
		}
		ps = edit(ps)
		out := make([]any, len(ps))
		for i, p := range ps {
			out[i] = p
		}
		doc["prefixes"] = out
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return b
}
