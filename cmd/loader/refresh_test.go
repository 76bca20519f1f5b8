package main

// A full refresh while a real server answers decisions. It starts
// internal/app itself (rather than through internal/app/apptest) so that
// everything it needs from the server is in this one file.

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/maxmind/mmdbwriter/mmdbtype"

	"github.com/reghost/reghost/internal/app"
	"github.com/reghost/reghost/internal/config"
	"github.com/reghost/reghost/internal/loader/loadertest"
)

// startServer runs reghost on cfgText until the test ends, polling cloud
// range files every 100 ms, and returns its public address.
func startServer(t *testing.T, cfgText string) string {
	t.Helper()
	cfg, err := config.Parse([]byte(cfgText), "refresh.yaml")
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	a, err := app.New(cfg, app.Options{Getenv: func(string) string { return "" }, CloudPollInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatalf("app.New: %v", err)
	}
	if err := a.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return a.PublicAddr()
}

// The loader refreshes GeoIP and cloud data under a server answering
// decisions in a loop: no decision fails or goes back to old data once
// it has seen the new, and the new data decides within seconds.
func TestRefreshUnderLoad(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mm := loadertest.NewMaxMind(t)
	srv := loadertest.NewProviders(t)
	env := map[string]string{"MAXMIND_ACCOUNT_ID": mm.AccountID, "MAXMIND_LICENSE_KEY": mm.LicenseKey}
	asn := func(n uint32) mmdbtype.Map {
		return mmdbtype.Map{"autonomous_system_number": mmdbtype.Uint32(n), "autonomous_system_organization": mmdbtype.String(fmt.Sprint("AS", n))}
	}
	publishASN := func(date string, built time.Time, as uint32) {
		db := loadertest.DB(t, "GeoLite2-ASN", built, map[string]mmdbtype.DataType{
			"8.8.8.0/24": asn(as), "1.1.1.0/24": asn(13335), "2001:4860::/32": asn(as),
		})
		mm.Publish("GeoLite2-ASN", loadertest.Release{Date: date, Archive: loadertest.Archive(t, "GeoLite2-ASN", date, db)})
	}
	built1 := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	publishASN("20261127", built1, 15169)
	mm.Publish("GeoLite2-Country", loadertest.Release{Date: "20261127",
		Archive: loadertest.Archive(t, "GeoLite2-Country", "20261127", loadertest.CountryDB(t, built1, "US"))})
	srv.Set("/gcp.json", loadertest.Snapshot(t, "gcp-cloud.json"), time.Now().Add(-time.Hour))

	geoip := []string{"geoip", "--data-dir", dir, "--base-url", mm.URL, "--retry-wait", "10ms"}
	cloudArgs := []string{"cloud", "--data-dir", dir, "--provider", "gcp", "--url", "gcp=" + srv.URL + "/gcp.json", "--retry-wait", "10ms"}
	runLoader(t, env, geoip...).want(t, exitOK)
	runLoader(t, nil, cloudArgs...).want(t, exitOK)

	addr := startServer(t, fmt.Sprintf(`
listen: "127.0.0.1:0"
admin_listen: "127.0.0.1:0"
data_dir: %[1]s
geoip: {asn: %[1]s/GeoLite2-ASN.mmdb, country: %[1]s/GeoLite2-Country.mmdb}
cloud_ranges: {gcp: %[1]s/gcp-cloud.json}
registries:
  - {name: k8s, url: "https://k8s.example", default: true}
  - {name: old-asn, url: "https://old-asn.example"}
  - {name: new-asn, url: "https://new-asn.example"}
  - {name: moon, url: "https://moon.example"}
  - {name: gcp, url: "https://gcp.example"}
  - {name: au, url: "https://au.example"}
rules:
  - {match: {asn: 15169}, registries: [old-asn]}
  - {match: {asn: 396982}, registries: [new-asn]}
  - {match: {cloud: gcp, region: moon-central1}, registries: [moon]}
  - {match: {cloud: gcp}, registries: [gcp]}
  - {match: {country: AU}, registries: [au]}
`, dir))

	// What each address may be decided by: before the refresh, after it,
	// or either for ever.
	type expect struct{ before, after string }
	expects := map[string]expect{
		"8.8.8.8":      {"asn:15169", "asn:396982"},
		"198.51.100.7": {"default", "cloud:gcp/moon-central1"},
		"1.1.1.1":      {"country:AU", "country:AU"},
		"34.1.208.1":   {"cloud:gcp", "cloud:gcp"},
	}
	client := &http.Client{Timeout: 5 * time.Second}
	decide := func(ip string) (string, error) {
		resp, err := client.Get("http://" + addr + "/decide?ip=" + ip + "&path=/v2/pause/manifests/3.9")
		if err != nil {
			return "", err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		return resp.Header.Get("X-Reghost-Reason"), nil
	}
	for ip, e := range expects {
		if got, err := decide(ip); err != nil || got != e.before {
			t.Fatalf("before the refresh %s: %q, %v; want %q", ip, got, err, e.before)
		}
	}

	var (
		mu       sync.Mutex
		problems []string
		switched = map[string]time.Time{}
		n        int
		wg       sync.WaitGroup
	)
	stop := make(chan struct{})
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			for ip, e := range expects {
				got, err := decide(ip)
				mu.Lock()
				n++
				_, after := switched[ip]
				switch {
				case err != nil:
					problems = append(problems, ip+": "+err.Error())
				case got == e.after && e.after != e.before:
					if !after {
						switched[ip] = time.Now()
					}
				case got == e.after:
				case got == e.before && !after:
				default:
					problems = append(problems, fmt.Sprintf("%s: decided by %q (new data seen before: %v)", ip, got, after))
				}
				mu.Unlock()
			}
		}
	})

	// The refresh: a new ASN release and GCP ranges with a new region.
	publishASN("20261201", built1.AddDate(0, 0, 4), 396982)
	srv.Set("/gcp.json", loadertest.GCP(t, gcpToken+1000, gcpCreated.Add(time.Hour), func(ps []map[string]any) []map[string]any {
		return append(ps, map[string]any{"ipv4Prefix": "198.51.100.0/24", "service": "Google Cloud", "scope": "moon-central1"})
	}), time.Now())
	refreshed := time.Now()
	runLoader(t, env, geoip...).want(t, exitOK)
	runLoader(t, nil, cloudArgs...).want(t, exitOK)

	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		done := len(switched) == 2
		mu.Unlock()
		if done || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A little longer under load, to see nothing go back.
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	for _, p := range problems {
		t.Error(p)
	}
	for _, ip := range []string{"8.8.8.8", "198.51.100.7"} {
		at, ok := switched[ip]
		if !ok {
			t.Errorf("%s: the new data did not decide within 10 s of the refresh", ip)
			continue
		}
		t.Logf("%s: new data deciding %s after the refresh began", ip, at.Sub(refreshed).Round(time.Millisecond))
	}
	if n < 100 {
		t.Errorf("only %d decisions during the refresh", n)
	}
	if !strings.Contains(strings.Join(mm.Requests(), ","), "STORAGE GeoLite2-ASN_20261201") {
		t.Error("the new release was not downloaded")
	}
}
