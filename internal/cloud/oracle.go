package cloud

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

const oracleHint = "an Oracle Cloud public_ip_ranges.json file"

// oracleFile is https://docs.oracle.com/iaas/tools/public_ip_ranges.json.
type oracleFile struct {
	LastUpdated *string            `json:"last_updated_timestamp"`
	Regions     *[]json.RawMessage `json:"regions"`
}

type oracleRegion struct {
	Region *string `json:"region"`
	CIDRs  *[]struct {
		CIDR *string  `json:"cidr"`
		Tags []string `json:"tags"`
	} `json:"cidrs"`
}

// ParseOracle reads Oracle Cloud's public_ip_ranges.json: regions[].region
// is the region, and the tags of each cidr ("OCI", "OSN",
// "OBJECT_STORAGE") joined with "," are the service, so that no tag is lost.
// A prefix listed twice keeps its first entry.
func ParseOracle(r io.Reader) ([]Range, error) {
	ranges, _, err := parseReader("oracle", parseOracle, r)
	return ranges, err
}

func parseOracle(data []byte) ([]Range, string, error) {
	const provider = "oracle"
	var f oracleFile
	if err := decodeJSON(provider, "", data, &f); err != nil {
		return nil, "", err
	}
	switch {
	case f.LastUpdated == nil:
		return nil, "", missingTop(provider, "last_updated_timestamp", oracleHint)
	case f.Regions == nil:
		return nil, "", missingTop(provider, "regions", oracleHint)
	}

	c := newCollector(0, nil)
	for i, raw := range *f.Regions {
		pos := fmt.Sprintf("regions[%d]", i)
		var reg oracleRegion
		if err := decodeJSON(provider, pos, raw, &reg); err != nil {
			return nil, "", err
		}
		switch {
		case reg.Region == nil:
			return nil, "", missingKey(provider, pos, "region")
		case reg.CIDRs == nil:
			return nil, "", missingKey(provider, pos, "cidrs")
		}
		for j, e := range *reg.CIDRs {
			cpos := fmt.Sprintf("%s.cidrs[%d]", pos, j)
			if e.CIDR == nil {
				return nil, "", missingKey(provider, cpos, "cidr")
			}
			p, err := parsePrefix(*e.CIDR, anyFamily)
			if err != nil {
				return nil, "", fmt.Errorf("%s: %s.cidr: %w", provider, cpos, err)
			}
			c.add(Range{Provider: provider, Region: *reg.Region, Service: strings.Join(e.Tags, ","), Prefix: p})
		}
	}
	if len(c.ranges) == 0 {
		return nil, "", noPrefixes(provider, oracleHint)
	}
	return c.ranges, "last_updated_timestamp=" + *f.LastUpdated, nil
}
