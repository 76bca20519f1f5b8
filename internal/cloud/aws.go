package cloud

import (
	"encoding/json"
	"fmt"
	"io"
)

// awsGlobal is the region AWS gives to prefixes used in many regions
// (CloudFront, Global Accelerator, Route 53, ...).
const awsGlobal = "GLOBAL"

// awsCatchAll is the service AWS lists every prefix under, besides the
// specific service (EC2, S3, ...) that it also lists many of them under.
const awsCatchAll = "AMAZON"

const awsHint = "an AWS ip-ranges.json file"

// awsFile is https://ip-ranges.amazonaws.com/ip-ranges.json. Pointers tell
// a missing key from an empty one: all four keys are required, which is
// what rejects another provider's JSON (GCP's cloud.json has syncToken and
// prefixes too, but no createDate).
type awsFile struct {
	SyncToken    *string            `json:"syncToken"`
	CreateDate   *string            `json:"createDate"`
	Prefixes     *[]json.RawMessage `json:"prefixes"`
	IPv6Prefixes *[]json.RawMessage `json:"ipv6_prefixes"`
}

// awsEntry is one element of prefixes (ip_prefix) or ipv6_prefixes
// (ipv6_prefix). network_border_group is not kept: it names where AWS
// announces the prefix, which for routing purposes is the region.
type awsEntry struct {
	IPPrefix   *string `json:"ip_prefix"`
	IPv6Prefix *string `json:"ipv6_prefix"`
	Region     *string `json:"region"`
	Service    *string `json:"service"`
}

// ParseAWS reads AWS's ip-ranges.json. Both prefixes and ipv6_prefixes are
// read; the region is kept as published, "GLOBAL" included.
//
// AWS lists one prefix once per service (AMAZON for all, plus EC2, S3, ...),
// and the result holds one Range per prefix: the first entry, replaced by a
// later one that has a specific region where the kept one is GLOBAL, or
// that has the same region and a specific service where the kept one is
// AMAZON. So a prefix listed as AMAZON then EC2 comes out as EC2.
func ParseAWS(r io.Reader) ([]Range, error) {
	ranges, _, err := parseReader("aws", parseAWS, r)
	return ranges, err
}

func parseAWS(data []byte) ([]Range, string, error) {
	const provider = "aws"
	var f awsFile
	if err := decodeJSON(provider, "", data, &f); err != nil {
		return nil, "", err
	}
	switch {
	case f.SyncToken == nil:
		return nil, "", missingTop(provider, "syncToken", awsHint)
	case f.CreateDate == nil:
		return nil, "", missingTop(provider, "createDate", awsHint)
	case f.Prefixes == nil:
		return nil, "", missingTop(provider, "prefixes", awsHint)
	case f.IPv6Prefixes == nil:
		return nil, "", missingTop(provider, "ipv6_prefixes", awsHint)
	}

	c := newCollector(len(*f.Prefixes)+len(*f.IPv6Prefixes), awsPrefer)
	lists := []struct {
		name, key string
		fam       family
		entries   []json.RawMessage
	}{
		{"prefixes", "ip_prefix", ipv4, *f.Prefixes},
		{"ipv6_prefixes", "ipv6_prefix", ipv6, *f.IPv6Prefixes},
	}
	for _, l := range lists {
		for i, raw := range l.entries {
			pos := fmt.Sprintf("%s[%d]", l.name, i)
			var e awsEntry
			if err := decodeJSON(provider, pos, raw, &e); err != nil {
				return nil, "", err
			}
			s := e.IPPrefix
			if l.fam == ipv6 {
				s = e.IPv6Prefix
			}
			switch {
			case s == nil:
				return nil, "", missingKey(provider, pos, l.key)
			case e.Region == nil:
				return nil, "", missingKey(provider, pos, "region")
			case e.Service == nil:
				return nil, "", missingKey(provider, pos, "service")
			}
			p, err := parsePrefix(*s, l.fam)
			if err != nil {
				return nil, "", fmt.Errorf("%s: %s.%s: %w", provider, pos, l.key, err)
			}
			c.add(Range{Provider: provider, Region: *e.Region, Service: *e.Service, Prefix: p})
		}
	}
	if len(c.ranges) == 0 {
		return nil, "", noPrefixes(provider, awsHint)
	}
	published := fmt.Sprintf("createDate=%s syncToken=%s", *f.CreateDate, *f.SyncToken)
	return c.ranges, published, nil
}

// awsPrefer says whether next, listed later for the same prefix, describes
// it better than kept: a real region beats GLOBAL, and within one region a
// specific service beats the catch-all AMAZON. Otherwise the first entry
// stays, so that the result does not depend on more than the file's order.
func awsPrefer(kept, next Range) bool {
	if kept.Region == awsGlobal && next.Region != awsGlobal && next.Region != "" {
		return true
	}
	return kept.Region == next.Region && kept.Service == awsCatchAll && next.Service != awsCatchAll
}
