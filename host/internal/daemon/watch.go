package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// DefaultPluginWatchInterval is how often the host looks at plugin_dir for
// binaries that were added, replaced or removed.
const DefaultPluginWatchInterval = 2 * time.Second

// watchPlugins rescans plugin_dir whenever its listing changes (a file
// added, removed, or changed in size, mtime or mode), until ctx ends. A
// binary dropped into the directory becomes usable without a restart; a
// replaced one is used from its workers' next start (the catalog records
// its new checksum); a removed one leaves its running workers running, and
// new starts of its classes fail with a clear error.
//
// Listing a directory every few seconds costs next to nothing; the rescan,
// which checksums every binary (cached describes aside), only runs when
// something changed.
func (d *Daemon) watchPlugins(ctx context.Context, every time.Duration) {
	dir := d.cfg.Host.PluginDir
	last := d.pluginSig // the listing the current catalog was scanned from
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		sig := listingSignature(dir)
		if sig == last {
			continue
		}
		last = sig
		d.rescan(ctx)
	}
}

// rescan replaces the catalog with a fresh scan of plugin_dir. Nothing is
// held meanwhile: a start reads the catalog once (an atomic pointer), so it
// sees the old catalog or the new one, never a mix.
func (d *Daemon) rescan(ctx context.Context) {
	old := d.Catalog()
	cat, err := ScanCatalog(ctx, d.cfg.Host, d.logger)
	if err != nil {
		d.logger.Error("rescanning plugin_dir; keeping the previous catalog", "error", err)
		return
	}
	d.catalog.Store(cat)
	var added, removed []string
	for _, c := range cat.Classes() {
		if _, err := old.Lookup(c.Name); err != nil {
			added = append(added, c.Name)
		}
	}
	for _, c := range old.Classes() {
		if _, err := cat.Lookup(c.Name); err != nil {
			removed = append(removed, c.Name)
		}
	}
	d.logger.Info("plugin_dir changed: catalog rescanned", "classes", len(cat.Classes()),
		"added", added, "removed", removed, "problems", len(cat.Problems()))
	for _, p := range cat.Problems() {
		d.logger.Error("plugin file is unusable", "path", p.Path, "error", p.Err)
	}
}

// listingSignature describes the regular files of dir (following
// symlinks): name, size, mtime and mode. A directory that cannot be read
// has an empty signature.
func listingSignature(dir string) string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return ""
	}
	lines := make([]string, 0, len(ents))
	for _, e := range ents {
		fi, err := os.Stat(filepath.Join(dir, e.Name()))
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		lines = append(lines, fmt.Sprintf("%s\x00%d\x00%d\x00%o", e.Name(), fi.Size(), fi.ModTime().UnixNano(), fi.Mode()))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}
