package store_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/reghost/reghost/internal/rules"
	"github.com/reghost/reghost/internal/store"
	"github.com/reghost/reghost/internal/store/redistest"
	"github.com/reghost/reghost/internal/store/storetest"
)

// BenchmarkRedisLoad100k: a whole reload of 100,000 overrides (one
// MULTI/EXEC, then decoding).
func BenchmarkRedisLoad100k(b *testing.B) {
	srv := redistest.Start(b)
	o := fast(srv.URL(), "reghost")
	o.ReadTimeout, o.WriteTimeout = 5*time.Second, 5*time.Second
	s := openRedis(b, o)
	ovs := make([]rules.Override, 100_000)
	for i := range ovs {
		ovs[i] = storetest.Override(fmt.Sprintf("ovr-%06d", i), i)
		ovs[i].Note = "a note of about the usual length, to weigh what an operator writes"
	}
	start := time.Now()
	if _, err := s.Replace(b.Context(), "bench", ovs); err != nil {
		b.Fatal(err)
	}
	b.Logf("Replace of 100,000 overrides: %s", time.Since(start).Round(time.Millisecond))
	b.ResetTimer()
	for b.Loop() {
		st, err := s.Load(b.Context())
		if err != nil || len(st.Overrides) != len(ovs) {
			b.Fatalf("%d overrides, %v", len(st.Overrides), err)
		}
	}
}

// BenchmarkRedisPropagation: from a write returning on one store to the
// change arriving on another's Changes; the median and p99 are reported.
func BenchmarkRedisPropagation(b *testing.B) {
	srv := redistest.Start(b)
	writer := openRedis(b, fast(srv.URL(), "reghost"))
	reader := openRedis(b, fast(srv.URL(), "reghost"))
	ch := reader.Changes(b.Context())
	var took []time.Duration
	i := 0
	for b.Loop() {
		i++
		start := time.Now()
		v, err := writer.Put(b.Context(), "bench", storetest.Override(fmt.Sprintf("p-%d", i%1000), i))
		if err != nil {
			b.Fatal(err)
		}
		for c := range ch {
			if !c.Version.Less(v) {
				break
			}
		}
		took = append(took, time.Since(start))
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(took[len(took)*99/100].Microseconds()), "p99-µs")
}

var _ store.Store = (*store.Redis)(nil)
