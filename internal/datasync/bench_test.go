package datasync

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/reghost/reghost/internal/geo/geotest"
	"github.com/reghost/reghost/internal/store/redistest"
)

// BenchmarkFullScaleCountry publishes the full-scale Country database
// (GeoLite2's size, internal/geo/geotest) to a Redis on loopback in
// 1 MiB chunks, fetches it, and syncs it into a server's file (fetch,
// SHA-256, internal/geo's checks, rename), reporting each step's time.
func BenchmarkFullScaleCountry(b *testing.B) {
	_, countryPath := geotest.FullScale(b)
	db, err := os.ReadFile(countryPath)
	if err != nil {
		b.Fatal(err)
	}
	sum := sha256.Sum256(db)
	srv := redistest.Start(b)
	c := newTestClient(b, srv, "", func(cfg *ClientConfig) { cfg.ChunkSize = 0 })
	dest := filepath.Join(b.TempDir(), "country.mmdb")
	sy, err := NewSyncer(SyncerConfig{Client: c, Targets: Targets("", dest, nil)})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(db)))
	var publish, fetch, syncing time.Duration
	for b.Loop() {
		os.Remove(dest)
		// A new version every time: same content, another publish.
		srv.Do("DEL", "{reghost}:data:geoip/country")
		start := time.Now()
		p, _, err := c.publish(b.Context(), Pointer{Name: "geoip/country", SHA256: hex.EncodeToString(sum[:]), Size: int64(len(db))}, bytes.NewReader(db))
		if err != nil {
			b.Fatal(err)
		}
		publish += time.Since(start)
		start = time.Now()
		if err := c.Fetch(b.Context(), p, io.Discard); err != nil {
			b.Fatal(err)
		}
		fetch += time.Since(start)
		start = time.Now()
		if err := sy.Sync(b.Context()); err != nil {
			b.Fatal(err)
		}
		syncing += time.Since(start)
	}
	n := float64(b.N)
	b.ReportMetric(float64(len(db))/(1<<20), "MiB")
	b.ReportMetric(publish.Seconds()*1000/n, "publish-ms")
	b.ReportMetric(fetch.Seconds()*1000/n, "fetch-ms")
	b.ReportMetric(syncing.Seconds()*1000/n, "sync-ms")
}
