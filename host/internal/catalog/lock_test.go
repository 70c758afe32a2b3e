package catalog

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/pluginproc"
)

// markerScript writes an executable shell script into dir that creates a
// marker file when run, and returns its path and the marker's.
func markerScript(t *testing.T, dir, name string) (path, marker string) {
	t.Helper()
	marker = filepath.Join(t.TempDir(), "ran-"+name)
	path = write(t, filepath.Join(dir, name), "#!/bin/sh\ntouch '"+marker+"'\n", 0o755)
	return path, marker
}

func assertNotRun(t *testing.T, marker string) {
	t.Helper()
	if _, err := os.Stat(marker); err == nil {
		t.Errorf("the script of %s was executed", marker)
	}
}

// The finding: a script dropped into a world-writable plugin_dir ran (as
// root) at the next describe scan. Now the scan is refused and runs
// nothing.
func TestScanRefusesWorldWritableDir(t *testing.T) {
	dir := t.TempDir()
	install(t, "chaos", dir, "chaos")
	_, marker := markerScript(t, dir, "dropped")
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := Scan(ctx, Options{Dir: dir})
	if !errors.Is(err, pluginproc.ErrUntrusted) {
		t.Fatalf("Scan = %v, want ErrUntrusted", err)
	}
	for _, want := range []string{"plugin_dir " + dir, "writable by other users", "chmod go-w " + dir} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	assertNotRun(t, marker)
	// And the lock command refuses the directory too.
	if _, _, err := LockDir(dir); !errors.Is(err, pluginproc.ErrUntrusted) {
		t.Errorf("LockDir = %v, want ErrUntrusted", err)
	}
}

// A binary owned by another user (nobody) is a problem of the scan, named
// with its owner and the fix, and is not executed; the others are used.
func TestScanRefusesForeignOwnedBinary(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown a file to nobody")
	}
	dir := t.TempDir()
	install(t, "chaos", dir, "chaos")
	script, marker := markerScript(t, dir, "nobodys")
	if err := os.Chown(script, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	c := scan(t, Options{Dir: dir})
	if _, err := c.Lookup("chaos"); err != nil {
		t.Errorf("chaos: %v", err)
	}
	probs := c.Problems()
	if len(probs) != 1 || probs[0].Path != script || !errors.Is(probs[0].Err, pluginproc.ErrUntrusted) ||
		!strings.Contains(probs[0].Err.Error(), "owned by uid 65534 (nobody)") || !strings.Contains(probs[0].Err.Error(), "chown root "+script) {
		t.Errorf("problems = %v, want the script, owned by nobody, with the fix", probs)
	}
	assertNotRun(t, marker)
	if _, probs, err := LockDir(dir); err != nil || len(probs) != 1 || probs[0].Path != script {
		t.Errorf("LockDir: problems %v, %v; want the script", probs, err)
	}
}

// lockDir writes a lock file for dir's binaries now and returns its path.
func lockDir(t *testing.T, dir string) string {
	t.Helper()
	entries, probs, err := LockDir(dir)
	if err != nil || len(probs) > 0 {
		t.Fatalf("LockDir: %v, %v", probs, err)
	}
	path := filepath.Join(t.TempDir(), "plugins.lock.hcl")
	if err := WriteLock(path, entries); err != nil {
		t.Fatal(err)
	}
	return path
}

// With a lock file, an unlocked binary and a binary changed since it was
// locked are refused without being executed; re-locking approves them.
func TestScanWithLock(t *testing.T) {
	count := launches(t)
	dir := t.TempDir()
	chaos := install(t, "chaos", dir, "chaos")
	lock := lockDir(t, dir)
	o := Options{Dir: dir, Lock: lock}

	c := scan(t, o)
	cls, err := c.Lookup("chaos")
	if err != nil || len(c.Problems()) != 0 {
		t.Fatalf("locked chaos: %v, problems %v", err, c.Problems())
	}
	if n := count(); n != 1 {
		t.Errorf("chaos launched %d times, want 1", n)
	}

	// Unlocked: a new file.
	script, marker := markerScript(t, dir, "unlocked")
	c = scan(t, o)
	probs := c.Problems()
	if len(probs) != 1 || probs[0].Path != script || !errors.Is(probs[0].Err, ErrNotLocked) {
		t.Fatalf("problems = %v, want the unlocked script", probs)
	}
	for _, want := range []string{"plugin " + script, "is not in the lock file " + lock, "review it", "dynworkers plugins lock"} {
		if !strings.Contains(probs[0].Err.Error(), want) {
			t.Errorf("problem %q does not say %q", probs[0].Err, want)
		}
	}
	assertNotRun(t, marker)
	if err := os.Remove(script); err != nil {
		t.Fatal(err)
	}

	// Changed: the locked name, other content (the marker script, moved
	// over it as the documented upgrade does).
	next, marker := markerScript(t, dir, ".chaos.new")
	if err := os.Rename(next, chaos); err != nil {
		t.Fatal(err)
	}
	c2 := scan(t, o)
	probs = c2.Problems()
	if len(probs) != 1 || probs[0].Path != chaos || !errors.Is(probs[0].Err, ErrNotLocked) {
		t.Fatalf("problems = %v, want the changed chaos", probs)
	}
	for _, want := range []string{"plugin " + chaos, "approves " + hex.EncodeToString(cls.Binary.SHA256)[:12], "changed since it was locked", "review the new binary", "dynworkers plugins lock"} {
		if !strings.Contains(probs[0].Err.Error(), want) {
			t.Errorf("problem %q does not say %q", probs[0].Err, want)
		}
	}
	if _, err := c2.Lookup("chaos"); err == nil {
		t.Error("the changed chaos still offers its class")
	}
	assertNotRun(t, marker)
	changes := Changes(c, c2)
	if len(changes) != 1 || changes[0].Path != chaos || !bytes.Equal(changes[0].Old, cls.Binary.SHA256) ||
		!strings.HasPrefix(changes[0].String(), "chaos (sha256 "+hex.EncodeToString(cls.Binary.SHA256)[:12]) {
		t.Errorf("Changes = %v, want chaos with its old and new sha256", changes)
	}

	// The binary the old catalog recorded is refused at launch as well: the
	// checksum given to go-plugin is the locked one.
	_, err = pluginproc.Start(context.Background(), pluginproc.Options{Path: chaos, Checksum: cls.Binary.SHA256, WorkerName: "w", Class: "chaos", StartTimeout: 5 * time.Second})
	if !errors.Is(err, pluginproc.ErrBinaryChanged) {
		t.Errorf("Start of the replaced binary = %v, want ErrBinaryChanged", err)
	}
	assertNotRun(t, marker)

	// Re-locked: the operator approved the new content.
	install(t, "chaos", dir, ".chaos.v2")
	if err := os.Rename(filepath.Join(dir, ".chaos.v2"), chaos); err != nil {
		t.Fatal(err)
	}
	entries, _, err := LockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteLock(lock, entries); err != nil {
		t.Fatal(err)
	}
	if c := scan(t, o); len(c.Problems()) != 0 {
		t.Errorf("after re-locking: problems %v", c.Problems())
	}
}

func TestLockFileErrors(t *testing.T) {
	dir := t.TempDir()
	install(t, "chaos", dir, "chaos")
	ctx := context.Background()

	missing := filepath.Join(t.TempDir(), "none.lock.hcl")
	if _, err := Scan(ctx, Options{Dir: dir, Lock: missing}); err == nil || !strings.Contains(err.Error(), missing+" does not exist") ||
		!strings.Contains(err.Error(), "dynworkers plugins lock") {
		t.Errorf("Scan with a missing lock = %v", err)
	}

	bad := write(t, filepath.Join(t.TempDir(), "bad.lock.hcl"), "plugin \"chaos\" {\n  sha256 = \"abc\"\n}\nplugin \"x\" {}\n", 0o644)
	_, err := Scan(ctx, Options{Dir: dir, Lock: bad})
	for _, want := range []string{bad + ":2,", "Invalid sha256", "64 hexadecimal digits", `Missing required argument`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Scan with a bad lock = %v, want %q", err, want)
		}
	}

	// A lock file others can write is no lock at all.
	lock := lockDir(t, dir)
	if err := os.Chmod(lock, 0o666); err != nil {
		t.Fatal(err)
	}
	_, err = Scan(ctx, Options{Dir: dir, Lock: lock})
	if !errors.Is(err, pluginproc.ErrUntrusted) || !strings.Contains(err.Error(), "plugin_lock "+lock) || !strings.Contains(err.Error(), "chmod go-w "+lock) {
		t.Errorf("Scan with a world-writable lock = %v", err)
	}
}

func TestFormatLock(t *testing.T) {
	sum := bytes.Repeat([]byte{0xab}, 32)
	got := string(FormatLock([]LockEntry{{Name: "zeta", SHA256: sum}, {Name: `we"ird ${x}`, SHA256: sum}, {Name: "echo", SHA256: sum}}))
	if !strings.HasPrefix(got, "# This file is maintained by \"dynworkers plugins lock\"") {
		t.Errorf("no header:\n%s", got)
	}
	hexSum := strings.Repeat("ab", 32)
	want := "\nplugin \"echo\" {\n  sha256 = \"" + hexSum + "\"\n}\n\nplugin \"we\\\"ird $${x}\" {\n  sha256 = \"" + hexSum + "\"\n}\n\nplugin \"zeta\" {\n  sha256 = \"" + hexSum + "\"\n}\n"
	if !strings.HasSuffix(got, want) {
		t.Errorf("lock file:\n%s\nwant it to end with:\n%s", got, want)
	}
	l, err := parseLock("x.hcl", []byte(got))
	if err != nil {
		t.Fatal(err)
	}
	names := []string{}
	for _, e := range l.Entries() {
		names = append(names, e.Name)
	}
	if strings.Join(names, ",") != `echo,we"ird ${x},zeta` {
		t.Errorf("read back %q", names)
	}
}
