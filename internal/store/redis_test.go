package store_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/reghost/reghost/internal/store"
	"github.com/reghost/reghost/internal/store/redistest"
	"github.com/reghost/reghost/internal/store/storetest"
)

// fast are options for tests: short intervals, so that what takes a
// poll interval in production takes a fraction of a second here.
func fast(url, prefix string) store.RedisOptions {
	return store.RedisOptions{URL: url, Prefix: prefix, PollInterval: 200 * time.Millisecond,
		ReplicaCheckInterval: 500 * time.Millisecond, ClientName: "reghost-test"}
}

func openRedis(t testing.TB, o store.RedisOptions) *store.Redis {
	t.Helper()
	s, err := store.OpenRedis(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestRedisConformance runs the suite on a server of its own per store:
// starting one takes milliseconds, and Break stops it.
func TestRedisConformance(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	servers := map[store.Store]*redistest.Server{}
	prefixes := map[store.Store]string{}
	openOn := func(t *testing.T, srv *redistest.Server, prefix string) store.Store {
		s, err := store.OpenRedis(t.Context(), fast(srv.URL(), prefix))
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		servers[s], prefixes[s] = srv, prefix
		mu.Unlock()
		return s
	}
	storetest.Run(t, storetest.Harness{
		Open: func(t *testing.T) store.Store { return openOn(t, redistest.Start(t), "reghost") },
		Reopen: func(t *testing.T, s store.Store) store.Store {
			s.Close()
			return openOn(t, servers[s], prefixes[s])
		},
		Corrupt: func(t *testing.T, s store.Store) (store.Store, error) {
			s.Close()
			servers[s].Do("HSET", "{"+prefixes[s]+"}:overrides", "x", "{not json")
			return store.OpenRedis(t.Context(), fast(servers[s].URL(), prefixes[s]))
		},
		Break: func(t *testing.T, s store.Store) { servers[s].Stop() },
	})
}

// TestRedisClusterConformance runs the suite on a three-node Cluster,
// shared by the suite's stores under a prefix each (starting a cluster
// takes seconds); Break stops every node, and a later Open starts a new
// cluster.
func TestRedisClusterConformance(t *testing.T) {
	t.Parallel()
	outer := t
	var (
		mu       sync.Mutex
		cluster  *redistest.Cluster
		n        int
		prefixOf = map[store.Store]string{}
		onOf     = map[store.Store]*redistest.Cluster{}
	)
	openOn := func(t *testing.T, c *redistest.Cluster, prefix string) store.Store {
		s, err := store.OpenRedis(t.Context(), fast(c.URL(), prefix))
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		prefixOf[s], onOf[s] = prefix, c
		mu.Unlock()
		return s
	}
	storetest.Run(t, storetest.Harness{
		Open: func(t *testing.T) store.Store {
			mu.Lock()
			if cluster == nil {
				cluster = redistest.StartCluster(outer)
			}
			c := cluster
			n++
			prefix := fmt.Sprintf("conformance-%d", n)
			mu.Unlock()
			return openOn(t, c, prefix)
		},
		Reopen: func(t *testing.T, s store.Store) store.Store {
			s.Close()
			return openOn(t, onOf[s], prefixOf[s])
		},
		Corrupt: func(t *testing.T, s store.Store) (store.Store, error) {
			s.Close()
			key := "{" + prefixOf[s] + "}:overrides"
			c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{onOf[s].Nodes[0].Addr()}})
			defer c.Close()
			if err := c.HSet(t.Context(), key, "x", "{not json").Err(); err != nil {
				t.Fatal(err)
			}
			return store.OpenRedis(t.Context(), fast(onOf[s].URL(), prefixOf[s]))
		},
		Break: func(t *testing.T, s store.Store) {
			mu.Lock()
			defer mu.Unlock()
			onOf[s].Stop()
			if cluster == onOf[s] {
				cluster = nil
			}
		},
	})
}

// redisACL is the least a reghost user needs, as REDIS.md gives it: the
// keys and channel under the prefix, and the commands the store and its
// scripts run (ACLs apply inside scripts too).
var redisACL = []any{"on", ">acl-password", "resetkeys", "~{reghost}:*", "resetchannels", "&{reghost}:*",
	"-@all", "+hello", "+auth", "+client|setname", "+ping", "+info", "+select",
	"+evalsha", "+eval", "+multi", "+exec", "+hvals", "+hget", "+hmget", "+xrevrange", "+subscribe", "+wait",
	"+hset", "+hdel", "+del", "+hlen", "+xadd", "+time", "+publish"}

// TestRedisConformanceMinimalACL runs the suite as a user with only the
// rights REDIS.md lists.
func TestRedisConformanceMinimalACL(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	servers := map[store.Store]*redistest.Server{}
	openOn := func(t *testing.T, srv *redistest.Server) store.Store {
		s, err := store.OpenRedis(t.Context(), fast("redis://reghost:acl-password@"+srv.Addr()+"/0", "reghost"))
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		servers[s] = srv
		mu.Unlock()
		return s
	}
	storetest.Run(t, storetest.Harness{
		Open: func(t *testing.T) store.Store {
			srv := redistest.Start(t)
			srv.Do(append([]any{"ACL", "SETUSER", "reghost"}, redisACL...)...)
			return openOn(t, srv)
		},
		Reopen: func(t *testing.T, s store.Store) store.Store {
			s.Close()
			return openOn(t, servers[s])
		},
		Corrupt: func(t *testing.T, s store.Store) (store.Store, error) {
			s.Close()
			servers[s].Do("HSET", "{reghost}:overrides", "x", "{not json")
			return openOn(t, servers[s]), nil
		},
		Break: func(t *testing.T, s store.Store) { servers[s].Stop() },
	})
}
