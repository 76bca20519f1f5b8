package main

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/reghost/reghost/internal/rules"
)

// CSV columns of an overrides import (see importHelp). kind, value and
// registries are required.
var csvColumns = []string{"id", "kind", "value", "region", "registries", "expires_at", "note", "created_by", "created_at"}

var csvRequired = []string{"kind", "value", "registries"}

// csvKinds are the values of the kind column, in decision order.
var csvKinds = []string{"cidr", "asn", "cloud", "country", "continent"}

// parseCSV reads overrides from CSV: a header row naming the columns,
// then one override a row. lines[i] is the line ovs[i] starts on. Errors
// name the line and the column.
func parseCSV(data []byte) (ovs []rules.Override, lines []int, err error) {
	data = bytes.TrimPrefix(data, []byte("\uFEFF")) // a spreadsheet's byte order mark
	r := csv.NewReader(bytes.NewReader(data))
	r.Comment = '#'
	header, err := r.Read()
	if err != nil {
		return nil, nil, csvError(err, "the header row")
	}
	col := map[string]int{}
	for i, name := range header {
		name = strings.ToLower(strings.TrimSpace(name))
		line, _ := r.FieldPos(i)
		switch {
		case !slices.Contains(csvColumns, name):
			return nil, nil, fmt.Errorf("line %d, column %d: unknown column %q; known: %s", line, i+1, name, strings.Join(csvColumns, ", "))
		case col[name] > 0:
			return nil, nil, fmt.Errorf("line %d, column %d: column %q given twice", line, i+1, name)
		}
		col[name] = i + 1 // 0: absent
	}
	for _, name := range csvRequired {
		if col[name] == 0 {
			return nil, nil, fmt.Errorf("the header row has no %s column; it needs %s", name, strings.Join(csvRequired, ", "))
		}
	}
	firstLine := map[string]int{} // id -> line
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if pe, ok := errors.AsType[*csv.ParseError](err); ok && errors.Is(err, csv.ErrFieldCount) {
			return nil, nil, fmt.Errorf("line %d: %d fields, but the header has %d columns", pe.StartLine, len(rec), len(header))
		}
		if err != nil {
			return nil, nil, csvError(err, "")
		}
		line, _ := r.FieldPos(0)
		cell := func(name string) string {
			if col[name] == 0 {
				return ""
			}
			return strings.TrimSpace(rec[col[name]-1])
		}
		o, column, err := csvOverride(cell)
		if err != nil {
			return nil, nil, fmt.Errorf("line %d, column %s: %w", line, column, err)
		}
		if o.ID != "" {
			if prev, dup := firstLine[o.ID]; dup {
				return nil, nil, fmt.Errorf("line %d, column id: %q is also line %d's id", line, o.ID, prev)
			}
			firstLine[o.ID] = line
		}
		ovs = append(ovs, o)
		lines = append(lines, line)
	}
	return ovs, lines, nil
}

// csvOverride builds one row's override; on error, column names the
// cell at fault. Validation against the registries comes later, from
// the overrides service, for every format alike.
func csvOverride(cell func(string) string) (o rules.Override, column string, err error) {
	o.ID, o.Note, o.CreatedBy = cell("id"), cell("note"), cell("created_by")
	kind, value, region := cell("kind"), cell("value"), cell("region")
	switch {
	case kind == "":
		return o, "kind", fmt.Errorf("empty; want one of %s", strings.Join(csvKinds, ", "))
	case !slices.Contains(csvKinds, kind):
		return o, "kind", fmt.Errorf("%q: want one of %s", kind, strings.Join(csvKinds, ", "))
	case value == "":
		return o, "value", fmt.Errorf("empty; want what the %s matches", kind)
	case region != "" && kind != "cloud":
		return o, "region", fmt.Errorf("%q: a region goes with kind cloud only", region)
	}
	switch kind {
	case "cidr":
		if o.Match.CIDR, err = netip.ParsePrefix(value); err != nil {
			return o, "value", fmt.Errorf("%q is not a CIDR prefix, such as 192.0.2.0/24", value)
		}
	case "asn":
		n, err := strconv.ParseUint(value, 10, 32)
		if err != nil || n == 0 {
			return o, "value", fmt.Errorf("%q is not an AS number, such as 15169", value)
		}
		o.Match.ASN = uint32(n)
	case "cloud":
		o.Match.Cloud, o.Match.Region = value, region
	case "country":
		o.Match.Country = value
	case "continent":
		o.Match.Continent = value
	}
	if regs := cell("registries"); regs != "" {
		for name := range strings.SplitSeq(regs, ";") {
			o.Registries = append(o.Registries, strings.TrimSpace(name))
		}
	}
	for _, t := range []struct {
		name string
		to   *time.Time
	}{{"expires_at", &o.ExpiresAt}, {"created_at", &o.CreatedAt}} {
		if s := cell(t.name); s != "" {
			if *t.to, err = time.Parse(time.RFC3339, s); err != nil {
				return o, t.name, fmt.Errorf("%q is not an RFC 3339 time, such as 2030-01-01T00:00:00Z", s)
			}
		}
	}
	return o, "", nil
}

// columnOf maps a validation message's field ("match.cidr",
// "registries[1]") to the CSV column that holds it.
func columnOf(field string) string {
	switch {
	case field == "match":
		return "kind"
	case field == "match.region":
		return "region"
	case strings.HasPrefix(field, "match."):
		return "value"
	case strings.HasPrefix(field, "registries"):
		return "registries"
	case slices.Contains(csvColumns, field):
		return field
	}
	return "?"
}

// csvError reports a CSV syntax error by line and column.
func csvError(err error, what string) error {
	if pe, ok := errors.AsType[*csv.ParseError](err); ok {
		return fmt.Errorf("line %d, column %d: %v", pe.Line, pe.Column, pe.Err)
	}
	if errors.Is(err, io.EOF) && what != "" {
		return fmt.Errorf("empty: no %s", what)
	}
	return err
}
