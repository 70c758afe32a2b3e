package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	memoryIdle = 5 * time.Second
	// hostTimeout bounds a host's start-up and, separately, its shutdown.
	hostTimeout = 2 * time.Minute
)

// writeHostConfig writes a config with n hello workers (interval 1h: they
// stay idle) to dir/host.hcl; concurrency 0 leaves start_concurrency at its
// default.
func writeHostConfig(t *testing.T, dir, pluginDir string, n, concurrency int) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "system_id = \"bench\"\nhost {\n  name       = \"bench\"\n  plugin_dir = %q\n  state_dir  = \"var\"\n  http_addr  = \"127.0.0.1:0\"\n", pluginDir)
	if concurrency > 0 {
		fmt.Fprintf(&b, "  start_concurrency = %d\n", concurrency)
	}
	b.WriteString("}\n")
	for i := range n {
		fmt.Fprintf(&b, "worker \"hello-%03d\" {\n  class = \"hello\"\n  config {\n    interval = \"1h\"\n  }\n}\n", i+1)
	}
	path := filepath.Join(dir, "host.hcl")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// hostProc is one `dynworkers serve -log-json` process. A goroutine reads
// its log (stderr) as it comes, so the host never blocks on a full pipe.
type hostProc struct {
	t       *testing.T
	cmd     *exec.Cmd
	started time.Time // just before exec

	running    chan struct{} // closed when "host running" was read
	listening  chan struct{} // closed when the HTTP API's address was read
	readerDone chan struct{} // closed at EOF of the log
	exited     chan struct{} // closed once cmd.Wait returned
	waitErr    error

	// crashes: worker_exited lines are expected (the restart benchmarks
	// kill workers), not problems.
	crashes bool

	mu sync.Mutex
	// unhealthy is a worker the benchmark makes unhealthy (it freezes the
	// process): the host's "killing unhealthy plugin process" line of
	// that worker is expected, not a problem.
	unhealthy   string
	httpAddr    string
	runningAt   time.Time
	runningLine map[string]any
	pids        []int    // pids of the worker_started events
	problems    []string // error-level lines, start failures
	tail        tailBuffer
}

// startHost execs the host binary with the config; dir is its working
// directory.
func startHost(t *testing.T, host, dir, config string) *hostProc {
	t.Helper()
	return startHostCrashing(t, host, dir, config, false)
}

// startHostCrashing is startHost for a benchmark that kills workers
// (crashes): their worker_exited lines are then not problems.
func startHostCrashing(t *testing.T, host, dir, config string, crashes bool) *hostProc {
	t.Helper()
	h := &hostProc{t: t, running: make(chan struct{}), listening: make(chan struct{}), readerDone: make(chan struct{}), exited: make(chan struct{}),
		tail: tailBuffer{max: 64 << 10}, crashes: crashes}
	h.cmd = exec.Command(host, "serve", "-config", config, "-log-json")
	h.cmd.Dir = dir
	stderr, err := h.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	h.started = time.Now()
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go h.read(stderr)
	go func() {
		<-h.readerDone // Wait closes the pipe: read it to the end first
		h.waitErr = h.cmd.Wait()
		close(h.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-h.exited:
		default:
			_ = h.cmd.Process.Kill() // plugins die with it (Pdeathsig)
			<-h.exited
		}
		if t.Failed() {
			t.Logf("host log (tail):\n%s", h.tail.String())
		}
	})
	return h
}

func (h *hostProc) read(r io.Reader) {
	defer close(h.readerDone)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		at := time.Now()
		line := sc.Bytes()
		_, _ = h.tail.Write(line)
		_, _ = h.tail.Write([]byte{'\n'})
		var m map[string]any
		if json.Unmarshal(line, &m) != nil {
			continue
		}
		msg, _ := m["@message"].(string)
		h.mu.Lock()
		switch {
		case msg == "host running":
			h.runningAt, h.runningLine = at, m
			close(h.running)
		case msg == "worker_started" && h.runningAt.IsZero():
			if pid, ok := m["pid"].(float64); ok {
				h.pids = append(h.pids, int(pid))
			}
		case strings.EqualFold(msg, "http api listening") && h.httpAddr == "":
			h.httpAddr, _ = m["addr"].(string)
			close(h.listening)
		}
		// A killed plugin is logged at error level ("plugin process
		// exited"), and its worker_exited follows: expected when the
		// benchmark kills workers.
		crash := msg == "worker_exited" || msg == "plugin process exited"
		if module, _ := m["@module"].(string); msg == "killing unhealthy plugin process" && h.unhealthy != "" &&
			strings.HasSuffix(module, ".worker."+h.unhealthy) {
			crash = true
		}
		if lvl, _ := m["@level"].(string); (lvl == "error" || msg == "worker_start_failed" || msg == "worker_exited") && !(crash && h.crashes) {
			h.problems = append(h.problems, string(line))
		}
		h.mu.Unlock()
	}
}

// waitRunning waits for the "host running" line and checks that every one
// of the n workers started once and nothing went wrong. It returns exec →
// that line, and the line's "startup" field.
func (h *hostProc) waitRunning(n int) (execToRunning, hostStartup time.Duration) {
	h.t.Helper()
	select {
	case <-h.running:
	case <-h.exited:
		h.t.Fatalf("host exited before running: %v", h.waitErr)
	case <-time.After(hostTimeout):
		h.t.Fatalf("no \"host running\" within %v", hostTimeout)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.problems) > 0 {
		h.t.Fatalf("the host reported problems:\n%s", strings.Join(h.problems, "\n"))
	}
	if w, _ := h.runningLine["workers"].(float64); int(w) != n {
		h.t.Fatalf("host running with %v workers, want %d", h.runningLine["workers"], n)
	}
	if len(h.pids) != n {
		h.t.Fatalf("%d worker_started events before \"host running\", want %d", len(h.pids), n)
	}
	s, _ := h.runningLine["startup"].(string)
	hostStartup, err := time.ParseDuration(s)
	if err != nil {
		h.t.Fatalf("\"host running\" startup field %q: %v", s, err)
	}
	return h.runningAt.Sub(h.started), hostStartup
}

// expectUnhealthy tells the log reader that the benchmark is about to make
// worker name unhealthy, so that the host's kill of it is no problem.
func (h *hostProc) expectUnhealthy(name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.unhealthy = name
}

// apiURL waits for the HTTP API's address in the log and returns its base
// URL, "http://127.0.0.1:<port>".
func (h *hostProc) apiURL() string {
	h.t.Helper()
	select {
	case <-h.listening:
	case <-h.exited:
		h.t.Fatalf("host exited before its HTTP API listened: %v", h.waitErr)
	case <-time.After(hostTimeout):
		h.t.Fatalf("no \"HTTP API listening\" within %v", hostTimeout)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return "http://" + h.httpAddr
}

// pid is the host process's.
func (h *hostProc) pid() int { return h.cmd.Process.Pid }

// workerProcs returns the plugin processes, checking that they are the
// host's children and that there are no others.
func (h *hostProc) workerProcs() []Proc {
	h.t.Helper()
	h.mu.Lock()
	pids := append([]int(nil), h.pids...)
	h.mu.Unlock()
	children := map[int]Proc{}
	for _, c := range ChildrenOf(h.cmd.Process.Pid) {
		children[c.Pid] = c
	}
	var out []Proc
	for _, pid := range pids {
		c, ok := children[pid]
		if !ok {
			h.t.Fatalf("worker pid %d is not a live child of the host", pid)
		}
		out = append(out, c)
	}
	if len(children) != len(pids) {
		h.t.Fatalf("the host has %d child processes, want its %d workers", len(children), len(pids))
	}
	return out
}

// stop sends SIGTERM and waits for the host to stop its workers and exit
// 0, then checks that none of procs is left. It returns SIGTERM → exit.
func (h *hostProc) stop(procs []Proc) time.Duration {
	h.t.Helper()
	t0 := time.Now()
	if err := h.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		h.t.Fatal(err)
	}
	select {
	case <-h.exited:
	case <-time.After(hostTimeout):
		h.t.Fatalf("host did not exit within %v of SIGTERM", hostTimeout)
	}
	d := time.Since(t0)
	if h.waitErr != nil {
		h.t.Fatalf("host exited with %v", h.waitErr)
	}
	h.mu.Lock()
	if len(h.problems) > 0 {
		h.t.Errorf("the host reported problems:\n%s", strings.Join(h.problems, "\n"))
	}
	h.mu.Unlock()
	for _, p := range procs {
		if !p.WaitGone(5 * time.Second) {
			h.t.Errorf("plugin process %d still alive 5s after the host exited", p.Pid)
			_ = syscall.Kill(p.Pid, syscall.SIGKILL)
		}
	}
	return d
}

// TestStartup measures `dynworkers serve` from exec to "host running" with
// 1, 10 and 100 workers, and 100 started one after the other. The describe
// cache is warm: each configuration is run once, unmeasured, first.
func TestStartup(t *testing.T) {
	f := setup(t)
	socketDir(t)
	cases := []struct{ workers, concurrency int }{{1, 0}, {10, 0}, {100, 0}, {100, 1}}
	var out []StartupResult
	for _, c := range cases {
		name := fmt.Sprintf("%d-workers", c.workers)
		if c.concurrency > 0 {
			name += fmt.Sprintf("-concurrency-%d", c.concurrency)
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := writeHostConfig(t, dir, f.pluginDir, c.workers, c.concurrency)
			res := StartupResult{Workers: c.workers, StartConcurrency: c.concurrency}
			for i := range 1 + startupRuns {
				h := startHost(t, f.host, dir, cfg)
				run := StartupRun{}
				run.ExecToRunning, run.HostStartup = h.waitRunning(c.workers)
				run.Shutdown = h.stop(h.workerProcs())
				if t.Failed() {
					return
				}
				if i == 0 {
					t.Logf("warm-up: exec→running %v (not counted)", run.ExecToRunning)
					continue
				}
				t.Logf("run %d: exec→running %v, host startup %v, shutdown %v", i, run.ExecToRunning, run.HostStartup, run.Shutdown)
				res.Runs = append(res.Runs, run)
			}
			out = append(out, res)
		})
	}
	if !t.Failed() {
		record(func(r *Results) { r.Startup = out })
	}
}

// TestMemory runs 100 idle hello workers under the host binary, lets them
// settle for memoryIdle, and reads the host's VmRSS and every process's
// RSS and PSS from /proc.
func TestMemory(t *testing.T) {
	f := setup(t)
	socketDir(t)
	const n = 100
	dir := t.TempDir()
	cfg := writeHostConfig(t, dir, f.pluginDir, n, 0)
	h := startHost(t, f.host, dir, cfg)
	h.waitRunning(n)
	time.Sleep(memoryIdle) // a fixed idle period, not a synchronisation
	procs := h.workerProcs()
	res := &MemoryResult{Workers: n, Idle: memoryIdle, IdleSeconds: memoryIdle.Seconds()}
	if fi, err := os.Stat(f.plugin); err == nil {
		res.PluginBytes = fi.Size()
	}
	var err error
	if res.HostVmRSS, err = ReadVmRSS(h.cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if res.Host, err = ReadMem(h.cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	for _, p := range procs {
		m, err := ReadMem(p.Pid)
		if err != nil {
			t.Fatal(err)
		}
		res.Plugins = append(res.Plugins, m)
	}
	h.stop(procs)
	if t.Failed() {
		return
	}
	t.Logf("host VmRSS %d KiB (PSS %d KiB); per plugin RSS median %d max %d KiB, PSS median %d max %d KiB; all plugins PSS %d KiB",
		res.HostVmRSS, res.Host.PSS, Median(res.RSS()), Max(res.RSS()), Median(res.PSS()), Max(res.PSS()), sum(res.PSS()))
	record(func(r *Results) { r.Memory = res })
}
