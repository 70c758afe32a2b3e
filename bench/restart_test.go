package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
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
// each instance up longer than that) and is never marked failed. The amqp
// block is there for the events: the harness reads them on vumi.events.
const restartConfig = `system_id = %q
host {
  name       = "bench"
  plugin_dir = %q
  state_dir  = "var"
  http_addr  = "127.0.0.1:0"
}
amqp {
  url = %q
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

// TestRestartLatency SIGKILLs the plugin process of one worker of
// `dynworkers serve` 200 times and measures each time from just before the
// kill to the worker_started event of the replacement (its `time`, the
// host's clock), with the events read from vumi.events as checkpoints.
// Each new instance is killed as soon as the harness has its
// worker_started, which comes later than reset_after (about 1 ms):
// back-to-back crashes, a crash loop, which come sooner than the host's
// next warm spare is ready.
func TestRestartLatency(t *testing.T) {
	f := setup(t)
	url := needBroker(t, func(string) {})
	if res := measureRestarts(t, f, url, SpacingBackToBack); res != nil {
		record(func(r *Results) { r.Restart = res })
	}
}

// TestRestartLatencySpaced is TestRestartLatency with each kill held back
// until the host's warm spare of the binary is ready again (see
// waitSpareReady): the restart of a worker that crashes now and then.
func TestRestartLatencySpaced(t *testing.T) {
	f := setup(t)
	url := needBroker(t, func(string) {})
	if res := measureRestarts(t, f, url, SpacingSpareReady); res != nil {
		record(func(r *Results) { r.RestartSpaced = res })
	}
}

// isPluginProc reports whether pid runs the plugin binary f.plugin: its
// /proc/<pid>/exe has the plugin's file name. The host may exec a verified
// copy of the binary kept under its state directory rather than f.plugin
// itself (named <dir>/<sha256>/<basename>), so the name is compared, not
// the path; a child between fork and exec still shows the host's binary.
func (f *fixture) isPluginProc(pid int) bool {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	return err == nil && filepath.Base(strings.TrimSuffix(exe, " (deleted)")) == filepath.Base(f.plugin)
}

// waitSpareReady waits until the host has a child process running the
// plugin, other than the worker's, that is connected: a warm spare past
// its go-plugin handshake, with its listener and the host's gRPC
// connection open (two sockets in /proc/<pid>/fd). The host may keep
// several spares of a binary that crash-loops; the first of them seen
// connected is returned (its pid). It polls on a schedule of its own
// because the moment it sees a spare ready is measured (spare_wait).
func waitSpareReady(f *fixture, host, worker int, timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	var spares []int
	lastScan := time.Time{}
	for time.Now().Before(deadline) {
		// Scanning /proc for the spares costs more than reading their
		// fds: rescan every 2 ms (a new spare's launch takes longer than
		// that anyway before it can be connected), check the fds of
		// those known every 250 µs.
		if time.Since(lastScan) >= 2*time.Millisecond {
			spares = spares[:0]
			for _, c := range ChildrenOf(host) {
				if c.Pid != worker && f.isPluginProc(c.Pid) {
					spares = append(spares, c.Pid)
				}
			}
			lastScan = time.Now()
		}
		for _, pid := range spares {
			if n, err := SocketCount(pid); err == nil && n >= 2 {
				return pid, nil
			}
		}
		if len(spares) == 0 {
			time.Sleep(2 * time.Millisecond)
		} else {
			time.Sleep(250 * time.Microsecond)
		}
	}
	return 0, fmt.Errorf("no connected warm spare of %s within %v", f.plugin, timeout)
}

// measureRestarts runs the restart benchmark with the given crash spacing
// and returns its result, or nil if the test failed.
func measureRestarts(t *testing.T, f *fixture, url, spacing string) *RestartResult {
	t.Helper()
	dir := t.TempDir()
	sockets := socketDir(t)
	sys := benchID(t)
	admin := newAMQPAdmin(t, url)
	admin.deleteAtCleanup(controlQueues(sys, "bench")...)
	events := watchEvents(admin, sys, "bench")
	cfg := filepath.Join(dir, "host.hcl")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, restartConfig, sys, f.pluginDir, url), 0o644); err != nil {
		t.Fatal(err)
	}
	h := startHostCrashing(t, f.host, dir, cfg, true)
	h.waitRunning(1)

	// expect returns the next event of the worker, which must be want.
	expect := func(want string) hostEvent {
		t.Helper()
		ev := events.next("hello", want)
		if ev.Event == "worker_failed" || ev.Event == "worker_start_failed" {
			t.Fatalf("waiting for %s: %s (%s)", want, ev.Event, ev.Error)
		}
		if ev.Event != want {
			t.Fatalf("got event %s, want %s", ev.Event, want)
		}
		return ev
	}
	var seen []Proc // every plugin process, checked at the end
	identify := func(pid int) {
		t.Helper()
		id, err := Identify(pid)
		if err != nil {
			t.Fatalf("new plugin process: %v", err)
		}
		seen = append(seen, id)
	}

	expect("worker_starting")
	cur := expect("worker_started")
	identify(cur.Pid)

	var total, detect, start, notify, spareWait []time.Duration
	fromSpare := 0
	for i := range restartWarmup + restartCrashes {
		// Keep the instance up for longer than reset_after, so that its
		// crash counts as the first and is restarted at once. (A wait for
		// a point in time, not for something to happen; the event comes
		// later than that already, as a rule.)
		time.Sleep(time.Until(cur.Time.Add(restartResetAfter + time.Millisecond)))
		// Spaced: wait for the warm spare, which the host launches once
		// a worker of the binary has failed (so not before the first
		// kill), and once the Start that took the previous one returned.
		spare := 0
		var spares []int
		if spacing == SpacingSpareReady && i > 0 {
			var err error
			if spare, err = waitSpareReady(f, h.pid(), cur.Pid, eventTimeout); err != nil {
				t.Fatalf("crash %d: %v", i, err)
			}
			if i >= restartWarmup {
				spareWait = append(spareWait, time.Since(cur.Time))
			}
			time.Sleep(spareMargin) // see spareMargin
			// Every spare there is now (the host may keep several): a
			// restart into any of them counts as one from a spare.
			spares = spares[:0]
			for _, c := range ChildrenOf(h.pid()) {
				if c.Pid != cur.Pid && f.isPluginProc(c.Pid) {
					spares = append(spares, c.Pid)
				}
			}
		}

		old := cur.Pid
		t0 := time.Now()
		if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
			t.Fatalf("kill %d: %v", old, err)
		}
		exited := expect("worker_exited")
		if !strings.Contains(exited.Error, "SIGKILL") && !strings.Contains(exited.Error, "killed") {
			t.Fatalf("crash %d: exit reason %q, want killed by SIGKILL", i, exited.Error)
		}
		if r := expect("worker_restarting"); r.DelaySeconds != 0 {
			t.Fatalf("crash %d: restart delay %vs, want an immediate restart (uptime above reset_after)", i, r.DelaySeconds)
		}
		expect("worker_starting")
		cur = expect("worker_started")
		if cur.Pid == old || cur.Pid == 0 {
			t.Fatalf("crash %d: the new instance has pid %d (the old one was %d)", i, cur.Pid, old)
		}
		identify(cur.Pid)
		if i < restartWarmup {
			continue
		}
		if spare != 0 && slices.Contains(spares, cur.Pid) {
			fromSpare++
		}
		total = append(total, cur.Time.Sub(t0))
		detect = append(detect, exited.Time.Sub(t0))
		start = append(start, cur.Time.Sub(exited.Time))
		notify = append(notify, cur.received.Sub(cur.Time))
	}
	h.stop(seen)
	if t.Failed() {
		return nil
	}
	stale, _ := os.ReadDir(sockets)

	res := &RestartResult{
		Spacing: spacing, Crashes: restartCrashes, Warmup: restartWarmup,
		Total: Summarize(total), Detect: Summarize(detect), Start: Summarize(start), Notify: Summarize(notify),
		TotalUS: Micros(total), DetectUS: Micros(detect), StartUS: Micros(start), NotifyUS: Micros(notify),
		StaleSockets: len(stale),
	}
	if spacing == SpacingSpareReady {
		res.SpareWait, res.SpareWaitUS, res.SpareMargin, res.FromSpare = Summarize(spareWait), Micros(spareWait), spareMargin, fromSpare
	}
	t.Logf("%s: kill→worker_started p50 %v p90 %v p99 %v max %v", spacing, res.Total.P50, res.Total.P90, res.Total.P99, res.Total.Max)
	t.Logf("  kill→exited p50 %v p99 %v; exited→started p50 %v p99 %v; started→event received p50 %v p99 %v",
		res.Detect.P50, res.Detect.P99, res.Start.P50, res.Start.P99, res.Notify.P50, res.Notify.P99)
	if spacing == SpacingSpareReady {
		t.Logf("  started→spare ready p50 %v p99 %v (+%v margin); %d of %d restarts went into a spare there before the kill",
			res.SpareWait.P50, res.SpareWait.P99, spareMargin, res.FromSpare, restartCrashes)
	}
	t.Logf("  %d socket files left behind by %d killed plugins", res.StaleSockets, restartWarmup+restartCrashes)
	return res
}
