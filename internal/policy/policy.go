// Package policy decides which registry serves a client address, and says
// why. It is pure: the facts about an address come through the small
// interfaces declared here, rules and overrides are compiled into an
// immutable snapshot that is swapped whole, and a decision never locks,
// never waits on I/O and allocates only its redirect URL.
//
// The decision order (docs/design.md): cidr (longest prefix) > asn >
// cloud+region > cloud > country > continent > default. Within a kind an
// override beats a static rule; a registry that is down is skipped and
// the search goes on; when nothing healthy matches, the default registry
// is used even if it is down.
package policy

import (
	"maps"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/reghost/reghost/internal/rules"
)

// ASNSource maps an address to its autonomous system.
type ASNSource interface {
	ASN(addr netip.Addr) (asn uint32, org string, ok bool)
}

// CountrySource maps an address to its country and continent codes.
type CountrySource interface {
	Country(addr netip.Addr) (country, continent string, ok bool)
}

// CloudSource maps an address to the cloud provider and region that
// publish it, the most specific published prefix winning.
type CloudSource interface {
	Cloud(addr netip.Addr) (provider, region string, ok bool)
}

// Sources are where facts come from. A nil source has no data: rules of
// its kinds never match.
type Sources struct {
	ASN     ASNSource
	Country CountrySource
	Cloud   CloudSource
}

// Health is what health checks say of the registries. The zero Health
// has every registry up.
type Health struct {
	// Down names the registries that health checks found down.
	Down map[string]bool
	// Panic: so many registries look down that the trouble is most
	// likely reghost's own (its egress, DNS, CA bundle): Down is ignored,
	// and explain says so. Drains still apply.
	Panic bool
}

// Facts are what the engine knew about an address. Zero values mean
// unknown; JSON always carries every key, so clients need not guess.
// Decide fills in only what it consulted; Explain fills in all.
type Facts struct {
	ASN       uint32 `json:"asn"`
	ASOrg     string `json:"as_org"`
	Country   string `json:"country"`
	Continent string `json:"continent"`
	Cloud     string `json:"cloud"`
	Region    string `json:"region"`
}

// Decision is where a client goes, and why.
type Decision struct {
	Registry string // registry name
	Host     string // registry host[:port]
	Location string // full redirect URL
	// Reason is the match that decided, such as "cidr:192.168.0.0/24",
	// "asn:15169", "cloud:aws/us-east-2", "country:SE", or "default", or
	// "fallback:<why>" when nothing healthy matched.
	Reason string
	// Source is "config", "override:<id>" or "default".
	Source string
	Facts  Facts
	Trail  []Step // only from Explain
}

// Reasons for decisions that no rule made.
const (
	ReasonDefault = "default"
	// FallbackUnhealthy: rules matched, but none of their registries was
	// up, so the default (which is up) serves.
	FallbackUnhealthy = "fallback:unhealthy"
	// FallbackAllDown: nothing healthy matched and the default is down
	// too; the default serves anyway (fail open).
	FallbackAllDown = "fallback:all-down"
	// FallbackNoAddress: the client address was not known.
	FallbackNoAddress = "fallback:no-address"
)

// Step is one candidate the engine considered, for explain.
type Step struct {
	Match    string `json:"match"`              // "asn:15169", or "default"
	Source   string `json:"source"`             // "config", "override:<id>", "default"
	Registry string `json:"registry,omitempty"` // empty when the whole entry was skipped
	Outcome  string `json:"outcome"`            // see the Outcome constants
}

// Outcomes recorded in a Step.
const (
	OutcomeChosen  = "chosen"
	OutcomeDown    = "down"
	OutcomeDrained = "drained"
	// OutcomeIgnored: health checks are in panic; their "down" was not
	// believed (Step.Match is "health").
	OutcomeIgnored = "ignored: most registries look down, the trouble is likely reghost's own"
	OutcomeExpired = "expired"
	OutcomeNoMatch = "no match" // the kind had rules, none matched the facts
	OutcomeNoData  = "no data"  // the kind had rules, but no fact source knew the address
)

// Config is what New needs.
type Config struct {
	Registries []rules.Registry
	Rules      []rules.Rule
	Sources    Sources
	Now        func() time.Time // nil: time.Now
}

// Engine makes decisions. It is safe for concurrent use; the setters may
// be called at any time, from any goroutine.
type Engine struct {
	now   func() time.Time
	state atomic.Pointer[state]

	mu sync.Mutex // serialises writers; readers never take it; guards the fields below
	// ovs are the overrides applied, by ID; inBase and recent the IDs
	// compiled into the snapshot's base and recent override layers.
	ovs            map[string]rules.Override
	inBase, recent map[string]bool
	maxRecent      int // 0: see recentLimit; tests set it
}

// recentLimit is how many overrides written one by one are compiled on
// their own before the whole set of n is compiled again. A write costs
// compiling the recent ones, and the whole set once in so many writes:
// about the square root of n makes both about equal and their sum least
// (at 100,000 overrides, under a millisecond a write, where compiling all
// takes 150 ms).
func recentLimit(n int) int { return max(64, int(math.Sqrt(float64(n)))) }

// state is the snapshot a decision reads.
type state struct {
	rs      *ruleset
	src     Sources
	health  Health
	drained map[string]bool
	// skip says, by index into rs.targets, why a registry may not serve
	// (OutcomeDown, OutcomeDrained), or "" when it may; nil when all
	// may. It is compiled from health and drained.
	skip []string
}

// up reports whether target t may serve.
func (st *state) up(t int32) bool { return st.skip == nil || st.skip[t] == "" }

// with returns a copy of st with its skip flags compiled again, after
// its health or drains changed.
func (st state) with(update func(*state)) *state {
	update(&st)
	st.skip = nil
	mark := func(names map[string]bool, why string) {
		for name, set := range names {
			if t, ok := st.rs.byName[name]; ok && set {
				if st.skip == nil {
					st.skip = make([]string, len(st.rs.targets))
				}
				if st.skip[t] == "" {
					st.skip[t] = why
				}
			}
		}
	}
	mark(st.drained, OutcomeDrained)
	if !st.health.Panic {
		mark(st.health.Down, OutcomeDown)
	}
	return &st
}

// New compiles the registries and static rules. Errors name the registry
// or the rule (rules[i]) and what is wrong with it.
func New(cfg Config) (*Engine, error) {
	rs, err := compileRuleset(cfg.Registries, cfg.Rules, nil)
	if err != nil {
		return nil, err
	}
	e := &Engine{now: cfg.Now}
	if e.now == nil {
		e.now = time.Now
	}
	e.state.Store((&state{rs: rs, src: cfg.Sources}).with(func(*state) {}))
	return e, nil
}

// SetConfig replaces the registries and static rules, as a config reload
// does, and compiles the overrides again against the new registries.
// A bad registry or rule is an error and changes nothing. An override
// naming a registry that is gone is left out and reported in skipped;
// the others apply.
func (e *Engine) SetConfig(regs []rules.Registry, static []rules.Rule) (skipped, err error) {
	rs, err := compileRuleset(regs, static, nil)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.compileAll(rs), nil
}

// SetOverrides makes ovs the whole set of overrides, compiled into a new
// snapshot. An override that no longer validates (its registry was
// removed from the config) is left out and reported in the error; the
// others apply.
func (e *Engine) SetOverrides(ovs []rules.Override) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.ovs = make(map[string]rules.Override, len(ovs))
	for _, o := range ovs {
		e.ovs[o.ID] = o
	}
	return e.compileAll(e.state.Load().rs)
}

// UpdateOverrides changes the set: put creates or replaces overrides by
// ID, deleted removes them. Only what changed since the whole set was
// last compiled is compiled, so that a write costs the same at a hundred
// overrides and at a hundred thousand. Errors are as SetOverrides's.
func (e *Engine) UpdateOverrides(put []rules.Override, deleted []string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ovs == nil {
		e.ovs, e.inBase, e.recent = map[string]rules.Override{}, map[string]bool{}, map[string]bool{}
	}
	for _, o := range put {
		e.ovs[o.ID] = o
		e.recent[o.ID] = true
	}
	for _, id := range deleted {
		delete(e.ovs, id)
		delete(e.recent, id)
	}
	rs := e.state.Load().rs
	limit := e.maxRecent
	if limit == 0 {
		limit = recentLimit(len(e.ovs))
	}
	if len(e.recent) > limit {
		return e.compileAll(rs)
	}
	recent := make([]rules.Override, 0, len(e.recent))
	for id := range e.recent {
		recent = append(recent, e.ovs[id])
	}
	layer, err := compileOverrides(rs, recent)
	next := *rs
	next.overrides = overrideLayers{base: rs.overrides.base, recent: layer, hidden: maps.Clone(rs.overrides.hidden)}
	if next.overrides.hidden == nil {
		next.overrides.hidden = map[string]bool{}
	}
	for _, o := range put {
		if e.inBase[o.ID] {
			next.overrides.hidden[o.ID] = true
		}
	}
	for _, id := range deleted {
		if e.inBase[id] {
			next.overrides.hidden[id] = true
		}
	}
	next.needs = next.static.needs() | next.overrides.needs()
	e.state.Store(e.state.Load().with(func(st *state) { st.rs = &next }))
	return err
}

// compileAll compiles every override into rs's base layer and publishes
// it. Callers hold mu.
func (e *Engine) compileAll(rs *ruleset) error {
	all := make([]rules.Override, 0, len(e.ovs))
	e.inBase = make(map[string]bool, len(e.ovs))
	for id, o := range e.ovs {
		all = append(all, o)
		e.inBase[id] = true
	}
	e.recent = map[string]bool{}
	base, err := compileOverrides(rs, all)
	next := *rs
	next.overrides = overrideLayers{base: base}
	next.needs = next.static.needs() | next.overrides.needs()
	e.state.Store(e.state.Load().with(func(st *state) { st.rs = &next }))
	return err
}

// Overrides returns the overrides applied, sorted by ID.
func (e *Engine) Overrides() []rules.Override {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.SortedFunc(maps.Values(e.ovs), func(a, b rules.Override) int { return strings.Compare(a.ID, b.ID) })
}

// SetSources swaps the fact sources, for example after the cloud ranges
// were reloaded.
func (e *Engine) SetSources(update func(*Sources)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.state.Load()
	e.state.Store(old.with(func(st *state) { update(&st.src) }))
}

// SetHealth compiles what health checks say into the next snapshot:
// decisions from then on skip the registries h has down, unless h is in
// panic. Names that are not configured registries are ignored.
func (e *Engine) SetHealth(h Health) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.state.Store(e.state.Load().with(func(st *state) { st.health = h }))
}

// SetDrained compiles the registries operators took out of routing into
// the next snapshot: decisions skip them, panic or not.
func (e *Engine) SetDrained(drained map[string]bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.state.Store(e.state.Load().with(func(st *state) { st.drained = drained }))
}

// ValidateOverride checks an override against the configured registries,
// as SetOverrides would.
func (e *Engine) ValidateOverride(o rules.Override) error {
	return o.Validate(e.state.Load().rs.known)
}

// RegistryState is a configured registry and what decisions see of it.
type RegistryState struct {
	Target
	Up      bool // decisions may send clients to it
	Down    bool // health checks have it down (ignored in panic)
	Drained bool
}

// Known reports whether a registry of that name is configured.
func (e *Engine) Known(name string) bool { return e.state.Load().rs.known(name) }

// Registries returns the configured registries, the default marked, with
// the state decisions see, and whether health is being ignored (panic).
func (e *Engine) Registries() (regs []RegistryState, panic bool) {
	st := e.state.Load()
	regs = make([]RegistryState, len(st.rs.targets))
	for i, t := range st.rs.targets {
		regs[i] = RegistryState{Target: t, Up: st.up(int32(i)), Down: st.health.Down[t.Name], Drained: st.drained[t.Name]}
	}
	return regs, st.health.Panic
}

// Default returns the default registry.
func (e *Engine) Default() Target {
	rs := e.state.Load().rs
	return rs.targets[rs.def]
}

// Decide chooses a registry for addr and builds the redirect for the
// request path and raw query. The only error is ErrInvalidPath or
// ErrInvalidQuery; the registry is chosen all the same.
func (e *Engine) Decide(addr netip.Addr, path, rawQuery string) (Decision, error) {
	return e.decide(addr, path, rawQuery, nil)
}

// Choose is Decide without a redirect URL, for callers that need only
// the registry, such as the original "GET /" contract.
func (e *Engine) Choose(addr netip.Addr) Decision {
	st := e.state.Load()
	c := st.choose(addr.Unmap(), e.now, nil)
	t := &st.rs.targets[c.target]
	c.Registry, c.Host = t.Name, t.Host
	return c.Decision
}

// Explain is Decide with every fact looked up and every candidate
// recorded in the Trail.
func (e *Engine) Explain(addr netip.Addr, path, rawQuery string) (Decision, error) {
	trail := make([]Step, 0, 8)
	return e.decide(addr, path, rawQuery, &trail)
}

func (e *Engine) decide(addr netip.Addr, path, rawQuery string, trail *[]Step) (Decision, error) {
	st := e.state.Load()
	d := st.choose(addr.Unmap(), e.now, trail)
	if trail != nil {
		d.Trail = *trail
	}
	t := &st.rs.targets[d.target]
	d.Registry, d.Host = t.Name, t.Host
	loc, err := t.Location(path, rawQuery)
	d.Location = loc
	return d.Decision, err
}

type choice struct {
	Decision
	target int
}

// choose walks the kinds in order. Facts are looked up only when a kind
// that needs them has rules, unless explaining.
func (st *state) choose(addr netip.Addr, now func() time.Time, trail *[]Step) choice {
	var c choice
	rs := st.rs
	ov := &rs.overrides
	explain := trail != nil
	matched := false
	var nowNS int64

	// try tries one entry of l and reports whether it chose a target.
	try := func(l *layer, e *entry) bool {
		if e.expires != 0 {
			if nowNS == 0 {
				nowNS = now().UnixNano()
			}
			if nowNS >= e.expires {
				record(trail, l.reason(e), l.source(e), "", OutcomeExpired)
				return false
			}
		}
		// Only a live entry makes a fallback "unhealthy": one that
		// merely expired is as if it were not there.
		matched = true
		for _, t := range l.targetsOf(e) {
			name := rs.targets[t].Name
			if !st.up(t) {
				record(trail, l.reason(e), l.source(e), name, st.skip[t])
				continue
			}
			record(trail, l.reason(e), l.source(e), name, OutcomeChosen)
			c.target, c.Reason, c.Source = int(t), l.reason(e), l.source(e)
			return true
		}
		return false
	}
	// tryOverrides walks the chains of the base and recent layers as one
	// (see overrideLayers), skipping what recent hides in base.
	tryOverrides := func(rb, rr ref) bool {
		for {
			for rb != 0 && ov.hides(&ov.base.entries[rb]) {
				rb = ov.base.entries[rb].next
			}
			switch {
			case rb == 0 && rr == 0:
				return false
			case rr != 0 && (rb == 0 || ov.recent.before(rr, ov.base, rb)):
				e := &ov.recent.entries[rr]
				if try(ov.recent, e) {
					return true
				}
				rr = e.next
			default:
				e := &ov.base.entries[rb]
				if try(ov.base, e) {
					return true
				}
				rb = e.next
			}
		}
	}

	if st.health.Panic && explain {
		record(trail, "health", "", "", OutcomeIgnored)
	}
	if !addr.IsValid() {
		return st.fallback(c, FallbackNoAddress, trail)
	}

	// tryKind tries the overrides and then the static rules for one key,
	// recording a miss for explain.
	tryKind := func(fact string, pick func(*layer) ref) bool {
		rb, rr := pick(ov.base), ref(0)
		for rb != 0 && ov.hides(&ov.base.entries[rb]) {
			rb = ov.base.entries[rb].next
		}
		if ov.recent != nil {
			rr = pick(ov.recent)
		}
		found := rb != 0 || rr != 0
		if found && tryOverrides(rb, rr) {
			return true
		}
		if r := pick(rs.static); r != 0 {
			found = true
			for ; r != 0; r = rs.static.entries[r].next {
				if try(rs.static, &rs.static.entries[r]) {
					return true
				}
			}
		}
		if !found && explain {
			record(trail, fact, "", "", OutcomeNoMatch)
		}
		return false
	}
	noData := func(kind string) { record(trail, kind, "", "", OutcomeNoData) }

	if tryKind(addrFact(addr, explain), func(l *layer) ref { return l.lookupCIDR(addr) }) {
		return c
	}
	if explain || rs.needs&needASN != 0 {
		if asn, org, ok := lookupASN(st.src.ASN, addr); ok {
			c.Facts.ASN, c.Facts.ASOrg = asn, org
			if tryKind(kindFact("asn", asn, explain), func(l *layer) ref { return l.asn[asn] }) {
				return c
			}
		} else {
			noData("asn")
		}
	}
	if explain || rs.needs&needCloud != 0 {
		if p, r, ok := lookupCloud(st.src.Cloud, addr); ok {
			c.Facts.Cloud, c.Facts.Region = p, r
			if tryKind(factString(explain, "cloud:", p, "/", r), func(l *layer) ref { return l.cloudRegion[cloudKey{p, r}] }) ||
				tryKind(factString(explain, "cloud:", p), func(l *layer) ref { return l.cloud[p] }) {
				return c
			}
		} else {
			noData("cloud")
		}
	}
	if explain || rs.needs&needCountry != 0 {
		if cc, cont, ok := lookupCountry(st.src.Country, addr); ok {
			c.Facts.Country, c.Facts.Continent = cc, cont
			if tryKind(factString(explain, "country:", cc), func(l *layer) ref { return l.country[cc] }) ||
				tryKind(factString(explain, "continent:", cont), func(l *layer) ref { return l.continent[cont] }) {
				return c
			}
		} else {
			noData("country")
		}
	}
	if matched {
		return st.fallback(c, FallbackUnhealthy, trail)
	}
	return st.fallback(c, ReasonDefault, trail)
}

// fallback sends the client to the default registry, up or not.
func (st *state) fallback(c choice, why string, trail *[]Step) choice {
	c.target, c.Reason, c.Source = st.rs.def, why, ReasonDefault
	name := st.rs.targets[st.rs.def].Name
	if !st.up(int32(st.rs.def)) {
		record(trail, ReasonDefault, ReasonDefault, name, st.skip[st.rs.def])
		if why != FallbackNoAddress {
			c.Reason = FallbackAllDown
		}
	}
	record(trail, ReasonDefault, ReasonDefault, name, OutcomeChosen)
	return c
}

func lookupASN(s ASNSource, addr netip.Addr) (uint32, string, bool) {
	if s == nil {
		return 0, "", false
	}
	return s.ASN(addr)
}

func lookupCloud(s CloudSource, addr netip.Addr) (string, string, bool) {
	if s == nil {
		return "", "", false
	}
	return s.Cloud(addr)
}

func lookupCountry(s CountrySource, addr netip.Addr) (string, string, bool) {
	if s == nil {
		return "", "", false
	}
	return s.Country(addr)
}

// factString and friends build trail labels only when explaining, so
// that Decide does not pay for strings nobody reads.
func factString(explain bool, parts ...string) string {
	if !explain {
		return ""
	}
	return strings.Join(parts, "")
}

func kindFact(kind string, n uint32, explain bool) string {
	if !explain {
		return ""
	}
	return kind + ":" + strconv.FormatUint(uint64(n), 10)
}

func addrFact(a netip.Addr, explain bool) string {
	if !explain {
		return ""
	}
	return "cidr:" + a.String()
}

func record(trail *[]Step, match, source, registry, outcome string) {
	if trail != nil {
		*trail = append(*trail, Step{Match: match, Source: source, Registry: registry, Outcome: outcome})
	}
}
