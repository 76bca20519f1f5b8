package app

import (
	"cmp"
	"context"
	"strings"
	"time"

	"github.com/reghost/reghost/internal/config"
	"github.com/reghost/reghost/internal/datasync"
)

// dataSync keeps, with a Redis store, the GeoIP and cloud ranges files
// the config names as the loader published them to Redis
// (internal/datasync): no shared volume is needed. The files are only
// ever renamed into place, and the existing watchers (internal/geo's,
// internal/cloud's) swap them in.
type dataSync struct {
	client *datasync.Client
	syncer *datasync.Syncer
	// started is the problem of a first look that did not finish in
	// time; "" once one has.
	started string
}

// openDataSync looks at Redis before the data files are opened, so that
// a server that starts with an empty data_dir serves (and listens, and
// says it is ready) with the data sets in Redis — or, when that takes
// longer than Options.DataSyncTimeout, without them, reporting degraded
// while the fetch goes on. With the embedded store, or no data file
// configured, it does nothing.
func (a *App) openDataSync(cfg *config.Config) error {
	targets := datasync.Targets(cfg.GeoIP.ASN, cfg.GeoIP.Country, cfg.CloudRanges)
	if cfg.Store == "" || len(targets) == 0 {
		return nil
	}
	client, err := OpenDataSets(cfg, a.log)
	if err != nil {
		return err
	}
	syncer, err := datasync.NewSyncer(datasync.SyncerConfig{
		Client:     client,
		Targets:    targets,
		Poll:       a.opts.DataSyncPoll,
		Logger:     a.log,
		Registerer: a.metrics.Registry(),
		Installed: func(name string) {
			// The watchers would find the file at their next look (a
			// directory that did not exist is not watched yet, and the
			// cloud ranges are polled): look now. A failure is logged
			// and kept for /readyz by the watcher.
			switch {
			case strings.HasPrefix(name, "geoip/") && a.geo != nil:
				a.geo.Check()
			case strings.HasPrefix(name, "cloud/") && a.cloud != nil:
				_ = a.cloud.Check()
			}
		},
	})
	if err != nil {
		client.Close()
		return err
	}
	a.dataSync = &dataSync{client: client, syncer: syncer}
	timeout := cmp.Or(a.opts.DataSyncTimeout, 20*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	if err := syncer.Sync(ctx); err != nil {
		if ctx.Err() != nil {
			a.dataSync.started = "the data sets in Redis were not all fetched within " + timeout.String() + " of the start; serving what data_dir has meanwhile"
		}
		a.log.Warn("not every data set is as Redis holds it; serving what data_dir has, and trying again", "err", err)
		return nil
	}
	a.log.Info("data sets in step with Redis", "sets", len(targets), "took", time.Since(start).Round(time.Millisecond).String())
	return nil
}

// runDataSync follows Redis until ctx is done.
func (a *App) runDataSync(ctx context.Context) {
	if a.dataSync != nil {
		a.dataSync.syncer.Run(ctx)
	}
}

// dataSyncProblems are the /readyz problems of the data sets' sync.
func (a *App) dataSyncProblems() []string {
	if a.dataSync == nil {
		return nil
	}
	var out []string
	problems := a.dataSync.syncer.Problems()
	if a.dataSync.started != "" && len(problems) > 0 {
		out = append(out, "datasync: "+a.dataSync.started)
	}
	for _, p := range problems {
		out = append(out, "datasync: "+p)
	}
	return out
}

func (a *App) closeDataSync() {
	if a.dataSync != nil {
		a.dataSync.client.Close()
	}
}
