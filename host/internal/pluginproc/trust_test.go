package pluginproc

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// markerPlugin writes, into dir, a shell script "plugin" that creates
// marker when it is executed, and returns its path and the marker's.
func markerPlugin(t *testing.T, dir, name string) (path, marker string) {
	t.Helper()
	marker = filepath.Join(t.TempDir(), "ran-"+name)
	path = filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte("#!/bin/sh\ntouch '"+marker+"'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path, marker
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// refusedWithoutRunning checks that Describe and Start refuse path with an
// ErrUntrusted error containing every want, and that the file never ran.
func refusedWithoutRunning(t *testing.T, path, marker string, want ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := Describe(ctx, path, 5*time.Second, nil)
	if !errors.Is(err, ErrUntrusted) {
		t.Errorf("Describe = %v, want ErrUntrusted", err)
	}
	for _, w := range want {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("Describe's error %q does not say %q", err, w)
		}
	}
	p, err := Start(ctx, Options{Path: path, Checksum: sha(t, path), WorkerName: "w", Class: "chaos", StartTimeout: 5 * time.Second})
	if p != nil {
		p.Kill("test")
	}
	if !errors.Is(err, ErrUntrusted) || !IsPermanent(err) {
		t.Errorf("Start = %v (permanent %v), want a permanent ErrUntrusted", err, IsPermanent(err))
	}
	if exists(marker) {
		t.Errorf("%s was executed", path)
	}
}

// The marker scripts do run when their directory can be trusted: the
// refusals below are the checks' doing, not a script that cannot run.
func TestMarkerPluginRunsWhenTrusted(t *testing.T) {
	path, marker := markerPlugin(t, t.TempDir(), "script")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := Describe(ctx, path, 5*time.Second, nil); err == nil || errors.Is(err, ErrUntrusted) {
		t.Errorf("Describe = %v, want an error from a script that is no plugin", err)
	}
	if !exists(marker) {
		t.Fatal("the marker script did not run from a trusted directory")
	}
}

func TestWorldWritablePluginDirRefused(t *testing.T) {
	dir := t.TempDir()
	path, marker := markerPlugin(t, dir, "dropped")
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	refusedWithoutRunning(t, path, marker, "plugin_dir "+dir, "writable by other users", "drwxrwxrwx", "chmod go-w "+dir)
}

func TestGroupWritablePluginDirRefused(t *testing.T) {
	dir := t.TempDir()
	path, marker := markerPlugin(t, dir, "dropped")
	if err := os.Chmod(dir, 0o775); err != nil {
		t.Fatal(err)
	}
	refusedWithoutRunning(t, path, marker, "plugin_dir "+dir, "writable by its group", "chmod go-w "+dir)
}

func TestForeignOwnedPluginDirRefused(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	path, marker := markerPlugin(t, dir, "dropped")
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	refusedWithoutRunning(t, path, marker, "plugin_dir "+dir, "owned by uid 65534", "chown root "+dir)
}

func TestForeignOwnedBinaryRefused(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	path, marker := markerPlugin(t, dir, "nobodys")
	if err := os.Chown(path, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	refusedWithoutRunning(t, path, marker, "plugin "+path, "owned by uid 65534 (nobody)", "chown root "+path)
}

func TestWritableBinaryRefused(t *testing.T) {
	for _, c := range []struct {
		mode os.FileMode
		who  string
	}{{0o775, "writable by its group"}, {0o757, "writable by other users"}} {
		dir := t.TempDir()
		path, marker := markerPlugin(t, dir, "writable")
		if err := os.Chmod(path, c.mode); err != nil {
			t.Fatal(err)
		}
		refusedWithoutRunning(t, path, marker, "plugin "+path, c.who, "chmod go-w "+path)
	}
}

func TestWritableParentDirRefused(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "plugins")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path, marker := markerPlugin(t, dir, "p")
	if err := os.Chmod(parent, 0o777); err != nil {
		t.Fatal(err)
	}
	// Others could rename plugins away and put a directory of theirs there.
	refusedWithoutRunning(t, path, marker, parent+" (on the way to plugin_dir "+dir+")", "writable by other users", "chmod go-w "+parent)

	// A sticky parent (as /tmp) is fine: others cannot rename our entry.
	if err := os.Chmod(parent, os.ModeSticky|0o777); err != nil {
		t.Fatal(err)
	}
	if err := CheckBinary(path); err != nil {
		t.Errorf("CheckBinary under a sticky parent = %v", err)
	}
}

func TestSymlinkOutOfPluginDirRefused(t *testing.T) {
	dir := t.TempDir()
	target, marker := markerPlugin(t, t.TempDir(), "elsewhere")
	link := filepath.Join(dir, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	refusedWithoutRunning(t, link, marker, "plugin "+link, "symlink to "+target, "outside the plugin directory "+dir)

	// Inside the directory (a subdirectory), a symlink is followed, and its
	// target checked.
	if err := os.Mkdir(filepath.Join(dir, "v2"), 0o755); err != nil {
		t.Fatal(err)
	}
	inner, marker := markerPlugin(t, filepath.Join(dir, "v2"), "inner")
	link2 := filepath.Join(dir, "link2")
	if err := os.Symlink("v2/inner", link2); err != nil {
		t.Fatal(err)
	}
	if err := CheckBinary(link2); err != nil {
		t.Errorf("CheckBinary(symlink inside) = %v", err)
	}
	if err := os.Chmod(inner, 0o777); err != nil {
		t.Fatal(err)
	}
	refusedWithoutRunning(t, link2, marker, inner+" (on the way to plugin "+link2+")", "writable by other users")
}

// A binary that passed the checks when a worker first started is checked
// again at the next launch.
func TestTrustCheckedAtEveryLaunch(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "chaos")
	b, err := os.ReadFile(chaosPath())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o755); err != nil {
		t.Fatal(err)
	}
	o := chaosOptions(t, map[string]any{})
	o.Path = path
	p := start(t, o)
	stopProcess(t, p)
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	_, err = Start(context.Background(), o)
	if !errors.Is(err, ErrUntrusted) || !IsPermanent(err) {
		t.Errorf("second Start = %v, want a permanent ErrUntrusted", err)
	}
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown files to another user")
	}
}

func stopProcess(t *testing.T, p *Process) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Stop(ctx); err != nil {
		t.Errorf("Stop: %v", err)
	}
}

// BenchmarkCheckBinary measures the checks added to every launch.
func BenchmarkCheckBinary(b *testing.B) {
	path := chaosPath()
	for b.Loop() {
		if err := CheckBinary(path); err != nil {
			b.Fatal(err)
		}
	}
}
