package config

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Parsing happens twice. The file is first read into a yaml.Node tree,
// which has the line of every key, and checkShape walks it beside the
// Config type to report unknown or repeated keys, wrong nesting, values
// of the wrong type and malformed CIDRs with their key path. yaml.v3
// alone names Go types instead of key paths ("field heder not found in
// type config.ClientIP"), gives a bare netip error without a line for a
// bad CIDR, and silently drops an empty list item. Then decodeStrict
// decodes the same bytes into the Config, KnownFields on as a backstop.

// parseDocument parses data into the root node of its only document,
// refusing an empty file and a second document.
func parseDocument(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errEmpty
		}
		return nil, err
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, err
	default:
		return nil, fmt.Errorf("line %d: a second YAML document; a config file holds exactly one (remove the ---)", max(next.Line, 1))
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.ShortTag() == nullTag {
		return nil, errEmpty
	}
	return root, nil
}

var errEmpty = errors.New("empty; a config file needs at least its registries (see example.yaml)")

// decodeStrict decodes the one document in data into c, refusing keys
// that c has no field for.
func decodeStrict(data []byte, c *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	return dec.Decode(c)
}

const (
	nullTag  = "!!null"
	mergeTag = "!!merge"
	intTag   = "!!int"
)

var (
	configType          = reflect.TypeFor[Config]()
	prefixType          = reflect.TypeFor[netip.Prefix]()
	durationType        = reflect.TypeFor[time.Duration]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// checkShape walks n alongside t, the Go type it will be decoded into,
// and reports at path what yaml.v3 would refuse less clearly, or not at
// all: keys t has no field for or that appear twice, a mapping where a
// list belongs and so on, empty list items, scalars that do not decode
// into their field, and values that the type's UnmarshalText refuses
// (netip.Prefix). A field type with its own UnmarshalYAML would need a
// case of its own here; there is none yet.
func (p *problems) checkShape(n *yaml.Node, t reflect.Type, path string) {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == nullTag {
		switch t.Kind() {
		case reflect.String, reflect.Bool, reflect.Int, reflect.Int64, reflect.Uint32, reflect.Uint64:
			// yaml.v3 would leave the default in place, silently.
			p.add(n, path, "no value; give one, or remove the key for the default")
		}
		return // a list or mapping left empty: validation judges it
	}
	if reflect.PointerTo(t).Implements(textUnmarshalerType) {
		if n.Kind != yaml.ScalarNode {
			p.add(n, path, "expected a single value, got %s", describe(n))
			return
		}
		u := reflect.New(t).Interface().(encoding.TextUnmarshaler)
		if err := u.UnmarshalText([]byte(n.Value)); err != nil {
			p.add(n, path, "%s", textError(t, n.Value, err))
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			p.add(n, path, "expected a mapping of keys to values, got %s", describe(n))
			return
		}
		fields, names := yamlFields(t)
		seen := map[string]*yaml.Node{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.ShortTag() == mergeTag {
				p.checkMerge(v, t, path)
				continue
			}
			if p.twice(seen, k, path) {
				continue
			}
			ft, ok := fields[k.Value]
			if !ok {
				p.add(k, join(path, k.Value), "unknown key; known keys here: %s", strings.Join(names, ", "))
				continue
			}
			p.checkShape(v, ft, join(path, k.Value))
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			p.add(n, path, "expected a mapping of keys to values, got %s", describe(n))
			return
		}
		seen := map[string]*yaml.Node{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.ShortTag() == mergeTag {
				p.checkMerge(v, t, path)
				continue
			}
			if p.twice(seen, k, path) {
				continue
			}
			p.checkShape(v, t.Elem(), join(path, k.Value))
		}
	case reflect.Slice, reflect.Array:
		if n.Kind != yaml.SequenceNode {
			p.add(n, path, "expected a list, got %s", describe(n))
			return
		}
		for i, item := range n.Content {
			ipath := fmt.Sprintf("%s[%d]", path, i)
			if deref(item).ShortTag() == nullTag {
				// yaml.v3 drops it, and every later index would be off by one.
				p.add(item, ipath, "empty item; give it a value or remove it")
				continue
			}
			p.checkShape(item, t.Elem(), ipath)
		}
	default:
		if n.Kind != yaml.ScalarNode {
			p.add(n, path, "expected %s, got %s", valueWord(t), describe(n))
			return
		}
		// yaml.v3 reads 012345 as octal, 5349, and decodes 15169.9 into an
		// integer as 15169: either way a rule would quietly match another
		// AS. A whole number must be written as one, without a leading 0.
		if isInteger(t) {
			quoted := n.Style&(yaml.SingleQuotedStyle|yaml.DoubleQuotedStyle) != 0
			if !quoted && leadingZero.MatchString(n.Value) {
				p.add(n, path, "%s: a leading 0 makes YAML read the number as octal; write it without", describe(n))
				return
			}
			if !quoted && !decimal.MatchString(n.Value) && n.ShortTag() == intTag {
				p.add(n, path, "%s: write the number in decimal digits (YAML would read 0x, 0o, 0b and _ forms too)", describe(n))
				return
			}
			if n.ShortTag() != intTag {
				p.add(n, path, "expected %s, got %s", valueWord(t), describe(n))
				return
			}
		}
		// yaml.v3 reads a bare number into a time.Duration as
		// nanoseconds: "interval: 10" would probe ten times a
		// microsecond.
		if t == durationType && n.ShortTag() != "!!str" {
			p.add(n, path, "%s: write a duration with its unit, such as 10s or 200ms", describe(n))
			return
		}
		// A lone scalar decodes the same strictly or not.
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			p.add(n, path, "expected %s, got %s", valueWord(t), describe(n))
		}
	}
}

// leadingZero matches a number YAML reads as octal: 0 and then a digit.
// decimal matches a whole number written in decimal digits, the only
// form an integer field takes: 0x10 for AS 16 is a typo waiting to
// happen, as 012345 is.
var (
	leadingZero = regexp.MustCompile(`^[-+]?0[0-9_]`)
	decimal     = regexp.MustCompile(`^-?[0-9]+$`)
)

// isInteger reports whether t is an integer type that yaml.v3 fills from
// a number (time.Duration, an int64, it fills from "5s" as well).
func isInteger(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return t != reflect.TypeFor[time.Duration]()
	}
	return false
}

// valueWord says what a scalar of kind t's kind looks like.
func valueWord(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "a whole number"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return fmt.Sprintf("a whole number from 0 to %d", uint64(math.MaxUint64)>>(64-t.Bits()))
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "text"
	}
	return "a single value"
}

// twice reports key k of the mapping at path if seen holds it already,
// and adds it to seen otherwise. A repeated key is an error (yaml.v3
// says so too, without the path): which value wins would be a guess.
func (p *problems) twice(seen map[string]*yaml.Node, k *yaml.Node, path string) bool {
	if first, ok := seen[k.Value]; ok {
		p.add(k, join(path, k.Value), "set twice; first at line %d", first.Line)
		return true
	}
	seen[k.Value] = k
	return false
}

// checkMerge checks the value of a "<<" merge key: one mapping or a
// list of them, merged into the mapping at path.
func (p *problems) checkMerge(v *yaml.Node, t reflect.Type, path string) {
	for v.Kind == yaml.AliasNode {
		v = v.Alias
	}
	if v.Kind == yaml.SequenceNode {
		for _, m := range v.Content {
			p.checkShape(m, t, path)
		}
		return
	}
	p.checkShape(v, t, path)
}

// yamlFields returns the types of struct t's fields by the key yaml.v3
// decodes them from, and the keys in field order.
func yamlFields(t reflect.Type) (map[string]reflect.Type, []string) {
	types := map[string]reflect.Type{}
	var names []string
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		tag, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if tag == "-" {
			continue
		}
		if slices.Contains(strings.Split(opts, ","), "inline") && f.Type.Kind() == reflect.Struct {
			inner, innerNames := yamlFields(f.Type)
			for _, name := range innerNames {
				types[name] = inner[name]
			}
			names = append(names, innerNames...)
			continue
		}
		if tag == "" {
			tag = strings.ToLower(f.Name)
		}
		types[tag] = f.Type
		names = append(names, tag)
	}
	return types, names
}

// describe names what n is, for "expected …, got …" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return strconv.Quote(n.Value)
	}
	return "nothing"
}

// textError explains why UnmarshalText refused value. netip's errors
// repeat the value inside a Go call ("netip.ParsePrefix(…): no '/'");
// for a prefix keep only the reason and say what is expected.
func textError(t reflect.Type, value string, err error) string {
	if t != prefixType {
		return fmt.Sprintf("%q: %v", value, err)
	}
	reason := err.Error()
	if _, after, ok := strings.Cut(reason, "): "); ok {
		reason = after
	}
	msg := fmt.Sprintf("%q is not a CIDR prefix such as 10.0.0.0/8 or fc00::/7 (%s)", value, reason)
	if a, err := netip.ParseAddr(value); err == nil {
		msg += fmt.Sprintf("; for one address write %s", netip.PrefixFrom(a, a.BitLen()))
	}
	return msg
}

// join appends key to a key path.
func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// lookup returns the node for a key path such as "rules[3].match.cidr"
// under root: for a mapping entry its key (which is on the line a
// reader looks for), for a list item the item. When the path leaves the
// document, it returns the deepest node on the way, which is still the
// closest line to the problem (rules[2].match for a missing
// rules[2].match.cidr), or nil when not even the top-level key is there.
func lookup(root *yaml.Node, path string) *yaml.Node {
	if path == "" {
		return root
	}
	var found *yaml.Node
	n := root
	for seg := range strings.SplitSeq(path, ".") {
		key, rest, _ := strings.Cut(seg, "[")
		if key != "" {
			k, v := mapEntry(n, key)
			if k == nil {
				return found
			}
			found, n = k, v
		}
		for rest != "" {
			idx, after, _ := strings.Cut(rest, "]")
			rest = strings.TrimPrefix(after, "[")
			n = deref(n)
			i, err := strconv.Atoi(idx)
			if err != nil || n.Kind != yaml.SequenceNode || i < 0 || i >= len(n.Content) {
				return found
			}
			found, n = n.Content[i], n.Content[i]
		}
	}
	return found
}

// mapEntry returns the key and value nodes of key in mapping n, or nils.
func mapEntry(n *yaml.Node, key string) (k, v *yaml.Node) {
	n = deref(n)
	if n.Kind != yaml.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i], n.Content[i+1]
		}
	}
	return nil, nil
}

func deref(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// yamlError formats an error from yaml.v3 (or parseDocument) in the
// "name:line: problem" form of every other config error: one per
// problem, the "yaml: " prefix and "line N:" folded into the location.
func yamlError(name string, err error) error {
	if te, ok := errors.AsType[*yaml.TypeError](err); ok {
		errs := make([]error, len(te.Errors))
		for i, msg := range te.Errors {
			errs[i] = errors.New(name + yamlMessage(msg))
		}
		return errors.Join(errs...)
	}
	return errors.New(name + yamlMessage(err.Error()))
}

var lineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): `)

// yamlMessage turns "yaml: line 3: problem" into ":3: problem", and
// anything else into ": message", to follow a file name.
func yamlMessage(msg string) string {
	if m := lineRE.FindStringSubmatch(msg); m != nil {
		return ":" + m[1] + ": " + msg[len(m[0]):]
	}
	return ": " + msg
}
