package cli

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/testplugins"
	"github.com/dynworkers/dynworkers/sdk/sdktest"
)

const waitTimeout = 60 * time.Second

var chaosBin string

// TestMain doubles as the dynworkers command: run with DYNWORKERS_CLI_MAIN=1
// the test binary is the host, so the tests exercise the real process
// (signals, exit status, children) without building another binary.
func TestMain(m *testing.M) {
	if os.Getenv("DYNWORKERS_CLI_MAIN") == "1" {
		os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr))
	}
	dir, err := testplugins.BuildDir("chaos")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	chaosBin = filepath.Join(dir, "chaos")
	code := m.Run()
	testplugins.Cleanup()
	os.Exit(code)
}

// writeConfig writes a host config using a plugin dir with the chaos plugin.
func writeConfig(t *testing.T, body string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "plugins"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(chaosBin, filepath.Join(dir, "plugins", "chaos")); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "host.hcl")
	src := "system_id = \"test\"\nhost {\n  name = \"cli-test\"\n  plugin_dir = \"plugins\"\n  state_dir = \"var\"\n  http_addr = \"127.0.0.1:0\"\n}\n" + body
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// hostProc is a `dynworkers serve` process (the re-executed test binary).
type hostProc struct {
	t    *testing.T
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited and its log is read
	grew chan struct{} // signalled when a line is added to log
	rc   int

	mu  sync.Mutex
	log bytes.Buffer
}

func startServe(t *testing.T, args ...string) *hostProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"serve"}, args...)...)
	// A $TMPDIR of its own, removed after the host: a host killed at the
	// end of a test leaves its socket directory behind (the next host to
	// start would sweep it). Short: unix socket paths are at most 107 bytes.
	tmp, err := os.MkdirTemp("", "dwc")
	if err != nil {
		t.Fatal(err)
	}
	cmd.Env = append(os.Environ(), "DYNWORKERS_CLI_MAIN=1", "TMPDIR="+tmp)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		os.RemoveAll(tmp)
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(tmp)
		t.Fatal(err)
	}
	h := &hostProc{t: t, cmd: cmd, done: make(chan struct{}), grew: make(chan struct{}, 1)}
	go func() {
		defer close(h.done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			h.mu.Lock()
			h.log.WriteString(sc.Text() + "\n")
			h.mu.Unlock()
			select {
			case h.grew <- struct{}{}:
			default:
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		err := cmd.Wait()
		h.rc = cmd.ProcessState.ExitCode()
		if err != nil && h.rc == 0 {
			h.rc = -1
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-h.done
		if t.Failed() {
			t.Logf("host log:\n%s", h.logText())
		}
		os.RemoveAll(tmp)
	})
	return h
}

func (h *hostProc) logText() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.log.String()
}

// waitLine waits for a log line containing s.
func (h *hostProc) waitLine(s string) string {
	h.t.Helper()
	deadline := time.After(waitTimeout)
	exited := false
	for {
		for _, l := range strings.Split(h.logText(), "\n") {
			if strings.Contains(l, s) {
				return l
			}
		}
		if exited {
			h.t.Fatalf("host exited (status %d) before logging %q", h.rc, s)
		}
		select {
		case <-h.grew:
		case <-h.done:
			exited = true // the log is complete: one last look
		case <-deadline:
			h.t.Fatalf("no log line with %q within %s", s, waitTimeout)
		}
	}
}

// lazy is an argument of sdktest.Eventually's message that is computed
// when the message is: only if the wait fails, with the state at the end.
type lazy func() any

func (f lazy) String() string { return fmt.Sprint(f()) }

// wait waits for the host to exit and returns its exit status.
func (h *hostProc) wait() int {
	h.t.Helper()
	select {
	case <-h.done:
		return h.rc
	case <-time.After(waitTimeout):
		h.t.Fatalf("host did not exit within %s", waitTimeout)
	}
	return -1
}

const threeWorkers = `
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

// kill -9 of the host leaves no plugin process alive, checked in /proc
// within 2 s.
func TestKill9OfHostLeavesNoPluginProcess(t *testing.T) {
	h := startServe(t, "-config", writeConfig(t, threeWorkers))
	h.waitLine("host running")
	kids := testplugins.Children(h.cmd.Process.Pid)
	if len(kids) != 3 {
		t.Fatalf("host has %d child processes %v, want 3 plugin processes", len(kids), kids)
	}
	if err := h.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	h.wait()
	// The kernel kills them (Pdeathsig); /proc is all there is to watch.
	for _, pid := range kids {
		sdktest.Eventually(t, time.Until(killed.Add(2*time.Second)), func() bool { return !testplugins.Alive(pid) },
			"plugin process %d still alive 2s after the host was killed", pid)
	}
}

// SIGTERM stops the workers in reverse order and exits 0.
func TestSIGTERMStopsWorkersInReverseOrder(t *testing.T) {
	h := startServe(t, "-config", writeConfig(t, threeWorkers))
	h.waitLine("host running")
	kids := testplugins.Children(h.cmd.Process.Pid)
	if err := h.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if rc := h.wait(); rc != 0 {
		t.Fatalf("exit status %d, want 0", rc)
	}
	log := h.logText()
	var order []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "worker_stopping:") {
			i := strings.Index(l, "worker=")
			order = append(order, strings.Fields(l[i+len("worker="):])[0])
		}
	}
	if strings.Join(order, ",") != "c,b,a" {
		t.Errorf("stop order %v, want c,b,a", order)
	}
	for _, pid := range kids {
		if testplugins.Alive(pid) {
			t.Errorf("plugin process %d alive after a clean exit", pid)
		}
	}
}

// A second signal exits at once, even while a worker ignores Stop.
func TestSecondSignalExitsAtOnce(t *testing.T) {
	h := startServe(t, "-config", writeConfig(t, `
worker "stubborn" {
  class            = "chaos"
  shutdown_timeout = "10m"
  config {
    mode = "ignore_stop"
  }
}
`))
	h.waitLine("host running")
	kids := testplugins.Children(h.cmd.Process.Pid)
	_ = h.cmd.Process.Signal(syscall.SIGTERM)
	h.waitLine("chaos worker ignoring stop")
	sent := time.Now()
	_ = h.cmd.Process.Signal(syscall.SIGTERM)
	if rc := h.wait(); rc != 1 {
		t.Errorf("exit status %d, want 1", rc)
	}
	for _, pid := range kids {
		sdktest.Eventually(t, time.Until(sent.Add(5*time.Second)), func() bool { return !testplugins.Alive(pid) },
			"plugin process %d alive after the host exited", pid)
	}
}

func runMain(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	rc := Main(args, &out, &errb)
	return rc, out.String(), errb.String()
}

func TestValidate(t *testing.T) {
	good := writeConfig(t, threeWorkers)
	rc, out, errOut := runMain("validate", good)
	if rc != 0 || !strings.Contains(out, "ok (3 workers in 1 supervisor, 1 class available)") {
		t.Errorf("validate good: rc=%d out=%q err=%q", rc, out, errOut)
	}
	// validate made the state directory (for the describe cache): it
	// holds secrets, so it is private from the start.
	if fi, err := os.Stat(filepath.Join(filepath.Dir(good), "var")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("state directory made by validate: %v, %v; want mode 0700", fi, err)
	}
	bad := writeConfig(t, `
worker "a" {
  class = "chaos"
  config {
    mood = "run"
  }
}
worker "a" {
  class            = "nope"
  shutdown_timeout = "5 seconds"
}
`)
	rc, _, errOut = runMain("validate", bad)
	if rc != 1 {
		t.Errorf("validate bad: rc=%d, want 1", rc)
	}
	for _, want := range []string{"host.hcl:12:5", `Did you mean "mode"?`, "Duplicate worker name", `unknown class "nope"`, "host.hcl:17:22: error: Invalid duration"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("validate output lacks %q:\n%s", want, errOut)
		}
	}
}

func TestClassesListsBrokenFiles(t *testing.T) {
	cfg := writeConfig(t, "")
	plugins := filepath.Join(filepath.Dir(cfg), "plugins")
	if err := os.WriteFile(filepath.Join(plugins, "script.sh"), []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	rc, out, errOut := runMain("classes", "-plugin-dir", plugins)
	if rc != 0 {
		t.Fatalf("rc=%d err=%s", rc, errOut)
	}
	for _, want := range []string{"chaos 1.0.0", "mode", `default "run"`, "broken:", "script.sh"} {
		if !strings.Contains(out, want) {
			t.Errorf("classes output lacks %q:\n%s", want, out)
		}
	}
}

func TestVersionAndUsage(t *testing.T) {
	if rc, out, _ := runMain("version"); rc != 0 || !strings.Contains(out, "plugin protocol 1") {
		t.Errorf("version: rc=%d out=%q", rc, out)
	}
	if rc, _, errOut := runMain("frobnicate"); rc != 2 || !strings.Contains(errOut, `unknown command "frobnicate"`) {
		t.Errorf("unknown command: rc=%d err=%q", rc, errOut)
	}
}

func replaceInFile(t *testing.T, path, old, new string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(b), old, new, 1)
	if s == string(b) {
		t.Fatalf("%s does not contain %q", path, old)
	}
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// The start-up log says each thing once: one "HTTP API listening" line
// (the HTTP server and the daemon each logged one).
func TestStartupLogsTheHTTPAPIOnce(t *testing.T) {
	h := startServe(t, "-config", writeConfig(t, threeWorkers))
	h.waitLine("host running")
	if err := h.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if rc := h.wait(); rc != 0 {
		t.Fatalf("exit status %d, want 0", rc)
	}
	n := 0
	for _, l := range strings.Split(h.logText(), "\n") {
		if strings.Contains(strings.ToLower(l), "api listening") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d lines say the HTTP API listens, want 1:\n%s", n, h.logText())
	}
}

// A host that cannot start (its http_addr is taken) says so, exits 1, and
// does not call it an unclean shutdown.
func TestStartupFailureIsLoggedAsSuch(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := writeConfig(t, threeWorkers)
	src, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	src = bytes.Replace(src, []byte(`"127.0.0.1:0"`), []byte(strconv.Quote(ln.Addr().String())), 1)
	if err := os.WriteFile(cfg, src, 0o644); err != nil {
		t.Fatal(err)
	}
	h := startServe(t, "-config", cfg)
	if rc := h.wait(); rc != 1 {
		t.Fatalf("exit status %d, want 1", rc)
	}
	line := h.waitLine("host failed to start")
	if !strings.Contains(line, "address already in use") || !strings.Contains(line, ln.Addr().String()) {
		t.Errorf("start-up failure line %q does not name the address and the cause", line)
	}
	if log := h.logText(); strings.Contains(log, "shutdown was not clean") {
		t.Errorf("a start-up failure is logged as an unclean shutdown:\n%s", log)
	}
}
