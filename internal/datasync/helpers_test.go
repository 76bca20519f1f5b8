package datasync

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/reghost/reghost/internal/store/redistest"
)

// newTestClient is a Client of srv as user (default user when ""), with
// small chunks so that a few kilobytes make several.
func newTestClient(t testing.TB, srv *redistest.Server, user string, tune func(*ClientConfig)) *Client {
	t.Helper()
	opts := &redis.Options{Addr: srv.Addr(), MaxRetries: -1}
	if user != "" {
		opts.Username, opts.Password = user, "acl-password"
	}
	cfg := ClientConfig{Redis: redis.NewClient(opts), ChunkSize: 1000, LockWait: 200 * time.Millisecond}
	if tune != nil {
		tune(&cfg)
	}
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// newClusterClient is a Client of the Cluster cl.
func newClusterClient(t testing.TB, cl *redistest.Cluster) *Client {
	t.Helper()
	var addrs []string
	for _, n := range cl.Nodes {
		addrs = append(addrs, n.Addr())
	}
	c, err := NewClient(ClientConfig{Redis: redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, MaxRetries: -1}), ChunkSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// content is n bytes that differ with seed, and their SHA-256.
func content(n int, seed uint64) ([]byte, string) {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, 1))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	sum := sha256.Sum256(b)
	return b, hex.EncodeToString(sum[:])
}

// put publishes b as name's current version.
func put(t testing.TB, c *Client, name string, b []byte) Pointer {
	t.Helper()
	sum := sha256.Sum256(b)
	p, _, err := c.publish(context.Background(), Pointer{Name: name, Version: "v", SHA256: hex.EncodeToString(sum[:]),
		Size: int64(len(b)), Source: "test"}, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return p
}
