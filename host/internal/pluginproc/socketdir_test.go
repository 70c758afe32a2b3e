package pluginproc

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Socket directories of a host that died are removed; those of running
// hosts (this one, pid 1) are not.
func TestCleanStaleSocketDirs(t *testing.T) {
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	mk := func(pid int) string {
		dir := filepath.Join(os.TempDir(), fmt.Sprintf("%s%d-test%d", socketDirPrefix, pid, pid))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "plugin123"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		return dir
	}
	stale := mk(dead.Process.Pid)
	mine := mk(os.Getpid())
	other := mk(1)
	if n := CleanStaleSocketDirs(); n != 1 {
		t.Errorf("removed %d directories, want 1", n)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("%s of a dead host still exists", stale)
	}
	for _, d := range []string{mine, other} {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("%s of a running host was removed", d)
		}
	}
}
