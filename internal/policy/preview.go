package policy

import (
	"net/netip"
	"time"

	"github.com/reghost/reghost/internal/rules"
)

// Move is what a candidate change does to one client address: its
// decision as things are, and as they would be. Decisions carry the
// registry, host, reason, source and facts consulted; no redirect URL
// and no trail.
type Move struct {
	Addr          netip.Addr
	Before, After Decision
}

// Moved reports whether the change would send the client to another
// registry.
func (m Move) Moved() bool { return m.Before.Registry != m.After.Registry }

// Preview decides each address twice, from one snapshot of the engine:
// as it is, and with ovs in place of the whole set of overrides. It is
// how an operator sees what a change would do before making it.
//
// Nothing live is touched. ovs are compiled into a scratch snapshot that
// shares the live one's registries, static rules, fact sources, health
// and drains, and is dropped when Preview returns; decisions being made
// meanwhile read the live snapshot as always. Compiling costs what
// SetOverrides does, so a preview of a large set is milliseconds, not
// nanoseconds: it is for the admin page, not the request path.
//
// As SetOverrides, an override that does not validate is left out and
// reported in the error; the moves are computed without it.
func (e *Engine) Preview(ovs []rules.Override, addrs []netip.Addr) ([]Move, error) {
	live := e.state.Load()
	l, err := compileOverrides(live.rs, ovs)
	rs := *live.rs
	rs.overrides = overrideLayers{base: l}
	rs.needs = rs.static.needs() | rs.overrides.needs()
	// The registries are the live ones, so the skip flags compiled from
	// health and drains hold as they are.
	scratch := *live
	scratch.rs = &rs
	moves := make([]Move, len(addrs))
	for i, a := range addrs {
		a = a.Unmap()
		moves[i] = Move{Addr: a, Before: live.decision(a, e.now), After: scratch.decision(a, e.now)}
	}
	return moves, err
}

// decision is Choose on this snapshot.
func (st *state) decision(addr netip.Addr, now func() time.Time) Decision {
	c := st.choose(addr, now, nil)
	t := &st.rs.targets[c.target]
	c.Registry, c.Host = t.Name, t.Host
	return c.Decision
}
