package app

import (
	"fmt"
	"log/slog"
	"sync"

	"github.com/reghost/reghost/internal/cloud"
	"github.com/reghost/reghost/internal/rules"
)

// regionWarner warns, once each, of rules and overrides naming a cloud
// region that the loaded ranges do not publish (aws/mars-1): valid by
// the config's rules, but matching no one, which is most likely a typo.
// A provider whose ranges are not loaded yet cannot tell, and is not
// warned about.
type regionWarner struct {
	log    *slog.Logger
	mu     sync.Mutex
	table  *cloud.Table
	warned map[string]bool
}

func newRegionWarner(log *slog.Logger) *regionWarner {
	return &regionWarner{log: log, warned: map[string]bool{}}
}

// tableChanged checks every rule and override against a new table.
func (w *regionWarner) tableChanged(t *cloud.Table, config []rules.Rule, overrides []rules.Override) {
	w.mu.Lock()
	w.table = t
	w.mu.Unlock()
	for i, r := range config {
		w.check(fmt.Sprintf("rules[%d]", i), r.Match)
	}
	for _, o := range overrides {
		w.override(o)
	}
}

func (w *regionWarner) override(o rules.Override) { w.check("override "+o.ID, o.Match) }

func (w *regionWarner) check(where string, m rules.Match) {
	if m.Kind() != rules.KindCloudRegion {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	has, loaded := w.table.HasRegion(m.Cloud, m.Region)
	key := where + " " + m.String()
	if has || !loaded || w.warned[key] {
		return
	}
	w.warned[key] = true
	w.log.Warn("a rule names a cloud region that the loaded ranges do not publish; it matches no one", "rule", where,
		"cloud", m.Cloud, "region", m.Region)
}
