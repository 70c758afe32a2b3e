package catalog

import (
	"bytes"
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

// Watch calls rescan whenever dir's listing (ListingSignature, with the
// files also watched) differs from the one seen last, looking every
// interval, until ctx ends; last is the listing the current catalog was
// scanned from. rescan is called in Watch's goroutine, so calls never
// overlap; it is expected to scan again and install the new catalog (a
// Catalog is immutable). also are files watched with the directory, such
// as the lock file.
//
// This is how a binary dropped into the directory becomes usable without
// a restart, and a replaced or removed one is noticed. Listing a directory
// every few seconds costs next to nothing; the rescan, which checksums
// every binary (cached describes aside), only runs when something changed.
func Watch(ctx context.Context, dir string, every time.Duration, last string, rescan func(context.Context), also ...string) {
	t := time.NewTicker(every)
	defer t.Stop()
	watch(ctx, dir, t.C, last, rescan, also...)
}

// watch is Watch, looking at dir on every tick.
func watch(ctx context.Context, dir string, ticks <-chan time.Time, last string, rescan func(context.Context), also ...string) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticks:
		}
		sig := ListingSignature(dir, also...)
		if sig == last {
			continue
		}
		last = sig
		rescan(ctx)
	}
}

// ListingSignature describes the regular files of dir (following
// symlinks), and the files also named: name, size, mtime, mode, owner,
// inode and ctime, and the directory's own mode and owner. A content
// change that keeps the size and the mtime (written in place, the mtime
// set back) still changes the ctime, which only the kernel sets, and a
// file replaced by rename has a new inode; a chmod or chown (which the
// trust checks look at) changes the ctime too. A directory that cannot be
// read has an empty signature. Read it before a scan, so that a change
// during the scan makes the next look differ and scan again.
func ListingSignature(dir string, also ...string) string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return ""
	}
	lines := make([]string, 0, len(ents)+len(also)+1)
	if fi, err := os.Stat(dir); err == nil {
		lines = append(lines, "\x00dir\x00"+dirLine(fi))
	}
	for _, e := range ents {
		fi, err := os.Stat(filepath.Join(dir, e.Name()))
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		lines = append(lines, e.Name()+"\x00"+statLine(fi))
	}
	for _, f := range also {
		if fi, err := os.Stat(f); err == nil {
			lines = append(lines, "\x00also\x00"+f+"\x00"+statLine(fi))
		} else {
			lines = append(lines, "\x00also\x00"+f+"\x00missing")
		}
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

// Change is a plugin binary whose content changed between two scans.
type Change struct {
	// Path is the binary's path; Old and New its sha256 before and after.
	Path     string
	Old, New []byte
}

// String is "name (sha256 1a2b3c4d5e6f… -> 6f5e4d3c2b1a…)".
func (c Change) String() string {
	return fmt.Sprintf("%s (sha256 %s -> %s)", filepath.Base(c.Path), short(c.Old), short(c.New))
}

// Changes lists the binaries hashed by both scans whose sha256 differs,
// sorted by path: binaries replaced in place, whether the new scan could
// describe them or refused them (a lock file that does not approve the new
// content, say).
func Changes(old, cur *Catalog) []Change {
	var out []Change
	for path, sum := range cur.sums {
		if was, ok := old.sums[path]; ok && !bytes.Equal(was, sum) {
			out = append(out, Change{Path: path, Old: was, New: sum})
		}
	}
	slices.SortFunc(out, func(a, b Change) int { return strings.Compare(a.Path, b.Path) })
	return out
}
