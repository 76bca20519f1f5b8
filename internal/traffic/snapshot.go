package traffic

import (
	"net/netip"
	"time"
)

// Snapshot is the last hour's counts, minute by minute.
type Snapshot struct {
	// Registries names the ByRegistry columns: the configured
	// registries, then "other".
	Registries []string
	// Minutes are the last Minutes minutes, oldest first; the last is
	// the current, partial one.
	Minutes []Minute
}

// Minute is one minute's counts.
type Minute struct {
	Start      time.Time
	Total      uint64
	ByKind     []uint64 // indexed as Kinds
	ByRegistry []uint64 // indexed as Snapshot.Registries
}

// Totals sums the minutes: all decisions, by kind and by registry.
func (s Snapshot) Totals() (total uint64, byKind, byRegistry []uint64) {
	byKind = make([]uint64, len(Kinds))
	byRegistry = make([]uint64, len(s.Registries))
	for _, m := range s.Minutes {
		total += m.Total
		for i, n := range m.ByKind {
			byKind[i] += n
		}
		for i, n := range m.ByRegistry {
			byRegistry[i] += n
		}
	}
	return total, byKind, byRegistry
}

// Snapshot returns the counts of the hour up to now.
func (r *Recorder) Snapshot(now time.Time) Snapshot {
	cur := unixMinute(now)
	out := Snapshot{Registries: append(append([]string(nil), r.regs...), "other"), Minutes: make([]Minute, Minutes)}
	nk := len(Kinds)
	for i := range out.Minutes {
		m := cur - Minutes + 1 + int64(i)
		row := Minute{Start: time.Unix(m*60, 0).UTC(), ByKind: make([]uint64, nk), ByRegistry: make([]uint64, len(r.regs)+1)}
		slot := m % Minutes
		for s := range r.shards {
			sh := &r.shards[s]
			if sh.minutes[slot].Load() != m {
				continue
			}
			counts := sh.counts[int(slot)*r.width : int(slot+1)*r.width]
			for k := range nk {
				n := counts[k].Load()
				row.ByKind[k] += n
				row.Total += n
			}
			for g := range row.ByRegistry {
				row.ByRegistry[g] += counts[nk+g].Load()
			}
		}
		out.Minutes[i] = row
	}
	return out
}

// Sample returns the addresses sampled in the hour up to now: a uniform
// sample of the requests of each five-minute window, so a client that
// made more requests is more likely to be in it, and may be in it more
// than once. It is a copy; the caller must not show it whole.
func (r *Recorder) Sample(now time.Time) []netip.Addr {
	cur := unixMinute(now)/windowMinutes + 1
	oldest := (unixMinute(now)-Minutes+1)/windowMinutes + 1
	var out []netip.Addr
	for s := range r.shards {
		for w := range r.shards[s].windows {
			win := &r.shards[s].windows[w]
			id := win.id.Load()
			if id < oldest || id > cur {
				continue
			}
			n := min(win.seen.Load(), uint64(len(win.slots)))
			for j := range n {
				if got, addr, ok := win.slots[j].load(); ok && got == id {
					out = append(out, addr)
				}
			}
		}
	}
	return out
}
