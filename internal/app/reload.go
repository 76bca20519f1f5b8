package app

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"strings"

	"github.com/reghost/reghost/internal/config"
	"github.com/reghost/reghost/internal/health"
)

// Reload applies a new config to the running server, as SIGHUP asks:
// registries, rules, client_ip, redirect_status and the admin tokens take
// effect at once, and every GeoIP and cloud ranges file is read again.
// What cannot change while serving (listen addresses, TLS settings,
// data_dir, the store, which data files are used) is logged as needing
// a restart and keeps its old value. A config that does not apply (a rule naming an
// unknown registry, an unreadable token file) changes nothing: the old
// one keeps serving, and the error says why.
//
// cfg has been parsed and validated (config.Load) by the caller.
func (a *App) Reload(cfg *config.Config) error {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	old := a.cfg
	next := *cfg
	var restart []string
	keep := func(key string, oldV, newV any, set func()) {
		if !reflect.DeepEqual(oldV, newV) {
			restart = append(restart, key)
			set()
		}
	}
	keep("listen", old.Listen, next.Listen, func() { next.Listen = old.Listen })
	keep("admin_listen", old.AdminListen, next.AdminListen, func() { next.AdminListen = old.AdminListen })
	// The files themselves are watched (internal/certs): only other
	// files, or another way of getting a certificate, need a restart.
	keep("tls", old.TLS, next.TLS, func() { next.TLS = old.TLS })
	keep("admin.tls", old.Admin.TLS, next.Admin.TLS, func() { next.Admin.TLS = old.Admin.TLS })
	keep("data_dir", old.DataDir, next.DataDir, func() { next.DataDir = old.DataDir })
	keep("store", old.Store, next.Store, func() { next.Store = old.Store })
	keep("geoip", old.GeoIP, next.GeoIP, func() { next.GeoIP = old.GeoIP })
	keep("cloud_ranges", old.CloudRanges, next.CloudRanges, func() { next.CloudRanges = maps.Clone(old.CloudRanges) })

	tokens, err := adminTokens(&next, a.opts.Getenv, a.log)
	if err != nil {
		return fmt.Errorf("config not reloaded: %w", err)
	}
	pub, adm, err := a.handlers(&next, tokens)
	if err != nil {
		return fmt.Errorf("config not reloaded: %w", err)
	}
	var checker *health.Checker
	if !reflect.DeepEqual(old.HealthTargets(), next.HealthTargets()) || old.PanicThreshold() != next.PanicThreshold() {
		if checker, err = a.prober.newChecker(&next); err != nil {
			return fmt.Errorf("config not reloaded: health: %w", err)
		}
	}
	skipped, err := a.engine.SetConfig(next.Registries, next.Rules)
	if err != nil {
		return fmt.Errorf("config not reloaded: %w", err)
	}
	if skipped != nil {
		a.log.Warn("some overrides do not apply under the new config", "err", skipped)
	}
	a.publicHandler.Store(&pub)
	a.adminHandler.Store(&adm)
	a.cfg, a.tokens = &next, tokens
	if checker != nil {
		a.prober.set(checker) // the registries changed: probe the new ones
	}
	for _, w := range next.Warnings() {
		a.log.Warn("config: " + w)
	}
	a.regions.tableChanged(a.cloud.Table(), next.Rules, a.overrides.Applied())

	// The data files, read again whether or not they changed: each keeps
	// its last good data if it cannot be loaded.
	dataErr := errors.Join(a.geo.Reload(), a.cloud.Reload())
	if len(restart) > 0 {
		a.log.Warn("config reloaded, but some settings need a restart to change; they keep their old values",
			"keys", strings.Join(restart, ", "))
	}
	a.log.Info("config reloaded", "registries", len(next.Registries), "rules", len(next.Rules))
	if dataErr != nil {
		return fmt.Errorf("config reloaded, but some data files were not: %w", dataErr)
	}
	return nil
}
