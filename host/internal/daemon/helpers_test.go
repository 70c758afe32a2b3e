package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/dynworkers/dynworkers/host/internal/pluginproc"
	"github.com/dynworkers/dynworkers/host/internal/state"
	"github.com/dynworkers/dynworkers/host/internal/supervise"
	"github.com/dynworkers/dynworkers/host/internal/testplugins"
	"github.com/dynworkers/dynworkers/sdk/sdktest"
)

// waitTimeout bounds every wait on an event; generous so a slow, loaded CI
// machine running -race does not flake.
const waitTimeout = 60 * time.Second

var chaosBin string

// pluginBins are the built plugin binaries by name, for linkPlugin.
var pluginBins = map[string]string{}

func TestMain(m *testing.M) {
	dir, err := testplugins.BuildDir("chaos", "smpp", "bus", "leaky", "plugins/pool", "plugins/echo", "plugins/telnet")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	chaosBin = filepath.Join(dir, "chaos")
	for _, n := range []string{"chaos", "smpp", "bus", "leaky", "pool", "echo", "telnet"} {
		pluginBins[n] = filepath.Join(dir, n)
	}
	code := m.Run()
	testplugins.Cleanup()
	os.Exit(code)
}

// harness runs a Daemon on a config in a temporary directory and records
// its events.
type harness struct {
	t      *testing.T
	d      *Daemon
	dir    string
	events chan supervise.Event
	cancel context.CancelFunc
	runErr chan error
	once   sync.Once
	logs   *logBuffer

	mu      sync.Mutex
	pids    map[int]bool     // every plugin pid seen, checked for leaks at the end
	started map[string][]int // pids of each worker's started events, in order
	seen    map[string]int   // how many of started[w] waitStarted has returned
	changed chan struct{}    // closed and replaced when started changes
}

// linkPlugin puts the chaos binary into dir under name (the smpp, pool,
// echo and telnet binaries for those names).
func linkPlugin(t *testing.T, dir, name string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src, ok := pluginBins[name]
	if !ok {
		src = chaosBin // the chaos plugin under another name
	}
	if err := os.Link(src, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

// startHost writes body (HCL without the host block) under a host block
// using dir/plugins, loads it and runs it.
func startHost(t *testing.T, body string) *harness {
	t.Helper()
	dir := t.TempDir()
	plugins := filepath.Join(dir, "plugins")
	linkPlugin(t, plugins, "chaos")
	linkPlugin(t, plugins, "smpp")
	return startHostIn(t, dir, body)
}

func startHostIn(t *testing.T, dir, body string) *harness {
	t.Helper()
	src := fmt.Sprintf("system_id = \"test\"\nhost {\n  name = \"test-host\"\n  plugin_dir = \"plugins\"\n  state_dir = \"var\"\n  http_addr = \"127.0.0.1:0\"\n}\n%s\n", body)
	return startConfig(t, dir, src)
}

// startAMQPHost runs a host with an amqp block on the test broker.
func startAMQPHost(t *testing.T, dir, systemID, hostName, amqpURL, body string) *harness {
	t.Helper()
	src := fmt.Sprintf("system_id = %q\nhost {\n  name = %q\n  plugin_dir = \"plugins\"\n  state_dir = \"var\"\n  http_addr = \"127.0.0.1:0\"\n  log_level = \"debug\"\n}\namqp {\n  url = %q\n}\n%s\n",
		systemID, hostName, amqpURL, body)
	return startConfig(t, dir, src)
}

// startConfig writes src as dir/host.hcl, loads it and runs the host.
func startConfig(t *testing.T, dir, src string) *harness {
	t.Helper()
	return startConfigOpts(t, dir, src, nil)
}

// startConfigOpts is startConfig with the Options changed by opts (if
// not nil) before Load.
func startConfigOpts(t *testing.T, dir, src string, opts func(*Options)) *harness {
	t.Helper()
	return startConfigHook(t, dir, src, opts, nil)
}

// startConfigHook is startConfigOpts with beforeRun (if not nil) called
// on the loaded Daemon before Run.
func startConfigHook(t *testing.T, dir, src string, opts func(*Options), beforeRun func(*Daemon)) *harness {
	t.Helper()
	var h *harness
	cfgPath := filepath.Join(dir, "host.hcl")
	if err := os.WriteFile(cfgPath, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	h = &harness{t: t, dir: dir, events: make(chan supervise.Event, 10000), runErr: make(chan error, 1), pids: map[int]bool{},
		started: map[string][]int{}, seen: map[string]int{}, changed: make(chan struct{})}
	logs := &logBuffer{}
	h.logs = logs
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("host log:\n%s", logs.String())
		}
	})
	logger := hclog.New(&hclog.LoggerOptions{Name: "test", Level: hclog.Debug, Output: logs})
	o := Options{
		ConfigPath:          cfgPath,
		Logger:              logger,
		PluginWatchInterval: 50 * time.Millisecond,
		EventHook: func(ev supervise.Event) {
			if e, ok := ev.(supervise.ChildStarted); ok {
				if p := ProcessOf(e.Instance); p != nil {
					h.mu.Lock()
					h.pids[p.Pid()] = true
					h.started[e.Child] = append(h.started[e.Child], p.Pid())
					close(h.changed)
					h.changed = make(chan struct{})
					h.mu.Unlock()
				}
			}
			select {
			case h.events <- ev:
			default:
				t.Errorf("event channel full; dropped %s", ev)
			}
		},
	}
	if opts != nil {
		opts(&o)
	}
	d, err := Load(context.Background(), o)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	h.d = d
	if beforeRun != nil {
		beforeRun(d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.runErr <- d.Run(ctx) }()
	t.Cleanup(h.stop)
	return h
}

// stop stops the host and checks that no plugin process it started is left.
// It may be called more than once.
func (h *harness) stop() { h.once.Do(h.doStop) }

func (h *harness) doStop() {
	h.cancel()
	select {
	case err := <-h.runErr:
		if err != nil {
			h.t.Errorf("Run: %v", err)
		}
	case <-time.After(waitTimeout):
		h.t.Errorf("Run did not return within %s of cancel", waitTimeout)
	}
	h.mu.Lock()
	pids := slices.Collect(maps.Keys(h.pids))
	h.mu.Unlock()
	waitGone(h.t, 5*time.Second, pids...)
}

// waitEvent returns the first event (after those already consumed) that
// matches pred, failing the test after waitTimeout.
func (h *harness) waitEvent(what string, pred func(supervise.Event) bool) supervise.Event {
	h.t.Helper()
	deadline := time.After(waitTimeout)
	for {
		select {
		case ev := <-h.events:
			if pred(ev) {
				return ev
			}
		case <-deadline:
			h.t.Fatalf("no %s within %s; workers: %+v", what, waitTimeout, h.d.Workers())
		}
	}
}

// waitStarted returns the pid of the worker's next start (the first call
// returns its first start, the next call its second, and so on), whatever
// order the workers start in.
func (h *harness) waitStarted(worker string) int {
	h.t.Helper()
	deadline := time.After(waitTimeout)
	for {
		h.mu.Lock()
		pids, n, changed := h.started[worker], h.seen[worker], h.changed
		if len(pids) > n {
			h.seen[worker] = n + 1
			h.mu.Unlock()
			return pids[n]
		}
		h.mu.Unlock()
		select {
		case <-changed:
		case <-deadline:
			h.t.Fatalf("%s did not start (again) within %s; workers: %+v", worker, waitTimeout, h.d.Workers())
		}
	}
}

func (h *harness) pid(worker string) int {
	h.t.Helper()
	ws, ok := h.d.Worker(worker)
	if !ok {
		h.t.Fatalf("no worker %q", worker)
	}
	return ws.Pid
}

// waitGone waits until none of pids is alive, failing the test if one
// still is after d. Those left are killed, so that they do not outlive the
// test.
func waitGone(t *testing.T, d time.Duration, pids ...int) {
	t.Helper()
	alive := func() []int {
		var out []int
		for _, pid := range pids {
			if testplugins.Alive(pid) {
				out = append(out, pid)
			}
		}
		return out
	}
	defer func() {
		for _, pid := range alive() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}()
	// The host reaps its plugin processes without telling anyone: /proc is
	// all there is to watch.
	sdktest.Eventually(t, d, func() bool { return len(alive()) == 0 },
		"plugin processes still alive %s later: %v", d, lazy(func() any { return alive() }))
}

// lazy is an argument of sdktest.Eventually's message that is computed
// when the message is: only if the wait fails, with the state at the end.
type lazy func() any

func (f lazy) String() string { return fmt.Sprint(f()) }

// logBuffer keeps the host's log; it is printed when the test fails.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func fmtSscan(s string, args ...any) (int, error) { return fmt.Sscan(s, args...) }

// processOf returns the running plugin process of a worker.
func (h *harness) processOf(worker string) *pluginproc.Process {
	h.t.Helper()
	if wi, ok := h.d.tree.Worker(worker); ok && wi.Process() != nil {
		return wi.Process()
	}
	h.t.Fatalf("worker %q has no running process", worker)
	return nil
}

// loadState reads the persisted dynamic workers (the file, as the running
// host holds the state directory's lock).
func (h *harness) loadState() *state.State {
	h.t.Helper()
	data, err := os.ReadFile(filepath.Join(h.dir, "var", state.FileName))
	if errors.Is(err, fs.ErrNotExist) {
		return &state.State{Version: state.Version, Workers: []state.Worker{}}
	}
	if err != nil {
		h.t.Fatal(err)
	}
	var s state.State
	if err := json.Unmarshal(data, &s); err != nil {
		h.t.Fatal(err)
	}
	if s.Workers == nil {
		s.Workers = []state.Worker{}
	}
	return &s
}
