package catalog

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// DefaultWatchInterval is how often the host looks at plugin_dir for
// binaries that were added, replaced or removed.
const DefaultWatchInterval = 2 * time.Second

// Watch calls rescan whenever dir's listing (ListingSignature) differs
// from the one seen last, looking every interval, until ctx ends; last is
// the listing the current catalog was scanned from. rescan is called in
// Watch's goroutine, so calls never overlap; it is expected to scan again
// and install the new catalog (a Catalog is immutable).
//
// This is how a binary dropped into the directory becomes usable without
// a restart, and a replaced or removed one is noticed. Listing a directory
// every few seconds costs next to nothing; the rescan, which checksums
// every binary (cached describes aside), only runs when something changed.
func Watch(ctx context.Context, dir string, every time.Duration, last string, rescan func(context.Context)) {
	t := time.NewTicker(every)
	defer t.Stop()
	watch(ctx, dir, t.C, last, rescan)
}

// watch is Watch, looking at dir on every tick.
func watch(ctx context.Context, dir string, ticks <-chan time.Time, last string, rescan func(context.Context)) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticks:
		}
		sig := ListingSignature(dir)
		if sig == last {
			continue
		}
		last = sig
		rescan(ctx)
	}
}

// ListingSignature describes the regular files of dir (following
// symlinks): name, size, mtime and mode. A directory that cannot be read
// has an empty signature. Read it before a scan, so that a change during
// the scan makes the next look differ and scan again.
func ListingSignature(dir string) string {
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

// Diff names the classes of cur that old lacks (added) and those of old
// that cur lacks (removed), in the order of Classes. A class name counts
// as present in a catalog when its Lookup finds it (as a name or an
// alias); a name claimed more than once is refused by Lookup, so it
// counts as absent.
func Diff(old, cur *Catalog) (added, removed []string) {
	for _, c := range cur.Classes() {
		if _, err := old.Lookup(c.Name); err != nil {
			added = append(added, c.Name)
		}
	}
	for _, c := range old.Classes() {
		if _, err := cur.Lookup(c.Name); err != nil {
			removed = append(removed, c.Name)
		}
	}
	return added, removed
}
