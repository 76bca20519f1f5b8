package datasync

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/reghost/reghost/internal/loader"
)

// errChunkGone is wrapped (with ErrCorrupt) when a chunk is missing: the
// version was replaced and has expired meanwhile, or Redis lost it.
var errChunkGone = errors.New("a chunk is missing")

// Fetch writes the content of the version p points to into w, and checks
// that it was p.Size bytes with SHA-256 p.SHA256. What Redis holds that
// is not so is an ErrCorrupt; w then has had part of it.
func (c *Client) Fetch(ctx context.Context, p Pointer, w io.Writer) error {
	key := c.keys.content(p.Name, p.ID)
	h := sha256.New()
	var size int64
	for i := range p.Chunks {
		b, err := c.rdb.HGet(ctx, key, strconv.Itoa(i)).Bytes()
		if errors.Is(err, redis.Nil) {
			return fmt.Errorf("%w: %s version %s: chunk %d of %d: %w", ErrCorrupt, p.Name, p.ID, i, p.Chunks, errChunkGone)
		}
		if err != nil {
			return fmt.Errorf("datasync: fetching %s chunk %d: %w", p.Name, i, err)
		}
		size += int64(len(b))
		if size > p.Size {
			return fmt.Errorf("%w: %s version %s: more than the %d bytes the pointer says", ErrCorrupt, p.Name, p.ID, p.Size)
		}
		h.Write(b)
		if _, err := w.Write(b); err != nil {
			return fmt.Errorf("datasync: writing %s: %w", p.Name, err)
		}
	}
	if size != p.Size {
		return fmt.Errorf("%w: %s version %s: %d bytes, the pointer says %d", ErrCorrupt, p.Name, p.ID, size, p.Size)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != p.SHA256 {
		return fmt.Errorf("%w: %s version %s: SHA-256 %s, the pointer says %s", ErrCorrupt, p.Name, p.ID, sum, p.SHA256)
	}
	return nil
}

// Restore writes set's published content to w when its SHA-256 is sum:
// it is the loader's Restorer, which brings back into a fresh data
// directory what the state in Redis records as installed.
func (c *Client) Restore(ctx context.Context, set loader.Set, sum string, w io.Writer) (bool, error) {
	p, ok, err := c.Current(ctx, set.String())
	if err != nil || !ok || p.SHA256 != sum {
		return false, err
	}
	if err := c.Fetch(ctx, p, w); err != nil {
		return false, err
	}
	return true, nil
}
