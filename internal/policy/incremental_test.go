package policy

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/reghost/reghost/internal/rules"
)

// Overrides changed one write at a time (UpdateOverrides: a recent layer
// over the base, which it hides parts of) decide exactly as the same set
// compiled whole: the same registry, reason, source and trail, for
// nested prefixes, same matches of different ages, replacements dated
// older than what they replace, deletions, expiry and registries down,
// across recompilations of the whole set.
func TestUpdateOverridesMatchesWholeCompile(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 8))
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	regs := []string{"hub", "mirror", "k8s", "aws-us-east-2"}
	prefixes := []string{"192.168.0.0/16", "192.168.0.0/24", "192.168.0.0/28", "192.168.1.0/24", "10.0.0.0/8", "2001:db8::/32", "2001:db8:1::/48"}
	matches := []string{"asn:15169", "asn:29518", "country:SE", "country:JP", "continent:EU", "cloud:aws", "cloud:aws/us-east-2", "cloud:gcp"}
	for _, p := range prefixes {
		matches = append(matches, "cidr:"+p)
	}
	probes := []netip.Addr{ipCIDR, ipCIDR16, ipGoogle, ipAWS, ipAWSWest, ipGCP, ipSE, ipDE, ipJP, ipNone,
		netip.MustParseAddr("192.168.0.3"), netip.MustParseAddr("192.168.1.9"), netip.MustParseAddr("10.1.2.3"),
		netip.MustParseAddr("2001:db8:1::7"), netip.MustParseAddr("2001:db8:2::7")}
	randomOverride := func(id string) rules.Override {
		o := rules.Override{ID: id, Match: m(matches[rng.IntN(len(matches))]),
			CreatedAt: now.Add(-time.Duration(rng.IntN(5)) * time.Hour)} // ties on purpose
		for _, i := range rng.Perm(len(regs))[:1+rng.IntN(2)] {
			o.Registries = append(o.Registries, regs[i])
		}
		if rng.IntN(6) == 0 {
			o.ExpiresAt = now.Add(time.Duration(rng.IntN(3)-1) * time.Minute) // some expired
		}
		return o
	}
	for round := range 16 {
		inc := newEngine(t, testSources(), func() time.Time { return now })
		inc.maxRecent = 12 // the whole set is compiled again on the way, several times
		whole := newEngine(t, testSources(), func() time.Time { return now })
		health := downSet(regs[:rng.IntN(3)]).health()
		inc.SetHealth(health)
		whole.SetHealth(health)
		set := map[string]rules.Override{}
		var initial []rules.Override
		for i := range rng.IntN(30) {
			o := randomOverride(fmt.Sprintf("b%02d", i))
			set[o.ID] = o
			initial = append(initial, o)
		}
		inc.SetOverrides(initial)
		for step := range 300 {
			var put []rules.Override
			var deleted []string
			switch id := fmt.Sprintf("%c%02d", "br"[rng.IntN(2)], rng.IntN(40)); rng.IntN(3) {
			case 0:
				if _, ok := set[id]; ok {
					deleted = append(deleted, id)
					delete(set, id)
					break
				}
				fallthrough
			default:
				o := randomOverride(id)
				put = append(put, o)
				set[id] = o
			}
			inc.UpdateOverrides(put, deleted)
			if step%23 != 0 && step < 295 {
				continue
			}
			all := make([]rules.Override, 0, len(set))
			for _, o := range set {
				all = append(all, o)
			}
			whole.SetOverrides(all)
			for _, a := range probes {
				got, _ := inc.Explain(a, "/v2/", "")
				want, _ := whole.Explain(a, "/v2/", "")
				if got.Registry != want.Registry || got.Reason != want.Reason || got.Source != want.Source || !reflect.DeepEqual(got.Trail, want.Trail) {
					t.Fatalf("round %d, step %d, %s: incremental %s by %s (%s)\n  trail %v\nwhole %s by %s (%s)\n  trail %v",
						round, step, a, got.Registry, got.Reason, got.Source, got.Trail, want.Registry, want.Reason, want.Source, want.Trail)
				}
				if d := inc.Choose(a); d.Registry != want.Registry || d.Reason != want.Reason {
					t.Fatalf("round %d, step %d, %s: Choose %s by %s, Explain %s by %s", round, step, a, d.Registry, d.Reason, want.Registry, want.Reason)
				}
			}
			if got := len(inc.Overrides()); got != len(set) {
				t.Fatalf("Overrides: %d, want %d", got, len(set))
			}
		}
	}
}
