package app

import (
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/reghost/reghost/internal/config"
	"github.com/reghost/reghost/internal/datasync"
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

// redisOptions are the Redis store's options from cfg; getenv reads
// redis.password_env's variable (nil: os.Getenv), which must be set.
func redisOptions(cfg *config.Config, getenv func(string) string) (store.RedisOptions, error) {
	r := cfg.Redis
	wait := r.WaitReplicas
	if wait == 0 {
		wait = store.WaitAuto
	} else if wait < 0 {
		wait = store.WaitNone
	}
	if getenv == nil {
		getenv = os.Getenv
	}
	var password string
	if r.PasswordEnv != "" {
		if password = getenv(r.PasswordEnv); password == "" {
			return store.RedisOptions{}, fmt.Errorf("redis.password_env: the environment variable %s is empty or not set", r.PasswordEnv)
		}
	}
	return store.RedisOptions{
		URL:                  cfg.Store,
		Prefix:               r.Prefix,
		PasswordFile:         r.PasswordFile,
		SentinelPasswordFile: r.SentinelPasswordFile,
		TLS:                  store.RedisTLS{CAFile: r.TLS.CAFile, CertFile: r.TLS.CertFile, KeyFile: r.TLS.KeyFile, ServerName: r.TLS.ServerName},
		ClientName:           r.ClientName,
		DialTimeout:          r.Timeout,
		ReadTimeout:          r.Timeout,
		WriteTimeout:         r.Timeout,
		WaitReplicas:         wait,
		WaitTimeout:          r.WaitTimeout,
		Password:             password,
	}, nil
}

// dataTimeout bounds one Redis command on the data sets: a chunk is a
// megabyte, not a 500 ms read on every link. Dialling keeps the store's
// timeout, so that a Redis that is down is known as fast.
const dataTimeout = 30 * time.Second

// OpenDataSets connects to the Redis of cfg's store: for the data sets
// the loader publishes there and the servers fetch (internal/datasync).
// It is nil, with no error, when cfg's store is the embedded one.
func OpenDataSets(cfg *config.Config, log *slog.Logger) (*datasync.Client, error) {
	if cfg.Store == "" {
		return nil, nil
	}
	opts, err := redisOptions(cfg, nil)
	if err != nil {
		return nil, err
	}
	opts.ReadTimeout, opts.WriteTimeout = max(opts.ReadTimeout, dataTimeout), max(opts.WriteTimeout, dataTimeout)
	rdb, err := store.NewRedisClient(opts)
	if err != nil {
		return nil, err
	}
	c, err := datasync.NewClient(datasync.ClientConfig{Redis: rdb, Prefix: cfg.Redis.Prefix, Logger: log})
	if err != nil {
		rdb.Close()
		return nil, err
	}
	return c, nil
}
