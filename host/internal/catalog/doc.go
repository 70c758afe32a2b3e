// Package catalog finds the worker classes on offer: it scans the host's
// plugin_dir, launches each plugin binary once to ask it which classes it
// offers (Describe), records every binary's sha256, and maps class names and
// aliases to binaries.
//
// Nothing is executed that pluginproc's trust checks refuse: a plugin_dir
// that others can write to fails the scan, and a binary owned by another
// user, writable by others or a symlink out of the directory is a
// Problem. With a lock file (Options.Lock, written by LockDir and
// WriteLock for "dynworkers plugins lock"), only the binaries whose sha256
// it approves are described; the others are Problems, and Changes names the
// binaries whose content changed between two scans.
//
// A broken file never fails a scan: it is recorded as a Problem, logged, and
// the scan goes on. Describe results are cached on disk, keyed by path,
// size, modification time and sha256, so a restart with unchanged binaries
// launches none of them. A Catalog is immutable: to pick up changes, scan
// again. Watch notices the changes: it lists the directory on a ticker
// (ListingSignature: names, sizes, modification times, modes, owners,
// inodes and change times, and the lock file) and calls
// back for a rescan when the listing differs; Diff names the classes a
// rescan added and removed. List reports a catalog as the list_classes
// result.
package catalog
