//go:build linux

package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/contain"
	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/host/internal/pluginproc"
	"github.com/dynworkers/dynworkers/host/internal/supervise"
	"github.com/dynworkers/dynworkers/host/internal/testplugins"
)

// requireCgroups skips the test on a machine without usable memory and pids
// cgroup controllers, unless CI is set: CI runs where they are, and a skip
// there would hide a regression.
func requireCgroups(t *testing.T) {
	t.Helper()
	sup := contain.Detect().Support()
	if sup.Kill != contain.KillProcessOnly && sup.Memory != contain.ByRlimit && sup.Pids != contain.ByRlimit {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("no usable cgroups on this CI machine (%+v): containment cannot be tested", sup)
	}
	t.Skipf("no usable cgroups (%v); run as root on a machine with cgroups", sup.Notes)
}

func TestOOMWorkerIsRestartedNeighbourUntouched(t *testing.T) {
	requireCgroups(t)
	h := startHost(t, `
supervisor "root" {
  intensity = 100
  worker "neighbour" {
    class = "chaos"
  }
  worker "hog" {
    class   = "chaos"
    restart = "permanent"
    limits { memory = "64MiB" }
    config {
      mode  = "oom"
      delay = "300ms"
    }
  }
}
`)
	neighbour := h.waitStarted("neighbour")
	first := h.waitStarted("hog")
	ev := h.waitEvent("the hog's exit", func(ev supervise.Event) bool {
		e, ok := ev.(supervise.ChildExited)
		return ok && e.Child == "hog"
	}).(supervise.ChildExited)
	var ee *pluginproc.ExitError
	if !errors.As(ev.Err, &ee) || !ee.OOM {
		t.Fatalf("the hog exited with %v, want an OOM kill", ev.Err)
	}
	second := h.waitStarted("hog")
	if second == first {
		t.Fatalf("the hog was not restarted in a new process (pid %d)", first)
	}
	// The wire form: worker_exited with reason oom_killed, distinct from a
	// SIGKILL, and the status's last exit.
	var wire *api.Event
	for _, e := range h.d.EventLog() {
		if e.Event == "worker_exited" && e.Worker == "hog" {
			wire = &e
			break
		}
	}
	if wire == nil || wire.Reason != api.ExitOOMKilled || !strings.HasPrefix(wire.Error, "oom_killed (memory limit 64MiB reached)") {
		t.Errorf("worker_exited event = %+v, want reason oom_killed", wire)
	}
	ws, _ := h.d.Worker("hog")
	if ws.LastExitReason != api.ExitOOMKilled || !strings.HasPrefix(ws.LastExit, "oom_killed") || ws.Restarts < 1 {
		t.Errorf("hog status: last_exit %q, last_exit_reason %q, restarts %d; want oom_killed and a restart", ws.LastExit, ws.LastExitReason, ws.Restarts)
	}
	if got := h.pid("neighbour"); got != neighbour {
		t.Errorf("the neighbour's pid changed from %d to %d", neighbour, got)
	}
	if ns, _ := h.d.Worker("neighbour"); ns.Restarts != 0 || ns.LastExit != "" {
		t.Errorf("neighbour status = %+v, want untouched", ns)
	}
}

// grandchildOf returns the pid of a setsid_child worker's grandchild.
func grandchildOf(t *testing.T, h *harness, worker string) int {
	t.Helper()
	raw, err := h.processOf(worker).Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Pid int `json:"grandchild_pid"`
	}
	if err := json.Unmarshal(raw, &st); err != nil || st.Pid <= 0 {
		t.Fatalf("status %s: no grandchild_pid (%v)", raw, err)
	}
	if !testplugins.Alive(st.Pid) {
		t.Fatalf("grandchild %d does not run", st.Pid)
	}
	return st.Pid
}

func TestStopWorkerStopsSetsidGrandchild(t *testing.T) {
	requireCgroups(t)
	dir := t.TempDir()
	linkPlugin(t, filepath.Join(dir, "plugins"), "chaos")
	h := startConfig(t, dir, `system_id = "test"
host {
  name       = "test-host"
  plugin_dir = "plugins"
  state_dir  = "var"
  http_addr  = "127.0.0.1:0"
  limits { pids = 64 }
}
worker "restarted" {
  class = "chaos"
  config { mode = "setsid_child" }
}
`)
	h.waitStarted("restarted")
	ctx := context.Background()
	// A control-started worker gets the host's default limits.
	res, err := h.d.StartWorker(ctx, control.WorkerSpec{Name: "dyn", Class: "chaos", Config: json.RawMessage(`{"mode": "setsid_child"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if got := pidsMax(t, res.Pid); got != "64" {
		t.Errorf("control-started worker's pids.max = %q, want the host default 64", got)
	}
	grandchild := grandchildOf(t, h, "dyn")
	if err := h.d.StopWorker(ctx, "dyn"); err != nil {
		t.Fatal(err)
	}
	if testplugins.Alive(grandchild) {
		t.Errorf("the setsid grandchild %d of a stopped worker still runs", grandchild)
		waitGone(t, 5*time.Second, grandchild)
	}
	// A restart stops the old incarnation's grandchild too.
	old := grandchildOf(t, h, "restarted")
	if err := h.d.RestartWorker(ctx, "restarted"); err != nil {
		t.Fatal(err)
	}
	h.waitStarted("restarted")
	if testplugins.Alive(old) {
		t.Errorf("the setsid grandchild %d of a restarted worker still runs", old)
		waitGone(t, 5*time.Second, old)
	}
	last := grandchildOf(t, h, "restarted")
	h.stop()
	if testplugins.Alive(last) {
		t.Errorf("the setsid grandchild %d outlived the host's shutdown", last)
		waitGone(t, 5*time.Second, last)
	}
}

// pidsMax reads pids.max of the pids cgroup of pid.
func pidsMax(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	sup := contain.Detect().Support()
	for _, line := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		var dir string
		switch {
		case sup.Pids == contain.ByCgroup1 && strings.Contains(","+parts[1]+",", ",pids,"):
			dir = filepath.Join(sup.Cgroup1["pids"], filepath.Base(parts[2]))
		case sup.Pids == contain.ByCgroup2 && parts[0] == "0":
			dir = filepath.Join(sup.Cgroup2, filepath.Base(parts[2]))
		default:
			continue
		}
		v, err := os.ReadFile(filepath.Join(dir, "pids.max"))
		if err != nil {
			t.Fatalf("reading pids.max of %d: %v", pid, err)
		}
		return strings.TrimSpace(string(v))
	}
	t.Fatalf("no pids cgroup for %d in %s", pid, b)
	return ""
}
