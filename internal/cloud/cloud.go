// Package cloud reads the IP ranges that cloud providers publish (AWS,
// Google Cloud, Azure, Oracle Cloud, DigitalOcean) and answers, for a
// client address, which provider and region it belongs to.
//
// Each provider has its own format, so each has its own parser, in a file
// of its own; all of them normalise to the same Range. The parsers are
// strict on purpose: a file that is truncated, of the wrong provider, or
// has no prefixes is refused with the provider, the position and the reason,
// so that the loader can keep the last good data instead of routing every
// client by a broken file.
//
// The Table is a longest-prefix-match table built once and never changed:
// the most specific published prefix wins. That matters for AWS, which
// publishes regional prefixes nested inside larger GLOBAL ones; taking the
// first or the widest match (as registry.k8s.io does) sends those clients
// to the wrong region.
package cloud

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"reflect"
	"strings"
)

// Range is one published prefix, normalised across providers.
type Range struct {
	// Provider is one of the provider names of Providers ("aws", "gcp", ...).
	Provider string
	// Region is the provider's own region name, kept as published
	// (AWS "us-east-2" and also "GLOBAL", GCP "europe-west1", Azure
	// "westeurope"). It is "" when the provider gives none for the prefix.
	Region string
	// Service is what the provider says the prefix is for ("EC2",
	// "Google Cloud", "AzureCloud", "OCI"); "" when the format has none.
	Service string
	// Prefix is always valid and masked; IPv4 is never in 4-in-6 form.
	Prefix netip.Prefix
}

// ErrUnknownProvider is returned for a provider name that has no parser.
var ErrUnknownProvider = errors.New("unknown cloud provider")

// ErrNoPrefixes is returned for a well-formed file that yields no prefix:
// an empty data set would silently turn every cloud rule off, so it is
// treated as a broken download.
var ErrNoPrefixes = errors.New("no prefixes found")

// maxFileSize bounds what a parser reads. The largest real file (Azure
// Service Tags) is about 4 MiB; a much larger input is not a ranges file.
const maxFileSize = 64 << 20

// parseFunc is what every provider implements: the ranges, one per
// distinct prefix, and the provider's own publication stamp ("" when the
// format has none).
type parseFunc func(data []byte) (ranges []Range, published string, err error)

// Providers returns the provider names that have a parser, in the order in
// which Load gives them precedence. They are the keys of the config's
// cloud_ranges section.
func Providers() []string {
	return []string{"aws", "gcp", "azure", "oracle", "digitalocean"}
}

// parserOf returns the parser of a provider, or nil. A switch rather than
// a package-level map keeps the set of parsers impossible to change at run
// time.
func parserOf(provider string) parseFunc {
	switch provider {
	case "aws":
		return parseAWS
	case "gcp":
		return parseGCP
	case "azure":
		return parseAzure
	case "oracle":
		return parseOracle
	case "digitalocean":
		return parseDigitalOcean
	}
	return nil
}

// ParserFor returns the parser of a provider named as in Providers; ok is
// false for any other name.
func ParserFor(provider string) (parse func(io.Reader) ([]Range, error), ok bool) {
	p := parserOf(provider)
	if p == nil {
		return nil, false
	}
	return func(r io.Reader) ([]Range, error) {
		ranges, _, err := parseReader(provider, p, r)
		return ranges, err
	}, true
}

func unknownProvider(name string) error {
	return fmt.Errorf("%w %q; known: %s", ErrUnknownProvider, name, strings.Join(Providers(), ", "))
}

// parseReader reads r whole (the formats are single JSON documents, and
// the CSV is small) and runs p on it.
func parseReader(provider string, p parseFunc, r io.Reader) ([]Range, string, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxFileSize+1))
	if err != nil {
		return nil, "", fmt.Errorf("%s: read: %w", provider, err)
	}
	if len(data) > maxFileSize {
		return nil, "", fmt.Errorf("%s: larger than %d MiB; not a ranges file", provider, maxFileSize>>20)
	}
	// Microsoft has shipped the Service Tags file with a UTF-8 byte order
	// mark, which encoding/json refuses; no format here gives it meaning.
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, "", fmt.Errorf("%s: empty file", provider)
	}
	return p(data)
}

// noPrefixes reports a file that parsed but held nothing; hint names the
// file that was expected, because the usual cause is a wrong file.
func noPrefixes(provider, hint string) error {
	return fmt.Errorf("%s: %w; is this %s?", provider, ErrNoPrefixes, hint)
}

// missingTop reports a required top-level key that is absent. The keys are
// what tells one provider's JSON from another's, hence the hint.
func missingTop(provider, key, hint string) error {
	return fmt.Errorf("%s: missing top-level key %q; is this %s?", provider, key, hint)
}

// missingKey reports a required key absent (or null) in the object at pos.
func missingKey(provider, pos, key string) error {
	return fmt.Errorf("%s: %s: missing key %q", provider, pos, key)
}

// decodeJSON unmarshals data into v and rewrites encoding/json's errors so
// that they name the provider and where in the document the problem is:
// a byte offset for syntax errors (encoding/json's: the bytes read when
// the error was found, so the bad byte is the offset-th, counting from 1;
// only whole documents are syntax-checked, so offsets are file offsets),
// and a path such as prefixes[12].region for values of the wrong type.
func decodeJSON(provider, path string, data []byte, v any) error {
	err := json.Unmarshal(data, v)
	if err == nil {
		return nil
	}
	if se, ok := errors.AsType[*json.SyntaxError](err); ok {
		return fmt.Errorf("%s: byte offset %d: %w", provider, se.Offset, err)
	}
	if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		return fmt.Errorf("%s: %s: got JSON %s, want %s", provider, joinPath(path, te.Field), te.Value, jsonKind(te.Type))
	}
	return fmt.Errorf("%s: %s: %w", provider, joinPath(path, ""), err)
}

func joinPath(path, field string) string {
	switch {
	case path == "" && field == "":
		return "top level"
	case path == "":
		return field
	case field == "":
		return path
	}
	return path + "." + field
}

// jsonKind names a Go type by the JSON value it decodes from, for errors
// read by people who know the file, not the code.
func jsonKind(t reflect.Type) string {
	if t == nil {
		return "another type"
	}
	if t == reflect.TypeFor[json.Number]() {
		return "number"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Slice, reflect.Array:
		return "array"
	case reflect.Struct, reflect.Map:
		return "object"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return "number"
	}
	return t.String()
}

// family restricts parsePrefix to one address family, for formats that
// keep IPv4 and IPv6 in separate fields.
type family uint8

const (
	anyFamily family = iota
	ipv4
	ipv6
)

// parsePrefix parses a published prefix into the form the Table uses.
// Host bits are masked off rather than refused: some feeds carry them and
// the intent is clear. IPv4-mapped IPv6 prefixes become IPv4 ones, because
// lookups unmap addresses and would never reach them otherwise. A /0 is
// refused: it would claim every address on the Internet for one provider.
func parsePrefix(s string, want family) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	p = normalizePrefix(p)
	switch {
	case want == ipv4 && !p.Addr().Is4():
		return netip.Prefix{}, fmt.Errorf("%q is not an IPv4 prefix", s)
	case want == ipv6 && !p.Addr().Is6():
		return netip.Prefix{}, fmt.Errorf("%q is not an IPv6 prefix", s)
	case p.Bits() == 0:
		return netip.Prefix{}, fmt.Errorf("%q covers every address", s)
	}
	return p, nil
}

// normalizePrefix masks p and turns an IPv4-mapped prefix into IPv4. It
// returns the zero Prefix for an invalid p.
func normalizePrefix(p netip.Prefix) netip.Prefix {
	if !p.IsValid() {
		return netip.Prefix{}
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked()
}

// collector keeps one Range per prefix, in first-seen order. Providers
// list a prefix more than once (AWS once per service, Azure once in the
// cloud-wide tag and once in the regional one); prefer says whether a
// later entry should replace the one kept, and nil means the first wins.
//
// It also interns region and service names: a file repeats a few hundred
// of them tens of thousands of times, and the ranges live as long as the
// Table that holds them.
type collector struct {
	prefer func(kept, next Range) bool
	index  map[netip.Prefix]int
	ranges []Range
	names  map[string]string
}

func newCollector(sizeHint int, prefer func(kept, next Range) bool) *collector {
	return &collector{
		prefer: prefer,
		index:  make(map[netip.Prefix]int, sizeHint),
		ranges: make([]Range, 0, sizeHint),
		names:  make(map[string]string),
	}
}

func (c *collector) intern(s string) string {
	if v, ok := c.names[s]; ok {
		return v
	}
	// Clone, so that a name cut from a larger string (a CSV line) does
	// not keep that string alive.
	v := strings.Clone(s)
	c.names[v] = v
	return v
}

func (c *collector) add(r Range) {
	r.Region, r.Service = c.intern(r.Region), c.intern(r.Service)
	if i, ok := c.index[r.Prefix]; ok {
		if c.prefer != nil && c.prefer(c.ranges[i], r) {
			c.ranges[i] = r
		}
		return
	}
	c.index[r.Prefix] = len(c.ranges)
	c.ranges = append(c.ranges, r)
}
