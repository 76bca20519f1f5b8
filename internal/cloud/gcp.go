package cloud

import (
	"encoding/json"
	"fmt"
	"io"
)

const gcpHint = "a Google Cloud cloud.json file"

// gcpFile is https://www.gstatic.com/ipranges/cloud.json. Google's other
// list, goog.json, has the same shape but no scope: it covers Google's own
// services rather than customers' cloud machines, and it is refused here
// because every entry lacks a scope.
type gcpFile struct {
	SyncToken    *string            `json:"syncToken"`
	CreationTime *string            `json:"creationTime"`
	Prefixes     *[]json.RawMessage `json:"prefixes"`
}

type gcpEntry struct {
	IPv4Prefix *string `json:"ipv4Prefix"`
	IPv6Prefix *string `json:"ipv6Prefix"`
	Service    *string `json:"service"`
	Scope      *string `json:"scope"`
}

// ParseGCP reads Google Cloud's cloud.json. Each entry has exactly one of
// ipv4Prefix and ipv6Prefix; its scope is the region ("europe-west1").
// A prefix listed twice keeps its first entry.
func ParseGCP(r io.Reader) ([]Range, error) {
	ranges, _, err := parseReader("gcp", parseGCP, r)
	return ranges, err
}

func parseGCP(data []byte) ([]Range, string, error) {
	const provider = "gcp"
	var f gcpFile
	if err := decodeJSON(provider, "", data, &f); err != nil {
		return nil, "", err
	}
	switch {
	case f.SyncToken == nil:
		return nil, "", missingTop(provider, "syncToken", gcpHint)
	case f.CreationTime == nil:
		return nil, "", missingTop(provider, "creationTime", gcpHint)
	case f.Prefixes == nil:
		return nil, "", missingTop(provider, "prefixes", gcpHint)
	}

	c := newCollector(len(*f.Prefixes), nil)
	for i, raw := range *f.Prefixes {
		pos := fmt.Sprintf("prefixes[%d]", i)
		var e gcpEntry
		if err := decodeJSON(provider, pos, raw, &e); err != nil {
			return nil, "", err
		}
		key, s, fam := "ipv4Prefix", e.IPv4Prefix, ipv4
		switch {
		case e.IPv4Prefix != nil && e.IPv6Prefix != nil:
			return nil, "", fmt.Errorf("%s: %s: has both ipv4Prefix and ipv6Prefix", provider, pos)
		case e.IPv6Prefix != nil:
			key, s, fam = "ipv6Prefix", e.IPv6Prefix, ipv6
		case e.IPv4Prefix == nil:
			return nil, "", missingKey(provider, pos, "ipv4Prefix or ipv6Prefix")
		}
		switch {
		case e.Scope == nil:
			return nil, "", missingKey(provider, pos, "scope")
		case e.Service == nil:
			return nil, "", missingKey(provider, pos, "service")
		}
		p, err := parsePrefix(*s, fam)
		if err != nil {
			return nil, "", fmt.Errorf("%s: %s.%s: %w", provider, pos, key, err)
		}
		c.add(Range{Provider: provider, Region: *e.Scope, Service: *e.Service, Prefix: p})
	}
	if len(c.ranges) == 0 {
		return nil, "", noPrefixes(provider, gcpHint)
	}
	published := fmt.Sprintf("creationTime=%s syncToken=%s", *f.CreationTime, *f.SyncToken)
	return c.ranges, published, nil
}
