// Package datasync hands the data sets the loader installs — GeoIP
// databases and cloud ranges files — to every reghost server through the
// Redis the servers share for their overrides, so that no shared volume
// is needed.
//
// The loader publishes (Client.Publish, a loader.Publisher): under a lock,
// it writes the content as a new version, then switches the data set's
// pointer to it in one script, which also publishes a message. Every
// server (Syncer) fetches a data set whose published SHA-256 is not its
// file's, checks the size and the SHA-256, validates it with its own
// parsers (internal/geo, internal/cloud), and renames it over the file
// its config names; its file watchers swap it in. Messages can be lost,
// so the servers also look every poll interval, and after every
// (re)subscription.
//
// Keys, all under the store's {prefix} hash tag, so that they share one
// Cluster slot (the scripts need that):
//
//	{p}:data:<name>          hash    the current version: version, id, sha256,
//	                                 size, chunks, source, build_time, published_at
//	{p}:data:<name>:<id>     hash    that version's content: field "0", "1", …
//	                                 each a chunk of at most 1 MiB
//	{p}:data-lock:<name>     string  a publisher's token, while it publishes
//	{p}:loader-state         hash    data set -> the loader's record (JSON)
//	{p}:data                 channel {"name","id","sha256"} per switch
//
// <name> is the data set's name as the servers' metrics give it:
// geoip/asn, geoip/country, cloud/aws, … A version's content key is new
// for every publish. The version it replaces is not deleted at the
// switch but expires KeepOld later (10 minutes), so that a server in the
// middle of fetching it can finish; a server that finds a chunk gone
// reads the pointer again and fetches the new version.
package datasync

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"github.com/redis/go-redis/v9"
)

// ClientConfig configures a Client.
type ClientConfig struct {
	// Redis is the client, such as store.NewRedisClient gives; required.
	// Client.Close closes it.
	Redis redis.UniversalClient
	// Prefix is the store's key prefix; "reghost".
	Prefix string
	// ChunkSize is the size of a content chunk; 1 MiB.
	ChunkSize int
	// KeepOld is how long a replaced version's content stays, for
	// readers fetching it; 10 minutes.
	KeepOld time.Duration
	// LockTTL is how long a publisher's lock lasts unless refreshed (it
	// is refreshed after every chunk): a publisher that dies holds it no
	// longer than this. 30 s.
	LockTTL time.Duration
	// LockWait is how long Publish waits for another publisher of the
	// same data set; 2 minutes.
	LockWait time.Duration
	// Logger; nil discards.
	Logger *slog.Logger
}

// Client reads and writes the data sets kept in one Redis under one
// prefix: Publish for the loader, Current and Fetch for the servers.
type Client struct {
	rdb      redis.UniversalClient
	keys     keys
	chunk    int
	keepOld  time.Duration
	lockTTL  time.Duration
	lockWait time.Duration
	log      *slog.Logger
}

// NewClient checks cfg and returns a Client.
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.Redis == nil {
		return nil, errors.New("datasync: no Redis client")
	}
	prefix := cmp.Or(cfg.Prefix, "reghost")
	if !prefixRe.MatchString(prefix) {
		return nil, fmt.Errorf("datasync: Redis prefix %q: braces and spaces are not allowed", prefix)
	}
	c := &Client{
		rdb:      cfg.Redis,
		keys:     keys{prefix: "{" + prefix + "}"},
		chunk:    cmp.Or(cfg.ChunkSize, 1<<20),
		keepOld:  cmp.Or(cfg.KeepOld, 10*time.Minute),
		lockTTL:  cmp.Or(cfg.LockTTL, 30*time.Second),
		lockWait: cmp.Or(cfg.LockWait, 2*time.Minute),
		log:      cfg.Logger,
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.chunk < 1 || c.keepOld < time.Millisecond || c.lockTTL < time.Millisecond || c.lockWait < 0 {
		return nil, errors.New("datasync: ChunkSize, KeepOld and LockTTL must be positive, LockWait not negative")
	}
	return c, nil
}

// Close closes the Redis client.
func (c *Client) Close() error { return c.rdb.Close() }

var (
	prefixRe = regexp.MustCompile(`^[^{}\s]+$`)
	// nameRe is a data set's name: a kind and a name, as the metrics
	// give them. No colon: it would make one name's keys another's.
	nameRe = regexp.MustCompile(`^[a-z0-9]+/[a-z0-9][a-z0-9_-]*$`)
)

func checkName(name string) error {
	if !nameRe.MatchString(name) {
		return fmt.Errorf("datasync: data set name %q: want kind/name, such as geoip/asn or cloud/aws", name)
	}
	return nil
}

// keys names the data sets' keys under one prefix.
type keys struct{ prefix string }

func (k keys) pointer(name string) string     { return k.prefix + ":data:" + name }
func (k keys) content(name, id string) string { return k.prefix + ":data:" + name + ":" + id }
func (k keys) lock(name string) string        { return k.prefix + ":data-lock:" + name }
func (k keys) state() string                  { return k.prefix + ":loader-state" }
func (k keys) channel() string                { return k.prefix + ":data" }
