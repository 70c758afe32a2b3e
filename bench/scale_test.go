package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/internal/wire"
)

const (
	// scaleWorkers is the size of the scale test; scaleBaseWorkers the
	// smaller host it is compared with, for the cost per worker.
	scaleWorkers     = 1000
	scaleBaseWorkers = 100
	// scaleIdle is the idle sample of the 1,000-worker host (the issue's
	// 60 s), scaleBaseIdle the 100-worker host's.
	scaleIdle     = 60 * time.Second
	scaleBaseIdle = 30 * time.Second
	scaleStatusN  = 20 // status round trips per transport, after one unmeasured
	scaleKills    = 50
	// scaleComeBack bounds the wait for the killed workers' replacements.
	scaleComeBack = 2 * time.Minute
)

// scaleConfig runs n hello workers (interval 1h: idle) under a
// one_for_one root supervisor, on an amqp block,
// so that status is reachable over AMQP and the events on vumi.events.
func scaleConfig(sys, pluginDir, url string, n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "system_id = %q\nhost {\n  name       = %q\n  plugin_dir = %q\n  state_dir  = \"var\"\n  http_addr  = \"127.0.0.1:0\"\n}\n", sys, controlHost, pluginDir)
	fmt.Fprintf(&b, "amqp {\n  url = %q\n}\n", url)
	// one_for_one: a worker's crash restarts it alone. The restart budget
	// allows the kills of the test (the default, 5 in 30 s, would fail the
	// whole tree, as it should).
	b.WriteString("supervisor \"root\" {\n  strategy  = \"one_for_one\"\n  intensity = 1000\n  period    = \"1h\"\n")
	for i := range n {
		fmt.Fprintf(&b, "  worker \"hello-%04d\" {\n    class = \"hello\"\n    config {\n      interval = \"1h\"\n    }\n  }\n", i+1)
	}
	b.WriteString("}\n")
	return b.String()
}

// eventLog collects every event of one host from vumi.events, in order.
type eventLog struct {
	mu     sync.Mutex
	events []hostEvent
	more   chan struct{} // signalled (without blocking) on each event
}

func collectEvents(a *amqpAdmin, sys, host string) *eventLog {
	a.t.Helper()
	_, deliveries := a.tempQueue(eventsExchange, sys+"."+host+".#")
	l := &eventLog{more: make(chan struct{}, 1)}
	go func() {
		for d := range deliveries {
			var ev hostEvent
			if err := json.Unmarshal(d.Body, &ev); err != nil {
				ev = hostEvent{Event: "undecodable", Error: fmt.Sprintf("%v: %s", err, d.Body)}
			}
			ev.received = time.Now()
			l.mu.Lock()
			l.events = append(l.events, ev)
			l.mu.Unlock()
			select {
			case l.more <- struct{}{}:
			default:
			}
		}
	}()
	return l
}

// since returns the events from index i on.
func (l *eventLog) since(i int) []hostEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]hostEvent(nil), l.events[min(i, len(l.events)):]...)
}

func (l *eventLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.events)
}

// scaleStatus is what the scale test reads from a status reply.
type scaleStatus struct {
	Workers []struct {
		Name     string `json:"name"`
		State    string `json:"state"`
		Pid      int    `json:"pid"`
		Restarts int    `json:"restarts"`
	} `json:"workers"`
}

func decodeScaleStatus(rep reply) (scaleStatus, error) {
	var st scaleStatus
	if err := json.Unmarshal(rep.Result, &st); err != nil {
		return st, fmt.Errorf("status result: %w", err)
	}
	return st, nil
}

// running returns name → pid of the running workers.
func (s scaleStatus) running() map[string]int {
	out := map[string]int{}
	for _, w := range s.Workers {
		if w.State == "running" && w.Pid > 0 {
			out[w.Name] = w.Pid
		}
	}
	return out
}

// goroutines reads go_goroutines from the host's /metrics.
func goroutines(api *httpAPI) (int, error) {
	resp, err := api.c.Get(api.base + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return int(f), err
		}
	}
	return 0, fmt.Errorf("no go_goroutines in /metrics (%v)", sc.Err())
}

// fdCount is the number of open file descriptors of pid.
func fdCount(pid int) (int, error) {
	es, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(es), err
}

// threads is the number of threads of pid.
func threads(pid int) (int, error) {
	st, err := readStat(pid)
	return st.NumThreads, err
}

// readLimits reads the host process's limits and the kernel's.
func readLimits(pid int) (HostLimits, error) {
	var l HostLimits
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return l, err
	}
	parse := func(s string) int64 {
		if s == "unlimited" {
			return -1
		}
		v, _ := strconv.ParseInt(s, 10, 64)
		return v
	}
	for _, line := range strings.Split(string(b), "\n") {
		for name, dst := range map[string]*[2]int64{"Max open files": &l.NoFile, "Max processes": &l.NProc} {
			if rest, ok := strings.CutPrefix(line, name); ok {
				if f := strings.Fields(rest); len(f) >= 2 {
					*dst = [2]int64{parse(f[0]), parse(f[1])}
				}
			}
		}
	}
	l.PidMax = parse(readTrim("/proc/sys/kernel/pid_max"))
	l.ThreadsMax = parse(readTrim("/proc/sys/kernel/threads-max"))
	if f := strings.Fields(procField("/proc/meminfo", "MemTotal")); len(f) == 2 {
		l.MemTotalKiB = parse(f[0])
	}
	return l, nil
}

// scaleHost is one host of the scale test, started and idle-sampled.
type scaleHost struct {
	h      *hostProc
	api    *httpAPI
	cli    *amqpClient
	events *eventLog
	dir    string
	run    *ScaleRun
}

// startScaleHost starts a host with n idle hello workers, lets it settle
// and samples it idle for idle: its CPU time, VmRSS, PSS, fds, threads and
// goroutines, its plugins' PSS, threads and CPU time, and status round
// trips over HTTP and AMQP.
func startScaleHost(t *testing.T, f *fixture, url string, n int, idle time.Duration) *scaleHost {
	t.Helper()
	sys := benchID(t)
	admin := newAMQPAdmin(t, url)
	admin.deleteAtCleanup(controlQueues(sys, controlHost)...)
	events := collectEvents(admin, sys, controlHost)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "host.hcl")
	if err := os.WriteFile(cfg, []byte(scaleConfig(sys, f.pluginDir, url, n)), 0o644); err != nil {
		t.Fatal(err)
	}
	h := startHostCrashing(t, f.host, dir, cfg, true)
	run := &ScaleRun{Workers: n}
	run.ExecToRunning, run.HostStartup = h.waitRunning(n)
	t.Logf("%d workers: exec → host running %v (host startup %v)", n, run.ExecToRunning, run.HostStartup)
	api := newHTTPAPI(h.apiURL(), 1)
	t.Cleanup(api.c.CloseIdleConnections)
	cli := newAMQPClient(t, admin, sys+"."+controlHost)
	s := &scaleHost{h: h, api: api, cli: cli, events: events, dir: dir, run: run}

	time.Sleep(scaleSettle) // a fixed period, not a synchronisation
	procs := h.workerProcs()
	pluginCPU := func() time.Duration {
		var d time.Duration
		for _, p := range procs {
			c, err := ProcCPU(p.Pid)
			if err != nil {
				t.Fatalf("plugin process %d: %v", p.Pid, err)
			}
			d += c
		}
		return d
	}
	cpu0, err := ProcCPU(h.pid())
	if err != nil {
		t.Fatal(err)
	}
	plug0, t0 := pluginCPU(), time.Now()
	// Sample VmRSS now and then; the harness does nothing else meanwhile.
	for time.Since(t0) < idle {
		time.Sleep(min(scaleRSSEvery, idle-time.Since(t0)))
		rss, err := ReadVmRSS(h.pid())
		if err != nil {
			t.Fatal(err)
		}
		run.HostRSSKiB = max(run.HostRSSKiB, rss)
	}
	cpu1, err := ProcCPU(h.pid())
	if err != nil {
		t.Fatal(err)
	}
	run.Idle, run.HostCPU, run.PluginsCPU = time.Since(t0), cpu1-cpu0, pluginCPU()-plug0
	run.IdleS, run.HostCPUMS, run.PluginsCPUMS = run.Idle.Seconds(), run.HostCPU.Milliseconds(), run.PluginsCPU.Milliseconds()

	// What grows with the workers, read after the idle sample.
	hostMem, err := ReadMem(h.pid())
	if err != nil {
		t.Fatal(err)
	}
	run.HostPSSKiB = hostMem.PSS
	if run.HostFDs, err = fdCount(h.pid()); err != nil {
		t.Fatal(err)
	}
	if run.HostThreads, err = threads(h.pid()); err != nil {
		t.Fatal(err)
	}
	if run.Goroutines, err = goroutines(api); err != nil {
		t.Fatal(err)
	}
	var pss, thr []int64
	for _, p := range procs {
		m, err := ReadMem(p.Pid)
		if err != nil {
			t.Fatal(err)
		}
		n, err := threads(p.Pid)
		if err != nil {
			t.Fatal(err)
		}
		pss, thr = append(pss, m.PSS), append(thr, int64(n))
	}
	run.PluginPSSKiB, run.PluginThreads, run.PluginPSSSumKiB = Median(pss), Median(thr), sum(pss)

	// Status round trips, one at a time, each checked to show every
	// worker running.
	statusBody := []byte(`{"operation": "status"}`)
	check := func(rep reply, err error) error {
		if err != nil {
			return err
		}
		st, err := decodeScaleStatus(rep)
		if err != nil {
			return err
		}
		if r := len(st.running()); r != n {
			return fmt.Errorf("status shows %d workers running, want %d", r, n)
		}
		return nil
	}
	for _, tr := range []struct {
		name string
		do   func() error
		out  *Summary
		us   *[]int64
	}{
		{"http", func() error { return check(api.do(http.MethodGet, "/v1/status", nil)) }, &run.StatusHTTP, &run.StatusHTTPUS},
		{"amqp", func() error { return check(cli.call(statusBody)) }, &run.StatusAMQP, &run.StatusAMQPUS},
	} {
		lat, _, err := closedLoop(1+scaleStatusN, 1, tr.do)
		if err != nil {
			t.Fatalf("status over %s with %d workers: %v", tr.name, n, err)
		}
		*tr.out, *tr.us = Summarize(lat[1:]), Micros(lat[1:])
	}
	t.Logf("%d workers idle %v: host CPU %v (%.2f %% of a core), plugins CPU %v; host VmRSS max %d KiB, PSS %d KiB, %d fds, %d threads, %d goroutines; plugin PSS median %d KiB, %d threads; status HTTP p50 %v max %v, AMQP p50 %v max %v",
		n, run.Idle.Round(time.Millisecond), run.HostCPU, run.CPUPercent(), run.PluginsCPU, run.HostRSSKiB, run.HostPSSKiB, run.HostFDs, run.HostThreads,
		run.Goroutines, run.PluginPSSKiB, run.PluginThreads, run.StatusHTTP.P50, run.StatusHTTP.Max, run.StatusAMQP.P50, run.StatusAMQP.Max)
	return s
}

// TestScale1000 runs the host at the scale of the issue: 1,000 idle hello
// workers, started from a config (exec → host running), sampled idle for
// 60 s (CPU, memory, fds, goroutines, threads; status over HTTP and AMQP);
// then 50 random workers' processes are SIGKILLed: all must come back with
// new pids while the other 950 keep theirs with no event at all; then the
// host is stopped with SIGTERM and must exit 0 leaving no plugin process
// and no socket file. A host of 100 workers, sampled first, gives the cost
// per worker (the difference divided by 900) for the scale limits.
func TestScale1000(t *testing.T) {
	f := setup(t)
	url := needBroker(t, func(reason string) {
		record(func(r *Results) { r.Scale = &ScaleResult{NotRun: reason} })
	})
	res := &ScaleResult{Kills: scaleKills}

	t.Run("100-workers", func(t *testing.T) {
		socketDir(t)
		s := startScaleHost(t, f, url, scaleBaseWorkers, scaleBaseIdle)
		res.Base = s.run
		s.h.stop(s.h.workerProcs())
	})
	if t.Failed() {
		return
	}

	t.Run("1000-workers", func(t *testing.T) {
		sockets := socketDir(t)
		s := startScaleHost(t, f, url, scaleWorkers, scaleIdle)
		res.Full = s.run
		lim, err := readLimits(s.h.pid())
		if err != nil {
			t.Fatal(err)
		}
		res.Limits = lim

		// Kill 50 random workers' processes.
		rep, err := s.api.do(http.MethodGet, "/v1/status", nil)
		if err != nil {
			t.Fatal(err)
		}
		st, err := decodeScaleStatus(rep)
		if err != nil {
			t.Fatal(err)
		}
		before := st.running()
		if len(before) != scaleWorkers {
			t.Fatalf("%d workers running before the kills, want %d", len(before), scaleWorkers)
		}
		ids := map[string]Proc{}
		names := make([]string, 0, len(before))
		for name, pid := range before {
			p, err := Identify(pid)
			if err != nil {
				t.Fatal(err)
			}
			ids[name] = p
			names = append(names, name)
		}
		killed := map[string]bool{}
		for _, i := range rand.Perm(len(names))[:scaleKills] {
			killed[names[i]] = true
		}
		mark := s.events.len()
		t0 := time.Now()
		for name := range killed {
			if err := syscall.Kill(before[name], syscall.SIGKILL); err != nil {
				t.Fatalf("kill %s (pid %d): %v", name, before[name], err)
			}
		}
		// Wait for a worker_started of a new process for each of them.
		back := map[string]time.Time{}
		deadline := time.After(scaleComeBack)
		for len(back) < len(killed) {
			for _, ev := range s.events.since(mark) {
				if ev.Event == "undecodable" {
					t.Fatalf("undecodable event: %s", ev.Error)
				}
				if killed[ev.Worker] && ev.Event == "worker_started" && ev.Pid != before[ev.Worker] {
					if _, ok := back[ev.Worker]; !ok {
						back[ev.Worker] = ev.Time
					}
				}
			}
			if len(back) == len(killed) {
				break
			}
			select {
			case <-s.events.more:
			case <-deadline:
				t.Fatalf("%d of %d killed workers running again within %v", len(back), len(killed), scaleComeBack)
			}
		}
		var each []time.Duration
		for _, at := range back {
			each = append(each, at.Sub(t0))
		}
		res.KillToRunning, res.KillToRunningUS = Summarize(each), Micros(each)
		res.Back = len(back)

		// All running; the killed ones in new processes, restarted once;
		// the others in the same processes, never restarted, with no
		// event since the kills.
		rep, err = s.api.do(http.MethodGet, "/v1/status", nil)
		if err != nil {
			t.Fatal(err)
		}
		if st, err = decodeScaleStatus(rep); err != nil {
			t.Fatal(err)
		}
		after := st.running()
		if len(after) != scaleWorkers {
			t.Fatalf("%d workers running after the kills, want %d", len(after), scaleWorkers)
		}
		for _, w := range st.Workers {
			switch {
			case killed[w.Name]:
				if w.Pid == before[w.Name] || w.Restarts != 1 {
					t.Errorf("killed worker %s: pid %d (was %d), %d restarts; want a new pid, 1 restart", w.Name, w.Pid, before[w.Name], w.Restarts)
				}
			default:
				if w.Pid != before[w.Name] || !ids[w.Name].Alive() || w.Restarts != 0 {
					t.Errorf("neighbour %s: pid %d (was %d, alive %v), %d restarts; want it untouched", w.Name, w.Pid, before[w.Name], ids[w.Name].Alive(), w.Restarts)
				} else {
					res.Untouched++
				}
			}
		}
		for _, ev := range s.events.since(mark) {
			if ev.Worker != "" && !killed[ev.Worker] {
				t.Errorf("event %s of neighbour %s after the kills", ev.Event, ev.Worker)
			}
		}
		t.Logf("%d killed workers all running again: kill → worker_started p50 %v, last %v; %d neighbours untouched",
			len(killed), res.KillToRunning.P50, res.KillToRunning.Max, res.Untouched)

		// A frozen worker: SIGSTOP one of the neighbours. Its health
		// beats stop; the host must kill it within the health bound and
		// start it again, and no other worker may have an event meanwhile.
		frozen := ""
		for _, name := range names {
			if !killed[name] {
				frozen = name
				break
			}
		}
		s.h.expectUnhealthy(frozen)
		mark = s.events.len()
		t0 = time.Now()
		if err := syscall.Kill(before[frozen], syscall.SIGSTOP); err != nil {
			t.Fatalf("SIGSTOP %s (pid %d): %v", frozen, before[frozen], err)
		}
		var exited, started bool
		deadline = time.After(FrozenBound + FrozenKillMargin + scaleComeBack)
		for !exited || !started {
			for _, ev := range s.events.since(mark) {
				switch {
				case ev.Event == "undecodable":
					t.Fatalf("undecodable event: %s", ev.Error)
				case ev.Worker == frozen && ev.Event == "worker_exited" && !exited:
					exited = true
					res.FrozenToExited, res.FrozenError = ev.Time.Sub(t0), ev.Error
					res.FrozenToExitedMS = res.FrozenToExited.Milliseconds()
				case ev.Worker == frozen && ev.Event == "worker_started" && ev.Pid != before[frozen]:
					started = true
				}
			}
			if exited && started {
				break
			}
			select {
			case <-s.events.more:
			case <-deadline:
				t.Fatalf("frozen worker %s (pid %d): exited %v, running again %v after %v", frozen, before[frozen], exited, started, time.Since(t0))
			}
		}
		res.FrozenBack = true
		for _, ev := range s.events.since(mark) {
			if ev.Worker != "" && ev.Worker != frozen {
				res.FrozenNeighbourEvents++
				t.Errorf("event %s of %s while %s was frozen", ev.Event, ev.Worker, frozen)
			}
		}
		if res.FrozenToExited > FrozenBound+FrozenKillMargin || res.FrozenToExited < FrozenLow {
			t.Errorf("frozen worker killed %v after SIGSTOP, want between %v and %v (+%v for the kill)", res.FrozenToExited, FrozenLow, FrozenBound, FrozenKillMargin)
		}
		if !strings.Contains(res.FrozenError, "health check failed") || !strings.Contains(res.FrozenError, "no health beat") {
			t.Errorf("frozen worker's worker_exited error %q, want a kill for silent health beats", res.FrozenError)
		}
		t.Logf("frozen worker %s killed %v after SIGSTOP (bound %v): %s", frozen, res.FrozenToExited, FrozenBound, res.FrozenError)

		// Stop: every child of the host (workers and warm spares) must be
		// gone, and no process anywhere may still name the host as its
		// parent, nor any socket be left in the host's TMPDIR.
		children := ChildrenOf(s.h.pid())
		hostPid := s.h.pid()
		res.Shutdown = s.h.stop(children)
		res.ShutdownMS = res.Shutdown.Milliseconds()
		if left := processesOf(hostPid); len(left) > 0 {
			t.Errorf("plugin processes of the host left after it exited: %v", left)
		}
		res.LeftProcesses = len(processesOf(hostPid))
		res.LeftSockets = socketsIn(sockets)
		if res.LeftSockets > 0 {
			t.Errorf("%d socket files left in the host's TMPDIR %s", res.LeftSockets, sockets)
		}
		t.Logf("SIGTERM → exit %v with %d child processes; %d processes and %d socket files left", res.Shutdown, len(children), res.LeftProcesses, res.LeftSockets)
	})
	if t.Failed() {
		return
	}
	record(func(r *Results) { r.Scale = res })
}

// processesOf returns the live processes whose environment names hostPid
// as the host that launched them (wire.EnvParentPID): plugin processes of
// that host, wherever they were reparented.
func processesOf(hostPid int) []int {
	want := fmt.Appendf(nil, "%s=%d\x00", wire.EnvParentPID, hostPid)
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil {
			continue
		}
		if bytes.HasPrefix(env, want) || bytes.Contains(env, append([]byte{0}, want...)) {
			if st, err := readStat(pid); err == nil && st.State != "Z" {
				out = append(out, pid)
			}
		}
	}
	return out
}

// socketsIn counts the unix socket files under dir.
func socketsIn(dir string) int {
	n := 0
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type()&fs.ModeSocket != 0 {
			n++
		}
		return nil
	})
	return n
}
