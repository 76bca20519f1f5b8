package app

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/reghost/reghost/internal/store/redistest"
)

// seed100k puts 100,000 /32 overrides in 10.0.0.0/8 into the shared
// store through a's admin API, and waits for b to have them.
func seed100k(b *testing.B, a, r *replica) {
	type match struct {
		CIDR string `json:"cidr"`
	}
	type override struct {
		ID         string   `json:"id"`
		Match      match    `json:"match"`
		Registries []string `json:"registries"`
		Note       string   `json:"note"`
	}
	ovs := make([]override, 100_000)
	for i := range ovs {
		ovs[i] = override{
			ID:         fmt.Sprintf("seed-%06d", i),
			Match:      match{fmt.Sprintf("10.%d.%d.%d/32", i>>16, i>>8&255, i&255)},
			Registries: []string{"aws"},
			Note:       "a note of about the usual length, to weigh what an operator writes",
		}
	}
	body, _ := json.Marshal(map[string]any{"overrides": ovs})
	if code, out := a.admin(b, "PUT", "/api/v1/overrides", string(body)); code != 200 {
		b.Fatalf("import of 100,000 overrides: %d %.200s", code, out)
	}
	last := netip.MustParseAddr("10.1.134.159") // seed-099999
	deadline := time.Now().Add(30 * time.Second)
	for d, _ := r.engine.Decide(last, "/v2/", ""); d.Registry != "aws"; d, _ = r.engine.Decide(last, "/v2/", "") {
		if time.Now().After(deadline) {
			b.Fatal("the second replica did not get the 100,000 overrides within 30 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// BenchmarkRedisDecideUnderWrites: decisions on one replica, with
// 100,000 overrides stored, while another replica writes an override
// 100 times a second (writer=on), against the same without the writer
// (writer=off). Each decision is timed; p50-ns and p99-ns are reported.
// The replica applies each change beside the snapshot decisions read,
// so the two should match.
func BenchmarkRedisDecideUnderWrites(b *testing.B) {
	rs := redistest.Start(b)
	w, r := startReplica(b, rs.URL(), ""), startReplica(b, rs.URL(), "")
	seed100k(b, w, r)
	addrs := make([]netip.Addr, 4096)
	for i := range addrs {
		// Half the addresses hit a seeded override, half fall through
		// to the config rules.
		addrs[i] = netip.AddrFrom4([4]byte{byte(10 + i%2*182), 0, byte(i >> 8), byte(i)})
	}
	for _, writing := range []bool{false, true} {
		b.Run(fmt.Sprintf("writer=%v", map[bool]string{false: "off", true: "on"}[writing]), func(b *testing.B) {
			stop := make(chan struct{})
			var wg sync.WaitGroup
			if writing {
				wg.Go(func() { writeEvery10ms(b, w, stop) })
			}
			took := make([]time.Duration, 0, 1<<20)
			for i := 0; b.Loop(); i++ {
				start := time.Now()
				if _, err := r.engine.Decide(addrs[i%len(addrs)], "/v2/pause/manifests/3.9", ""); err != nil {
					b.Fatal(err)
				}
				took = append(took, time.Since(start))
			}
			close(stop)
			wg.Wait()
			reportPercentiles(b, took, "ns", time.Nanosecond)
		})
	}
}

// writeEvery10ms creates and deletes an override on a, alternately,
// every 10 ms until stop closes.
func writeEvery10ms(b *testing.B, a *replica, stop <-chan struct{}) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		method, path, body := "POST", "/api/v1/overrides", `{"id":"w","match":{"cidr":"198.51.100.0/24"},"registries":["aws"]}`
		want := 201
		if i%2 == 1 {
			method, path, body, want = "DELETE", "/api/v1/overrides/w", "", 200
		}
		if code, out := a.admin(b, method, path, body); code != want {
			b.Errorf("%s %s: %d %s", method, path, code, out)
			return
		}
	}
}

// BenchmarkRedisReplicaPropagation: with 100,000 overrides stored, from
// a create sent to one replica's admin API to the other replica deciding
// by it: the write, its answer, and the change reaching the other
// replica. Median and p99 are reported.
func BenchmarkRedisReplicaPropagation(b *testing.B) {
	rs := redistest.Start(b)
	w, r := startReplica(b, rs.URL(), ""), startReplica(b, rs.URL(), "")
	seed100k(b, w, r)
	var took []time.Duration
	for i := 0; b.Loop(); i++ {
		addr := netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)})
		body := fmt.Sprintf(`{"id":"p-%d","match":{"cidr":"%s/32"},"registries":["aws"]}`, i, addr)
		start := time.Now()
		if code, out := w.admin(b, "POST", "/api/v1/overrides", body); code != 201 {
			b.Fatalf("create: %d %s", code, out)
		}
		for d, _ := r.engine.Decide(addr, "/v2/", ""); d.Registry != "aws"; d, _ = r.engine.Decide(addr, "/v2/", "") {
			if time.Since(start) > 5*time.Second {
				b.Fatalf("override p-%d not applied on the other replica after 5 s", i)
			}
		}
		took = append(took, time.Since(start))
	}
	reportPercentiles(b, took, "µs", time.Microsecond)
}

// reportPercentiles reports the median and p99 of took in unit.
func reportPercentiles(b *testing.B, took []time.Duration, name string, unit time.Duration) {
	if len(took) == 0 {
		return
	}
	slices.Sort(took)
	at := func(q float64) float64 { return float64(took[int(q*float64(len(took)-1))]) / float64(unit) }
	b.ReportMetric(at(0.50), "p50-"+name)
	b.ReportMetric(at(0.99), "p99-"+name)
}
