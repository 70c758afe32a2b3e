package daemon

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A SIGKILLed host leaves its socket directory in $TMPDIR (its plugins die
// with it: Pdeathsig); the next host to start with the same $TMPDIR removes
// it, so that $TMPDIR then holds the new host's directory only, and nothing
// at all once that host has stopped cleanly.
func TestSIGKILLedHostLeavesNothingInTMPDIR(t *testing.T) {
	bin := buildDynworkers(t)
	// A private $TMPDIR, short: unix socket paths are at most 107 bytes.
	tmp, err := os.MkdirTemp("", "dwk")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })

	dir := t.TempDir()
	plugins := filepath.Join(dir, "plugins")
	linkPlugin(t, plugins, "chaos")
	pluginPath := filepath.Join(plugins, "chaos")
	cfg := filepath.Join(dir, "host.hcl")
	src := `host {
  name = "tmpdir"
  plugin_dir = "plugins"
  state_dir = "var"
  http_addr = "127.0.0.1:0"
}
worker "a" {
  class = "chaos"
}
worker "b" {
  class = "chaos"
}
worker "c" {
  class = "chaos"
}
`
	if err := os.WriteFile(cfg, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	start := func() *process {
		return startProcessEnv(t, []string{"TMPDIR=" + tmp}, bin, "serve", "-config", cfg, "-log-json")
	}

	first := start()
	first.waitLog("host running")
	hostDir := onlyHostDir(t, tmp, first.cmd.Process.Pid)
	// Every worker's sockets (the plugin's and the host's broker socket)
	// are in it, a directory per process.
	socks := socketsUnder(t, hostDir)
	if len(socks) < 6 {
		t.Fatalf("%d sockets under %s, want at least 2 for each of 3 workers: %v", len(socks), hostDir, socks)
	}
	plugs := pidsRunning(t, pluginPath)
	if len(plugs) < 3 {
		t.Fatalf("%d plugin processes of %s, want at least 3", len(plugs), pluginPath)
	}

	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-first.done
	// The plugins die with the host (Pdeathsig).
	deadline := time.Now().Add(waitTimeout)
	for len(pidsRunning(t, pluginPath)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("plugin processes %v still run %s after their host was SIGKILLed", pidsRunning(t, pluginPath), waitTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// What the dead host left: its directory, with sockets in it.
	if _, err := os.Stat(hostDir); err != nil {
		t.Fatalf("the SIGKILLed host's socket directory: %v; the test expects it left behind", err)
	}

	second := start()
	line := second.waitLog("removed plugin socket directories left by hosts that died")
	if n, _ := line["count"].(float64); n != 1 {
		t.Errorf("removed %v directories, want 1", line["count"])
	}
	second.waitLog("host running")
	if _, err := os.Stat(hostDir); !os.IsNotExist(err) {
		t.Errorf("the dead host's socket directory %s: %v, want it removed", hostDir, err)
	}
	onlyHostDir(t, tmp, second.cmd.Process.Pid)

	if err := second.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-second.done:
	case <-time.After(waitTimeout):
		t.Fatalf("the host did not exit within %s of SIGTERM", waitTimeout)
	}
	if second.rc != 0 {
		t.Fatalf("exit status %d after SIGTERM, want 0", second.rc)
	}
	if left := entries(t, tmp); len(left) != 0 {
		t.Errorf("$TMPDIR holds %v after a clean stop, want nothing", left)
	}
}

// onlyHostDir checks that tmp holds one entry, the socket directory of the
// host with pid, and returns its path.
func onlyHostDir(t *testing.T, tmp string, pid int) string {
	t.Helper()
	left := entries(t, tmp)
	prefix := fmt.Sprintf("dynworkers-%d-", pid)
	if len(left) != 1 || !strings.HasPrefix(left[0], prefix) {
		t.Fatalf("$TMPDIR holds %v, want only %s*", left, prefix)
	}
	d := filepath.Join(tmp, left[0])
	if fi, err := os.Stat(d); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Fatalf("%s: %v %v, want a directory of mode 0700", d, fi, err)
	}
	return d
}

func entries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// socketsUnder lists the unix sockets under dir.
func socketsUnder(t *testing.T, dir string) []string {
	t.Helper()
	var socks []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&os.ModeSocket != 0 {
			socks = append(socks, strings.TrimPrefix(path, dir+"/"))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return socks
}

// pidsRunning lists the processes started from the binary at path (their
// argv[0]) that are not zombies.
func pidsRunning(t *testing.T, path string) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []string
	for _, e := range ents {
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(cmdline) == 0 {
			continue // not a process, gone, or a zombie
		}
		if argv0, _, _ := bytes.Cut(cmdline, []byte{0}); string(argv0) == path {
			pids = append(pids, e.Name())
		}
	}
	slices.Sort(pids)
	return pids
}
