package main

import (
	"path/filepath"
	"slices"

	"github.com/reghost/reghost/internal/cloud"
	"github.com/reghost/reghost/internal/config"
)

// defaultFile is the file name the example config
// (internal/config/example.yaml) gives a data set, used under --data-dir.
func defaultFile(name string) string {
	switch name {
	case "asn":
		return "GeoLite2-ASN.mmdb"
	case "country":
		return "GeoLite2-Country.mmdb"
	case "aws":
		return "aws-ip-ranges.json"
	case "gcp":
		return "gcp-cloud.json"
	case "azure":
		return "azure-servicetags.json"
	case "oracle":
		return "oracle-public-ip-ranges.json"
	case "digitalocean":
		return "digitalocean-geofeed.csv"
	}
	return ""
}

// paths are where a run's data sets go.
type paths struct {
	dataDir string
	geoip   map[string]string // role -> file; a role the config leaves out is absent
	cloud   map[string]string // provider -> file
	// ruleRegions lists the regions the config's rules name, per
	// provider; nil under --data-dir.
	ruleRegions map[string][]string
	// cfg is the config under --config, nil under --data-dir: its store
	// says where to publish.
	cfg *config.Config
}

// resolve reads the data paths from --config, or makes them from
// --data-dir.
func resolve(f commonFlags) (paths, error) {
	p, err := resolveRelative(f)
	if err != nil {
		return paths{}, err
	}
	// Absolute, so that the state's record of a file matches it however
	// the next run names the directory.
	abs := func(s *string) {
		if a, err := filepath.Abs(*s); err == nil {
			*s = a
		}
	}
	abs(&p.dataDir)
	for k, v := range p.geoip {
		abs(&v)
		p.geoip[k] = v
	}
	for k, v := range p.cloud {
		abs(&v)
		p.cloud[k] = v
	}
	return p, nil
}

func resolveRelative(f commonFlags) (paths, error) {
	if f.dataDir != "" {
		p := paths{dataDir: f.dataDir, geoip: map[string]string{}, cloud: map[string]string{}}
		for _, role := range []string{"asn", "country"} {
			p.geoip[role] = filepath.Join(f.dataDir, defaultFile(role))
		}
		for _, provider := range cloud.Providers() {
			p.cloud[provider] = filepath.Join(f.dataDir, defaultFile(provider))
		}
		return p, nil
	}
	cfg, err := config.Load(f.config)
	if err != nil {
		return paths{}, err
	}
	p := paths{dataDir: cfg.DataDir, geoip: map[string]string{}, cloud: map[string]string{}, ruleRegions: map[string][]string{}, cfg: cfg}
	if cfg.GeoIP.ASN != "" {
		p.geoip["asn"] = cfg.GeoIP.ASN
	}
	if cfg.GeoIP.Country != "" {
		p.geoip["country"] = cfg.GeoIP.Country
	}
	for provider, file := range cfg.CloudRanges {
		p.cloud[provider] = file
	}
	for _, r := range cfg.Rules {
		if m := r.Match; m.Cloud != "" && m.Region != "" && !slices.Contains(p.ruleRegions[m.Cloud], m.Region) {
			p.ruleRegions[m.Cloud] = append(p.ruleRegions[m.Cloud], m.Region)
		}
	}
	return p, nil
}
