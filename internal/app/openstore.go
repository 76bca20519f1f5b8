package app

import (
	"log/slog"

	"github.com/reghost/reghost/internal/config"
	"github.com/reghost/reghost/internal/store"
)

// OpenStore opens the override store cfg names, as the server opens it:
// the embedded store in data_dir, or the Redis of store:. It is for
// tools that work on the store beside the servers (the loader's
// overrides export and import). readOnly opens the embedded store
// read-only (store.BoltOptions.ReadOnly); a Redis is shared, and opened
// as the servers open it. The embedded store is locked while a server
// has it: the open then fails with store.ErrLocked.
func OpenStore(cfg *config.Config, log *slog.Logger, readOnly bool) (store.Store, error) {
	if cfg.Store == "" && readOnly {
		b, err := store.OpenBolt(cfg.DataDir, store.BoltOptions{Logger: log, ReadOnly: true})
		if err != nil {
			return nil, err
		}
		return b, nil
	}
	return openStore(cfg, Options{}, log, nil)
}
