package loader

import (
	"cmp"
	"net/netip"
	"slices"

	"github.com/reghost/reghost/internal/cloud"
)

// RegionDiff is how one region's prefixes changed between the installed
// file and the new one. A prefix that moved from one region to another is
// removed from the first and added to the second.
type RegionDiff struct {
	Region  string         `json:"region"` // "" for prefixes without a region (Azure's cloud-wide tag)
	Added   []netip.Prefix `json:"added,omitempty"`
	Removed []netip.Prefix `json:"removed,omitempty"`
	// New is set for a region the installed file did not have, Gone for
	// one the new file does not have.
	New  bool `json:"new,omitempty"`
	Gone bool `json:"gone,omitempty"`
	// Ruled is whether a rule of the config names the region (known only
	// when the loader was given the config).
	Ruled bool `json:"ruled,omitempty"`
}

// diffRanges compares two parses of a provider's file, region by region,
// in region order; prefixes are in address order. ruled says whether a
// rule names a region.
func diffRanges(old, cur []cloud.Range, ruled func(string) bool) (regions []RegionDiff, added, removed int) {
	was := make(map[netip.Prefix]string, len(old))
	oldRegions := map[string]bool{}
	for _, r := range old {
		was[r.Prefix] = r.Region
		oldRegions[r.Region] = true
	}
	is := make(map[netip.Prefix]string, len(cur))
	newRegions := map[string]bool{}
	for _, r := range cur {
		is[r.Prefix] = r.Region
		newRegions[r.Region] = true
	}
	by := map[string]*RegionDiff{}
	get := func(region string) *RegionDiff {
		d := by[region]
		if d == nil {
			d = &RegionDiff{Region: region, New: !oldRegions[region], Gone: !newRegions[region], Ruled: ruled(region)}
			by[region] = d
		}
		return d
	}
	for p, region := range is {
		if prev, ok := was[p]; !ok || prev != region {
			get(region).Added = append(get(region).Added, p)
			added++
		}
	}
	for p, region := range was {
		if now, ok := is[p]; !ok || now != region {
			get(region).Removed = append(get(region).Removed, p)
			removed++
		}
	}
	for _, d := range by {
		slices.SortFunc(d.Added, comparePrefix)
		slices.SortFunc(d.Removed, comparePrefix)
		regions = append(regions, *d)
	}
	slices.SortFunc(regions, func(a, b RegionDiff) int { return cmp.Compare(a.Region, b.Region) })
	return regions, added, removed
}

func comparePrefix(a, b netip.Prefix) int {
	return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
}

// regionSet lists the distinct regions of a parse, sorted.
func regionSet(rs []cloud.Range) []string {
	seen := map[string]bool{}
	var out []string
	for _, r := range rs {
		if !seen[r.Region] {
			seen[r.Region] = true
			out = append(out, r.Region)
		}
	}
	slices.Sort(out)
	return out
}

func prefixStrings(ps []netip.Prefix) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}
