package benchmarks

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/dynworkers/dynworkers/host/internal/daemon"
	"github.com/dynworkers/dynworkers/host/internal/pluginproc"
	"github.com/dynworkers/dynworkers/host/internal/supervise"
)

const (
	restartCrashes = 200
	restartWarmup  = 3
	// restartResetAfter is the worker's backoff reset_after: an instance
	// up for longer counts as healthy, so its crash is restarted at once.
	restartResetAfter = time.Millisecond
	// eventTimeout bounds every wait for an event.
	eventTimeout = 30 * time.Second
	// spareMargin is how long the spaced run waits, after it saw the warm
	// spare connected, before the kill: the host hands the spare to its
	// pool right after connecting to it (dispensing the gRPC client).
	spareMargin = 2 * time.Millisecond
)

// restartConfig runs one hello worker that never logs a greeting, restarts
// immediately after every crash (reset_after 1ms, and the harness keeps
// each instance up longer than that) and is never marked failed.
const restartConfig = `system_id = "bench"
host {
  name       = "bench"
  plugin_dir = %q
  state_dir  = "var"
  http_addr  = "127.0.0.1:0"
}
supervisor "root" {
  strategy  = "one_for_one"
  intensity = 100000
  period    = "1h"
  worker "hello" {
    class = "hello"
    backoff {
      initial     = "10ms"
      max         = "30s"
      reset_after = "1ms"
    }
    config {
      interval = "1h"
    }
  }
}
`

// stamped is a supervision event and when the hook saw it.
type stamped struct {
	ev supervise.Event
	at time.Time
}

// TestRestartLatency SIGKILLs the plugin process of one worker 200 times
// and measures each time from just before the kill until the replacement
// answers Health, with the daemon in-process and its events as the clock's
// checkpoints. Each new instance is killed as soon as it has been up for
// longer than reset_after (about 1 ms): back-to-back crashes, a crash loop,
// which come sooner than the host's next warm spare is ready.
func TestRestartLatency(t *testing.T) {
	f := setup(t)
	if res := measureRestarts(t, f, SpacingBackToBack); res != nil {
		record(func(r *Results) { r.Restart = res })
	}
}

// TestRestartLatencySpaced is TestRestartLatency with each kill held back
// until the host's warm spare of the binary is ready again (see
// waitSpareReady): the restart of a worker that crashes now and then.
func TestRestartLatencySpaced(t *testing.T) {
	f := setup(t)
	if res := measureRestarts(t, f, SpacingSpareReady); res != nil {
		record(func(r *Results) { r.RestartSpaced = res })
	}
}

// waitSpareReady waits until the host (this process) has a plugin process
// of f.plugin other than the worker's that is connected: a warm spare past
// its go-plugin handshake, with its listener and the host's gRPC connection
// open (two sockets in /proc/<pid>/fd). It returns the spare's pid. It
// polls on a schedule of its own, not with sdktest.Eventually, because the
// moment it sees the spare ready is measured (spare_wait).
func waitSpareReady(f *fixture, worker int, timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	spare := 0
	for time.Now().Before(deadline) {
		if spare == 0 {
			for _, c := range ChildrenOf(os.Getpid()) {
				if c.Pid == worker {
					continue
				}
				// A child between fork and exec still shows this binary.
				if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", c.Pid)); exe == f.plugin {
					spare = c.Pid
					break
				}
			}
		}
		if spare != 0 {
			n, err := SocketCount(spare)
			switch {
			case err != nil:
				spare = 0 // gone
			case n >= 2:
				return spare, nil
			}
		}
		// Scanning /proc for the spare costs more than reading its fds:
		// the first is polled less often (the launch begins with the
		// binary's checksum, some 8 ms, before the exec anyway).
		if spare == 0 {
			time.Sleep(2 * time.Millisecond)
		} else {
			time.Sleep(250 * time.Microsecond)
		}
	}
	return 0, fmt.Errorf("no connected warm spare of %s within %v", f.plugin, timeout)
}

// measureRestarts runs the restart benchmark with the given crash spacing
// and returns its result, or nil if the test failed.
func measureRestarts(t *testing.T, f *fixture, spacing string) *RestartResult {
	t.Helper()
	dir := t.TempDir()
	sockets := socketDir(t)
	cfg := filepath.Join(dir, "host.hcl")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, restartConfig, f.pluginDir), 0o644); err != nil {
		t.Fatal(err)
	}
	// The hook runs on the supervisor's goroutine: it only stamps the event
	// and hands it over. Every crash makes four events and the harness
	// consumes them as they come, so the buffer never fills.
	events := make(chan stamped, 1024)
	hook := func(ev supervise.Event) {
		select {
		case events <- stamped{ev, time.Now()}:
		default:
			panic("benchmark event buffer full")
		}
	}
	// The host logs as `serve -log-json` does, into a buffer shown on failure.
	logs := &tailBuffer{max: 64 << 10}
	logger := hclog.New(&hclog.LoggerOptions{Name: "dynworkers", Level: hclog.Info, Output: logs, JSONFormat: true})
	d, err := daemon.Load(context.Background(), daemon.Options{ConfigPath: cfg, Logger: logger, EventHook: hook})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- d.Run(ctx) }()

	var seen []Proc // every plugin process, checked at the end
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-runErr:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(eventTimeout):
			t.Errorf("Run did not return within %v of cancel", eventTimeout)
		}
		// Run returns once every worker is stopped and reaped, and each
		// killed instance was reaped before its ChildExited: nothing may
		// be left.
		for _, p := range seen {
			if !p.WaitGone(5 * time.Second) {
				t.Errorf("plugin process %d still alive after the host stopped", p.Pid)
				_ = syscall.Kill(p.Pid, syscall.SIGKILL)
			}
		}
		for _, p := range ChildrenOf(os.Getpid()) {
			if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", p.Pid)); exe == f.plugin {
				t.Errorf("plugin process %d still alive after the host stopped", p.Pid)
			}
		}
		if t.Failed() {
			t.Logf("host log (tail):\n%s", logs.String())
		}
	}
	t.Cleanup(stop)

	next := func(what string) stamped {
		t.Helper()
		select {
		case s := <-events:
			switch e := s.ev.(type) {
			case supervise.ChildFailed, supervise.ChildStartFailed:
				t.Fatalf("waiting for %s: %s", what, e)
			}
			return s
		case <-time.After(eventTimeout):
			t.Fatalf("no %s within %v; workers: %+v", what, eventTimeout, d.Workers())
		}
		panic("unreachable")
	}
	// expect returns the next event, which must be of type T.
	expect := func(want supervise.EventType) stamped {
		t.Helper()
		s := next(string(want))
		if s.ev.Type() != want {
			t.Fatalf("got event %s, want %s", s.ev, want)
		}
		return s
	}
	started := func(s stamped) *pluginproc.Process {
		t.Helper()
		p := daemon.ProcessOf(s.ev.(supervise.ChildStarted).Instance)
		ok := p != nil
		if !ok {
			t.Fatalf("instance is %T, want *pluginproc.Process", s.ev.(supervise.ChildStarted).Instance)
		}
		return p
	}
	identify := func(p *pluginproc.Process) {
		t.Helper()
		id, err := Identify(p.Pid())
		if err != nil {
			t.Fatalf("new plugin process %d: %v", p.Pid(), err)
		}
		seen = append(seen, id)
	}

	expect(supervise.EventChildStarting)
	cur := expect(supervise.EventChildStarted)
	proc := started(cur)
	identify(proc)

	var total, detect, start, health, spareWait []time.Duration
	fromSpare := 0
	var healthyAt time.Time // when the current instance answered Health
	for i := range restartWarmup + restartCrashes {
		// Keep the instance up for longer than reset_after, so that its
		// crash counts as the first and is restarted at once. (A wait for
		// a point in time, not for something to happen.)
		time.Sleep(time.Until(cur.ev.(supervise.ChildStarted).Time.Add(restartResetAfter + time.Millisecond)))
		// Spaced: wait for the warm spare, which the host launches once
		// a worker of the binary has failed (so not before the first
		// kill), and once the Start that took the previous one returned.
		spare := 0
		if spacing == SpacingSpareReady && i > 0 {
			var err error
			if spare, err = waitSpareReady(f, proc.Pid(), eventTimeout); err != nil {
				t.Fatalf("crash %d: %v", i, err)
			}
			if i >= restartWarmup {
				spareWait = append(spareWait, time.Since(healthyAt))
			}
			time.Sleep(spareMargin)
		}

		old := proc.Pid()
		t0 := time.Now()
		if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
			t.Fatalf("kill %d: %v", old, err)
		}
		exited := expect(supervise.EventChildExited)
		if e := exited.ev.(supervise.ChildExited); e.Err == nil || !strings.Contains(e.Err.Error(), "SIGKILL") {
			t.Fatalf("crash %d: exit reason %v, want killed by SIGKILL", i, e.Err)
		}
		if r := expect(supervise.EventChildRestarting).ev.(supervise.ChildRestarting); r.Delay != 0 {
			t.Fatalf("crash %d: restart delay %v, want an immediate restart (uptime above reset_after)", i, r.Delay)
		}
		expect(supervise.EventChildStarting)
		cur = expect(supervise.EventChildStarted)
		proc = started(cur)
		hctx, hcancel := context.WithTimeout(context.Background(), eventTimeout)
		err := proc.Health(hctx)
		t1 := time.Now()
		hcancel()
		if err != nil {
			t.Fatalf("crash %d: Health of the new instance: %v", i, err)
		}
		if proc.Pid() == old {
			t.Fatalf("crash %d: the new instance has the old pid %d", i, old)
		}
		identify(proc)
		healthyAt = t1
		if i < restartWarmup {
			continue
		}
		if spare != 0 && proc.Pid() == spare {
			fromSpare++
		}
		total = append(total, t1.Sub(t0))
		detect = append(detect, exited.at.Sub(t0))
		start = append(start, cur.at.Sub(exited.at))
		health = append(health, t1.Sub(cur.at))
	}
	stop()
	if t.Failed() {
		return nil
	}
	stale, _ := os.ReadDir(sockets)

	res := &RestartResult{
		Spacing: spacing, Crashes: restartCrashes, Warmup: restartWarmup,
		Total: Summarize(total), Detect: Summarize(detect), Start: Summarize(start), Health: Summarize(health),
		TotalUS: Micros(total), DetectUS: Micros(detect), StartUS: Micros(start), HealthUS: Micros(health),
		StaleSockets: len(stale),
	}
	if spacing == SpacingSpareReady {
		res.SpareWait, res.SpareWaitUS, res.SpareMargin, res.FromSpare = Summarize(spareWait), Micros(spareWait), spareMargin, fromSpare
	}
	t.Logf("%s: kill→healthy p50 %v p90 %v p99 %v max %v", spacing, res.Total.P50, res.Total.P90, res.Total.P99, res.Total.Max)
	t.Logf("  kill→exited p50 %v p99 %v; exited→started p50 %v p99 %v; started→healthy p50 %v p99 %v",
		res.Detect.P50, res.Detect.P99, res.Start.P50, res.Start.P99, res.Health.P50, res.Health.P99)
	if spacing == SpacingSpareReady {
		t.Logf("  healthy→spare ready p50 %v p99 %v (+%v margin); %d of %d restarts went into the spare seen ready",
			res.SpareWait.P50, res.SpareWait.P99, spareMargin, res.FromSpare, restartCrashes)
	}
	t.Logf("  %d socket files left behind by %d killed plugins", res.StaleSockets, restartWarmup+restartCrashes)
	return res
}
