package policy

import (
	"net/netip"
	"testing"
	"time"

	"github.com/reghost/reghost/internal/rules"
)

func TestPreview(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	live := []rules.Override{{ID: "se", Match: m("country:SE"), Registries: []string{"k8s"}, CreatedAt: now.Add(-time.Hour)}}
	tests := []struct {
		name      string
		candidate []rules.Override
		drained   map[string]bool
		addr      netip.Addr
		before    string // registry, reason
		after     string
		wantErr   string
	}{
		{name: "an added cidr override moves the address",
			candidate: append(live, rules.Override{ID: "new", Match: m("cidr:89.160.20.0/24"), Registries: []string{"mirror"}}),
			addr:      ipSE, before: "k8s country:SE", after: "mirror cidr:89.160.20.0/24"},
		{name: "an address the change does not match stays",
			candidate: append(live, rules.Override{ID: "new", Match: m("cidr:89.160.20.0/24"), Registries: []string{"mirror"}}),
			addr:      ipDE, before: "mirror continent:EU", after: "mirror continent:EU"},
		{name: "IPv4-mapped is decided as IPv4",
			candidate: append(live, rules.Override{ID: "new", Match: m("cidr:89.160.20.0/24"), Registries: []string{"mirror"}}),
			addr:      netip.AddrFrom16(ipSE.As16()), before: "k8s country:SE", after: "mirror cidr:89.160.20.0/24"},
		{name: "deleting an override moves its clients back",
			candidate: nil,
			addr:      ipSE, before: "k8s country:SE", after: "hub country:SE"},
		{name: "an edit replaces the live override",
			candidate: []rules.Override{{ID: "se", Match: m("country:SE"), Registries: []string{"mirror"}}},
			addr:      ipSE, before: "k8s country:SE", after: "mirror country:SE"},
		{name: "drains hold in the preview",
			candidate: append(live, rules.Override{ID: "new", Match: m("cidr:89.160.20.0/24"), Registries: []string{"mirror"}}),
			drained:   map[string]bool{"mirror": true},
			addr:      ipSE, before: "k8s country:SE", after: "k8s country:SE"},
		{name: "an expired candidate does not apply",
			candidate: append(live, rules.Override{ID: "new", Match: m("cidr:89.160.20.0/24"), Registries: []string{"mirror"}, ExpiresAt: now}),
			addr:      ipSE, before: "k8s country:SE", after: "k8s country:SE"},
		{name: "an invalid override is reported and left out",
			candidate: append(live, rules.Override{ID: "bad", Match: m("cidr:89.160.20.0/24"), Registries: []string{"nowhere"}}),
			addr:      ipSE, before: "k8s country:SE", after: "k8s country:SE",
			wantErr: `override "bad" skipped: registries[0]: unknown registry "nowhere"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEngine(t, testSources(), func() time.Time { return now })
			if err := e.SetOverrides(live); err != nil {
				t.Fatal(err)
			}
			e.SetDrained(tt.drained)
			moves, err := e.Preview(tt.candidate, []netip.Addr{tt.addr})
			if got := errString(err); got != tt.wantErr {
				t.Errorf("err = %q, want %q", got, tt.wantErr)
			}
			if len(moves) != 1 {
				t.Fatalf("%d moves, want 1", len(moves))
			}
			mv := moves[0]
			if got := mv.Before.Registry + " " + mv.Before.Reason; got != tt.before {
				t.Errorf("before = %s, want %s", got, tt.before)
			}
			if got := mv.After.Registry + " " + mv.After.Reason; got != tt.after {
				t.Errorf("after = %s, want %s", got, tt.after)
			}
			if mv.Moved() != (mv.Before.Registry != mv.After.Registry) || mv.Addr != tt.addr.Unmap() {
				t.Errorf("move %+v", mv)
			}
			// The live engine is as it was.
			if d := e.Choose(ipSE); d.Source != "override:se" && tt.drained == nil {
				t.Errorf("live decision changed: %+v", d)
			}
		})
	}
}

// A preview leaves the live engine alone, and the live engine's later
// changes do not reach a preview's scratch snapshot (there is none left).
func TestPreviewLeavesTheEngineAlone(t *testing.T) {
	t.Parallel()
	e := newEngine(t, testSources(), nil)
	before := e.Choose(ipSE)
	if _, err := e.Preview([]rules.Override{{ID: "x", Match: m("country:SE"), Registries: []string{"mirror"}}}, []netip.Addr{ipSE}); err != nil {
		t.Fatal(err)
	}
	if after := e.Choose(ipSE); after.Registry != before.Registry || after.Source != before.Source {
		t.Errorf("after a preview the live decision is %+v, was %+v", after, before)
	}
	if regs, _ := e.Registries(); len(regs) != len(testRegistries()) {
		t.Errorf("registries changed: %+v", regs)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
