package daemon

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/pluginproc"
	"github.com/dynworkers/dynworkers/host/internal/supervise"
	"github.com/dynworkers/dynworkers/host/internal/testplugins"
)

// runsFile returns the path of the file the process runs and the sha256 of
// its bytes (/proc/<pid>/exe: what was executed, even once unlinked).
func runsFile(t *testing.T, pid int) (string, []byte) {
	t.Helper()
	exe := fmt.Sprintf("/proc/%d/exe", pid)
	path, err := os.Readlink(exe)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return path, s[:]
}

// TestVerifiedCopies: a host runs its workers from the verified copies in
// <state_dir>/exec, never the bytes of a binary swapped or edited after the
// catalog verified it (its restart is refused as permanent, with the
// error a launch that hashed the binary gave), runs a touched one, and
// leaves no copy behind when it stops. The watch is off, so that the
// catalog keeps the verified sha256 while the file changes under it.
func TestVerifiedCopies(t *testing.T) {
	dir := t.TempDir()
	plugins := filepath.Join(dir, "plugins")
	if err := os.MkdirAll(plugins, 0o755); err != nil {
		t.Fatal(err)
	}
	chaos := testplugins.Copy(t, chaosBin, filepath.Join(plugins, "chaos"))
	launches := filepath.Join(dir, "launches")
	h := startConfigOpts(t, dir, fmt.Sprintf(`system_id = "test"
host {
  name        = "test-host"
  plugin_dir  = "plugins"
  state_dir   = "var"
  http_addr   = "127.0.0.1:0"
  warm_spares = 0
  plugin_env  = { CHAOS_LAUNCH_LOG = %q }
}
worker "w" {
  class = "chaos"
}
`, launches), func(o *Options) { o.PluginWatchInterval = -1 })
	launched := func() int {
		b, _ := os.ReadFile(launches)
		return strings.Count(string(b), "\n")
	}
	cls, err := h.d.Catalog().Lookup("chaos")
	if err != nil {
		t.Fatal(err)
	}
	verified := cls.Binary.SHA256
	copyPath := filepath.Join(dir, "var", pluginproc.ExecDirName, hex.EncodeToString(verified), "chaos")
	check := func(pid int) {
		t.Helper()
		if path, sum := runsFile(t, pid); path != copyPath || !bytes.Equal(sum, verified) {
			t.Errorf("worker runs %s (sha256 %x), want the verified copy %s (%x)", path, sum, copyPath, verified)
		}
	}
	pid := h.waitStarted("w")
	check(pid)

	// Touched: the same content, new times. Its restart runs.
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(chaos, later, later); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	pid = h.waitStarted("w")
	check(pid)

	// Edited in place (the same inode; the original is not busy, since
	// the copy runs): the restart is refused and the edit never runs.
	f, err := os.OpenFile(chaos, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("edited in place"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	before := launched()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	failed := func(what string) {
		t.Helper()
		ev := h.waitEvent(what, func(ev supervise.Event) bool {
			e, ok := ev.(supervise.ChildStartFailed)
			return ok && e.Child == "w"
		}).(supervise.ChildStartFailed)
		if !ev.Permanent || !errors.Is(ev.Err, pluginproc.ErrBinaryChanged) || !strings.Contains(ev.Err.Error(), chaos) {
			t.Errorf("%s: %v (permanent %v), want a permanent ErrBinaryChanged naming %s", what, ev.Err, ev.Permanent, chaos)
		}
	}
	failed("w's refused restart after the edit")
	if n := launched(); n != before {
		t.Errorf("%d launches after the edit: the edited binary ran", n-before)
	}

	// Swapped (renamed over) with the verified build: it runs again.
	next := filepath.Join(plugins, ".chaos.new")
	testplugins.Copy(t, chaosBin, next)
	if err := os.Rename(next, chaos); err != nil {
		t.Fatal(err)
	}
	if err := h.d.RestartWorker(context.Background(), "w"); err != nil {
		t.Fatal(err)
	}
	check(h.waitStarted("w"))

	// Swapped with another build: refused, never run.
	testplugins.Copy(t, chaosBin, next)
	f, err = os.OpenFile(next, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("another build"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Rename(next, chaos); err != nil {
		t.Fatal(err)
	}
	before = launched()
	if err := h.d.RestartWorker(context.Background(), "w"); err != nil {
		t.Logf("RestartWorker: %v", err)
	}
	failed("w's refused restart after the swap")
	if n := launched(); n != before {
		t.Errorf("%d launches after the swap: the swapped binary ran", n-before)
	}

	h.stop()
	if _, err := os.Stat(filepath.Join(dir, "var", pluginproc.ExecDirName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("exec directory after the host stopped: %v, want it removed", err)
	}
}

// TestExecDirNoexec: a host whose exec directory is on a filesystem
// mounted noexec does not start, and says which directory and how to fix
// it.
func TestExecDirNoexec(t *testing.T) {
	dir := t.TempDir()
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "noexec,size=1m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a noexec tmpfs (needs root): %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	linkPlugin(t, filepath.Join(dir, "plugins"), "chaos")
	cfg := filepath.Join(dir, "host.hcl")
	if err := os.WriteFile(cfg, []byte(`host {
  plugin_dir = "plugins"
  state_dir  = "var"
  exec_dir   = "mnt/exec"
  http_addr  = "127.0.0.1:0"
}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(context.Background(), Options{ConfigPath: cfg})
	want := filepath.Join(mnt, "exec")
	if err == nil || !strings.Contains(err.Error(), "host.exec_dir") || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "noexec") {
		t.Fatalf("Load = %v, want an error naming host.exec_dir %s and noexec", err, want)
	}
	// Nothing is left holding the state directory: a host with a usable
	// exec_dir starts on it.
	if err := os.WriteFile(cfg, []byte(`host {
  plugin_dir = "plugins"
  state_dir  = "var"
  http_addr  = "127.0.0.1:0"
}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := Load(context.Background(), Options{ConfigPath: cfg})
	if err != nil {
		t.Fatalf("Load with the default exec_dir: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := d.Run(ctx); err != nil {
		t.Errorf("Run: %v", err)
	}
}
