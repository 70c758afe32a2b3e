package daemon

import (
	"context"

	"github.com/dynworkers/dynworkers/host/internal/catalog"
	"github.com/dynworkers/dynworkers/host/internal/config"
)

// rescan replaces the catalog with a fresh scan of plugin_dir; it is
// catalog.Watch's callback, run when the directory's listing changed. A
// binary dropped into the directory becomes usable without a restart; a
// replaced one is used from its workers' next start (the catalog records
// its new checksum); a removed one leaves its running workers running,
// and new starts of its classes fail with a clear error.
//
// Nothing is held meanwhile: a start reads the catalog once (an atomic
// pointer), so it sees the old catalog or the new one, never a mix.
func (d *Daemon) rescan(ctx context.Context) {
	old := d.Catalog()
	cat, err := ScanCatalog(ctx, d.cfg.Host, d.logger, d.exec)
	if err != nil {
		d.logger.Error("rescanning plugin_dir; keeping the previous catalog", "error", err)
		return
	}
	d.setCatalog(cat)
	added, removed := catalog.Diff(old, cat)
	var changed []string
	for _, c := range catalog.Changes(old, cat) {
		changed = append(changed, c.String())
	}
	d.logger.Info("plugin_dir changed: catalog rescanned", "classes", len(cat.Classes()),
		"added", added, "removed", removed, "changed", changed, "problems", len(cat.Problems()))
	for _, p := range cat.Problems() {
		d.logger.Error("plugin file is unusable", "path", p.Path, "error", p.Err)
	}
}

// watchedFiles are the files watched with plugin_dir: the lock file, if
// any, so that a re-lock is picked up without a restart.
func watchedFiles(h config.HostConfig) []string {
	if h.PluginLock == "" {
		return nil
	}
	return []string{h.PluginLock}
}
