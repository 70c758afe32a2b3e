package cli

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/api"
)

// logsProc is a `dynworkers logs` process (the re-executed test binary).
type logsProc struct {
	t    *testing.T
	cmd  *exec.Cmd
	out  syncBuffer
	errb syncBuffer
	grew chan struct{}
	done chan struct{}
	rc   int
}

func startLogs(t *testing.T, args ...string) *logsProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"logs"}, args...)...)
	cmd.Env = append(os.Environ(), "DYNWORKERS_CLI_MAIN=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &logsProc{t: t, cmd: cmd, grew: make(chan struct{}, 1), done: make(chan struct{})}
	cmd.Stderr = &p.errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.out.Write([]byte(sc.Text() + "\n"))
			select {
			case p.grew <- struct{}{}:
			default:
			}
		}
		_ = cmd.Wait()
		p.rc = cmd.ProcessState.ExitCode()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("logs %q stdout:\n%s\nstderr:\n%s", args, p.out.String(), p.errb.String())
		}
	})
	return p
}

// waitLine waits until the output has a line matching re, and returns its
// submatches.
func (p *logsProc) waitLine(re string) []string {
	p.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.After(waitTimeout)
	for {
		if m := rx.FindStringSubmatch(p.out.String()); m != nil {
			return m
		}
		select {
		case <-p.grew:
		case <-p.done:
			if m := rx.FindStringSubmatch(p.out.String()); m != nil {
				return m
			}
			p.t.Fatalf("logs exited (status %d) before printing a line matching %q", p.rc, re)
		case <-deadline:
			p.t.Fatalf("no line matching %q within %s", re, waitTimeout)
		}
	}
}

// wait waits for the process to exit and returns its status.
func (p *logsProc) wait() int {
	p.t.Helper()
	select {
	case <-p.done:
		return p.rc
	case <-time.After(waitTimeout):
		p.t.Fatalf("logs did not exit within %s", waitTimeout)
	}
	return -1
}

// workerPid asks the host for a running worker's pid, other than not.
func workerPid(t *testing.T, url, name string, not int) int {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		stdout, _, rc := runCLI(t, "status", "-json", "-http", url)
		var st api.Status
		if rc == 0 && json.Unmarshal([]byte(stdout), &st) == nil {
			for _, w := range st.Workers {
				if w.Name == name && w.State == "running" && w.Pid > 0 && w.Pid != not {
					return w.Pid
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker %q is not running (with a pid other than %d) within %s:\n%s", name, not, waitTimeout, stdout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

const logsE2EConfig = `
worker "greeter" {
  class = "chaos"
}
worker "boom" {
  class   = "chaos"
  restart = "temporary"
  config {
    mode    = "panic"
    delay   = "300ms"
    message = "e2e panic for the logs test"
  }
}
`

// The must-hold of per-worker logs, with the real CLI against a real host
// and real plugin processes: `logs -f greeter` shows its lines live; a
// kill -9 of the worker's process: the follow goes on with the exit and
// restart markers and the new instance's lines; a panic's lines are in
// `logs`; the follow ends with exit 0 on SIGINT, and with exit 3 (said on
// stderr) when the host is killed.
func TestLogsFollowE2E(t *testing.T) {
	h := startServe(t, "-config", writeConfig(t, logsE2EConfig))
	m := regexp.MustCompile(`(?i)http api listening: addr=(\S+)`).FindStringSubmatch(h.waitLine("HTTP API listening"))
	if m == nil {
		t.Fatal("the listening line has no addr")
	}
	url := "http://" + m[1]
	h.waitLine("host running")
	pid := workerPid(t, url, "greeter", 0)

	f := startLogs(t, "-f", "-http", url, "greeter")
	f.waitLine(fmt.Sprintf(`(?m)^\S+Z --- started, pid %d ---$`, pid))
	f.waitLine(fmt.Sprintf(`(?m)^\S+Z INFO  chaos worker starting .*pid=%d`, pid))

	// kill -9 of the worker: the follow goes on, across the restart.
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	f.waitLine(`(?m)^\S+Z --- exited: .*SIGKILL.* ---$`)
	newPid := workerPid(t, url, "greeter", pid)
	f.waitLine(fmt.Sprintf(`(?m)^\S+Z --- restarted, pid %d ---$`, newPid))
	f.waitLine(fmt.Sprintf(`(?m)^\S+Z INFO  chaos worker starting .*pid=%d`, newPid))
	out := f.out.String()
	if i, j := strings.Index(out, fmt.Sprintf("started, pid %d", pid)), strings.Index(out, fmt.Sprintf("restarted, pid %d", newPid)); i < 0 || j < i {
		t.Errorf("the lines are not in order:\n%s", out)
	}

	// The panic's lines, stack included, are in the log of the worker
	// that panicked (and is not restarted: temporary).
	deadline := time.Now().Add(waitTimeout)
	var stdout, stderr string
	for {
		var rc int
		stdout, stderr, rc = runCLI(t, "logs", "-n", "1000", "-http", url, "boom")
		if rc == 0 && strings.Contains(stdout, "--- exited") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("boom's log has no exit marker within %s (rc %d):\n%s\n%s", waitTimeout, rc, stdout, stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, want := range []string{"panic: chaos: e2e panic for the logs test", "goroutine ", "testplugins/chaos/main.go"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("boom's log lacks %q:\n%s", want, stdout)
		}
	}
	// -json prints the same lines as api.LogLine objects.
	stdout, _, _ = runCLI(t, "logs", "-json", "-n", "1000", "-http", url, "boom")
	var marker api.LogLine
	for _, l := range strings.Split(strings.TrimSpace(stdout), "\n") {
		var ll api.LogLine
		if err := json.Unmarshal([]byte(l), &ll); err != nil {
			t.Fatalf("-json line %q: %v", l, err)
		}
		if ll.Marker == "exit" {
			marker = ll
		}
	}
	if marker.Seq == 0 || marker.PID == 0 {
		t.Errorf("-json has no exit marker with its pid:\n%s", stdout)
	}

	// A second follower ends with exit 0 on SIGINT.
	g := startLogs(t, "-f", "-n", "1", "-http", url, "greeter")
	g.waitLine(`(?m)^\S+Z `)
	if err := g.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if rc := g.wait(); rc != 0 {
		t.Errorf("logs -f exited %d on SIGINT, want 0", rc)
	}

	// kill -9 of the host: the follow says the stream broke and exits 3.
	if err := h.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	h.wait()
	if rc := f.wait(); rc != 3 {
		t.Errorf("logs -f exited %d when the host died, want 3", rc)
	}
	if e := f.errb.String(); !strings.Contains(e, "the stream broke") && !strings.Contains(e, "closed the stream") {
		t.Errorf("logs -f did not say why it stopped:\n%s", e)
	}
}
