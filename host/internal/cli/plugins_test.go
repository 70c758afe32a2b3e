package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dynworkers/dynworkers/host/internal/catalog"
)

// lockConfig writes a config with the chaos plugin (a copy) and
// plugin_lock = "plugins.lock.hcl", and returns its path, the plugin
// directory and the lock file's path.
func lockConfig(t *testing.T) (cfg, plugins, lock string) {
	t.Helper()
	dir := t.TempDir()
	plugins = filepath.Join(dir, "plugins")
	if err := os.Mkdir(plugins, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(chaosBin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(plugins, "chaos"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg = filepath.Join(dir, "host.hcl")
	src := "host {\n  plugin_dir = \"plugins\"\n  state_dir = \"var\"\n  plugin_lock = \"plugins.lock.hcl\"\n}\nworker \"w\" {\n  class = \"chaos\"\n}\n"
	if err := os.WriteFile(cfg, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg, plugins, filepath.Join(dir, "plugins.lock.hcl")
}

func TestPluginsLock(t *testing.T) {
	cfg, plugins, lock := lockConfig(t)

	// Without the lock file, the host refuses to load the config.
	if rc, _, errOut := runMain("validate", cfg); rc != 1 || !strings.Contains(errOut, lock+" does not exist") || !strings.Contains(errOut, "dynworkers plugins lock") {
		t.Errorf("validate without the lock file: rc=%d %s", rc, errOut)
	}
	if rc, _, errOut := runMain("plugins", "lock", "-config", cfg, "-check"); rc != 1 || !strings.Contains(errOut, "does not exist") {
		t.Errorf("lock -check without the lock file: rc=%d %s", rc, errOut)
	}

	rc, out, errOut := runMain("plugins", "lock", "-config", cfg)
	if rc != 0 || !strings.Contains(out, "locked 1 plugin(s)") || !strings.Contains(out, "chaos ") {
		t.Fatalf("lock: rc=%d out=%s err=%s", rc, out, errOut)
	}
	src, err := os.ReadFile(lock)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(src), "# This file is maintained by \"dynworkers plugins lock\"") || !strings.Contains(string(src), "plugin \"chaos\" {\n  sha256 = \"") {
		t.Errorf("lock file:\n%s", src)
	}
	if rc, out, errOut := runMain("validate", cfg); rc != 0 || !strings.Contains(out, "ok") {
		t.Errorf("validate with the lock file: rc=%d %s %s", rc, out, errOut)
	}
	if rc, out, _ := runMain("plugins", "lock", "-config", cfg, "-check"); rc != 0 || !strings.Contains(out, "ok (1 plugin locked") {
		t.Errorf("lock -check: rc=%d %s", rc, out)
	}

	// A changed binary: -check reports it; validate no longer finds the
	// class; re-locking says what changed.
	f, err := os.OpenFile(filepath.Join(plugins, "chaos"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("v2")
	f.Close()
	if rc, out, _ := runMain("plugins", "lock", "-config", cfg, "-check"); rc != 1 || !strings.Contains(out, "changed:    chaos") {
		t.Errorf("lock -check after a change: rc=%d %s", rc, out)
	}
	if rc, _, errOut := runMain("validate", cfg); rc != 1 || !strings.Contains(errOut, "changed since it was locked") {
		t.Errorf("validate after a change: rc=%d %s", rc, errOut)
	}
	if rc, out, _ := runMain("plugins", "lock", "-config", cfg); rc != 0 || !strings.Contains(out, "changed: chaos") {
		t.Errorf("re-lock: rc=%d %s", rc, out)
	}
	if rc, _, errOut := runMain("validate", cfg); rc != 0 {
		t.Errorf("validate after re-locking: rc=%d %s", rc, errOut)
	}

	// An untrusted file: nothing written.
	before, _ := os.ReadFile(lock)
	bad := filepath.Join(plugins, "writable")
	if err := os.WriteFile(bad, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(bad, 0o777); err != nil {
		t.Fatal(err)
	}
	rc, _, errOut = runMain("plugins", "lock", "-config", cfg)
	if rc != 1 || !strings.Contains(errOut, "plugin "+bad+" is writable by other users") || !strings.Contains(errOut, "nothing written") {
		t.Errorf("lock with a writable file: rc=%d %s", rc, errOut)
	}
	if after, _ := os.ReadFile(lock); string(after) != string(before) {
		t.Error("the lock file changed")
	}
	if _, err := catalog.ReadLock(lock); err != nil {
		t.Error(err)
	}
}

func TestPluginsLockNeedsAPath(t *testing.T) {
	cfg := writeConfig(t, "")
	rc, _, errOut := runMain("plugins", "lock", "-config", cfg)
	if rc != 2 || !strings.Contains(errOut, "sets no host.plugin_lock") || !strings.Contains(errOut, "-lock PATH") {
		t.Errorf("rc=%d %s", rc, errOut)
	}
	lock := filepath.Join(t.TempDir(), "x.lock.hcl")
	if rc, out, errOut := runMain("plugins", "lock", "-config", cfg, "-lock", lock); rc != 0 || !strings.Contains(out, lock) {
		t.Errorf("-lock: rc=%d %s %s", rc, out, errOut)
	}
	if rc, _, errOut := runMain("plugins", "frob"); rc != 2 || !strings.Contains(errOut, `unknown subcommand "frob"`) {
		t.Errorf("unknown subcommand: rc=%d %s", rc, errOut)
	}
}
