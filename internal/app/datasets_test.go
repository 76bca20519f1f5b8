package app

import (
	"encoding/json"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// GET /api/v1/datasets gives each serving data set's age in seconds,
// from its build time (a cloud ranges file's modification time), for
// alerts on stale data; a data set that is not serving has none.
func TestDataSetAge(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	aws, err := os.ReadFile("../../testdata/cloud/aws-ip-ranges.json")
	if err != nil {
		t.Fatal(err)
	}
	awsFile := filepath.Join(dir, "aws.json")
	if err := os.WriteFile(awsFile, aws, 0o644); err != nil {
		t.Fatal(err)
	}
	installed := time.Now().Add(-3 * time.Hour)
	if err := os.Chtimes(awsFile, installed, installed); err != nil {
		t.Fatal(err)
	}
	a := newApp(t, `geoip: {asn: ../../testdata/maxmind/GeoLite2-ASN-Test.mmdb}
cloud_ranges: {aws: `+awsFile+`, gcp: `+filepath.Join(dir, "missing.json")+`}
`, Options{})
	serve(t, a)
	req, _ := http.NewRequest("GET", "http://"+a.AdminAddr()+"/api/v1/datasets", nil)
	req.Header.Set("Authorization", "Bearer "+a.AdminToken())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct {
		GeoIP []struct {
			Kind       string    `json:"kind"`
			BuildTime  time.Time `json:"build_time"`
			AgeSeconds *float64  `json:"age_seconds"`
		} `json:"geoip"`
		Cloud []struct {
			Provider   string   `json:"provider"`
			AgeSeconds *float64 `json:"age_seconds"`
		} `json:"cloud"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%d, %v", resp.StatusCode, err)
	}
	near := func(age *float64, want time.Duration) bool {
		return age != nil && math.Abs(*age-want.Seconds()) <= 5
	}
	if len(got.GeoIP) != 1 || got.GeoIP[0].BuildTime.IsZero() || !near(got.GeoIP[0].AgeSeconds, time.Since(got.GeoIP[0].BuildTime)) {
		t.Errorf("geoip: %+v, want the age since its build time", got.GeoIP)
	}
	ages := map[string]*float64{}
	for _, c := range got.Cloud {
		ages[c.Provider] = c.AgeSeconds
	}
	if len(got.Cloud) != 2 || !near(ages["aws"], 3*time.Hour) {
		t.Errorf("cloud/aws: age %v, want about %d", ages["aws"], int((3 * time.Hour).Seconds()))
	}
	if a, ok := ages["gcp"]; !ok || a != nil {
		t.Errorf("cloud/gcp, not loaded: age %v, want none", a)
	}
}
