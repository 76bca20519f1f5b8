package cloud

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
)

const digitalOceanHint = "an RFC 8805 geofeed CSV file (https://digitalocean.com/geo/google.csv)"

// ParseDigitalOcean reads DigitalOcean's RFC 8805 geofeed, CSV rows of
// prefix,country,region,city,postal_code. Lines that start with "#" and
// blank lines are skipped. As RFC 8805 asks, rows may stop after the prefix
// (every later field is optional) and fields after the fifth are ignored.
//
// DigitalOcean has no region names of its own in this feed, so Region is
// the ISO 3166-2 subdivision column ("US-NJ", "NL-NH", "SG-05") when set,
// and the ISO 3166-1 country code ("SG") when not: the subdivision is the
// closest thing to a data-centre location that the feed gives, and the
// country keeps a row without one from having no region at all. Service
// is "". A prefix listed twice keeps its first row.
func ParseDigitalOcean(r io.Reader) ([]Range, error) {
	ranges, _, err := parseReader("digitalocean", parseDigitalOcean, r)
	return ranges, err
}

func parseDigitalOcean(data []byte) ([]Range, string, error) {
	const provider = "digitalocean"
	cr := csv.NewReader(bytes.NewReader(data))
	cr.Comment = '#'
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	cr.ReuseRecord = true

	c := newCollector(0, nil)
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if pe, ok := errors.AsType[*csv.ParseError](err); ok {
				return nil, "", fmt.Errorf("%s: line %d, column %d: %w", provider, pe.Line, pe.Column, pe.Err)
			}
			return nil, "", fmt.Errorf("%s: %w", provider, err)
		}
		line, _ := cr.FieldPos(0)
		field := func(i int) string {
			if i < len(rec) {
				return strings.TrimSpace(rec[i])
			}
			return ""
		}
		prefix := field(0)
		if strings.HasPrefix(prefix, "#") || (prefix == "" && len(rec) == 1) {
			continue // a comment after leading blanks, or a line of blanks, which csv does not skip
		}
		p, err := parsePrefix(prefix, anyFamily)
		if err != nil {
			return nil, "", fmt.Errorf("%s: line %d: %w", provider, line, err)
		}
		region := field(2)
		if region == "" {
			region = field(1)
		}
		c.add(Range{Provider: provider, Region: region, Prefix: p})
	}
	if len(c.ranges) == 0 {
		return nil, "", noPrefixes(provider, digitalOceanHint)
	}
	return c.ranges, "", nil
}
