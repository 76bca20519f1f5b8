package datasync

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/reghost/reghost/internal/loader"
)

// State is the loader's state kept in Redis, beside the data sets it
// describes ({p}:loader-state, a hash of data set -> JSON record), so
// that a loader in a fresh container knows what is installed. It is a
// loader.StateStore.
//
// Save writes only the records that changed since this State loaded or
// saved them: two loaders that publish different data sets at once
// (geoip and cloud, each in its own pod) never write back each other's
// records as they found them.
type State struct {
	c *Client

	mu   sync.Mutex
	seen map[string]string // data set -> the JSON last loaded or saved
}

// State returns a loader.StateStore in Redis. Use one per Loader.
func (c *Client) State() *State { return &State{c: c, seen: map[string]string{}} }

// Load reads every record. One that does not decode is left out, as an
// unreadable state file is: that data set is fetched once more.
func (s *State) Load(ctx context.Context) (loader.State, error) {
	all, err := s.c.rdb.HGetAll(ctx, s.c.keys.state()).Result()
	if err != nil {
		return loader.State{}, fmt.Errorf("datasync: reading the loader state from Redis: %w", err)
	}
	st := loader.State{Sets: map[string]loader.SetState{}}
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, v := range all {
		var rec loader.SetState
		if err := json.Unmarshal([]byte(v), &rec); err != nil {
			s.c.log.Warn("a loader state record in Redis does not decode; that data set is fetched again", "set", name, "err", err)
			continue
		}
		st.Sets[name] = rec
		s.seen[name] = v
	}
	return st, nil
}

// Save writes the records of st that changed.
func (s *State) Save(ctx context.Context, st loader.State) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var args []any
	changed := map[string]string{}
	for name, rec := range st.Sets {
		b, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		if s.seen[name] != string(b) {
			args = append(args, name, string(b))
			changed[name] = string(b)
		}
	}
	if len(args) == 0 {
		return nil
	}
	if err := s.c.rdb.HSet(ctx, s.c.keys.state(), args...).Err(); err != nil {
		return fmt.Errorf("datasync: writing the loader state to Redis: %w", err)
	}
	for name, v := range changed {
		s.seen[name] = v
	}
	return nil
}
