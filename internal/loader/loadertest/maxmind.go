// Package loadertest imitates, for tests, the servers the loader talks
// to: MaxMind's download endpoint (HEAD and GET, basic auth, the .sha256
// companion, a redirect of the archive to a second host) and the cloud
// providers' range files. It also builds what they serve: .mmdb files
// with internal/geo/geotest's writer, MaxMind-shaped tar.gz archives, and
// edited copies of the real range snapshots in testdata/cloud.
package loadertest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// Release is what the fake MaxMind serves for one edition.
type Release struct {
	Date    string // YYYYMMDD
	Archive []byte
	// SHA256 is served as the .sha256 companion; "" serves the archive's.
	SHA256       string
	LastModified time.Time
}

// MaxMind is a fake of download.maxmind.com: API (URL) and object storage
// (Storage), where archive downloads are redirected, as MaxMind does.
type MaxMind struct {
	URL        string // the base URL to give the loader (--base-url)
	StorageURL string
	AccountID  string
	LicenseKey string

	mu          sync.Mutex
	releases    map[string]Release
	requests    []string // "HEAD GeoLite2-ASN tar.gz", "GET GeoLite2-ASN tar.gz.sha256", "STORAGE GeoLite2-ASN_20261201.tar.gz"
	storageAuth []string // the Authorization header of every storage request ("" when none)
	failures    []failure
	stall       bool // storage sends the start of the archive, then nothing
}

// NewMaxMind starts the fake, closed when the test ends.
func NewMaxMind(t testing.TB) *MaxMind {
	m := &MaxMind{AccountID: "123456", LicenseKey: "test-license-key_0123", releases: map[string]Release{}}
	storage := httptest.NewServer(http.HandlerFunc(m.serveStorage))
	t.Cleanup(storage.Close)
	api := httptest.NewServer(http.HandlerFunc(m.serveAPI))
	t.Cleanup(api.Close)
	m.URL, m.StorageURL = api.URL, storage.URL
	return m
}

// Publish makes r the current release of edition.
func (m *MaxMind) Publish(edition string, r Release) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r.LastModified.IsZero() {
		r.LastModified, _ = time.Parse("20060102", r.Date)
	}
	m.releases[edition] = r
}

// failure answers requests that start with prefix (as Requests lists
// them) with code, times times (0: always).
type failure struct {
	prefix string
	code   int
	times  int
}

// FailWith answers the requests that start with prefix ("HEAD", "GET",
// "GET GeoLite2-ASN tar.gz", "STORAGE") with code: the next times of them,
// or every one when times is 0. Failures apply in the order given.
func (m *MaxMind) FailWith(prefix string, code, times int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.failures = append(m.failures, failure{prefix, code, times})
}

// failing returns the status to fail req with, or 0; m.mu is held.
func (m *MaxMind) failing(req string) int {
	for i := range m.failures {
		f := &m.failures[i]
		if !strings.HasPrefix(req, f.prefix) || f.times < 0 {
			continue
		}
		if f.times > 0 {
			f.times--
			if f.times == 0 {
				f.times = -1 // used up
			}
		}
		return f.code
	}
	return 0
}

// Stall makes storage send the headers and a little of the archive, then
// nothing until the client gives up.
func (m *MaxMind) Stall(on bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stall = on
}

// Requests returns the requests received so far, in order.
func (m *MaxMind) Requests() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.requests...)
}

// Count returns how many requests so far start with prefix ("HEAD",
// "GET", "STORAGE", "GET GeoLite2-ASN tar.gz.sha256", …).
func (m *MaxMind) Count(prefix string) int {
	n := 0
	for _, r := range m.Requests() {
		if strings.HasPrefix(r, prefix) {
			n++
		}
	}
	return n
}

// StorageAuthorization returns the Authorization header of every request
// the storage host received.
func (m *MaxMind) StorageAuthorization() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.storageAuth...)
}

// serveAPI imitates GET|HEAD /geoip/databases/{edition}/download?suffix=…[&date=…].
func (m *MaxMind) serveAPI(w http.ResponseWriter, r *http.Request) {
	edition, ok := strings.CutPrefix(r.URL.Path, "/geoip/databases/")
	edition, ok2 := strings.CutSuffix(edition, "/download")
	suffix, date := r.URL.Query().Get("suffix"), r.URL.Query().Get("date")
	req := strings.TrimSpace(r.Method + " " + edition + " " + suffix)
	m.mu.Lock()
	m.requests = append(m.requests, req)
	rel, known := m.releases[edition]
	status := m.failing(req)
	m.mu.Unlock()

	user, pass, hasAuth := r.BasicAuth()
	switch {
	case !ok || !ok2 || strings.Contains(edition, "/"):
		http.NotFound(w, r)
	case !hasAuth || user != m.AccountID || pass != m.LicenseKey:
		jsonError(w, http.StatusUnauthorized, "INVALID_LICENSE_KEY", "Invalid account ID or license key")
	case status != 0:
		jsonError(w, status, "FAKE", http.StatusText(status))
	case !known || (date != "" && date != rel.Date):
		jsonError(w, http.StatusNotFound, "NOT_FOUND", "Database edition not found")
	case suffix == "tar.gz" && r.Method == http.MethodHead:
		w.Header().Set("Content-Disposition", "attachment; filename="+edition+"_"+rel.Date+".tar.gz")
		w.Header().Set("Last-Modified", rel.LastModified.UTC().Format(http.TimeFormat))
		w.Header().Set("Content-Type", "application/gzip")
	case suffix == "tar.gz" && r.Method == http.MethodGet:
		// Object storage, with a signed URL as MaxMind's redirect has.
		http.Redirect(w, r, m.StorageURL+"/"+edition+"_"+rel.Date+".tar.gz?X-Signature=abc", http.StatusFound)
	case suffix == "tar.gz.sha256" && r.Method == http.MethodGet:
		sum := rel.SHA256
		if sum == "" {
			h := sha256.Sum256(rel.Archive)
			sum = hex.EncodeToString(h[:])
		}
		w.Header().Set("Content-Disposition", "attachment; filename="+edition+"_"+rel.Date+".tar.gz.sha256")
		fmt.Fprintf(w, "%s  %s_%s.tar.gz\n", sum, edition, rel.Date)
	default:
		jsonError(w, http.StatusBadRequest, "BAD_REQUEST", "bad suffix or method")
	}
}

func (m *MaxMind) serveStorage(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/")
	req := "STORAGE " + name
	m.mu.Lock()
	m.requests = append(m.requests, req)
	m.storageAuth = append(m.storageAuth, r.Header.Get("Authorization"))
	var archive []byte
	for ed, rel := range m.releases {
		if name == ed+"_"+rel.Date+".tar.gz" {
			archive = rel.Archive
		}
	}
	stall, code := m.stall, m.failing(req)
	m.mu.Unlock()
	switch {
	case code != 0:
		http.Error(w, http.StatusText(code), code)
		return
	case archive == nil:
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/gzip")
	w.Header().Set("Content-Length", fmt.Sprint(len(archive)))
	if stall {
		w.Write(archive[:len(archive)/4])
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		return
	}
	w.Write(archive)
}

func jsonError(w http.ResponseWriter, code int, short, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	fmt.Fprintf(w, `{"code":%q,"error":%q}`+"\n", short, msg)
}
