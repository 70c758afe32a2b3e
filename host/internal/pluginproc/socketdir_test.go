package pluginproc

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Socket directories of a host that died are removed, per-host ones and
// the per-process ones of earlier versions; those of running hosts (this
// one, pid 1) and what is not a socket directory are not.
func TestCleanStaleSocketDirs(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	mk := func(name string) string {
		dir := filepath.Join(os.TempDir(), name)
		if err := os.MkdirAll(filepath.Join(dir, "plugin-dir123"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "plugin-dir123", "plugin123"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	deadPid := dead.Process.Pid
	stale := []string{
		mk(fmt.Sprintf("%s%d-123", socketDirPrefix, deadPid)),
		mk(fmt.Sprintf("%s%d-test", legacySocketDirPrefix, deadPid)),
	}
	kept := []string{
		mk(fmt.Sprintf("%s%d-123", socketDirPrefix, os.Getpid())),
		mk(fmt.Sprintf("%s%d-123", socketDirPrefix, 1)),
		mk(fmt.Sprintf("%s%d-test", legacySocketDirPrefix, 1)),
		mk("dynworkers-testplugins-123"),
		mk(fmt.Sprintf("%s%d", socketDirPrefix, deadPid)), // no "-" after the pid
	}
	if n := CleanStaleSocketDirs(); n != len(stale) {
		t.Errorf("removed %d directories, want %d", n, len(stale))
	}
	for _, d := range stale {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("%s of a dead host still exists", d)
		}
	}
	for _, d := range kept {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("%s was removed", d)
		}
	}
}

// The host's socket directory is made by the first user, 0700, shared by
// the next ones, and removed by the last one to leave; a new user then
// gets a new one.
func TestHostSocketDirLifetime(t *testing.T) {
	t.Setenv("TMPDIR", shortTempDir(t))
	var s socketDirs
	a, err := s.acquire()
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("%s%d-", socketDirPrefix, os.Getpid()); !strings.HasPrefix(filepath.Base(a), want) || filepath.Dir(a) != os.TempDir() {
		t.Errorf("directory %s, want %s* in %s", a, want, os.TempDir())
	}
	fi, err := os.Stat(a)
	if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Fatalf("directory %s: %v %v, want a directory of mode 0700", a, fi, err)
	}
	b, err := s.acquire()
	if err != nil || b != a {
		t.Fatalf("second user got %q, %v; want %s", b, err, a)
	}
	if err := os.WriteFile(filepath.Join(a, "plugin1"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s.release(nil)
	if _, err := os.Stat(a); err != nil {
		t.Errorf("directory removed while a user is left: %v", err)
	}
	s.release(nil)
	if _, err := os.Stat(a); !os.IsNotExist(err) {
		t.Errorf("directory %s after the last user left: %v, want it removed", a, err)
	}
	c, err := s.acquire()
	if err != nil {
		t.Fatal(err)
	}
	defer s.release(nil)
	if c == a {
		t.Errorf("a new user got the removed directory %s again", a)
	}
	if _, err := os.Stat(c); err != nil {
		t.Error(err)
	}
}

// A $TMPDIR too long for the sockets below it is refused with an error
// that says what to do, and leaves nothing.
func TestHostSocketDirTooLong(t *testing.T) {
	base := t.TempDir()
	long := filepath.Join(base, strings.Repeat("d", 60))
	if err := os.Mkdir(long, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TMPDIR", long)
	var s socketDirs
	dir, err := s.acquire()
	if err == nil {
		s.release(nil)
		t.Fatalf("acquire in %s = %s, want an error", long, dir)
	}
	for _, want := range []string{long, "too long", "set TMPDIR to a shorter directory"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if ents, _ := os.ReadDir(long); len(ents) != 0 {
		t.Errorf("%s holds %v after the error", long, ents)
	}
}

// shortTempDir is a t.TempDir with a path short enough for the host's
// socket directory, whatever the pid's length (pid_max is 4194304 on
// many systems): beside TestMain's $TMPDIR, as t.TempDir's hold the
// test's name and one below TestMain's is too long once pids have seven
// digits.
func shortTempDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp(filepath.Dir(os.TempDir()), "sd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}
