package policy

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/gaissmai/bart"

	"github.com/reghost/reghost/internal/iprange"
	"github.com/reghost/reghost/internal/rules"
)

// entry is one compiled rule or override. A layer keeps its entries in
// one slice and their targets in another, and their text in one string,
// and refers to entries by index (ref): a hundred thousand overrides are
// a handful of objects for the collector, not hundreds of thousands.
// Entries are immutable once a ruleset is published.
type entry struct {
	reason  span  // "cidr:192.168.0.0/24", also the decision's Reason
	source  span  // "config" or "override:<id>"
	targets span  // into layer.targets: indexes into ruleset.targets, in order of preference
	expires int64 // unix nanoseconds (see expiresNS); 0 never
	// created (unix nanoseconds) and bits (a cidr match's prefix length)
	// order the entries of two override layers walked as one.
	created int64
	bits    uint8

	// next is what to try after this entry in the same layer: an older
	// override with the same match, and for cidr the entries of the next
	// shorter prefix that contains this one.
	next ref
}

// ref is an entry's index in its layer's entries; 0 is none, so that a
// map's zero value means "no rule".
type ref uint32

// span is a range of a layer's text or targets.
type span struct{ off, end uint32 }

type cloudKey struct{ cloud, region string }

// layer holds the compiled rules of one origin (overrides or config),
// indexed by every match kind.
type layer struct {
	entries []entry // entries[0] is unused: ref 0 is none
	text    string
	targets []int32

	// cidr4 and cidr6 map addresses to the chain of the longest prefix
	// holding them: IPv4 in a flat range table, as the GeoIP data, IPv6
	// in a prefix table.
	cidr4       *iprange.Table
	cidr6       *bart.Table[ref]
	asn         map[uint32]ref
	cloudRegion map[cloudKey]ref
	cloud       map[string]ref
	country     map[string]ref
	continent   map[string]ref
	size        int
}

func (l *layer) reason(e *entry) string { return l.text[e.reason.off:e.reason.end] }
func (l *layer) source(e *entry) string { return l.text[e.source.off:e.source.end] }

// before reports whether entry r of l comes before entry o of other in
// the order one layer of both would have them: longer prefixes first,
// then newer, then by ID.
func (l *layer) before(r ref, other *layer, o ref) bool {
	a, b := &l.entries[r], &other.entries[o]
	switch {
	case a.bits != b.bits:
		return a.bits > b.bits
	case a.created != b.created:
		return a.created > b.created
	}
	return l.source(a) < other.source(b)
}

func (l *layer) targetsOf(e *entry) []int32 {
	return l.targets[e.targets.off:e.targets.end]
}

// ruleset is everything a decision reads besides the fact sources: the
// registries and the layers. It is built whole and swapped whole.
type ruleset struct {
	targets   []Target
	byName    map[string]int
	def       int
	static    *layer
	overrides overrideLayers
	needs     needs // which facts some rule could use: others are not looked up
}

// overrideLayers are the compiled overrides: base, compiled from the
// whole set at some point, and recent, compiled from the overrides
// written since, whose IDs hide their older copies (or deletions) in
// base. A write then compiles only the few recent ones, where compiling
// the whole set of a hundred thousand takes 150 ms; base is compiled
// again once recent has grown (see recentLimit). A decision walks both
// layers' chains as one, in the order one layer would have them.
type overrideLayers struct {
	base, recent *layer // recent is nil when there are none
	hidden       map[string]bool
}

// needs reports which facts the overrides could use.
func (o *overrideLayers) needs() needs {
	n := o.base.needs()
	if o.recent != nil {
		n |= o.recent.needs()
	}
	return n
}

// hides reports whether e, an entry of base, is hidden by recent.
func (o *overrideLayers) hides(e *entry) bool {
	return len(o.hidden) > 0 && o.hidden[o.base.source(e)[len(overrideSource):]]
}

// overrideSource starts an override entry's source: "override:<id>".
const overrideSource = "override:"

// needs is a set of fact lookups.
type needs uint8

const (
	needASN needs = 1 << iota
	needCloud
	needCountry
)

func (l *layer) needs() needs {
	var n needs
	if len(l.asn) > 0 {
		n |= needASN
	}
	if len(l.cloud)+len(l.cloudRegion) > 0 {
		n |= needCloud
	}
	if len(l.country)+len(l.continent) > 0 {
		n |= needCountry
	}
	return n
}

func (rs *ruleset) known(name string) bool {
	_, ok := rs.byName[name]
	return ok
}

// item is a rule on its way into a layer.
type item struct {
	rule    rules.Rule
	source  string
	expires time.Time
	created time.Time
}

// compileLayer builds a layer from rules that have already been
// validated. Of items with the same match, the earlier is tried first.
func compileLayer(rs *ruleset, items []item) *layer {
	cidr := new(bart.Table[ref])
	l := &layer{
		entries:     make([]entry, 1, len(items)+1),
		asn:         map[uint32]ref{},
		cloudRegion: map[cloudKey]ref{},
		cloud:       map[string]ref{},
		country:     map[string]ref{},
		continent:   map[string]ref{},
		size:        len(items),
	}
	var text strings.Builder
	addText := func(s string) span {
		off := uint32(text.Len())
		text.WriteString(s)
		return span{off, uint32(text.Len())}
	}
	config := addText("config") // the source of every static rule
	c := chainer{l: l, tails: make([]ref, 1, len(items)+1)}
	for _, it := range items {
		e := entry{reason: addText(it.rule.Match.String())}
		if it.source == "config" {
			e.source = config
		} else {
			e.source = addText(it.source)
		}
		e.expires = expiresNS(it.expires)
		e.created = it.created.UnixNano()
		if it.rule.Match.Kind() == rules.KindCIDR {
			e.bits = uint8(it.rule.Match.CIDR.Bits())
		}
		e.targets.off = uint32(len(l.targets))
		for _, name := range it.rule.Registries {
			l.targets = append(l.targets, int32(rs.byName[name]))
		}
		e.targets.end = uint32(len(l.targets))
		r := c.new(e)
		m := it.rule.Match
		switch m.Kind() {
		case rules.KindCIDR:
			head, _ := cidr.Get(m.CIDR)
			cidr.Insert(m.CIDR, c.add(head, r))
		case rules.KindASN:
			l.asn[m.ASN] = c.add(l.asn[m.ASN], r)
		case rules.KindCloudRegion:
			k := cloudKey{m.Cloud, m.Region}
			l.cloudRegion[k] = c.add(l.cloudRegion[k], r)
		case rules.KindCloud:
			l.cloud[m.Cloud] = c.add(l.cloud[m.Cloud], r)
		case rules.KindCountry:
			l.country[m.Country] = c.add(l.country[m.Country], r)
		case rules.KindContinent:
			l.continent[m.Continent] = c.add(l.continent[m.Continent], r)
		}
	}
	// Link each prefix's chain to the chain of the longest shorter prefix
	// that contains it, so that when every registry of a /24 is down the
	// search goes on to the /16 around it before leaving the cidr kind.
	var v4 iprange.Builder
	l.cidr6 = new(bart.Table[ref])
	for pfx, head := range cidr.All() {
		if pfx.Bits() > 0 {
			parent := netip.PrefixFrom(pfx.Addr(), pfx.Bits()-1).Masked()
			if _, up, ok := cidr.LookupPrefixLPM(parent); ok {
				l.entries[c.tails[head]].next = up
			}
		}
		if pfx.Addr().Is4() {
			_ = v4.Add(pfx, uint32(head)) // cannot fail: an IPv4 prefix, refs stay below None
		} else {
			l.cidr6.Insert(pfx, head)
		}
	}
	l.cidr4 = v4.Build()
	l.text = strings.Clone(text.String()) // without the builder's spare room
	return l
}

// lookupCIDR returns the chain of the longest prefix holding addr, which
// is unmapped.
func (l *layer) lookupCIDR(addr netip.Addr) ref {
	if addr.Is4() {
		r, _ := l.cidr4.Lookup(iprange.Uint32(addr))
		if r == iprange.None {
			return 0
		}
		return ref(r)
	}
	r, _ := l.cidr6.Lookup(addr)
	return r
}

// chainer adds entries to a layer and links entries with the same match
// into a list, remembering each list's tail so that appending stays cheap.
type chainer struct {
	l     *layer
	tails []ref // by the ref of a list's head
}

// new adds e to the layer, not yet linked to anything.
func (c *chainer) new(e entry) ref {
	c.l.entries = append(c.l.entries, e)
	c.tails = append(c.tails, 0)
	return ref(len(c.l.entries) - 1)
}

// add appends r to the list that starts at head and returns the head.
func (c *chainer) add(head, r ref) ref {
	if head == 0 {
		c.tails[r] = r
		return r
	}
	c.l.entries[c.tails[head]].next = r
	c.tails[head] = r
	return head
}

func compileRuleset(regs []rules.Registry, static []rules.Rule, overrides []rules.Override) (*ruleset, error) {
	rs := &ruleset{byName: make(map[string]int, len(regs)), def: -1}
	for i, r := range regs {
		t, err := newTarget(r)
		if err != nil {
			return nil, err
		}
		if _, dup := rs.byName[r.Name]; dup {
			return nil, fmt.Errorf("registry %q defined twice", r.Name)
		}
		rs.byName[r.Name] = i
		rs.targets = append(rs.targets, t)
		if r.Default {
			if rs.def >= 0 {
				return nil, fmt.Errorf("registries %q and %q are both default", regs[rs.def].Name, r.Name)
			}
			rs.def = i
		}
	}
	if rs.def < 0 {
		return nil, errors.New("no default registry")
	}
	for i, r := range static {
		if err := r.Validate(rs.known); err != nil {
			return nil, fmt.Errorf("rules[%d]: %w", i, err)
		}
	}
	items := make([]item, len(static))
	for i, r := range static {
		items[i] = item{rule: r, source: "config"}
	}
	rs.static = compileLayer(rs, items)
	var err error
	rs.overrides.base, err = compileOverrides(rs, overrides)
	rs.needs = rs.static.needs() | rs.overrides.needs()
	return rs, err
}

// compileOverrides skips overrides that do not validate against the
// registries (a registry removed from the config since the override was
// written), reporting them, and compiles the rest: one bad override does
// not take the others down. Newer overrides with the same match win.
func compileOverrides(rs *ruleset, ovs []rules.Override) (*layer, error) {
	valid := make([]*rules.Override, 0, len(ovs))
	var errs []error
	for i := range ovs {
		o := &ovs[i]
		if err := o.Validate(rs.known); err != nil {
			errs = append(errs, fmt.Errorf("override %q skipped: %w", o.ID, err))
			continue
		}
		valid = append(valid, o)
	}
	// Newest first; IDs are unique, so the order is total. Pointers, not
	// the overrides themselves, are what the sort moves.
	slices.SortFunc(valid, func(a, b *rules.Override) int {
		return cmp.Or(b.CreatedAt.Compare(a.CreatedAt), cmp.Compare(a.ID, b.ID))
	})
	items := make([]item, len(valid))
	for i, o := range valid {
		items[i] = item{rule: o.Rule(), source: overrideSource + o.ID, expires: o.ExpiresAt, created: o.CreatedAt}
	}
	return compileLayer(rs, items), errors.Join(errs...)
}

// expiresNS is an entry's expiry: t in Unix nanoseconds, which int64
// holds only from 1678 to 2262. Later times (9999-12-31 is a common
// "never") never come; times at or before 1970 have long passed, and
// are 1 rather than 0, which means no expiry at all.
func expiresNS(t time.Time) int64 {
	switch {
	case t.IsZero():
		return 0
	case t.Unix() >= math.MaxInt64/int64(time.Second):
		return math.MaxInt64
	case t.Unix() <= 0:
		return 1
	}
	return t.UnixNano()
}
