package pluginproc

import (
	"bufio"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// envFakeHost makes the test binary act as a host that starts the chaos
// plugin named by the variable, prints its pid and waits to be killed.
const envFakeHost = "PLUGINPROC_FAKE_HOST_PLUGIN"

func fakeHost() {
	path := os.Getenv(envFakeHost)
	b, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sum := sha256.Sum256(b)
	p, err := Start(context.Background(), Options{Path: path, Checksum: sum[:], WorkerName: "orphan", Class: "chaos"})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(p.Pid())
	select {}
}

// waitPidfd waits up to d for the process behind pidfd to terminate.
func waitPidfd(t *testing.T, pidfd int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(time.Until(deadline).Milliseconds()))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			t.Fatalf("process did not end within %s", d)
		}
		return
	}
}

func TestPluginDiesWithHost(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	host := exec.Command(exe)
	// The plugin dies with the fake host, which cannot remove its socket
	// directory: keep that out of the directory TestMain checks.
	tmp := shortTempDir(t)
	host.Env = append(os.Environ(), envFakeHost+"="+chaosPath(), "TMPDIR="+tmp)
	host.Stderr = os.Stderr
	out, err := host.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := host.Start(); err != nil {
		t.Fatal(err)
	}
	defer host.Process.Kill()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		host.Process.Kill()
		t.Fatalf("fake host: %v (%q)", err, line)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("fake host printed %q", line)
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Fatalf("plugin %d: %v", pid, err)
	}
	defer unix.Close(pidfd)
	if err := host.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	host.Wait()
	waitPidfd(t, pidfd, 10*time.Second)
}

func TestOrphanedChildIsKilled(t *testing.T) {
	pids := launchLog(t)
	p := start(t, chaosOptions(t, map[string]any{"mode": "orphan", "delay": "300ms"}))
	if p.watch == nil {
		t.Fatal("no pidfd exit watch on Linux")
	}
	// Without the process-group kill at exit, go-plugin would wait for the
	// child to close stderr forever and Done would never close.
	waitDone(t, p, 10*time.Second)
	if ee := exitError(t, p); ee.Code != 1 {
		t.Errorf("ExitError = %v, want exit status 1", ee)
	}
	if n := len(pids()); n != 2 {
		t.Errorf("launch log has %d pids, want the plugin and its child", n)
	}
	for _, pid := range pids() {
		if pid == p.Pid() {
			continue
		}
		// The child is not ours to reap: its parent died, so init reaps
		// it. Wait for it to terminate through a pidfd.
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			continue // already gone
		}
		waitPidfd(t, fd, 10*time.Second)
		unix.Close(fd)
	}
}
