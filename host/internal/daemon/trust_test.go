package daemon

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/dynworkers/dynworkers/host/internal/catalog"
	"github.com/dynworkers/dynworkers/host/internal/supervise"
	"github.com/dynworkers/dynworkers/host/internal/testplugins"
	"github.com/dynworkers/dynworkers/sdk/sdktest"
)

// relock writes the lock file for the binaries of dir now, as
// `dynworkers plugins lock` does.
func relock(t *testing.T, dir, lock string) {
	t.Helper()
	entries, probs, err := catalog.LockDir(dir)
	if err != nil || len(probs) > 0 {
		t.Fatalf("LockDir: %v %v", probs, err)
	}
	if err := catalog.WriteLock(lock, entries); err != nil {
		t.Fatal(err)
	}
}

// A host with plugin_lock runs only locked binaries: a binary replaced
// after locking (the documented mv upgrade) is refused, named in the
// rescan's log with its old and new sha256, and never executed, even when
// its worker restarts; once re-locked, it runs. Its plugins see
// plugin_env, and none of the host's own environment's secrets.
func TestPluginLockAndCleanEnv(t *testing.T) {
	dir := t.TempDir()
	plugins := filepath.Join(dir, "plugins")
	if err := os.MkdirAll(plugins, 0o755); err != nil {
		t.Fatal(err)
	}
	chaos := testplugins.Copy(t, chaosBin, filepath.Join(plugins, "chaos"))
	lock := filepath.Join(dir, "plugins.lock.hcl")
	relock(t, plugins, lock)
	t.Setenv("DYNWORKERS_HTTP_TOKEN", "a-token-in-the-hosts-env-0123456789")
	t.Setenv("AMQP_URL", "amqp://dynworkers:s3cret@127.0.0.1:5672/")
	h := startConfig(t, dir, `system_id = "test"
host {
  name        = "test-host"
  plugin_dir  = "plugins"
  state_dir   = "var"
  http_addr   = "127.0.0.1:0"
  plugin_lock = "plugins.lock.hcl"
  plugin_env  = { CHAOS_NOTE = "passed on purpose" }
}
worker "w" {
  class = "chaos"
}
`)
	pid := h.waitStarted("w")
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		t.Fatal(err)
	}
	env := string(b)
	if strings.Contains(env, "s3cret") || strings.Contains(env, "a-token-in-the-hosts-env") {
		t.Errorf("the plugin sees the host's secrets: %q", env)
	}
	if !strings.Contains(env, "\x00CHAOS_NOTE=passed on purpose\x00") {
		t.Errorf("the plugin lacks host.plugin_env: %q", env)
	}

	old, err := h.d.Catalog().Lookup("chaos")
	if err != nil {
		t.Fatal(err)
	}
	// mv a new binary over the locked one: a script that leaves a marker.
	marker := filepath.Join(dir, "ran")
	next := filepath.Join(plugins, ".chaos.new")
	if err := os.WriteFile(next, []byte("#!/bin/sh\ntouch '"+marker+"'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	newSum := sha(t, next)
	if err := os.Rename(next, chaos); err != nil {
		t.Fatal(err)
	}
	h.waitCatalog("chaos refused", func(c *catalog.Catalog) bool { _, err := c.Lookup("chaos"); return err != nil })
	logs := h.logs.String()
	change := fmt.Sprintf("chaos (sha256 %s… -> %s…)", hex.EncodeToString(old.Binary.SHA256)[:12], hex.EncodeToString(newSum)[:12])
	if !strings.Contains(logs, "changed=") || !strings.Contains(logs, change) {
		t.Errorf("the rescan's log does not name the change %q", change)
	}
	if !strings.Contains(logs, "changed since it was locked") {
		t.Error("the log does not say the new binary is refused by the lock")
	}

	// The worker crashes: its restart does not run the new binary.
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ev := h.waitEvent("w's failed restart", func(ev supervise.Event) bool {
		e, ok := ev.(supervise.ChildStartFailed)
		return ok && e.Child == "w"
	}).(supervise.ChildStartFailed)
	if !ev.Permanent {
		t.Errorf("restart error %v is not permanent", ev.Err)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the unlocked binary was executed")
	}

	// The operator installs a real build, reviews and re-locks: it runs.
	fresh, err := os.ReadFile(chaosBin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(next, append(fresh, "v2"...), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(next, chaos); err != nil {
		t.Fatal(err)
	}
	relock(t, plugins, lock)
	h.waitCatalog("chaos approved again", func(c *catalog.Catalog) bool {
		cl, err := c.Lookup("chaos")
		return err == nil && !bytes.Equal(cl.Binary.SHA256, old.Binary.SHA256)
	})
	if err := h.d.RestartWorker(context.Background(), "w"); err != nil {
		t.Fatal(err)
	}
	h.waitStarted("w")
	sdktest.Eventually(t, waitTimeout, func() bool { ws, _ := h.d.Worker("w"); return ws.State == "running" }, "w is not running")
	if _, err := os.Stat(marker); err == nil {
		t.Error("the unlocked binary was executed")
	}
}

func sha(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return sum[:]
}
