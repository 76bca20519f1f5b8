package store_test

import (
	"testing"

	"github.com/reghost/reghost/internal/store"
	"github.com/reghost/reghost/internal/store/redistest"
)

func TestRedisSessions(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	n := 0
	testSessions(t, func(t *testing.T) sessionStore {
		n++
		s, err := store.OpenRedis(t.Context(), store.RedisOptions{URL: rs.URL(), Prefix: "sessions" + string(rune('a'+n))})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}
