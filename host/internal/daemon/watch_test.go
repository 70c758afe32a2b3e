package daemon

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/dynworkers/dynworkers/host/internal/catalog"
	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/host/internal/testplugins"
	"github.com/dynworkers/dynworkers/sdk/sdktest"
)

// waitCatalog waits until cond holds for the daemon's current catalog,
// which catalog.Watch's rescan replaces.
func (h *harness) waitCatalog(what string, cond func(*catalog.Catalog) bool) {
	h.t.Helper()
	sdktest.Eventually(h.t, waitTimeout, func() bool { return cond(h.d.Catalog()) }, "the catalog did not get to %s", what)
}

// A binary dropped into plugin_dir becomes usable without a restart; a
// replaced binary is used from its workers' next start; a removed binary
// leaves running workers running and new starts of its classes fail. (The
// watch itself is tested in package catalog; this is the daemon's rescan
// and its use of the new catalog.)
func TestPluginDirWatch(t *testing.T) {
	dir := t.TempDir()
	plugins := filepath.Join(dir, "plugins")
	linkPlugin(t, plugins, "chaos")
	h := startHostIn(t, dir, `
worker "w" {
  class = "chaos"
}
`)
	pid := h.waitStarted("w")
	ctx := context.Background()

	// Dropped in.
	linkPlugin(t, plugins, "smpp")
	h.waitCatalog("the smpp class", func(c *catalog.Catalog) bool { _, err := c.Lookup("smpp"); return err == nil })
	if _, err := h.d.StartWorker(ctx, control.WorkerSpec{Name: "s", Class: "smpp", Config: []byte(`{"host":"h"}`)}); err != nil {
		t.Fatal(err)
	}
	smppPid := h.waitStarted("s")

	// Replaced: same class, new content (an ELF file runs with bytes
	// appended), swapped in atomically.
	b, err := os.ReadFile(chaosBin)
	if err != nil {
		t.Fatal(err)
	}
	old, _ := h.d.Catalog().Lookup("chaos")
	tmp := filepath.Join(plugins, ".chaos.new")
	if err := os.WriteFile(tmp, append(b, []byte("v2")...), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(plugins, "chaos")); err != nil {
		t.Fatal(err)
	}
	h.waitCatalog("the new chaos binary", func(c *catalog.Catalog) bool {
		cl, err := c.Lookup("chaos")
		return err == nil && !bytes.Equal(cl.Binary.SHA256, old.Binary.SHA256)
	})
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if again := h.waitStarted("w"); again == pid {
		t.Errorf("w kept pid %d", pid)
	}

	// Removed: the running worker runs on; a new start is refused.
	if err := os.Remove(filepath.Join(plugins, "smpp")); err != nil {
		t.Fatal(err)
	}
	h.waitCatalog("no smpp class", func(c *catalog.Catalog) bool { _, err := c.Lookup("smpp"); return err != nil })
	if h.pid("s") != smppPid || !testplugins.Alive(smppPid) {
		t.Errorf("the smpp worker did not keep running after its binary was removed")
	}
	_, err = h.d.StartWorker(ctx, control.WorkerSpec{Name: "s2", Class: "smpp", Config: []byte(`{"host":"h"}`)})
	var ce *control.Error
	if !errors.As(err, &ce) || ce.Code != control.CodeUnknownClass {
		t.Errorf("start of a removed class: %v, want unknown_class", err)
	}
}
