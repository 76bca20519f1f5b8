package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/reghost/reghost/internal/rules"
)

// How changes reach Changes readers, three ways, because pub/sub alone
// loses messages (a dropped connection, a failover):
//
//   - every write publishes what it changed, in its script; a message
//     right after the last delivered version is delivered as it is, any
//     other as a Whole change (a gap: reload);
//   - every (re)subscription reads the version and, when it is not the
//     last delivered, delivers a Whole change, since messages published
//     while unsubscribed are gone;
//   - every PollInterval the version is read through the ordinary pool:
//     a subscription can stay on a demoted primary after a Sentinel
//     failover, answering pings but hearing no writes. A version the poll
//     finds and no message brings within another interval has the
//     subscription replaced.
//
// deliverMu orders the three; the hub never blocks.

// changeMsg is what the write script publishes.
type changeMsg struct {
	Epoch uint64          `json:"epoch"`
	N     uint64          `json:"n"`
	ID    string          `json:"id"`
	Kind  string          `json:"kind"` // override, delete, drain, undrain, replace
	Key   string          `json:"key"`
	Value json.RawMessage `json:"value"`
}

// Changes follows every write, by this replica or another; see Store.
func (r *Redis) Changes(ctx context.Context) <-chan Change { return r.hub.subscribe(ctx) }

// send delivers c and remembers it. Callers hold deliverMu.
func (r *Redis) send(c Change) {
	if c.Whole() {
		r.resync = false
	}
	r.hub.publish(c)
	r.delivered = c.Version
	r.deliveries++
	if c.Whole() {
		r.m.delivered.WithLabelValues("reload").Inc()
	} else {
		r.m.delivered.WithLabelValues("delta").Inc()
	}
}

// subscribe keeps a subscription to the change channel until ctx ends,
// replacing it when it fails or falls silent.
func (r *Redis) subscribe(ctx context.Context) {
	for ctx.Err() == nil {
		ps := r.rdb.Subscribe(ctx, r.keys.channel)
		r.ps.Store(ps)
		if ctx.Err() == nil { // else Close may have missed this one
			r.receive(ctx, ps)
		}
		_ = ps.Close()
	}
}

// receive reads the subscription until it is closed (by Close, or by the
// poll to replace it) or stops answering pings.
func (r *Redis) receive(ctx context.Context, ps *redis.PubSub) {
	var pinged time.Time
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		msg, err := ps.ReceiveTimeout(ctx, r.opts.PollInterval)
		if ctx.Err() != nil || errors.Is(err, redis.ErrClosed) {
			return
		}
		if err != nil {
			if isTimeout(err) && r.subDown.Load() == nil {
				// Silence on a live subscription: ping, and give up on
				// the connection when the ping goes unanswered.
				switch {
				case pinged.IsZero():
					pinged = time.Now()
					if err := ps.Ping(ctx); err != nil {
						r.subFailed(err)
					}
				case time.Since(pinged) >= r.opts.PollInterval:
					r.subFailed(errors.New("no answer to a ping"))
					return
				}
				continue
			}
			r.subFailed(err)
			// go-redis reconnects at the next Receive; not in a tight loop.
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, r.opts.PollInterval)
			continue
		}
		backoff = 50 * time.Millisecond
		pinged = time.Time{}
		r.lastHeard.Store(time.Now().UnixNano())
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				r.subscribed(ctx)
			}
		case *redis.Message:
			r.onMessage(m.Payload)
		}
	}
}

func (r *Redis) subFailed(err error) {
	if r.subDown.CompareAndSwap(nil, &subTrouble{err: err, since: time.Now()}) {
		r.log.Warn("the Redis change subscription failed; resubscribing (changes arrive through the poll meanwhile)", "err", err)
	}
}

// subscribed resynchronises readers after a (re)subscription: what was
// published while unsubscribed is lost, so readers are told to reload
// (a reader that has the version already skips it).
func (r *Redis) subscribed(ctx context.Context) {
	if was := r.subDown.Swap(nil); was != nil && !was.initial {
		r.log.Info("the Redis change subscription is back", "down_for", time.Since(was.since).Round(time.Millisecond).String())
	}
	// Open waits for the first subscription, and readers come after it:
	// they Load after calling Changes, and need no reload.
	defer r.firstSubOnce.Do(func() { close(r.firstSub) })
	r.deliverMu.Lock()
	gen := r.deliveries
	r.resync = true
	r.deliverMu.Unlock()
	v, err := r.Version(ctx)
	if err != nil {
		return // the poll resynchronises (resync is set)
	}
	r.deliverMu.Lock()
	defer r.deliverMu.Unlock()
	// A message delivered meanwhile came on this subscription, and was a
	// Whole change if anything before it was missed.
	if r.deliveries == gen {
		r.send(Change{Version: v})
	}
}

func (r *Redis) onMessage(payload string) {
	var m changeMsg
	if err := json.Unmarshal([]byte(payload), &m); err != nil {
		r.log.Warn("a Redis change message does not decode; the poll will catch up", "err", err)
		return
	}
	v := Version{m.Epoch, m.N}
	r.observe(v, m.ID)
	c := Change{Version: v}
	switch m.Kind {
	case "override":
		var o rules.Override
		if err := json.Unmarshal(m.Value, &o); err == nil && o.ID == m.Key {
			c.Override = &o
		}
	case "delete":
		c.Deleted = m.Key
	case "drain":
		var d Drain
		if err := json.Unmarshal(m.Value, &d); err == nil && d.Registry == m.Key {
			c.Drain = &d
		}
	case "undrain":
		c.Undrained = m.Key
	}
	r.deliverMu.Lock()
	defer r.deliverMu.Unlock()
	if r.pending != (Version{}) && !v.Less(r.pending) {
		r.pending = Version{} // pub/sub caught up with the poll
	}
	switch {
	case !r.delivered.Less(v):
		return // delivered already, by a resynchronisation or the poll
	case !r.delivered.Next(v):
		c = Change{Version: v} // a gap: reload
	}
	r.send(c)
}

// poll reads the version every PollInterval until ctx ends, and the
// primary's replicas every ReplicaCheckInterval.
func (r *Redis) poll(ctx context.Context) {
	t := time.NewTicker(r.opts.PollInterval)
	defer t.Stop()
	lastCheck := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.pollOnce(ctx)
		if time.Since(lastCheck) >= r.opts.ReplicaCheckInterval {
			lastCheck = time.Now()
			c, cancel := context.WithTimeout(ctx, r.readTimeout())
			r.checkPrimary(c)
			cancel()
		}
		if ns := r.lastHeard.Load(); ns != 0 {
			r.m.lastMessageAge.Set(time.Since(time.Unix(0, ns)).Seconds())
		}
	}
}

func (r *Redis) pollOnce(ctx context.Context) {
	r.deliverMu.Lock()
	gen := r.deliveries
	stale := r.pending != (Version{}) && time.Since(r.pendingAt) >= r.opts.PollInterval
	if stale {
		r.pending = Version{}
	}
	r.deliverMu.Unlock()
	if stale {
		// The poll found a version that no message brought since: the
		// subscription hears nothing (a demoted primary?). Replace it.
		r.log.Warn("the Redis change subscription missed a write; subscribing again")
		if ps := r.ps.Load(); ps != nil {
			_ = ps.Close()
		}
	}

	var v Version
	var id string
	err := r.read(ctx, "poll", func(ctx context.Context) (err error) {
		v, id, err = readVersion(ctx, r.rdb, r.keys.version)
		return err
	})
	if err != nil {
		return
	}
	r.checkBehind(ctx, v, id)
	r.observe(v, id)

	r.deliverMu.Lock()
	defer r.deliverMu.Unlock()
	if r.deliveries != gen || v == r.delivered && !r.resync {
		return // a message came meanwhile; the next poll looks again
	}
	if v != (Version{}) && v != r.delivered {
		// pub/sub should bring v's message soon, or is deaf.
		r.pending, r.pendingAt = v, time.Now()
	}
	r.send(Change{Version: v})
}

// checkBehind acts on a Redis whose version v (of write id) is behind
// what this store saw: empty, it is reported (an operator restores or
// accepts the empty set); not empty, writes were lost, and a new epoch
// makes every replica reload what Redis holds.
func (r *Redis) checkBehind(ctx context.Context, v Version, id string) {
	r.mu.Lock()
	seen := r.seen
	diverged := v == seen && (r.diverged || id != "" && r.seenID != "" && id != r.seenID)
	wasGone := r.gone
	switch {
	case seen == (Version{}) || !v.Less(seen) && !diverged:
		r.mu.Unlock()
		return
	case v == (Version{}):
		r.gone = true
		r.mu.Unlock()
		if !wasGone {
			r.log.Error("Redis holds no reghost data but did before (flushed, or an empty new instance); writes are refused until an operator restores the overrides or accepts the empty set",
				"seen", seen.String())
		}
		return
	}
	r.mu.Unlock()
	primary, err := r.primary(ctx)
	if err != nil {
		return
	}
	res, err := healScript.Run(ctx, primary, r.keys.all(), r.keys.channel, "reghost ("+r.opts.ClientName+")",
		v.Epoch, v.N, id, r.opts.AuditLimit, seen.Epoch, seen.String()).StringSlice()
	if err != nil || len(res) != 4 || res[0] != "ok" {
		return // moved on meanwhile, or failing: the next poll looks again
	}
	var nv Version
	fmt.Sscan(res[1], &nv.Epoch)
	r.observe(nv, res[3])
	r.log.Warn("Redis went back behind what this replica saw (a failover lost writes); started a new epoch so that every replica reloads what Redis holds",
		"redis", v.String(), "seen", seen.String(), "epoch", nv.Epoch)
}
