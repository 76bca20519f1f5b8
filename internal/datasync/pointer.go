package datasync

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Pointer is a data set's current version, as its pointer hash holds it.
type Pointer struct {
	Name string // geoip/asn, cloud/aws, …
	// Version is the loader's: MaxMind's release date, the provider's
	// publication stamp, or a local database's type and build time.
	Version string
	// ID names the content's key; new for every publish.
	ID          string
	SHA256      string // hex, of the whole content
	Size        int64
	Chunks      int
	Source      string    // where the loader got it (no credentials)
	BuildTime   time.Time // the database's build time or the provider's publication time; zero when unknown
	PublishedAt time.Time
}

// ErrCorrupt is wrapped by errors about what Redis holds: a pointer that
// does not decode, a chunk missing, a content whose size or SHA-256 is
// not the pointer's. Such a version is refused, not retried.
var ErrCorrupt = errors.New("datasync: the data set in Redis is corrupt")

// maxSize bounds a data set: the largest database the loader accepts.
const maxSize = 2 << 30

var pointerFields = []string{"version", "id", "sha256", "size", "chunks", "source", "build_time", "published_at"}

// fields is the pointer as HSET field and value pairs.
func (p Pointer) fields() []any {
	return []any{
		"version", p.Version, "id", p.ID, "sha256", p.SHA256,
		"size", strconv.FormatInt(p.Size, 10), "chunks", strconv.Itoa(p.Chunks), "source", p.Source,
		"build_time", formatTime(p.BuildTime), "published_at", formatTime(p.PublishedAt),
	}
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// Current reads data set name's pointer; ok is false when nothing is
// published.
func (c *Client) Current(ctx context.Context, name string) (p Pointer, ok bool, err error) {
	if err := checkName(name); err != nil {
		return Pointer{}, false, err
	}
	vals, err := c.rdb.HMGet(ctx, c.keys.pointer(name), pointerFields...).Result()
	if err != nil {
		return Pointer{}, false, fmt.Errorf("datasync: reading %s's pointer: %w", name, err)
	}
	str := make([]string, len(vals))
	none := true
	for i, v := range vals {
		if s, isStr := v.(string); isStr {
			str[i], none = s, false
		}
	}
	if none {
		return Pointer{}, false, nil
	}
	p, err = parsePointer(name, str)
	return p, err == nil, err
}

func parsePointer(name string, v []string) (Pointer, error) {
	p := Pointer{Name: name, Version: v[0], ID: v[1], SHA256: v[2], Source: v[5]}
	bad := func(what string) (Pointer, error) {
		return Pointer{}, fmt.Errorf("%w: %s's pointer (%s): %s", ErrCorrupt, name, "{…}:data:"+name, what)
	}
	var err error
	if p.Size, err = strconv.ParseInt(v[3], 10, 64); err != nil || p.Size <= 0 || p.Size > maxSize {
		return bad("size " + strconv.Quote(v[3]))
	}
	if p.Chunks, err = strconv.Atoi(v[4]); err != nil || p.Chunks <= 0 || int64(p.Chunks) > p.Size {
		return bad("chunks " + strconv.Quote(v[4]))
	}
	if len(p.SHA256) != 64 {
		return bad("sha256 " + strconv.Quote(p.SHA256))
	}
	if p.ID == "" || !nameRe.MatchString("x/"+p.ID) {
		return bad("id " + strconv.Quote(p.ID))
	}
	for i, t := range []*time.Time{&p.BuildTime, &p.PublishedAt} {
		if s := v[6+i]; s != "" {
			if *t, err = time.Parse(time.RFC3339Nano, s); err != nil {
				return bad(pointerFields[6+i] + " " + strconv.Quote(s))
			}
		}
	}
	return p, nil
}
