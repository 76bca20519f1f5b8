package datasync

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/reghost/reghost/internal/loader"
)

// pendingTTL is how long the content of a publish that has not switched
// yet lives: a loader that dies half way leaves nothing for good.
const pendingTTL = time.Hour

// switchScript makes a fully written version current, in one step: a
// reader sees the old pointer or the new one, never half of either. It
// checks, before any write, that the lock is still the caller's, that
// the pointer is still the version the caller replaces, and that every
// chunk is there.
//
//	KEYS[1] the pointer, KEYS[2] the new content, KEYS[3] the lock,
//	KEYS[4] the replaced content (KEYS[2] when there is none)
//	ARGV[1] the lock token, ARGV[2] the replaced version's id ('' none),
//	ARGV[3] chunks, ARGV[4] how long the replaced content stays (ms),
//	ARGV[5] the channel, ARGV[6] the message, ARGV[7…] the pointer's
//	field and value pairs
//
// It answers 'ok', 'unlocked', 'moved' or 'incomplete'.
var switchScript = redis.NewScript(`
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return 'unlocked' end
if (redis.call('HGET', KEYS[1], 'id') or '') ~= ARGV[2] then return 'moved' end
if redis.call('HLEN', KEYS[2]) ~= tonumber(ARGV[3]) then return 'incomplete' end
redis.call('PERSIST', KEYS[2])
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 7))
if ARGV[2] ~= '' and KEYS[4] ~= KEYS[2] then
  redis.call('PEXPIRE', KEYS[4], ARGV[4])
end
redis.call('PUBLISH', ARGV[5], ARGV[6])
return 'ok'`)

// message is what a switch publishes on the channel.
type message struct {
	Name   string `json:"name"`
	ID     string `json:"id"`
	SHA256 string `json:"sha256"`
}

// Publish hands an installed data set to every server: it is the
// loader's Publisher. The file is read once more and must still be the
// content the loader checked (its size and SHA-256).
func (c *Client) Publish(ctx context.Context, in loader.Installed) error {
	f, err := os.Open(in.File)
	if err != nil {
		return fmt.Errorf("datasync: %w", err)
	}
	defer f.Close()
	p, published, err := c.publish(ctx, Pointer{Name: in.Set.String(), Version: in.Version, SHA256: in.SHA256,
		Size: in.Size, Source: in.Source, BuildTime: in.BuildTime}, f)
	if err != nil {
		return err
	}
	if published {
		c.log.Info("data set published to Redis", "set", p.Name, "version", p.Version, "id", p.ID, "size", p.Size, "chunks", p.Chunks)
	} else {
		c.log.Info("data set already published to Redis", "set", p.Name, "version", p.Version, "id", p.ID)
	}
	return nil
}

// publish makes content, of p.Size bytes with SHA-256 p.SHA256, data set
// p.Name's current version, under its lock, and returns the pointer. When
// that content is current already it writes nothing and published is
// false.
func (c *Client) publish(ctx context.Context, p Pointer, content io.Reader) (_ Pointer, published bool, err error) {
	if err := checkName(p.Name); err != nil {
		return Pointer{}, false, err
	}
	if p.Size <= 0 || p.Size > maxSize || len(p.SHA256) != 64 {
		return Pointer{}, false, fmt.Errorf("datasync: %s: size %d, SHA-256 %q: not a data set to publish", p.Name, p.Size, p.SHA256)
	}
	l, err := c.lock(ctx, p.Name)
	if err != nil {
		return Pointer{}, false, err
	}
	defer func() {
		// Released even when ctx is done: the next publisher need not
		// wait for it to expire.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if rerr := l.release(rctx); rerr != nil {
			c.log.Warn("releasing the publish lock", "set", p.Name, "err", rerr)
		}
	}()

	old, hasOld, err := c.Current(ctx, p.Name)
	switch {
	case errors.Is(err, ErrCorrupt):
		// Replaced, whatever it is; its content expires as any other.
		c.log.Warn("replacing a data set pointer that does not decode", "set", p.Name, "err", err)
		old.ID, hasOld = c.rdb.HGet(ctx, c.keys.pointer(p.Name), "id").Val(), true
	case err != nil:
		return Pointer{}, false, err
	case hasOld && old.SHA256 == p.SHA256:
		return old, false, nil
	}
	p.ID = newID()
	if p.Chunks, err = c.writeChunks(ctx, l, p, content); err != nil {
		return Pointer{}, false, err
	}
	p.PublishedAt = time.Now().UTC()

	// The replaced version's content, to expire; with none, the new
	// one's key stands in and the script expires nothing.
	newKey, oldKey := c.keys.content(p.Name, p.ID), c.keys.content(p.Name, p.ID)
	if hasOld && old.ID != "" {
		oldKey = c.keys.content(p.Name, old.ID)
	}
	msg, _ := json.Marshal(message{Name: p.Name, ID: p.ID, SHA256: p.SHA256})
	args := append([]any{l.token, old.ID, p.Chunks, c.keepOld.Milliseconds(), c.keys.channel(), msg}, p.fields()...)
	res, err := switchScript.Run(ctx, c.rdb, []string{c.keys.pointer(p.Name), newKey, l.key, oldKey}, args...).Text()
	if err != nil {
		return Pointer{}, false, fmt.Errorf("datasync: switching %s to the new version: %w", p.Name, err)
	}
	switch res {
	case "ok":
		return p, true, nil
	case "unlocked":
		return Pointer{}, false, fmt.Errorf("datasync: %s not switched: the lock %s expired while publishing (a pause longer than %s?)", p.Name, l.key, c.lockTTL)
	case "moved":
		return Pointer{}, false, fmt.Errorf("datasync: %s not switched: its pointer changed while publishing, though the lock was held", p.Name)
	default:
		return Pointer{}, false, fmt.Errorf("datasync: %s not switched: its new content is incomplete in Redis (%s; evicted? check maxmemory-policy)", p.Name, res)
	}
}

// writeChunks writes content into the new version's key, ChunkSize at a
// time, refreshing the lock after each, and checks that it was p.Size
// bytes with SHA-256 p.SHA256. The key expires unless a switch keeps it.
func (c *Client) writeChunks(ctx context.Context, l *lock, p Pointer, content io.Reader) (int, error) {
	key := c.keys.content(p.Name, p.ID)
	h := sha256.New()
	buf := make([]byte, c.chunk)
	var size int64
	n := 0
	for {
		k, err := io.ReadFull(content, buf)
		if k > 0 {
			h.Write(buf[:k])
			size += int64(k)
			if size > p.Size {
				break
			}
			_, err := c.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
				pipe.HSet(ctx, key, strconv.Itoa(n), buf[:k])
				pipe.PExpire(ctx, key, pendingTTL)
				return nil
			})
			if err != nil {
				return 0, fmt.Errorf("datasync: writing chunk %d of %s: %w", n, p.Name, err)
			}
			n++
			if err := l.refresh(ctx); err != nil {
				return 0, err
			}
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("datasync: reading %s to publish: %w", p.Name, err)
		}
	}
	if sum := hex.EncodeToString(h.Sum(nil)); size != p.Size || sum != p.SHA256 {
		return 0, fmt.Errorf("datasync: %s changed since it was checked: %d bytes with SHA-256 %s, not %d with %s", p.Name, size, sum, p.Size, p.SHA256)
	}
	return n, nil
}

// newID names a new version's content key.
func newID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return strconv.FormatInt(time.Now().UnixMilli(), 36) + "-" + hex.EncodeToString(b)
}
