package policy

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/gaissmai/bart"

	"github.com/reghost/reghost/internal/iprange"
	"github.com/reghost/reghost/internal/rules"
)

// entry is one compiled rule or override. Entries are immutable once a
// ruleset is published.
type entry struct {
	reason  string // "cidr:192.168.0.0/24", also the decision's Reason
	source  string // "config" or "override:<id>"
	targets []int  // indexes into ruleset.targets, in order of preference
	expires int64  // unix nanoseconds; 0 never

	// next is what to try after this entry in the same layer: an older
	// override with the same match, and for cidr the entries of the next
	// shorter prefix that contains this one.
	next *entry
}

type cloudKey struct{ cloud, region string }

// layer holds the compiled rules of one origin (overrides or config),
// indexed by every match kind.
type layer struct {
	// cidr4 maps IPv4 addresses to the index in cidr4Heads of the chain of
	// the longest prefix holding them, from a flat range table; cidr6 maps
	// IPv6 prefixes to their chains.
	cidr4       *iprange.Table
	cidr4Heads  []*entry
	cidr6       *bart.Table[*entry]
	asn         map[uint32]*entry
	cloudRegion map[cloudKey]*entry
	cloud       map[string]*entry
	country     map[string]*entry
	continent   map[string]*entry
	size        int
}

// ruleset is everything a decision reads besides the fact sources: the
// registries and both layers. It is built whole and swapped whole.
type ruleset struct {
	targets   []Target
	byName    map[string]int
	def       int
	static    *layer
	overrides *layer
	needs     needs // which facts some rule could use: others are not looked up
}

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
}

// compileLayer builds a layer from rules that have already been
// validated. Of items with the same match, the earlier is tried first.
func compileLayer(rs *ruleset, items []item) *layer {
	cidr := new(bart.Table[*entry])
	l := &layer{
		cidr6:       new(bart.Table[*entry]),
		asn:         map[uint32]*entry{},
		cloudRegion: map[cloudKey]*entry{},
		cloud:       map[string]*entry{},
		country:     map[string]*entry{},
		continent:   map[string]*entry{},
		size:        len(items),
	}
	c := chainer{tails: map[*entry]*entry{}}
	for _, it := range items {
		e := &entry{reason: it.rule.Match.String(), source: it.source, targets: make([]int, len(it.rule.Registries))}
		if !it.expires.IsZero() {
			e.expires = it.expires.UnixNano()
		}
		for j, name := range it.rule.Registries {
			e.targets[j] = rs.byName[name]
		}
		m := it.rule.Match
		switch m.Kind() {
		case rules.KindCIDR:
			head, _ := cidr.Get(m.CIDR)
			cidr.Insert(m.CIDR, c.add(head, e))
		case rules.KindASN:
			l.asn[m.ASN] = c.add(l.asn[m.ASN], e)
		case rules.KindCloudRegion:
			k := cloudKey{m.Cloud, m.Region}
			l.cloudRegion[k] = c.add(l.cloudRegion[k], e)
		case rules.KindCloud:
			l.cloud[m.Cloud] = c.add(l.cloud[m.Cloud], e)
		case rules.KindCountry:
			l.country[m.Country] = c.add(l.country[m.Country], e)
		case rules.KindContinent:
			l.continent[m.Continent] = c.add(l.continent[m.Continent], e)
		}
	}
	// Link each prefix's chain to the chain of the longest shorter prefix
	// that contains it, so that when every registry of a /24 is down the
	// search goes on to the /16 around it before leaving the cidr kind.
	var v4 iprange.Builder
	for pfx, head := range cidr.All() {
		if pfx.Bits() > 0 {
			parent := netip.PrefixFrom(pfx.Addr(), pfx.Bits()-1).Masked()
			if _, up, ok := cidr.LookupPrefixLPM(parent); ok {
				c.tails[head].next = up
			}
		}
		if pfx.Addr().Is4() {
			_ = v4.Add(pfx, uint32(len(l.cidr4Heads))) // cannot fail: IPv4, and fewer prefixes than None
			l.cidr4Heads = append(l.cidr4Heads, head)
		} else {
			l.cidr6.Insert(pfx, head)
		}
	}
	l.cidr4 = v4.Build()
	return l
}

// lookupCIDR returns the chain of the longest prefix holding addr, which
// is unmapped.
func (l *layer) lookupCIDR(addr netip.Addr) *entry {
	if addr.Is4() {
		if i, ok := l.cidr4.Lookup(iprange.Uint32(addr)); ok {
			return l.cidr4Heads[i]
		}
		return nil
	}
	e, _ := l.cidr6.Lookup(addr)
	return e
}

// chainer links entries with the same match into a list, remembering
// each list's tail so that appending stays cheap.
type chainer struct{ tails map[*entry]*entry }

// add appends e to the list that starts at head and returns the head.
func (c *chainer) add(head, e *entry) *entry {
	if head == nil {
		c.tails[e] = e
		return e
	}
	c.tails[head].next = e
	c.tails[head] = e
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
	rs.overrides, err = compileOverrides(rs, overrides)
	rs.needs = rs.static.needs() | rs.overrides.needs()
	return rs, err
}

// compileOverrides skips overrides that do not validate against the
// registries (a registry removed from the config since the override was
// written), reporting them, and compiles the rest: one bad override does
// not take the others down. Newer overrides with the same match win.
func compileOverrides(rs *ruleset, ovs []rules.Override) (*layer, error) {
	valid := make([]rules.Override, 0, len(ovs))
	var errs []error
	for _, o := range ovs {
		if err := o.Validate(rs.known); err != nil {
			errs = append(errs, fmt.Errorf("override %q skipped: %w", o.ID, err))
			continue
		}
		valid = append(valid, o)
	}
	slices.SortStableFunc(valid, func(a, b rules.Override) int {
		return cmp.Or(b.CreatedAt.Compare(a.CreatedAt), cmp.Compare(a.ID, b.ID))
	})
	items := make([]item, len(valid))
	for i, o := range valid {
		items[i] = item{rule: o.Rule(), source: "override:" + o.ID, expires: o.ExpiresAt}
	}
	return compileLayer(rs, items), errors.Join(errs...)
}
