package cli

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/dynworkers/dynworkers/host/internal/catalog"
	"github.com/dynworkers/dynworkers/host/internal/config"
)

// runPlugins runs `dynworkers plugins SUBCOMMAND`.
func runPlugins(args []string, stdout, stderr io.Writer) int {
	usage := func(w io.Writer) {
		fmt.Fprintln(w, "Usage: dynworkers plugins lock [-config PATH] [-lock PATH] [-check]")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "  lock    write the lock file of approved plugin sha256s (host.plugin_lock) from the")
		fmt.Fprintln(w, "          binaries now in plugin_dir; -check only reports how the directory differs")
		fmt.Fprintln(w, "          from the lock file (exit status 1 when it does)")
	}
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "lock":
		return runPluginsLock(args[1:], stdout, stderr)
	case "-h", "--help", "help":
		usage(stdout)
		return 0
	}
	fmt.Fprintf(stderr, "dynworkers plugins: unknown subcommand %q\n\n", args[0])
	usage(stderr)
	return 2
}

func runPluginsLock(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("plugins lock", "[-config PATH] [-lock PATH] [-check]", stderr)
	configPath := fs.String("config", DefaultConfig, "HCL config whose host.plugin_dir and host.plugin_lock to use")
	lockPath := fs.String("lock", "", "lock file to write or check (default: host.plugin_lock of -config)")
	check := fs.Bool("check", false, "write nothing: report the binaries that are not locked, changed or gone, and exit 1 if any")
	if rc := parseFlags(fs, args, 0); rc >= 0 {
		return rc
	}
	file, diags := config.Parse(*configPath)
	if diags.HasErrors() {
		config.FormatDiagnostics(stderr, diags, nil)
		return 1
	}
	h := file.Host
	path := h.PluginLock
	if *lockPath != "" {
		abs, err := filepath.Abs(*lockPath)
		if err != nil {
			fmt.Fprintf(stderr, "dynworkers plugins lock: %v\n", err)
			return 2
		}
		path = abs
	}
	if path == "" {
		fmt.Fprintf(stderr, "dynworkers plugins lock: %s sets no host.plugin_lock: add one (for example plugin_lock = \"plugins.lock.hcl\", next to the config) or give -lock PATH\n", *configPath)
		return 2
	}
	entries, problems, err := catalog.LockDir(h.PluginDir)
	if err != nil {
		fmt.Fprintf(stderr, "dynworkers plugins lock: %v\n", err)
		return 1
	}
	for _, p := range problems {
		fmt.Fprintf(stderr, "dynworkers plugins lock: %v\n", p.Err)
	}
	var old *catalog.Lock
	if _, err := os.Stat(path); err == nil || !errors.Is(err, os.ErrNotExist) {
		if old, err = catalog.ReadLock(path); err != nil {
			if *check {
				fmt.Fprintf(stderr, "dynworkers plugins lock: %v\n", err)
				return 1
			}
			fmt.Fprintf(stderr, "dynworkers plugins lock: replacing the lock file, which cannot be used: %v\n", err)
		}
	}
	if *check {
		if old == nil {
			fmt.Fprintf(stderr, "dynworkers plugins lock: %s does not exist: run %q to write it\n", path, catalog.LockCommand)
			return 1
		}
		unlocked, changed, gone := catalog.LockDrift(old, entries)
		for _, n := range unlocked {
			fmt.Fprintf(stdout, "not locked: %s\n", n)
		}
		for _, n := range changed {
			fmt.Fprintf(stdout, "changed:    %s\n", n)
		}
		for _, n := range gone {
			fmt.Fprintf(stdout, "gone:       %s (locked, no longer in %s)\n", n, h.PluginDir)
		}
		if len(unlocked)+len(changed)+len(gone)+len(problems) > 0 {
			fmt.Fprintf(stdout, "%s differs from %s: review the binaries, then run %q\n", path, h.PluginDir, catalog.LockCommand)
			return 1
		}
		fmt.Fprintf(stdout, "%s: ok (%s locked, all as in %s)\n", path, plural(len(entries), "plugin", "plugins"), h.PluginDir)
		return 0
	}
	if len(problems) > 0 {
		fmt.Fprintf(stderr, "dynworkers plugins lock: %d file(s) of %s cannot be trusted; nothing written: fix them (or remove them) and run again\n", len(problems), h.PluginDir)
		return 1
	}
	if err := catalog.WriteLock(path, entries); err != nil {
		fmt.Fprintf(stderr, "dynworkers plugins lock: writing %s: %v\n", path, err)
		return 1
	}
	// What changed, for the operator's review.
	if old != nil {
		unlocked, changed, gone := catalog.LockDrift(old, entries)
		for _, n := range unlocked {
			fmt.Fprintf(stdout, "added:   %s\n", n)
		}
		for _, n := range changed {
			fmt.Fprintf(stdout, "changed: %s\n", n)
		}
		for _, n := range gone {
			fmt.Fprintf(stdout, "removed: %s\n", n)
		}
	}
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name + " " + hex.EncodeToString(e.SHA256)[:12]
	}
	fmt.Fprintf(stdout, "%s: locked %d plugin(s) of %s: %s\n", path, len(entries), h.PluginDir, strings.Join(names, ", "))
	return 0
}
