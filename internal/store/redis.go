package store

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// RedisOptions configure OpenRedis. Only URL is required; zero values
// take the defaults.
type RedisOptions struct {
	// URL selects the server and the mode, through go-redis's own URL
	// parsers (no scheme of reghost's own):
	//
	//   - standalone: redis://[user:password@]host:6379/0, rediss:// for
	//     TLS, unix:///path/to/redis.sock (redis.ParseURL);
	//   - Sentinel, when the query has master_name:
	//     redis://[user:password@]sentinel1:26379/0?master_name=mymaster&addr=sentinel2:26379
	//     (redis.ParseFailoverURL; the user and password in the URL are
	//     the Sentinels', the data nodes' go in the password query
	//     parameter or PasswordFile);
	//   - Cluster, when the query has addr (one or more further seed
	//     nodes): redis://[user:password@]node1:6379?addr=node2:6379&addr=node3:6379
	//     (redis.ParseClusterURL; Cluster has database 0 only).
	//
	// Query parameters are go-redis's (dial_timeout, read_timeout,
	// pool_size, ...), except max_retries, which reghost sets itself.
	URL string
	// Prefix names every key, as {Prefix}:..., and the change channel:
	// several deployments can share one Redis. The braces are the Cluster
	// hash tag that keeps all keys in one slot, which the scripts need.
	// "reghost".
	Prefix string
	// PasswordFile holds the password of the data nodes (not of the
	// Sentinels). It is read, and trimmed, at every new connection, so a
	// rotated password needs no restart. The URL must then carry none.
	PasswordFile string
	// Password is the data nodes' password given as it is (the server
	// takes it from the variable redis.password_env names), in place of
	// PasswordFile or a password in the URL.
	Password string
	// SentinelPasswordFile holds the Sentinels' password. go-redis has no
	// hook for the Sentinels' credentials, so it is read once, at open.
	SentinelPasswordFile string
	// TLS applies with a rediss:// URL.
	TLS RedisTLS
	// ClientName is set on every connection (CLIENT SETNAME), so that an
	// operator can tell replicas apart in CLIENT LIST; "reghost-<hostname>".
	ClientName string
	// DialTimeout, ReadTimeout and WriteTimeout bound every network step;
	// 500 ms each, so that a Redis that is down is known in well under a
	// second. A whole Load must arrive within ReadTimeout.
	DialTimeout, ReadTimeout, WriteTimeout time.Duration
	// WaitReplicas is how many replicas must have a write before it is
	// acknowledged (WAIT). WaitAuto, the zero value: 1 when the primary
	// reports a connected replica (INFO replication connected_slaves,
	// checked every ReplicaCheckInterval), else 0. WaitNone never waits.
	WaitReplicas int
	// WaitTimeout bounds WAIT; 500 ms.
	WaitTimeout time.Duration
	// PollInterval is how often the version is read to catch changes that
	// pub/sub lost, and how long the subscription may be silent before it
	// is pinged; 1 s.
	PollInterval time.Duration
	// ReplicaCheckInterval is how often the primary's replicas are
	// counted, and maxmemory-policy checked; 10 s.
	ReplicaCheckInterval time.Duration
	// AuditLimit is about how many audit entries are kept (XADD MAXLEN ~);
	// 10,000.
	AuditLimit int
	// Logger receives the store's logs; nil discards them. go-redis logs
	// through its own global logger: see RedisLogger.
	Logger *slog.Logger
	// Registerer takes the store's metrics; nil registers none.
	Registerer prometheus.Registerer
}

// RedisTLS are the files for a TLS connection (rediss://).
type RedisTLS struct {
	CAFile   string // PEM CA bundle; the system's roots when empty
	CertFile string // client certificate, PEM, with KeyFile
	KeyFile  string
	// ServerName is checked against the server's certificate; the URL's
	// host when empty.
	ServerName string
}

// WaitReplicas settings.
const (
	WaitAuto = 0
	WaitNone = -1
)

// Redis is the store on a shared Redis: standalone, Sentinel or Cluster.
// Every replica of reghost reads and writes the same overrides, and
// learns of the others' writes through pub/sub, a resynchronisation on
// every (re)subscription, and a version poll.
//
// It never fails to open because Redis is down or loading: its calls
// then fail fast with ErrUnavailable, Health says why, and it reconnects
// by itself. Writes are never retried (go-redis's retries are off): a
// write that timed out may or may not have been applied, and applying it
// twice would be worse.
type Redis struct {
	opts    RedisOptions
	log     *slog.Logger
	m       *redisMetrics
	mode    string // standalone, sentinel, cluster
	where   string // the URL without its password, for messages
	rdb     redis.UniversalClient
	cluster *redis.ClusterClient // set in Cluster mode
	keys    redisKeys

	stop   context.CancelFunc
	wg     sync.WaitGroup
	closed atomic.Bool

	mu       sync.Mutex // guards the fields below
	seen     Version    // the newest version seen, by any read, write or message
	seenID   string     // the write ID of seen ("" when not known)
	diverged bool       // Redis has seen's version with another write ID
	cmdErr   error      // the last command's error, nil after a success
	gone     bool       // Redis holds no version but seen is not zero
	replicas int        // the primary's connected replicas, -1 unknown

	// The changes delivered to Changes readers, in order.
	deliverMu  sync.Mutex
	delivered  Version
	deliveries uint64
	resync     bool      // a (re)subscription's reload is yet to be delivered
	pending    Version   // a version the poll found before pub/sub did
	pendingAt  time.Time // when
	hub        hub

	ps         atomic.Pointer[redis.PubSub] // the current subscription
	subDown    atomic.Pointer[subTrouble]   // nil while subscribed
	lastHeard  atomic.Int64                 // unix ns the subscription last heard anything
	checkedMem atomic.Bool                  // maxmemory-policy checked

	firstSub     chan struct{} // closed at the first subscription
	firstSubOnce sync.Once
}

type subTrouble struct {
	err     error
	since   time.Time
	initial bool // not subscribed yet
}

type redisKeys struct {
	overrides, drains, version, audit, channel string
}

func (k redisKeys) all() []string { return []string{k.overrides, k.drains, k.version, k.audit} }

var _ Store = (*Redis)(nil)

// OpenRedis connects the store to Redis, as far as it can within ctx:
// it fails only for options that cannot work (a URL that does not parse,
// a missing password file, bad TLS files), never because Redis is down
// or loading.
func OpenRedis(ctx context.Context, opts RedisOptions) (*Redis, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	r := &Redis{opts: opts, log: opts.Logger, replicas: -1, firstSub: make(chan struct{})}
	r.keys = redisKeys{
		overrides: "{" + opts.Prefix + "}:overrides",
		drains:    "{" + opts.Prefix + "}:drains",
		version:   "{" + opts.Prefix + "}:version",
		audit:     "{" + opts.Prefix + "}:audit",
		channel:   "{" + opts.Prefix + "}:changes",
	}
	if r.m, err = newRedisMetrics(opts.Registerer); err != nil {
		return nil, err
	}
	if err := r.connect(); err != nil {
		return nil, err
	}
	r.subDown.Store(&subTrouble{err: errors.New("not subscribed yet"), since: time.Now(), initial: true})

	// A first look, for the log and Health; its failure is only reported.
	first, cancel := context.WithTimeout(ctx, opts.DialTimeout+opts.ReadTimeout+opts.WriteTimeout)
	v, err := r.Version(first)
	r.checkPrimary(first)
	cancel()
	if err != nil {
		r.log.Warn("Redis is not available; the override store will connect when it is", "redis", r.where, "mode", r.mode, "err", err)
	} else {
		r.log.Info("opened the Redis override store", "redis", r.where, "mode", r.mode, "prefix", opts.Prefix, "version", v.String())
	}

	bg, stop := context.WithCancel(context.Background())
	r.stop = stop
	r.wg.Go(func() { r.subscribe(bg) })
	r.wg.Go(func() { r.poll(bg) })
	if err == nil {
		// Subscribed before returning, when Redis is there: a reader that
		// calls Changes next hears every write from the first.
		select {
		case <-r.firstSub:
		case <-ctx.Done():
		case <-time.After(opts.DialTimeout + opts.ReadTimeout):
		}
	}
	return r, nil
}

func (o RedisOptions) withDefaults() (RedisOptions, error) {
	if o.URL == "" {
		return o, errors.New("store: the Redis URL is empty; give redis://host:6379/0 (or a Sentinel or Cluster URL)")
	}
	if o.Prefix == "" {
		o.Prefix = "reghost"
	}
	if strings.ContainsAny(o.Prefix, "{} \t\r\n") {
		return o, fmt.Errorf("store: Redis prefix %q: braces and spaces are not allowed (the prefix goes inside a {hash tag})", o.Prefix)
	}
	if o.ClientName == "" {
		host, _ := os.Hostname()
		o.ClientName = "reghost-" + cmpOr(host, "unknown")
	}
	if strings.ContainsAny(o.ClientName, " \t\r\n") {
		return o, fmt.Errorf("store: Redis client name %q: spaces are not allowed", o.ClientName)
	}
	o.DialTimeout = cmpOr(o.DialTimeout, 500*time.Millisecond)
	o.ReadTimeout = cmpOr(o.ReadTimeout, 500*time.Millisecond)
	o.WriteTimeout = cmpOr(o.WriteTimeout, 500*time.Millisecond)
	o.WaitTimeout = cmpOr(o.WaitTimeout, 500*time.Millisecond)
	o.PollInterval = cmpOr(o.PollInterval, time.Second)
	o.ReplicaCheckInterval = cmpOr(o.ReplicaCheckInterval, 10*time.Second)
	if o.AuditLimit <= 0 {
		o.AuditLimit = 10_000
	}
	if o.WaitReplicas < WaitNone {
		return o, fmt.Errorf("store: Redis WaitReplicas %d: use a number of replicas, WaitAuto (0) or WaitNone (-1)", o.WaitReplicas)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o, nil
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// connect builds the go-redis client for the URL's mode.
func (r *Redis) connect() error {
	c, err := newRedisClient(r.opts, r.m.hook())
	if err != nil {
		return err
	}
	r.mode, r.where, r.rdb, r.cluster = c.mode, c.where, c.rdb, c.cluster
	return nil
}

// NewRedisClient builds a go-redis client from opts as the store builds
// its own (URL, mode, password files, TLS, client name, timeouts, no
// retries), for other data kept under the same prefix: the data sets
// the loader publishes (internal/datasync). Only the client options
// apply; the caller closes it.
func NewRedisClient(opts RedisOptions) (redis.UniversalClient, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	c, err := newRedisClient(opts, nil)
	if err != nil {
		return nil, err
	}
	return c.rdb, nil
}

// redisClient is a client and what the store says of it.
type redisClient struct {
	mode    string // standalone, sentinel, cluster
	where   string // the URL without its password, for messages
	rdb     redis.UniversalClient
	cluster *redis.ClusterClient // set in Cluster mode
}

// newRedisClient builds the go-redis client for the URL's mode, with
// hook on every connection unless it is nil.
func newRedisClient(o RedisOptions, hook redis.Hook) (redisClient, error) {
	var c redisClient
	u, err := url.Parse(o.URL)
	if err != nil {
		// url.Error repeats the URL, password and all.
		return c, fmt.Errorf("store: the Redis URL does not parse; check its form (redis://[user:password@]host:6379/0)")
	}
	c.where = u.Redacted()
	q := u.Query()
	if q.Has("max_retries") {
		return c, fmt.Errorf("store: Redis URL %s: remove max_retries; reghost never retries writes (one could apply twice) and retries reads itself", c.where)
	}
	tlsConfig, err := o.TLS.config(u)
	if err != nil {
		return c, err
	}
	if tlsConfig != nil && u.Scheme != "rediss" {
		return c, fmt.Errorf("store: Redis TLS files are set but the URL %s is not rediss://", c.where)
	}
	var creds func(context.Context) (string, string, error)
	if o.Password != "" {
		if o.PasswordFile != "" {
			return c, fmt.Errorf("store: both a Redis password file and a password are set: keep one")
		}
		p := o.Password
		creds = func(context.Context) (string, string, error) { return "", p, nil }
	}
	if o.PasswordFile != "" {
		if _, err := readSecret(o.PasswordFile); err != nil {
			return c, err
		}
		path := o.PasswordFile
		creds = func(context.Context) (string, string, error) {
			// Read at every connection: a rotated password applies at the
			// next reconnect.
			p, err := readSecret(path)
			return "", p, err
		}
	}
	noMaint := &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}

	switch {
	case q.Has("master_name"):
		fo, err := redis.ParseFailoverURL(o.URL)
		if err != nil {
			return c, fmt.Errorf("store: Redis Sentinel URL %s: %w", c.where, redactErr(err, u))
		}
		if fo.MasterName == "" {
			return c, fmt.Errorf("store: Redis Sentinel URL %s: master_name is empty", c.where)
		}
		if creds != nil {
			if fo.Password != "" {
				return c, fmt.Errorf("store: Redis URL %s has a password and a password file or password_env is set too: keep one", c.where)
			}
			user := fo.Username
			fo.CredentialsProviderContext = withUser(user, creds)
		}
		if o.SentinelPasswordFile != "" {
			if fo.SentinelPassword != "" {
				return c, fmt.Errorf("store: Redis URL %s has a Sentinel password and SentinelPasswordFile is set: keep one", c.where)
			}
			if fo.SentinelPassword, err = readSecret(o.SentinelPasswordFile); err != nil {
				return c, err
			}
		}
		fo.ClientName = cmpOr(fo.ClientName, o.ClientName)
		fo.DialTimeout = cmpOr(fo.DialTimeout, o.DialTimeout)
		fo.ReadTimeout = cmpOr(fo.ReadTimeout, o.ReadTimeout)
		fo.WriteTimeout = cmpOr(fo.WriteTimeout, o.WriteTimeout)
		fo.DialerRetries = cmpOr(fo.DialerRetries, 1)
		fo.MaxRetries = -1
		fo.ContextTimeoutEnabled = true
		if tlsConfig != nil {
			fo.TLSConfig = tlsConfig
		}
		c.mode, c.rdb = "sentinel", redis.NewFailoverClient(fo)
		if hook != nil {
			c.rdb.AddHook(hook)
		}
	case q.Has("addr"):
		co, err := redis.ParseClusterURL(o.URL)
		if err != nil {
			return c, fmt.Errorf("store: Redis Cluster URL %s: %w", c.where, redactErr(err, u))
		}
		if creds != nil {
			if co.Password != "" {
				return c, fmt.Errorf("store: Redis URL %s has a password and a password file or password_env is set too: keep one", c.where)
			}
			co.CredentialsProviderContext = withUser(co.Username, creds)
		}
		co.ClientName = cmpOr(co.ClientName, o.ClientName)
		co.DialTimeout = cmpOr(co.DialTimeout, o.DialTimeout)
		co.ReadTimeout = cmpOr(co.ReadTimeout, o.ReadTimeout)
		co.WriteTimeout = cmpOr(co.WriteTimeout, o.WriteTimeout)
		co.DialerRetries = cmpOr(co.DialerRetries, 1)
		co.MaxRetries = -1
		co.ContextTimeoutEnabled = true
		co.MaintNotificationsConfig = noMaint
		if tlsConfig != nil {
			co.TLSConfig = tlsConfig
		}
		cc := redis.NewClusterClient(co)
		// Node clients carry the hook: writes go straight to the node that
		// holds the slot (see primary), past the Cluster client.
		if hook != nil {
			cc.OnNewNode(func(n *redis.Client) { n.AddHook(hook) })
		}
		c.mode, c.rdb, c.cluster = "cluster", cc, cc
	default:
		so, err := redis.ParseURL(o.URL)
		if err != nil {
			return c, fmt.Errorf("store: Redis URL %s: %w", c.where, redactErr(err, u))
		}
		if creds != nil {
			if so.Password != "" {
				return c, fmt.Errorf("store: Redis URL %s has a password and a password file or password_env is set too: keep one", c.where)
			}
			so.CredentialsProviderContext = withUser(so.Username, creds)
		}
		so.ClientName = cmpOr(so.ClientName, o.ClientName)
		so.DialTimeout = cmpOr(so.DialTimeout, o.DialTimeout)
		so.ReadTimeout = cmpOr(so.ReadTimeout, o.ReadTimeout)
		so.WriteTimeout = cmpOr(so.WriteTimeout, o.WriteTimeout)
		so.DialerRetries = cmpOr(so.DialerRetries, 1)
		so.MaxRetries = -1
		so.ContextTimeoutEnabled = true
		so.MaintNotificationsConfig = noMaint
		if tlsConfig != nil {
			so.TLSConfig = tlsConfig
		}
		c.mode, c.rdb = "standalone", redis.NewClient(so)
		if hook != nil {
			c.rdb.AddHook(hook)
		}
	}
	return c, nil
}

func withUser(user string, creds func(context.Context) (string, string, error)) func(context.Context) (string, string, error) {
	return func(ctx context.Context) (string, string, error) {
		_, p, err := creds(ctx)
		return user, p, err
	}
}

// redactErr keeps the URL's password out of a parser's error.
func redactErr(err error, u *url.URL) error {
	if p, ok := u.User.Password(); ok && p != "" && strings.Contains(err.Error(), p) {
		return errors.New(strings.ReplaceAll(err.Error(), p, "xxxxx"))
	}
	return err
}

// readSecret reads a password file, trimmed. The error names the file,
// never its content.
func readSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("store: Redis password file: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("store: Redis password file %s is empty", path)
	}
	return s, nil
}

func (t RedisTLS) config(u *url.URL) (*tls.Config, error) {
	if t == (RedisTLS{}) {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: cmpOr(t.ServerName, u.Hostname())}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("store: Redis TLS CA: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("store: Redis TLS CA %s holds no PEM certificate", t.CAFile)
		}
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return nil, errors.New("store: Redis TLS: give both a client certificate and its key, or neither")
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("store: Redis TLS client certificate: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// Mode is how the URL reaches Redis: standalone, sentinel or cluster.
func (r *Redis) Mode() string { return r.mode }

// primary returns a client of the node that takes the writes: the
// client itself, standalone or with Sentinel (go-redis follows the
// primary), or the node that holds the keys' slot in a Cluster. Writes
// go to it directly, on one connection, so that WAIT follows the write
// on the same connection and nothing retries the write.
func (r *Redis) primary(ctx context.Context) (*redis.Client, error) {
	if r.cluster != nil {
		return r.cluster.MasterForKey(ctx, r.keys.version)
	}
	return r.rdb.(*redis.Client), nil
}

// Close stops the subscription and the poll, closes every Changes
// channel and the connections. It is safe to call more than once.
func (r *Redis) Close() error {
	if r.closed.Swap(true) {
		return nil
	}
	r.stop()
	if ps := r.ps.Load(); ps != nil {
		_ = ps.Close() // ends a Receive that is waiting
	}
	r.wg.Wait()
	r.hub.close()
	if err := r.rdb.Close(); err != nil && !errors.Is(err, redis.ErrClosed) {
		return fmt.Errorf("store: closing the Redis client: %w", err)
	}
	return nil
}

var errRedisClosed = fmt.Errorf("%w: the Redis store is closed", ErrUnavailable)

// Health reports, without a network call, the last command's error
// (Redis down, loading, refusing), a Redis that lost the data this
// replica saw, or a subscription that has been down for more than a poll
// interval; nil when all is well.
func (r *Redis) Health() error {
	if r.closed.Load() {
		return errRedisClosed
	}
	r.mu.Lock()
	err, gone := r.cmdErr, r.gone
	r.mu.Unlock()
	switch {
	case err != nil:
		return err
	case gone:
		return errGone
	}
	if t := r.subDown.Load(); t != nil && time.Since(t.since) > r.opts.PollInterval {
		return fmt.Errorf("store: Redis change notifications are down since %s (%v); other replicas' changes arrive through the %s poll meanwhile",
			t.since.UTC().Format(time.RFC3339), t.err, r.opts.PollInterval)
	}
	return nil
}

var errGone = fmt.Errorf("%w: Redis holds no reghost data but did before (flushed, or an empty new instance): "+
	"restore the overrides (POST /api/v1/overrides/restore) or accept the empty set; writes are refused until then", ErrUnavailable)

// LastMessageAge is how long ago the subscription last heard from Redis
// (a change, a confirmation, or an answer to its ping, sent every
// PollInterval of silence); a large age means changes arrive only
// through the poll.
func (r *Redis) LastMessageAge() time.Duration {
	ns := r.lastHeard.Load()
	if ns == 0 {
		return time.Duration(1<<63 - 1)
	}
	return time.Since(time.Unix(0, ns))
}

// Saw tells the store of a version known from elsewhere (the snapshot a
// replica keeps on disk), as if it had read it: a Redis found empty is
// then not taken for a new deployment, and writes are refused until an
// operator restores or accepts the empty set.
func (r *Redis) Saw(v Version) { r.observe(v, "") }

// observe notes a version read from Redis (with its write ID, when
// known).
func (r *Redis) observe(v Version, id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.seen.Less(v):
		r.seen, r.seenID, r.diverged = v, id, false
	case v == r.seen && id != "" && r.seenID == "":
		r.seenID = id
	case v == r.seen && id != "" && id != r.seenID:
		r.diverged = true
	}
	if v != (Version{}) {
		r.gone = false
	}
	r.m.epoch.Set(float64(r.seen.Epoch))
	r.m.version.Set(float64(r.seen.N))
}

func (r *Redis) seenVersion() (Version, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen, r.seenID
}
