package loader

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/reghost/reghost/internal/cloud"
)

// DefaultMaxShrink is the largest drop in a provider's prefix count that
// is installed without --force.
const DefaultMaxShrink = 0.2

// maxRangesFile bounds a download; the largest file (Azure's) is about
// 4 MiB, and internal/cloud refuses more than 64 MiB anyway.
const maxRangesFile = 64 << 20

// DefaultURL is where a provider publishes its ranges; "" for a name
// that is not a provider. Azure's contains DateToken: Microsoft
// publishes a new dated file each week at a fixed path.
func DefaultURL(provider string) string {
	switch provider {
	case "aws":
		return "https://ip-ranges.amazonaws.com/ip-ranges.json"
	case "gcp":
		return "https://www.gstatic.com/ipranges/cloud.json"
	case "azure":
		return "https://download.microsoft.com/download/7/1/D/71D86715-5596-4529-9B13-DA13A5DE5B63/ServiceTags_Public_" + DateToken + ".json"
	case "oracle":
		return "https://docs.oracle.com/en-us/iaas/tools/public_ip_ranges.json"
	case "digitalocean":
		return "https://www.digitalocean.com/geo/google.csv"
	}
	return ""
}

// Provider is one provider's ranges to keep installed.
type Provider struct {
	Name string // as in cloud.Providers: "aws", "gcp", …
	URL  string // "": DefaultURL(Name); with DateToken: the newest dated file
	Dest string // the file the server reads
}

// CloudRequest is one `loader cloud` run.
type CloudRequest struct {
	Providers []Provider
	// RuleRegions lists, per provider, the regions the config's rules
	// name, for the report; nil when unknown.
	RuleRegions map[string][]string
	// MaxShrink is the largest drop in the prefix count accepted, as a
	// fraction (0.2: 20%); 0: DefaultMaxShrink.
	MaxShrink float64
	// Force installs a file that is older than the installed one or
	// shrank too much.
	Force bool
	// DryRun fetches, checks and compares, and changes nothing.
	DryRun bool
}

// CloudResult is what happened to one provider's file.
type CloudResult struct {
	Provider         string       `json:"provider"`
	URL              string       `json:"url,omitempty"`
	File             string       `json:"file"`
	Action           string       `json:"action"`
	Stamp            string       `json:"stamp,omitempty"`
	PreviousStamp    string       `json:"previous_stamp,omitempty"`
	Prefixes         int          `json:"prefixes"`
	PreviousPrefixes int          `json:"previous_prefixes"`
	FirstInstall     bool         `json:"first_install,omitempty"` // no installed file to compare with
	Added            int          `json:"added"`
	Removed          int          `json:"removed"`
	Regions          []RegionDiff `json:"regions,omitempty"` // regions whose prefixes changed
	// RuleRegionsMissing are regions that rules name and the new file
	// does not have: those rules match no one.
	RuleRegionsMissing []string `json:"rule_regions_missing,omitempty"`
	Error              string   `json:"error,omitempty"`
}

// CloudReport is the outcome of a run.
type CloudReport struct {
	Results []CloudResult `json:"cloud"`
}

// Cloud fetches every provider's published ranges and installs those
// that are new and pass the checks: they parse with the server's own
// parser, are not older than the installed file (by the provider's own
// stamp), and did not shrink by more than MaxShrink. A provider that
// fails leaves its file untouched and the others go on; the error joins
// every provider's.
func (l *Loader) Cloud(ctx context.Context, req CloudRequest) (CloudReport, error) {
	var rep CloudReport
	if len(req.Providers) == 0 {
		return rep, errors.New("no cloud provider to fetch")
	}
	if req.MaxShrink <= 0 {
		req.MaxShrink = DefaultMaxShrink
	}
	var dirs []string
	for i, p := range req.Providers {
		if DefaultURL(p.Name) == "" {
			return rep, fmt.Errorf("unknown cloud provider %q; known: %s", p.Name, strings.Join(cloud.Providers(), ", "))
		}
		if p.Dest == "" {
			return rep, fmt.Errorf("%s: no file to install to", p.Name)
		}
		if p.URL == "" {
			req.Providers[i].URL = DefaultURL(p.Name)
		}
		dirs = append(dirs, filepath.Dir(p.Dest))
	}
	var st State
	var err error
	if req.DryRun {
		st, err = l.state.Load(ctx)
	} else {
		var release func()
		st, release, err = l.begin(ctx, dirs)
		if err == nil {
			defer release()
		}
	}
	if err != nil {
		return rep, err
	}
	var errs []error
	for _, p := range req.Providers {
		res, err := l.provider(ctx, req, p, &st)
		if err != nil {
			err = fmt.Errorf("%s: %w", p.Name, err)
			res.Action, res.Error = ActionFailed, err.Error()
			errs = append(errs, err)
			l.log.Error("cloud ranges not installed; the installed file is untouched", "provider", p.Name, "file", p.Dest, "err", err)
		}
		rep.Results = append(rep.Results, res)
	}
	return rep, errors.Join(errs...)
}

func (l *Loader) provider(ctx context.Context, req CloudRequest, p Provider, st *State) (CloudResult, error) {
	res := CloudResult{Provider: p.Name, File: p.Dest}
	set := Set{"cloud", p.Name}
	rec := st.Sets[set.String()]
	u := p.URL
	if strings.Contains(u, DateToken) {
		var err error
		if u, err = l.findDated(ctx, p.Name, u); err != nil {
			return res, err
		}
	}
	res.URL = redact(u)
	installed := l.present(ctx, set, p.Dest, rec, !req.DryRun)

	// Ask only for something newer than what is installed, when the
	// server can tell (ETag, Last-Modified).
	h := http.Header{}
	if installed && rec.Source == res.URL {
		if rec.ETag != "" {
			h.Set("If-None-Match", rec.ETag)
		}
		if rec.Modified != "" {
			h.Set("If-Modified-Since", rec.Modified)
		}
	}
	var (
		body           []byte
		notModified    bool
		etag, modified string
	)
	err := l.http.do(ctx, request{url: u, header: h, label: p.Name + " " + filepath.Base(p.Dest), accept: []int{http.StatusNotModified}},
		func(resp *http.Response, r io.Reader) error {
			if resp.StatusCode == http.StatusNotModified {
				notModified = true
				return nil
			}
			etag, modified = resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")
			b, err := io.ReadAll(io.LimitReader(r, maxRangesFile+1))
			if err != nil {
				return err
			}
			if len(b) > maxRangesFile {
				return fmt.Errorf("the file is larger than %d MiB; not a ranges file", maxRangesFile>>20)
			}
			body = b
			return nil
		})
	if err != nil {
		return res, err
	}
	if notModified {
		res.Action, res.Stamp, res.Prefixes, res.PreviousPrefixes = ActionUnchanged, rec.Stamp, rec.Prefixes, rec.Prefixes
		l.log.Info("cloud ranges are current (not modified)", "provider", p.Name, "url", res.URL)
		return res, nil
	}
	sum := sha256.Sum256(body)
	hexSum := hex.EncodeToString(sum[:])
	if !installed {
		// A file put there by hand or by an older loader, the same as
		// the download: nothing to write, only to record.
		if sum, ok := fileSHA256(p.Dest); ok && sum == hexSum {
			rec = SetState{File: p.Dest, SHA256: sum, Size: int64(len(body)), InstalledAt: l.now().UTC()}
			if ranges, stamp, err := cloud.ParseFile(p.Name, bytes.NewReader(body)); err == nil {
				rec.Stamp, rec.BuildTime, rec.Prefixes = stamp.Published, stamp.Time, len(ranges)
			}
			installed = true
		}
	}
	if installed && rec.SHA256 == hexSum {
		res.Action, res.Stamp, res.Prefixes, res.PreviousPrefixes = ActionUnchanged, rec.Stamp, rec.Prefixes, rec.Prefixes
		l.log.Info("cloud ranges are current (same content)", "provider", p.Name, "url", res.URL)
		if !req.DryRun && (rec.ETag != etag || rec.Modified != modified || rec.Source != res.URL) {
			rec.ETag, rec.Modified, rec.Source = etag, modified, res.URL
			st.Sets[set.String()] = rec
			return res, l.record(ctx, *st)
		}
		return res, nil
	}

	ranges, stamp, err := cloud.ParseFile(p.Name, bytes.NewReader(body))
	if err != nil {
		return res, fmt.Errorf("refused: the download does not parse (%w); is the URL right?", err)
	}
	res.Stamp, res.Prefixes = stamp.Published, len(ranges)

	// The installed file is the baseline; the state stands in for it
	// when it is gone or unreadable.
	prevStamp := cloud.ParseStamp(p.Name, rec.Stamp)
	baseline := rec.Prefixes
	var old []cloud.Range
	if f, err := os.Open(p.Dest); err == nil {
		o, s, perr := cloud.ParseFile(p.Name, f)
		f.Close()
		if perr == nil {
			old, prevStamp, baseline = o, s, len(o)
		} else {
			l.log.Warn("the installed ranges file does not parse; comparing with the state file's record", "provider", p.Name, "file", p.Dest, "err", perr)
		}
	}
	res.PreviousStamp, res.PreviousPrefixes = prevStamp.Published, baseline

	ruled := func(region string) bool { return slices.Contains(req.RuleRegions[p.Name], region) }
	if old == nil {
		res.FirstInstall = true
		res.Added = len(ranges)
	} else {
		res.Regions, res.Added, res.Removed = diffRanges(old, ranges, ruled)
	}
	have := regionSet(ranges)
	for _, r := range req.RuleRegions[p.Name] {
		if !slices.Contains(have, r) && !slices.Contains(res.RuleRegionsMissing, r) {
			res.RuleRegionsMissing = append(res.RuleRegionsMissing, r)
		}
	}

	if c, ok := stamp.Compare(prevStamp); ok && c < 0 {
		if !req.Force {
			return res, fmt.Errorf("refused: the download (%s) is older than the installed file (%s); a stale mirror or cache? (--force installs it anyway)", stamp, prevStamp)
		}
		l.log.Warn("installing older ranges (forced)", "provider", p.Name, "stamp", stamp.Published, "installed", prevStamp.Published)
	}
	if baseline > 0 && float64(len(ranges)) < float64(baseline)*(1-req.MaxShrink) {
		drop := 100 * float64(baseline-len(ranges)) / float64(baseline)
		if !req.Force {
			return res, fmt.Errorf("refused: %d prefixes, down from %d (%.1f%% fewer, more than the %.0f%% allowed); a partial file? (--max-shrink sets the limit, --force installs it anyway)",
				len(ranges), baseline, drop, 100*req.MaxShrink)
		}
		l.log.Warn("installing ranges that shrank sharply (forced)", "provider", p.Name, "prefixes", len(ranges), "was", baseline)
	}
	if req.DryRun {
		res.Action = ActionNew
		return res, nil
	}

	s, err := stage(p.Dest, bytes.NewReader(body), maxRangesFile)
	if err != nil {
		return res, err
	}
	defer s.remove()
	if err := s.install(); err != nil {
		return res, err
	}
	in := Installed{Set: set, File: p.Dest, SHA256: s.sha256, Size: s.size, Version: stamp.Published,
		Source: res.URL, BuildTime: stamp.Time, InstalledAt: l.now().UTC()}
	l.log.Info("cloud ranges installed", "provider", p.Name, "file", p.Dest, "stamp", stamp.Published,
		"prefixes", len(ranges), "added", res.Added, "removed", res.Removed)
	res.Action = ActionInstalled
	if err := l.publish(ctx, in); err != nil {
		return res, err
	}
	st.Sets[set.String()] = SetState{File: p.Dest, SHA256: s.sha256, Size: s.size, Source: res.URL,
		InstalledAt: in.InstalledAt, BuildTime: stamp.Time, Stamp: stamp.Published, ETag: etag, Modified: modified,
		Prefixes: len(ranges)}
	return res, l.record(ctx, *st)
}
