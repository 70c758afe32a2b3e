package monitor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/dynworkers/dynworkers/sdk/sdktest"
)

// childProc starts a process that runs until the test ends, or until the
// returned stop function kills and reaps it; burn makes it use CPU.
func childProc(t *testing.T, burn bool) (pid int, stop func()) {
	t.Helper()
	cmd := exec.Command("sleep", "600")
	if burn {
		cmd = exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), envHelper+"=burn")
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
	}
	t.Cleanup(stop)
	return cmd.Process.Pid, stop
}

// fakeHost is what a daemon gives a Monitor: a tree it changes, a record
// of what is published.
type fakeHost struct {
	mu      sync.Mutex
	workers []WorkerStats
	sups    []SupervisorStats
	pubs    []published
	pubErr  error
}

type published struct {
	exchange, key string
	body          []byte
}

func (h *fakeHost) list() ([]WorkerStats, []SupervisorStats) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.workers), slices.Clone(h.sups)
}

func (h *fakeHost) publish(_ context.Context, exchange, key string, bodies ...[]byte) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.pubErr != nil {
		return h.pubErr
	}
	for _, body := range bodies {
		h.pubs = append(h.pubs, published{exchange, key, slices.Clone(body)})
	}
	return nil
}

func (h *fakeHost) setWorkers(ws ...WorkerStats) {
	h.mu.Lock()
	h.workers = ws
	h.mu.Unlock()
}

// take returns and forgets what was published.
func (h *fakeHost) take() []published {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.pubs
	h.pubs = nil
	return p
}

func newTestMonitor(h *fakeHost, reg *Registry, logger hclog.Logger) *Monitor {
	return New(Options{
		SystemID: "prod", Host: "h1", Started: time.Now().Add(-time.Minute),
		Interval: time.Second, HeartbeatInterval: 2 * time.Second,
		States: []string{"starting", "running", "stopped"},
		List:   h.list, Publish: h.publish,
		Control:  func() (uint64, uint64) { return 7, 2 },
		Registry: reg, Logger: logger,
	})
}

// The Monitor fills in the process figures of the workers that have a
// process, the CPU use between samples, and the totals of every
// supervisor's subtree; the per-pid state it keeps holds only the
// processes of the last sample.
func TestMonitorSnapshot(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	burner, _ := childProc(t, true)
	sleeper, stopSleeper := childProc(t, false)
	h := &fakeHost{
		workers: []WorkerStats{
			{Name: "burn", Supervisor: "root/a/b", State: StateRunning, Pid: burner, Healthy: true},
			{Name: "sleep", Supervisor: "root/a", State: StateRunning, Pid: sleeper},
			{Name: "down", Supervisor: "root/ab", State: "stopped"},
			{Name: "top", Supervisor: "root", State: "starting"},
		},
		sups: []SupervisorStats{{Path: "root"}, {Path: "root/a"}, {Path: "root/a/b"}, {Path: "root/ab"}},
	}
	m := newTestMonitor(h, nil, nil)
	first := m.Snapshot()
	if m.Snapshot() != first {
		t.Error("a second Snapshot within a second took a new sample")
	}
	if first.Host.Pid != os.Getpid() || first.Host.Proc.RSSBytes == 0 || first.Host.ControlHandled != 7 ||
		first.Host.ControlFailed != 2 || first.Host.SystemID != "prod" || first.Host.Name != "h1" {
		t.Errorf("host %+v", first.Host)
	}
	if want := map[string]int{"starting": 1, "running": 2, "stopped": 1}; !mapsEqual(first.Host.WorkersByState, want) {
		t.Errorf("workers by state %v, want %v", first.Host.WorkersByState, want)
	}
	w := first.Workers
	if w[0].Proc == nil || w[0].Proc.Pid != burner || w[1].Proc == nil || w[2].Proc != nil || w[3].Proc != nil {
		t.Fatalf("process figures: %+v", w)
	}
	if w[0].CPUPercent != 0 {
		t.Errorf("CPU percent %v on the first sample", w[0].CPUPercent)
	}
	rss := w[0].Proc.RSSBytes + w[1].Proc.RSSBytes
	for _, tc := range []struct {
		path             string
		workers, running int
		rss              uint64
	}{
		{"root", 4, 2, rss},
		{"root/a", 2, 2, rss},
		{"root/a/b", 1, 1, w[0].Proc.RSSBytes},
		{"root/ab", 1, 0, 0}, // a sibling whose name starts like root/a's
	} {
		i := slices.IndexFunc(first.Supervisors, func(s SupervisorStats) bool { return s.Path == tc.path })
		s := first.Supervisors[i]
		if s.Workers != tc.workers || s.Running != tc.running || s.RSSBytes != tc.rss {
			t.Errorf("%s: %d workers, %d running, %d bytes; want %d, %d, %d", tc.path, s.Workers, s.Running, s.RSSBytes,
				tc.workers, tc.running, tc.rss)
		}
		if tc.path == "root/a" && s.CPUSeconds != w[0].Proc.CPUSeconds+w[1].Proc.CPUSeconds {
			t.Errorf("root/a CPU %v, want the sum of its processes'", s.CPUSeconds)
		}
	}

	// The burner's CPU use shows on a later sample. The kernel counts CPU
	// time in ticks, so samples a moment apart may see none of it; the
	// polls spread out.
	var cpu float64
	sdktest.Eventually(t, 30*time.Second, func() bool {
		snap, _ := m.sample()
		cpu = snap.Workers[0].CPUPercent
		return cpu > 1
	}, "CPU percent of a busy process still %v", lazy(func() any { return cpu }))

	// A process that is gone, or no longer listed, leaves no state.
	stopSleeper()
	m.sample()
	if len(m.prevCPU) != 1 {
		t.Errorf("per-pid state of %d processes, want 1 (the burner)", len(m.prevCPU))
	}
	h.setWorkers()
	m.sample()
	if len(m.prevCPU) != 0 {
		t.Errorf("per-pid state of %d processes with none listed", len(m.prevCPU))
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

// Each round publishes the figures and the workers' own metrics in one
// Vumi message, heartbeats for the healthy workers when due, and forgets
// the metrics of a worker that is gone once they were published.
func TestMonitorTick(t *testing.T) {
	reg := NewRegistry(0)
	h := &fakeHost{sups: []SupervisorStats{{Path: "root"}}}
	h.setWorkers(
		WorkerStats{Name: "echo", Supervisor: "root", State: StateRunning, Pid: os.Getpid(), Healthy: true},
		WorkerStats{Name: "sick", Supervisor: "root", State: StateRunning, Pid: os.Getpid()},
	)
	m := newTestMonitor(h, reg, nil)
	echo := WorkerPrefix("prod", "h1", "echo")
	mustRecord(t, reg, echo, "replies", 2, "sum")
	mustRecord(t, reg, echo, "replies", 3, "sum")
	mustRecord(t, reg, echo, "latency", 0.5, "avg")
	base := reg.Len()

	ctx := context.Background()
	m.tick(ctx)
	pubs := h.take()
	if len(pubs) != 2 || pubs[0].exchange != MetricsExchange || pubs[0].key != MetricsRoutingKey ||
		pubs[1].exchange != HeartbeatExchange || pubs[1].key != HeartbeatRoutingKey {
		t.Fatalf("published %v", pubs)
	}
	var msg MetricMessage
	if err := json.Unmarshal(pubs[0].body, &msg); err != nil {
		t.Fatal(err)
	}
	got := map[string]Datapoint{}
	for _, d := range msg.Datapoints {
		got[d.Name] = d
	}
	if d := got[echo+".replies"]; !slices.Equal(d.Aggregators, []string{"sum"}) || len(d.Points) == 0 || d.Points[0].Value+pointAt(d, 1) != 5 {
		t.Errorf("replies: %+v", d)
	}
	for _, name := range []string{echo + ".rss_bytes", echo + ".up", "dynworkers.prod.h1.host.workers.running",
		"dynworkers.prod.h1.host.control.handled", "dynworkers.prod.h1.supervisor.root.cpu_seconds"} {
		if _, ok := got[name]; !ok {
			t.Errorf("no %s", name)
		}
	}
	var hb Heartbeat
	if err := json.Unmarshal(pubs[1].body, &hb); err != nil || hb.Validate() != nil || hb.WorkerName != "echo" || hb.PID != os.Getpid() {
		t.Errorf("heartbeat %s: %v", pubs[1].body, err)
	}
	// The snapshot carries the figures of the interval just flushed.
	snap := m.Snapshot()
	want := []MetricValue{{"latency", "avg", 0.5}, {"replies", "sum", 5}}
	if !slices.Equal(snap.Workers[0].Metrics, want) {
		t.Errorf("snapshot metrics %v, want %v", snap.Workers[0].Metrics, want)
	}

	// The next round is too early for heartbeats.
	m.tick(ctx)
	if pubs := h.take(); len(pubs) != 1 {
		t.Errorf("second round published %d messages, want the metrics alone", len(pubs))
	}

	// The worker goes, with a last value not yet flushed: it is
	// published, then the worker's metrics are forgotten.
	mustRecord(t, reg, echo, "replies", 4, "sum")
	h.setWorkers(WorkerStats{Name: "sick", Supervisor: "root", State: StateRunning, Pid: os.Getpid()})
	m.tick(ctx)
	if !strings.Contains(string(h.take()[0].body), `"`+echo+`.replies",["sum"],[[`) {
		t.Error("the last value of a removed worker was not published")
	}
	if base != 2 || reg.Len() != 0 || reg.Values(echo) != nil {
		t.Errorf("registry holds %d series (%v of echo), want 0 (2 before)", reg.Len(), reg.Values(echo))
	}
}

func pointAt(d Datapoint, i int) float64 {
	if i < len(d.Points) {
		return d.Points[i].Value
	}
	return 0
}

// A publish that fails is dropped and debug-logged; the round goes on.
func TestMonitorPublishFails(t *testing.T) {
	var logs strings.Builder
	var mu sync.Mutex
	logger := hclog.New(&hclog.LoggerOptions{Level: hclog.Debug, Output: writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	})})
	h := &fakeHost{pubErr: errors.New("broker away")}
	h.setWorkers(WorkerStats{Name: "echo", State: StateRunning, Pid: os.Getpid(), Healthy: true})
	m := newTestMonitor(h, nil, logger)
	m.tick(context.Background())
	mu.Lock()
	defer mu.Unlock()
	for _, want := range []string{"metrics not published", "heartbeats not published: workers=1", "broker away"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
}

// lazy is an argument of sdktest.Eventually's message that is computed
// when the message is: only if the wait fails, with the state at the end.
type lazy func() any

func (f lazy) String() string { return fmt.Sprint(f()) }

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// Run samples at once, then every interval, until its context ends.
func TestMonitorRun(t *testing.T) {
	h := &fakeHost{}
	m := New(Options{SystemID: "s", Host: "h", Interval: 10 * time.Millisecond, List: h.list, Publish: h.publish})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Run(ctx)
	}()
	n := 0
	sdktest.Eventually(t, 30*time.Second, func() bool {
		n += len(h.take())
		return n >= 3
	}, "%v messages published, want 3", lazy(func() any { return n }))
	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

// A Snapshot taken between Run's samples lists the tree anew and reads the
// host process, but keeps the figures Run's last sample read for the
// worker processes it read, and reads only the processes that started
// since.
func TestSnapshotReadsOnlyNewProcesses(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	old, _ := childProc(t, false)
	h := &fakeHost{workers: []WorkerStats{{Name: "old", Supervisor: "root", State: StateRunning, Pid: old}},
		sups: []SupervisorStats{{Path: "root"}}}
	m := newTestMonitor(h, nil, nil)
	full, _ := m.sample()
	if full.Workers[0].Proc == nil {
		t.Fatalf("the full sample has no figures of pid %d", old)
	}
	// Figures a full sample would not give: if the Snapshot reads pid
	// old again, they are gone.
	m.mu.Lock()
	f := m.figs[old]
	f.proc.RSSBytes, f.cpuPercent = 12345, 42
	m.figs[old] = f
	m.mu.Unlock()
	young, _ := childProc(t, false)
	h.setWorkers(WorkerStats{Name: "old", Supervisor: "root", State: StateRunning, Pid: old},
		WorkerStats{Name: "young", Supervisor: "root", State: StateRunning, Pid: young})
	m.snap.Store(nil) // as if the last sample were more than a second old
	snap := m.Snapshot()
	if snap == full || len(snap.Workers) != 2 {
		t.Fatalf("Snapshot did not list the tree anew: %+v", snap.Workers)
	}
	if w := snap.Workers[0]; w.Proc == nil || w.Proc.RSSBytes != 12345 || w.CPUPercent != 42 {
		t.Errorf("old: %+v, want the figures of the last full sample", w)
	}
	if w := snap.Workers[1]; w.Proc == nil || w.Proc.Pid != young {
		t.Errorf("young: %+v, want its process read", w)
	}
	if snap.Supervisors[0].RSSBytes != 12345+snap.Workers[1].Proc.RSSBytes {
		t.Errorf("root's total %d, want the sum of its workers'", snap.Supervisors[0].RSSBytes)
	}
	// The next full sample reads every process again.
	again, _ := m.sample()
	if w := again.Workers[0]; w.Proc == nil || w.Proc.RSSBytes == 12345 {
		t.Errorf("old after a full sample: %+v, want it read", w)
	}
}
