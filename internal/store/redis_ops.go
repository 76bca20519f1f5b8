package store

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/reghost/reghost/internal/rules"
)

// ErrNotReplicated: a write reached the primary, at the version returned
// with this error, but not as many replicas as WaitReplicas within
// WaitTimeout. It is in Redis and every replica will apply it, but a
// failover now could lose it: tell the operator (admin API: 503 naming
// it), who may check with a read and write again.
var ErrNotReplicated = errors.New("store: the write is on the Redis primary but no replica confirmed it")

// readTimeout bounds one read call: a dial, a write, a read, and one
// retry of them.
func (r *Redis) readTimeout() time.Duration {
	return 2 * (r.opts.DialTimeout + r.opts.WriteTimeout + r.opts.ReadTimeout)
}

// read runs fn, once more if the first try met a connection that had
// died (a restarted server, a failover), and records how it went. Reads
// may be repeated; writes never are.
func (r *Redis) read(ctx context.Context, op string, fn func(ctx context.Context) error) error {
	if r.closed.Load() {
		return errRedisClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, r.readTimeout())
	defer cancel()
	err := fn(ctx)
	if err != nil && retryable(err) && ctx.Err() == nil {
		err = fn(ctx)
	}
	return r.done(op, err)
}

// retryable reports a failure that says nothing was done and another
// connection may work.
func retryable(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, redis.ErrClosed) || redis.IsReadOnlyError(err)
}

// done turns a Redis error into one callers act on (ErrUnavailable with
// what to do) and keeps it for Health; nil and the store's own answers
// clear it.
func (r *Redis) done(op string, err error) error {
	switch {
	case err == nil, errors.Is(err, ErrNotFound), errors.Is(err, ErrConflict):
		r.setCmdErr(nil)
		return err
	case errors.Is(err, ErrUnavailable), errors.Is(err, errCorrupt):
		// already said
	case errors.Is(err, context.Canceled):
		return err // the caller gave up: says nothing of Redis
	case redis.IsLoadingError(err):
		err = fmt.Errorf("%w: Redis (%s) is loading its data set after a restart; the store works again when it is done: %w", ErrUnavailable, r.where, err)
	default:
		err = fmt.Errorf("%w: Redis (%s) %s: %w; check that it runs and is reachable, changes are not saved until it is", ErrUnavailable, r.where, op, err)
	}
	r.m.errors.WithLabelValues(op).Inc()
	r.setCmdErr(err)
	return err
}

func (r *Redis) setCmdErr(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if (err == nil) != (r.cmdErr == nil) {
		if err != nil {
			r.log.Error("the Redis override store is failing", "err", err)
		} else {
			r.log.Info("the Redis override store works again", "was", r.cmdErr)
		}
	}
	r.cmdErr = err
	r.m.reachable.Set(boolFloat(err == nil))
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

var errCorrupt = errors.New("store: Redis holds data that does not decode")

// readVersion reads the version and the ID of the write that made it.
func readVersion(ctx context.Context, c redis.Cmdable, key string) (Version, string, error) {
	vals, err := c.HMGet(ctx, key, "epoch", "n", "id").Result()
	if err != nil {
		return Version{}, "", err
	}
	return parseVersion(vals, key)
}

func parseVersion(vals []any, key string) (Version, string, error) {
	if len(vals) != 3 || vals[0] == nil {
		return Version{}, "", nil
	}
	e, _ := vals[0].(string)
	n, _ := vals[1].(string)
	id, _ := vals[2].(string)
	var v Version
	var err1, err2 error
	v.Epoch, err1 = strconv.ParseUint(e, 10, 64)
	v.N, err2 = strconv.ParseUint(n, 10, 64)
	if err := cmp.Or(err1, err2); err != nil {
		return Version{}, "", fmt.Errorf("%w: %s is %q.%q: %w; restore the overrides (a restore writes it again)", errCorrupt, key, e, n, err)
	}
	return v, id, nil
}

func (r *Redis) Version(ctx context.Context) (Version, error) {
	var v Version
	var id string
	err := r.read(ctx, "version", func(ctx context.Context) (err error) {
		v, id, err = readVersion(ctx, r.rdb, r.keys.version)
		return err
	})
	if err != nil {
		return Version{}, err
	}
	r.observe(v, id)
	return v, nil
}

// Load reads the overrides, the drains and the version in one MULTI/EXEC,
// so that they belong together. An empty Redis (flushed, or new) is the
// zero State: a reader that has applied more sees that it went back.
//
// HVALS rather than HGETALL: the ID is in each value, and a flat list
// costs go-redis no map of 100,000 entries to build.
func (r *Redis) Load(ctx context.Context) (State, error) {
	var st State
	var id string
	err := r.read(ctx, "load", func(ctx context.Context) error {
		var ovs, drs *redis.StringSliceCmd
		var ver *redis.SliceCmd
		_, err := r.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			ovs = p.HVals(ctx, r.keys.overrides)
			drs = p.HVals(ctx, r.keys.drains)
			ver = p.HMGet(ctx, r.keys.version, "epoch", "n", "id")
			return nil
		})
		if err != nil {
			// A LOADING Redis queues the commands with that error and
			// aborts EXEC: say why.
			for _, c := range []redis.Cmder{ovs, drs, ver} {
				if c != nil && redis.IsLoadingError(c.Err()) {
					return c.Err()
				}
			}
			return err
		}
		if st.Version, id, err = parseVersion(ver.Val(), r.keys.version); err != nil {
			return err
		}
		if st.Version == (Version{}) && len(ovs.Val())+len(drs.Val()) > 0 {
			return fmt.Errorf("%w: %s is missing but %d overrides and %d drains are there (evicted? set maxmemory-policy noeviction); restore the overrides",
				errCorrupt, r.keys.version, len(ovs.Val()), len(drs.Val()))
		}
		if st.Overrides, err = decodeAll(ovs.Val(), "override", r.keys.overrides, func(o rules.Override) string { return o.ID }); err != nil {
			return err
		}
		st.Drains, err = decodeAll(drs.Val(), "drain", r.keys.drains, func(d Drain) string { return d.Registry })
		return err
	})
	if err != nil {
		return State{}, err
	}
	r.observe(st.Version, id)
	return st, nil
}

// decodeAll decodes a hash's JSON values, on every core when there are
// many (decoding, not Redis, is most of a large Load), and sorts them by
// key. The sort moves indices, not the values, which are large.
func decodeAll[T any](vals []string, what, hash string, key func(T) string) ([]T, error) {
	if len(vals) == 0 {
		return nil, nil
	}
	decoded := make([]T, len(vals))
	workers := min(runtime.GOMAXPROCS(0), (len(vals)+999)/1000)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(vals); i += workers {
				if err := json.Unmarshal([]byte(vals[i]), &decoded[i]); err != nil {
					errs[w] = fmt.Errorf("%w: a value in %s: %w (%.60q); fix or delete it (HDEL), or restore the overrides", errCorrupt, hash, err, vals[i])
					return
				}
				if key(decoded[i]) == "" {
					errs[w] = fmt.Errorf("%w: a %s in %s has no name (%.60q); delete it (HDEL), or restore the overrides", errCorrupt, what, hash, vals[i])
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	type keyed struct {
		key string
		i   int
	}
	order := make([]keyed, len(decoded))
	for i := range decoded {
		order[i] = keyed{key(decoded[i]), i}
	}
	slices.SortFunc(order, func(a, b keyed) int { return strings.Compare(a.key, b.key) })
	out := make([]T, len(decoded))
	for i, k := range order {
		out[i] = decoded[k.i]
	}
	return out, nil
}

func (r *Redis) Get(ctx context.Context, id string) (rules.Override, error) {
	var o rules.Override
	err := r.read(ctx, "get", func(ctx context.Context) error {
		v, err := r.rdb.HGet(ctx, r.keys.overrides, id).Result()
		if errors.Is(err, redis.Nil) {
			return fmt.Errorf("%w: override %q", ErrNotFound, id)
		}
		if err != nil {
			return err
		}
		if err := json.Unmarshal([]byte(v), &o); err != nil {
			return fmt.Errorf("%w: override %q in %s: %w; fix or delete it, or restore the overrides", errCorrupt, id, r.keys.overrides, err)
		}
		return nil
	})
	return o, err
}

func (r *Redis) Audit(ctx context.Context, n int) ([]AuditEntry, error) {
	if n <= 0 {
		return nil, nil
	}
	var out []AuditEntry
	err := r.read(ctx, "audit", func(ctx context.Context) error {
		msgs, err := r.rdb.XRevRangeN(ctx, r.keys.audit, "+", "-", int64(n)).Result()
		if err != nil {
			return err
		}
		out = make([]AuditEntry, 0, len(msgs))
		for _, m := range msgs {
			e, err := auditEntry(m)
			if err != nil {
				return fmt.Errorf("%w: audit entry %s in %s: %w", errCorrupt, m.ID, r.keys.audit, err)
			}
			out = append(out, e)
		}
		return nil
	})
	return out, err
}

func auditEntry(m redis.XMessage) (AuditEntry, error) {
	s := func(k string) string { v, _ := m.Values[k].(string); return v }
	at, err1 := strconv.ParseInt(s("at"), 10, 64)
	ep, err2 := strconv.ParseUint(s("epoch"), 10, 64)
	n, err3 := strconv.ParseUint(s("n"), 10, 64)
	if err := cmp.Or(err1, err2, err3); err != nil {
		return AuditEntry{}, err
	}
	e := AuditEntry{At: time.UnixMicro(at).UTC(), Who: s("who"), Op: s("op"), ID: s("key"), Version: Version{ep, n}}
	if b := s("before"); b != "" {
		e.Before = json.RawMessage(b)
	}
	if a := s("after"); a != "" {
		e.After = json.RawMessage(a)
	}
	return e, nil
}

func (r *Redis) Create(ctx context.Context, who string, o rules.Override) (Version, error) {
	return r.putOverride(ctx, "create", who, o)
}

func (r *Redis) Put(ctx context.Context, who string, o rules.Override) (Version, error) {
	return r.putOverride(ctx, "put", who, o)
}

func (r *Redis) putOverride(ctx context.Context, op, who string, o rules.Override) (Version, error) {
	if o.ID == "" {
		return Version{}, errors.New("store: override id is empty")
	}
	value, err := json.Marshal(o)
	if err != nil {
		return Version{}, fmt.Errorf("store: override %q: %w", o.ID, err)
	}
	return r.write(ctx, op, who, o.ID, string(value))
}

func (r *Redis) Delete(ctx context.Context, who, id string) (Version, error) {
	return r.write(ctx, "delete", who, id)
}

func (r *Redis) Drain(ctx context.Context, who string, d Drain) (Version, error) {
	if d.Registry == "" {
		return Version{}, errors.New("store: registry name is empty")
	}
	value, err := json.Marshal(d)
	if err != nil {
		return Version{}, fmt.Errorf("store: drain of %q: %w", d.Registry, err)
	}
	return r.write(ctx, "drain", who, d.Registry, string(value))
}

func (r *Redis) Undrain(ctx context.Context, who, registry string) (Version, error) {
	return r.write(ctx, "undrain", who, registry)
}

// Replace is always allowed, on an empty Redis too: it is how an operator
// restores the overrides or accepts the empty set. It starts an epoch
// later than any the store saw.
func (r *Redis) Replace(ctx context.Context, who string, ovs []rules.Override) (Version, error) {
	args := make([]any, 0, 2*len(ovs))
	ids := make(map[string]bool, len(ovs))
	for _, o := range ovs {
		if o.ID == "" {
			return Version{}, errors.New("store: override id is empty")
		}
		if ids[o.ID] {
			return Version{}, fmt.Errorf("store: override id %q appears more than once", o.ID)
		}
		ids[o.ID] = true
		value, err := json.Marshal(o)
		if err != nil {
			return Version{}, fmt.Errorf("store: override %q: %w", o.ID, err)
		}
		args = append(args, o.ID, string(value))
	}
	return r.write(ctx, "replace", who, args...)
}

// write runs writeScript on the primary, then WAITs for replicas on the
// same connection. It is never retried: neither go-redis (MaxRetries
// off, and the primary's own client, not the Cluster's, which would
// retry) nor here.
func (r *Redis) write(ctx context.Context, op, who string, args ...any) (Version, error) {
	if r.closed.Load() {
		return Version{}, errRedisClosed
	}
	if err := ctx.Err(); err != nil {
		return Version{}, err
	}
	wait := r.waitFor()
	timeout := r.opts.DialTimeout + r.opts.WriteTimeout + r.opts.ReadTimeout
	if wait > 0 {
		timeout += r.opts.WaitTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	seen, seenID := r.seenVersion()
	argv := append([]any{op, r.keys.channel, who, seen.Epoch, seen.N, seenID, r.opts.AuditLimit}, args...)
	var res []string
	var conn *redis.Conn
	primary, err := r.primary(ctx)
	if err == nil {
		conn = primary.Conn()
		defer conn.Close()
		res, err = writeScript.Run(ctx, conn, r.keys.all(), argv...).StringSlice()
	}
	if err != nil {
		if r.cluster != nil && strings.HasPrefix(err.Error(), "MOVED ") {
			r.cluster.ReloadState(context.WithoutCancel(ctx)) // the slot moved: the next write finds it
		}
		if maybeSent(err) {
			err = fmt.Errorf("%w (the change may or may not have been saved: it is not retried; read it back)", err)
		}
		return Version{}, r.done(op, err)
	}
	switch res[0] {
	case "conflict":
		return Version{}, r.done(op, fmt.Errorf("%w: %q", ErrConflict, args[0]))
	case "notfound":
		what := "override"
		if op == "undrain" {
			what = "drained registry"
		}
		return Version{}, r.done(op, fmt.Errorf("%w: %s %q", ErrNotFound, what, args[0]))
	case "gone":
		r.mu.Lock()
		r.gone = true
		r.mu.Unlock()
		r.setCmdErr(nil) // Redis answered; Health reports gone
		return Version{}, errGone
	case "ok":
	default:
		return Version{}, r.done(op, fmt.Errorf("the write script answered %q", res))
	}
	if len(res) != 5 {
		return Version{}, r.done(op, fmt.Errorf("the write script answered %q", res))
	}
	var v Version
	v.Epoch, _ = strconv.ParseUint(res[1], 10, 64)
	v.N, _ = strconv.ParseUint(res[2], 10, 64)
	r.observe(v, res[3])
	r.done(op, nil)
	if res[4] == "1" {
		r.log.Warn("Redis was behind the version this replica had seen (a failover lost writes); the write started a new epoch, every replica reloads",
			"seen", seen.String(), "version", v.String())
	}
	if wait <= 0 {
		return v, nil
	}
	got, err := conn.Wait(ctx, wait, r.opts.WaitTimeout).Result()
	if err == nil && got >= int64(wait) {
		return v, nil
	}
	r.m.errors.WithLabelValues("wait").Inc()
	if err != nil {
		return v, fmt.Errorf("%w at version %s: WAIT failed: %w; a failover now could lose it", ErrNotReplicated, v, err)
	}
	return v, fmt.Errorf("%w at version %s: %d of %d replicas within %s; a failover now could lose it", ErrNotReplicated, v, got, wait, r.opts.WaitTimeout)
}

// maybeSent reports a write failure after which the write may have been
// applied: anything but a failure to connect, or an answer from Redis
// (the script checks before it writes, and Redis refuses a script
// for lack of memory before its first write).
func maybeSent(err error) bool {
	var op *net.OpError
	var reply redis.Error
	return !(errors.As(err, &op) && op.Op == "dial") && !errors.As(err, &reply) && !errors.Is(err, redis.ErrClosed)
}

func isTimeout(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// waitFor is how many replicas a write waits for.
func (r *Redis) waitFor() int {
	switch r.opts.WaitReplicas {
	case WaitNone:
		return 0
	case WaitAuto:
		r.mu.Lock()
		defer r.mu.Unlock()
		return min(max(r.replicas, 0), 1)
	default:
		return r.opts.WaitReplicas
	}
}

// checkPrimary counts the primary's replicas (for WaitAuto), and warns
// once when maxmemory-policy lets Redis evict keys: an evicted version
// or override would be a silent loss. INFO, because managed services
// often disable CONFIG.
func (r *Redis) checkPrimary(ctx context.Context) {
	primary, err := r.primary(ctx)
	if err != nil {
		return
	}
	info, err := primary.Info(ctx, "replication", "memory").Result()
	if err != nil {
		return
	}
	fields := infoFields(info)
	if n, err := strconv.Atoi(fields["connected_slaves"]); err == nil {
		r.mu.Lock()
		if n != r.replicas && r.opts.WaitReplicas == WaitAuto {
			r.log.Info("Redis primary's connected replicas", "replicas", n, "writes_wait_for", min(n, 1))
		}
		r.replicas = n
		r.mu.Unlock()
	}
	if p, ok := fields["maxmemory_policy"]; ok && !r.checkedMem.Swap(true) && p != "noeviction" {
		r.log.Warn("Redis may evict keys (maxmemory-policy is not noeviction): an evicted override or version is lost without a word; set maxmemory-policy noeviction",
			"maxmemory_policy", p)
	}
}

func infoFields(info string) map[string]string {
	m := make(map[string]string)
	for line := range strings.Lines(info) {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			m[k] = v
		}
	}
	return m
}
