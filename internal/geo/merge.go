package geo

import (
	"fmt"
	"net/netip"
)

// merger passes on networks, which must arrive in address order without
// overlapping (as maxminddb's Networks yields them), to the range tables,
// joining two sibling networks with the same value into their parent first.
// A City database has millions of networks that differ only in the city, so
// used as a country database it shrinks by an order of magnitude.
//
// Only a short chain of networks that may still be joined is held back: a
// network can only be joined with its sibling, which comes right after it,
// so once a later network falls outside that sibling (or has another
// value), it and everything before it are final.
//
// Final networks go to out.
type merger struct {
	out      func(netip.Prefix, uint32) error
	pending  []entry
	last     netip.Prefix
	inserted int
}

type entry struct {
	p netip.Prefix
	v uint32
}

func (m *merger) push(p netip.Prefix, v uint32) error {
	if m.last.IsValid() && m.last.Addr().Is4() == p.Addr().Is4() && !m.last.Addr().Less(p.Addr()) {
		return fmt.Errorf("walking the search tree: network %s after %s is out of order", p, m.last)
	}
	m.last = p
	for n := len(m.pending); n > 0; n = len(m.pending) {
		top := m.pending[n-1]
		if top.v != v || !siblings(top.p, p) {
			break
		}
		m.pending = m.pending[:n-1]
		p = parent(p)
	}
	if n := len(m.pending); n > 0 && !mayJoin(m.pending[n-1], p, v) {
		if err := m.flush(); err != nil {
			return err
		}
	}
	m.pending = append(m.pending, entry{p, v})
	return nil
}

// flush passes on every held-back network.
func (m *merger) flush() error {
	for _, e := range m.pending {
		if err := m.out(e.p, e.v); err != nil {
			return err
		}
		m.inserted++
	}
	m.pending = m.pending[:0]
	return nil
}

func parent(p netip.Prefix) netip.Prefix {
	q, _ := p.Addr().Prefix(p.Bits() - 1)
	return q
}

// siblings reports whether a (first) and b (second) are the two halves of
// one network.
func siblings(a, b netip.Prefix) bool {
	return a.Bits() == b.Bits() && a.Bits() > 0 && a.Addr().Is4() == b.Addr().Is4() &&
		a.Addr() != b.Addr() && parent(a) == parent(b)
}

// mayJoin reports whether e could still be joined with its sibling, given
// that next (with value v) is the network after it.
func mayJoin(e entry, next netip.Prefix, v uint32) bool {
	if e.v != v || e.p.Bits() == 0 || e.p.Addr().Is4() != next.Addr().Is4() {
		return false
	}
	// e must be the first half, and next must lie in the second half.
	up := parent(e.p)
	if up.Addr() != e.p.Addr() {
		return false
	}
	return up.Contains(next.Addr())
}
