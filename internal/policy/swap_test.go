package policy_test

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/reghost/reghost/internal/policy"
	"github.com/reghost/reghost/internal/policy/policytest"
	"github.com/reghost/reghost/internal/rules"
)

// Snapshots are swapped whole: deciding while overrides are swapped must
// always answer from one snapshot or the other, never a mix.
func TestDecideWhileOverridesChange(t *testing.T) {
	regs := []rules.Registry{
		{Name: "hub", URL: "https://registry-1.docker.io"},
		{Name: "k8s", URL: "https://registry.k8s.io", Default: true},
	}
	e, err := policy.New(policy.Config{Registries: regs})
	if err != nil {
		t.Fatal(err)
	}
	// Two sets that agree on their first 2,000 overrides.
	sets := [2][]rules.Override{policytest.Overrides(2_000, []string{"hub", "k8s"}), policytest.Overrides(3_000, []string{"hub", "k8s"})}
	if err := e.SetOverrides(sets[0]); err != nil {
		t.Fatal(err)
	}
	type probe struct {
		addr             netip.Addr
		reason, registry string
	}
	var probes []probe
	for _, o := range sets[0] {
		if o.Match.CIDR.IsValid() {
			a := o.Match.CIDR.Addr().Next()
			d := e.Choose(a)
			probes = append(probes, probe{a, d.Reason, d.Registry})
		}
	}
	err = policytest.ReadWhileWriting(40, func(i int) error {
		p := probes[i%len(probes)]
		d, err := e.Decide(p.addr, "/v2/pause/manifests/3.9", "")
		if err != nil || d.Reason != p.reason || d.Registry != p.registry {
			return fmt.Errorf("Decide(%s) = %q via %q, %v; want %q via %q", p.addr, d.Registry, d.Reason, err, p.registry, p.reason)
		}
		return nil
	}, func(i int) error { return e.SetOverrides(sets[i%2]) })
	if err != nil {
		t.Fatal(err)
	}
}
