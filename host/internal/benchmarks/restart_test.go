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
// checkpoints.
func TestRestartLatency(t *testing.T) {
	f := setup(t)
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
		p, ok := s.ev.(supervise.ChildStarted).Instance.(*pluginproc.Process)
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

	var total, detect, start, health []time.Duration
	for i := range restartWarmup + restartCrashes {
		// Keep the instance up for longer than reset_after, so that its
		// crash counts as the first and is restarted at once. (A wait for
		// a point in time, not for something to happen.)
		time.Sleep(time.Until(cur.ev.(supervise.ChildStarted).Time.Add(restartResetAfter + time.Millisecond)))

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
		if i < restartWarmup {
			continue
		}
		total = append(total, t1.Sub(t0))
		detect = append(detect, exited.at.Sub(t0))
		start = append(start, cur.at.Sub(exited.at))
		health = append(health, t1.Sub(cur.at))
	}
	stop()
	if t.Failed() {
		return
	}
	stale, _ := os.ReadDir(sockets)

	res := &RestartResult{
		Crashes: restartCrashes, Warmup: restartWarmup,
		Total: Summarize(total), Detect: Summarize(detect), Start: Summarize(start), Health: Summarize(health),
		TotalUS: Micros(total), DetectUS: Micros(detect), StartUS: Micros(start), HealthUS: Micros(health),
		StaleSockets: len(stale),
	}
	t.Logf("kill→healthy p50 %v p90 %v p99 %v max %v", res.Total.P50, res.Total.P90, res.Total.P99, res.Total.Max)
	t.Logf("  kill→exited p50 %v p99 %v; exited→started p50 %v p99 %v; started→healthy p50 %v p99 %v",
		res.Detect.P50, res.Detect.P99, res.Start.P50, res.Start.P99, res.Health.P50, res.Health.P99)
	t.Logf("  %d socket files left behind by %d killed plugins", res.StaleSockets, restartWarmup+restartCrashes)
	record(func(r *Results) { r.Restart = res })
}
