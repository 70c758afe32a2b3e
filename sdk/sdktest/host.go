package sdktest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// EnvHostBinary names an environment variable: when set, it is the path
// of the dynworkers binary StartHost runs, instead of building one.
const EnvHostBinary = "DYNWORKERS_BIN"

// HostPackage is the import path of the dynworkers command.
const HostPackage = "github.com/dynworkers/dynworkers/host/cmd/dynworkers"

// goTool finds the go command: on PATH, or in the Go installation that
// built the test.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// BuildPlugin builds the main package pkg into a temporary directory of
// the test and returns the binary's path. pkg is an import path, or a path
// relative to the test's package directory (the current directory of a
// test): "." for the package under test. The binary is named after the
// package's directory.
func BuildPlugin(t testing.TB, pkg string) string {
	t.Helper()
	name := filepath.Base(pkg)
	if pkg == "." || pkg == "./" {
		wd, err := os.Getwd()
		if err != nil {
			t.Fatal(err)
		}
		name = filepath.Base(wd)
	}
	return build(t, pkg, filepath.Join(t.TempDir(), name))
}

// BuildHost builds the dynworkers command into a temporary directory of
// the test and returns its path, or returns $DYNWORKERS_BIN if it is set.
// It works from any module that requires github.com/dynworkers/dynworkers
// (by version, pseudo-version or replace): it builds the command in that
// module's own directory (`go list -m -f {{.Dir}}`), with that module's
// go.sum, so the test's module needs no go.sum entries for the host's
// dependencies.
func BuildHost(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(EnvHostBinary); p != "" {
		return p
	}
	out := filepath.Join(t.TempDir(), "dynworkers")
	dir, err := moduleDir()
	if err != nil {
		t.Fatalf("building the dynworkers host: %v", err)
	}
	cmd := exec.Command(goTool(), "build", "-o", out, "./host/cmd/dynworkers")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s (in %s): %v\n%s", HostPackage, dir, err, b)
	}
	return out
}

// modulePath is the path of the module the host is built from.
const modulePath = "github.com/dynworkers/dynworkers"

// moduleDir returns the directory of modulePath as the current module's build
// sees it: this repository, the target of a replace, or the module cache.
func moduleDir() (string, error) {
	b, err := exec.Command(goTool(), "list", "-m", "-f", "{{.Dir}}", modulePath).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, bytes.TrimSpace(ee.Stderr))
		}
		return "", fmt.Errorf("go list -m %s: %w (does the test's module require it?)", modulePath, err)
	}
	dir := strings.TrimSpace(string(b))
	if dir == "" {
		return "", fmt.Errorf("go list -m %s: the module is not downloaded (run go mod download %s)", modulePath, modulePath)
	}
	return dir, nil
}

func build(t testing.TB, pkg, out string) string {
	t.Helper()
	cmd := exec.Command(goTool(), "build", "-o", out, pkg)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// HostOptions says how StartHost runs a host.
type HostOptions struct {
	// Plugins are plugin binaries (see BuildPlugin) to put into the host's
	// plugin_dir, under their own names.
	Plugins []string
	// Config is HCL appended to the host's config: workers, supervisors,
	// and an amqp block to run on RabbitMQ instead of the embedded bus.
	// StartHost writes system_id and the host block itself.
	Config string
	// Binary is the dynworkers binary; empty: BuildHost.
	Binary string
	// SystemID is the config's system_id; "sdktest" by default.
	SystemID string
	// LogLevel is the host's log level; "debug" by default.
	LogLevel string
	// Wait lists the workers StartHost waits for until they run; nil waits
	// for every worker the status lists, an empty non-nil slice for none.
	Wait []string
	// Timeout bounds StartHost's wait for the host and its workers; one
	// minute by default.
	Timeout time.Duration
	// Env holds extra "KEY=value" entries for the host's environment.
	Env []string
}

// Host is a dynworkers host running as a child process of the test, in a
// temporary directory of its own, with its HTTP API on a free loopback
// port.
type Host struct {
	// Addr is the address of the host's HTTP API, "127.0.0.1:port".
	Addr string
	// Dir is the host's directory: its config (host.hcl), plugins/ and
	// var/.
	Dir string

	t       testing.TB
	cmd     *exec.Cmd
	exited  chan struct{}
	exitErr error
	log     *hostLog

	stopOnce sync.Once
	stopErr  error
}

// StartHost writes a config for the host with o.Config, starts `dynworkers
// serve` on it, and returns once the HTTP API answers and the workers of
// o.Wait run. The test fails if the host does not get there within
// o.Timeout; the host's log is shown then, and whenever the test fails.
// The host is stopped when the test ends.
func StartHost(t testing.TB, o HostOptions) *Host {
	t.Helper()
	if o.Binary == "" {
		o.Binary = BuildHost(t)
	}
	if o.SystemID == "" {
		o.SystemID = "sdktest"
	}
	if o.LogLevel == "" {
		o.LogLevel = "debug"
	}
	if o.Timeout <= 0 {
		o.Timeout = time.Minute
	}
	dir := t.TempDir()
	pdir := filepath.Join(dir, "plugins")
	if err := os.MkdirAll(pdir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range o.Plugins {
		if err := copyFile(p, filepath.Join(pdir, filepath.Base(p))); err != nil {
			t.Fatalf("copying plugin %s: %v", p, err)
		}
	}
	config := fmt.Sprintf(`system_id = %q
host {
  name       = "sdktest"
  plugin_dir = "plugins"
  state_dir  = "var"
  http_addr  = "127.0.0.1:0"
  log_level  = %q
}

%s
`, o.SystemID, o.LogLevel, o.Config)
	cfgPath := filepath.Join(dir, "host.hcl")
	if err := os.WriteFile(cfgPath, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	h := &Host{Dir: dir, t: t, exited: make(chan struct{}), log: newHostLog()}
	h.cmd = exec.Command(o.Binary, "serve", "-log-json", "-config", cfgPath)
	h.cmd.Dir = dir
	h.cmd.Env = append(os.Environ(), o.Env...)
	h.cmd.Stdout = h.log
	h.cmd.Stderr = h.log
	if err := h.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", o.Binary, err)
	}
	go func() {
		h.exitErr = h.cmd.Wait()
		close(h.exited)
	}()
	t.Cleanup(func() {
		if err := h.Stop(); err != nil {
			t.Errorf("stopping the host: %v", err)
		}
		if t.Failed() {
			t.Logf("host log:\n%s", h.Log())
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), o.Timeout)
	defer cancel()
	addr, err := h.log.waitAddr(ctx, h.exited)
	if err != nil {
		t.Fatalf("the host's HTTP API did not come up: %v", err)
	}
	h.Addr = addr
	if o.Wait != nil && len(o.Wait) == 0 {
		return h
	}
	if err := h.waitRunning(ctx, o.Wait); err != nil {
		t.Fatal(err)
	}
	return h
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o755)
}

// URL returns the URL of path on the host's HTTP API.
func (h *Host) URL(path string) string { return "http://" + h.Addr + path }

// Log returns what the host has logged so far (JSON lines, one per log
// line, with the workers' lines under their names).
func (h *Host) Log() string { return h.log.String() }

// WaitLog waits until the host's log has a line containing text; the test
// fails after WaitTimeout.
func (h *Host) WaitLog(text string) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), WaitTimeout)
	defer cancel()
	if !h.log.wait(ctx, func(s string) bool { return strings.Contains(s, text) }) {
		h.t.Fatalf("the host logged no line containing %q within %s", text, WaitTimeout)
	}
}

// HostStatus is the part of the host's status (GET /v1/status) that tests
// look at. Raw has all of it.
type HostStatus struct {
	SystemID string         `json:"system_id"`
	Host     string         `json:"host"`
	Broker   string         `json:"broker"`
	Workers  []WorkerStatus `json:"workers"`
	// Raw is the whole status result.
	Raw json.RawMessage `json:"-"`
}

// WorkerStatus is one worker of a HostStatus.
type WorkerStatus struct {
	Name       string `json:"name"`
	Supervisor string `json:"supervisor"`
	Class      string `json:"class"`
	State      string `json:"state"`
	Pid        int    `json:"pid"`
	Restarts   int    `json:"restarts"`
	LastExit   string `json:"last_exit"`
}

// Worker returns the status of the named worker, and whether it is listed.
func (s *HostStatus) Worker(name string) (WorkerStatus, bool) {
	for _, w := range s.Workers {
		if w.Name == name {
			return w, true
		}
	}
	return WorkerStatus{}, false
}

// Status asks the host for its status; the test fails if it cannot.
func (h *Host) Status() *HostStatus {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := h.status(ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	return st
}

func (h *Host) status(ctx context.Context) (*HostStatus, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.URL("/v1/status"), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET /v1/status: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("GET /v1/status: %w", err)
	}
	var reply struct {
		OK     bool            `json:"ok"`
		Result json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(b, &reply); err != nil || !reply.OK {
		return nil, fmt.Errorf("GET /v1/status: %s: %.500s", resp.Status, b)
	}
	st := &HostStatus{Raw: reply.Result}
	if err := json.Unmarshal(reply.Result, st); err != nil {
		return nil, fmt.Errorf("GET /v1/status: %w", err)
	}
	return st, nil
}

// WaitRunning waits until the named workers (every worker listed, if none
// is named) are in state "running"; the test fails after WaitTimeout, or
// at once if one of them failed for good.
func (h *Host) WaitRunning(names ...string) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), WaitTimeout)
	defer cancel()
	if err := h.waitRunning(ctx, names); err != nil {
		h.t.Fatal(err)
	}
}

func (h *Host) waitRunning(ctx context.Context, names []string) error {
	var last *HostStatus
	var lastErr error
	for {
		select {
		case <-h.exited:
			return fmt.Errorf("the host exited: %v", h.exitErr)
		default:
		}
		st, err := h.status(ctx)
		if err == nil {
			last, lastErr = st, nil
			want := names
			if len(want) == 0 {
				for _, w := range st.Workers {
					want = append(want, w.Name)
				}
			}
			ok := true
			for _, n := range want {
				w, listed := st.Worker(n)
				if listed && w.State == "failed" {
					return fmt.Errorf("worker %q failed: %s", n, w.LastExit)
				}
				ok = ok && listed && w.State == "running"
			}
			if ok {
				return nil
			}
		} else {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return fmt.Errorf("waiting for workers %v to run: %v", names, lastErr)
			}
			return fmt.Errorf("waiting for workers %v to run: %v; status: %+v", names, ctx.Err(), last.Workers)
		case <-time.After(50 * time.Millisecond): // polling the status API
		}
	}
}

// Stop stops the host as Ctrl-C does (SIGINT: it stops its workers, then
// exits) and waits for it; after 30 s it is killed. It returns the host's
// exit error: nil for a clean exit. Later calls return the first's result.
func (h *Host) Stop() error {
	h.stopOnce.Do(func() {
		select {
		case <-h.exited:
		default:
			_ = h.cmd.Process.Signal(syscall.SIGINT)
			select {
			case <-h.exited:
			case <-time.After(30 * time.Second):
				_ = h.cmd.Process.Kill()
				<-h.exited
				h.stopErr = fmt.Errorf("the host did not stop within 30s of SIGINT; killed it")
				return
			}
		}
		h.stopErr = h.exitErr
	})
	return h.stopErr
}

// hostLog collects the host's output and finds its HTTP address in it.
type hostLog struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func newHostLog() *hostLog { return &hostLog{changed: make(chan struct{})} }

func (l *hostLog) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(b)
	close(l.changed)
	l.changed = make(chan struct{})
	return len(b), nil
}

func (l *hostLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// wait waits until cond holds for the log, or ctx ends.
func (l *hostLog) wait(ctx context.Context, cond func(string) bool) bool {
	for {
		l.mu.Lock()
		s, changed := l.buf.String(), l.changed
		l.mu.Unlock()
		if cond(s) {
			return true
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return false
		}
	}
}

// waitAddr waits for the host's line saying its HTTP API listens and
// returns the address.
func (l *hostLog) waitAddr(ctx context.Context, exited <-chan struct{}) (string, error) {
	var addr string
	find := func(s string) bool {
		sc := bufio.NewScanner(strings.NewReader(s))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var line map[string]any
			if json.Unmarshal(sc.Bytes(), &line) != nil {
				continue
			}
			msg, _ := line["@message"].(string)
			a, _ := line["addr"].(string)
			if a != "" && strings.Contains(strings.ToLower(msg), "listening") && strings.Contains(strings.ToLower(msg), "http") {
				addr = a
				return true
			}
		}
		return false
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-exited:
			cancel()
		case <-ctx.Done():
		}
	}()
	if l.wait(ctx, find) {
		return addr, nil
	}
	select {
	case <-exited:
		return "", fmt.Errorf("the host exited")
	default:
	}
	return "", ctx.Err()
}
