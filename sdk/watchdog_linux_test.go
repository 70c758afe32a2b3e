package sdk

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dynworkers/dynworkers/internal/wire"
)

// envWatchdogRole makes the test binary play a part in
// TestWatchdogExitsWithTheHost: "host" starts a "plugin" and prints its
// pid; "plugin" starts the watchdog, prints "watching" and waits for ever.
const envWatchdogRole = "DYNWORKERS_SDK_TEST_WATCHDOG"

func init() {
	switch os.Getenv(envWatchdogRole) {
	case "host":
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), envWatchdogRole+"=plugin", fmt.Sprintf("%s=%d", wire.EnvParentPID, os.Getpid()))
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println(cmd.Process.Pid)
		select {}
	case "plugin":
		startWatchdog(slog.New(slog.NewTextHandler(io.Discard, nil)))
		fmt.Println("watching")
		select {}
	}
}

// TestWatchdogExitsWithTheHost kills a host (SIGKILL: nothing of it runs
// after) whose plugin has no Pdeathsig, and sees the plugin exit through its
// watchdog: with a pidfd at once, by polling within half a second.
func TestWatchdogExitsWithTheHost(t *testing.T) {
	host := exec.Command(os.Args[0], "-test.run=^$")
	host.Env = append(os.Environ(), envWatchdogRole+"=host")
	host.Stderr = os.Stderr
	out, err := host.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := host.Start(); err != nil {
		t.Fatal(err)
	}
	defer host.Process.Kill()
	r := bufio.NewReader(out)
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("fake host: %v (%q)", err, line)
	}
	if w, err := r.ReadString('\n'); w != "watching\n" {
		t.Fatalf("plugin: %v (%q)", err, w)
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
	_ = host.Wait()
	n, err := unix.Poll([]unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}, int((30 * time.Second).Milliseconds()))
	if err != nil || n != 1 {
		unix.Kill(pid, unix.SIGKILL)
		t.Fatalf("the plugin (pid %d) still runs 30 s after its host was killed (poll: %d, %v)", pid, n, err)
	}
}
