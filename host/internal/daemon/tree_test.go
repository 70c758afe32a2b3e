package daemon

import (
	"context"
	"errors"
	"github.com/dynworkers/dynworkers/host/internal/api"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/host/internal/supervise"
	"github.com/dynworkers/dynworkers/host/internal/testplugins"
)

func (h *harness) supervisor(path string) api.Supervisor {
	h.t.Helper()
	for _, s := range h.d.Supervisors() {
		if s.Path == path {
			return s
		}
	}
	h.t.Fatalf("no supervisor %q in %+v", path, h.d.Supervisors())
	return api.Supervisor{}
}

// escalated waits for the SupervisorEscalated event of the supervisor at
// path.
func (h *harness) escalated(path string) supervise.SupervisorEscalated {
	h.t.Helper()
	return h.waitEvent("escalation of "+path, func(ev supervise.Event) bool {
		e, ok := ev.(supervise.SupervisorEscalated)
		return ok && e.Supervisor == path
	}).(supervise.SupervisorEscalated)
}

// kill SIGKILLs the worker's current process and returns the pid of the
// next one.
func (h *harness) kill(worker string, pid int) int {
	h.t.Helper()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		h.t.Fatal(err)
	}
	return h.waitStarted(worker)
}

// A three-level tree of real plugin processes whose leaf worker is killed
// again and again: escalation reaches exactly as far as the intensities
// say, and no further.
func TestEscalationThroughThreeLevels(t *testing.T) {
	h := startHost(t, `
supervisor "root" {
  intensity = 5
  period    = "1h"
  worker "bystander" {
    class = "chaos"
  }
  supervisor "mid" {
    intensity = 1
    period    = "1h"
    worker "m1" {
      class = "chaos"
    }
    supervisor "leaf" {
      intensity = 1
      period    = "1h"
      worker "w" {
        class = "chaos"
        backoff {
          initial = "1ms"
        }
      }
    }
  }
}
`)
	bystander := h.waitStarted("bystander")
	m1 := h.waitStarted("m1")
	pid := h.waitStarted("w")

	// Kill 1: leaf restarts w (its 1 restart). Kill 2: leaf fails, and mid
	// restarts it (mid's 1 restart); m1 is left alone (one_for_one).
	pid = h.kill("w", pid)
	pid = h.kill("w", pid)
	if e := h.escalated("root/mid/leaf"); !errors.Is(e.Err, supervise.ErrEscalated) || e.Child != "w" {
		t.Fatalf("escalated = %+v", e)
	}
	if got := h.pid("m1"); got != m1 {
		t.Fatalf("m1 restarted: %d → %d", m1, got)
	}
	if s := h.supervisor("root/mid"); s.State != "running" || s.RestartsInPeriod != 1 {
		t.Fatalf("mid = %+v", s)
	}
	// Kills 3 and 4: leaf fails again; mid has no budget left and fails
	// too, stopping m1; root (budget 5) restarts mid, which starts m1 and
	// leaf again.
	pid = h.kill("w", pid)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	h.escalated("root/mid")
	pid = h.waitStarted("w")
	if got := h.waitStarted("m1"); got == m1 {
		t.Fatalf("m1 kept pid %d through mid's failure", m1)
	}
	waitGone(t, 5*time.Second, m1)

	root := h.supervisor("root")
	if root.State != "running" || root.RestartsInPeriod != 1 || root.Failure != "" {
		t.Fatalf("root = %+v", root)
	}
	if mid := h.supervisor("root/mid"); mid.State != "running" || mid.Restarts != 1 || mid.RestartsInPeriod != 0 {
		t.Fatalf("mid = %+v", mid)
	}
	if got := h.pid("bystander"); got != bystander {
		t.Fatalf("bystander restarted: %d → %d", bystander, got)
	}
	counts := map[string]int{}
	for _, ev := range h.d.Events() {
		if e, ok := ev.(supervise.SupervisorEscalated); ok {
			counts[e.Supervisor]++
		}
	}
	if counts["root/mid/leaf"] != 2 || counts["root/mid"] != 1 || counts["root"] != 0 {
		t.Fatalf("escalations = %v", counts)
	}
	if ws, _ := h.d.Worker("w"); ws.State != "running" || ws.Pid != pid {
		t.Fatalf("w = %+v", ws)
	}
}

// The root failing leaves the host answering with the root failed and no
// worker running; restart_worker revives the tree.
func TestRootFailureKeepsHostUpAndRestartWorkerRevives(t *testing.T) {
	h := startHost(t, `
supervisor "root" {
  intensity = 1
  period    = "1h"
  worker "a" {
    class = "chaos"
  }
  supervisor "sub" {
    worker "s1" {
      class = "chaos"
    }
  }
  worker "crashy" {
    class = "chaos"
  }
}
`)
	a := h.waitStarted("a")
	s1 := h.waitStarted("s1")
	pid := h.waitStarted("crashy")
	pid = h.kill("crashy", pid)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	h.escalated("root")
	waitGone(t, 5*time.Second, a, s1, pid)
	root := h.supervisor("root")
	if root.State != "failed" || root.Failure == "" {
		t.Fatalf("root = %+v", root)
	}
	// Status keeps answering, over the dispatcher as over AMQP or HTTP.
	disp := control.NewDispatcher(h.d, nil)
	rep := disp.Do(context.Background(), &control.Request{Operation: control.OpStatus})
	if !rep.OK {
		t.Fatalf("status: %+v", rep.Error)
	}
	st := rep.Result.(api.Status)
	if st.Supervisors[0].State != "failed" {
		t.Fatalf("status supervisors = %+v", st.Supervisors)
	}
	for _, w := range st.Workers {
		if w.Pid != 0 || w.State == "running" {
			t.Fatalf("worker still up: %+v", w)
		}
	}
	// A start into the failed root is refused and changes nothing.
	rep = disp.Do(context.Background(), &control.Request{Operation: control.OpStartWorker, WorkerName: "late", WorkerClass: "chaos"})
	if rep.OK || rep.Error.Code != control.CodeConflict {
		t.Fatalf("start into failed root = %+v", rep)
	}
	if _, ok := h.d.Worker("late"); ok || len(h.loadState().Workers) != 0 {
		t.Fatal("the refused start left a worker behind")
	}

	// restart_worker of any worker revives the root and its whole tree
	// (start_supervisor "root" does too, see TestStartSupervisorRevivesRoot).
	if err := h.d.RestartWorker(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"a", "s1", "crashy"} {
		if ws, _ := h.d.Worker(w); ws.State != "running" || ws.Pid == 0 {
			t.Fatalf("%s after revival: %+v", w, ws)
		}
	}
	if root := h.supervisor("root"); root.State != "running" || root.RestartsInPeriod != 0 {
		t.Fatalf("root after revival = %+v", root)
	}
}

// start_supervisor and stop_supervisor at run time, persisted like
// dynamic workers.
func TestStartStopSupervisorPersisted(t *testing.T) {
	dir := t.TempDir()
	linkPlugin(t, dir+"/plugins", "chaos")
	body := `
worker "base" {
  class = "chaos"
}
`
	h := startHostIn(t, dir, body)
	h.waitStarted("base")
	ctx := context.Background()
	res, err := h.d.StartSupervisor(ctx, control.SupervisorSpec{Name: "camp", Strategy: "one_for_all", Intensity: 3, Period: time.Minute})
	if err != nil || res.Action != "started" || res.Supervisor != "root/camp" {
		t.Fatalf("StartSupervisor = %+v, %v", res, err)
	}
	res, err = h.d.StartSupervisor(ctx, control.SupervisorSpec{Name: "inner", Parent: "camp"})
	if err != nil || res.Supervisor != "root/camp/inner" {
		t.Fatalf("StartSupervisor(inner) = %+v, %v", res, err)
	}
	// The same again is unchanged; other settings are a conflict.
	if res, err := h.d.StartSupervisor(ctx, control.SupervisorSpec{Name: "camp", Strategy: "one_for_all", Intensity: 3, Period: time.Minute}); err != nil || res.Action != "unchanged" {
		t.Fatalf("again = %+v, %v", res, err)
	}
	var cerr *control.Error
	if _, err := h.d.StartSupervisor(ctx, control.SupervisorSpec{Name: "camp", Strategy: "rest_for_one"}); !errors.As(err, &cerr) || cerr.Code != control.CodeConflict {
		t.Fatalf("different settings = %v", err)
	}
	if res, err := h.d.StartSupervisor(ctx, control.SupervisorSpec{Name: "camp"}); err != nil || res.Action != "unchanged" {
		t.Fatalf("no settings given = %+v, %v", res, err)
	}
	if _, err := h.d.StartSupervisor(ctx, control.SupervisorSpec{Name: "base"}); !errors.As(err, &cerr) || cerr.Code != control.CodeConflict {
		t.Fatalf("a worker's name = %v", err)
	}
	if _, err := h.d.StartSupervisor(ctx, control.SupervisorSpec{Name: "x", Parent: "nowhere"}); !errors.As(err, &cerr) || cerr.Code != control.CodeNotFound {
		t.Fatalf("unknown parent = %v", err)
	}
	for _, w := range []struct{ name, sup string }{{"c1", "camp"}, {"c2", "root/camp/inner"}} {
		if _, err := h.d.StartWorker(ctx, control.WorkerSpec{Name: w.name, Class: "chaos", Supervisor: w.sup}); err != nil {
			t.Fatal(err)
		}
	}
	c2 := h.waitStarted("c2")
	if ws, _ := h.d.Worker("c2"); ws.Supervisor != "root/camp/inner" {
		t.Fatalf("c2 = %+v", ws)
	}
	st := h.loadState()
	if len(st.Supervisors) != 2 || st.Supervisors[0].Name != "camp" || st.Supervisors[1].Parent != "root/camp" {
		t.Fatalf("persisted supervisors = %+v", st.Supervisors)
	}

	// A new host on the same state restores the supervisors, then the
	// workers in them.
	h.stop()
	waitGone(t, 5*time.Second, c2)
	h = startHostIn(t, dir, body)
	h.waitStarted("c2")
	if s := h.supervisor("root/camp/inner"); s.State != "running" || s.Source != api.SourceControl {
		t.Fatalf("inner after restart = %+v", s)
	}
	if s := h.supervisor("root/camp"); s.Strategy != "one_for_all" || s.Intensity != 3 || s.Period != 60 {
		t.Fatalf("camp after restart = %+v", s)
	}

	// stop_supervisor removes it with its subtree, from the host and the
	// state file.
	c1 := h.pid("c1")
	c2 = h.pid("c2")
	res, err = h.d.StopSupervisor(ctx, "camp")
	if err != nil || res.Action != "removed" {
		t.Fatalf("StopSupervisor = %+v, %v", res, err)
	}
	slices.Sort(res.Removed)
	if want := []string{"c1", "c2", "root/camp", "root/camp/inner"}; !slices.Equal(res.Removed, want) {
		t.Fatalf("removed = %v, want %v", res.Removed, want)
	}
	waitGone(t, 5*time.Second, c1, c2)
	if st := h.loadState(); len(st.Supervisors) != 0 || len(st.Workers) != 0 {
		t.Fatalf("state after stop = %+v", st)
	}
	if _, ok := h.d.Worker("c1"); ok {
		t.Fatal("c1 still known")
	}
	if len(h.d.Supervisors()) != 1 {
		t.Fatalf("supervisors = %+v", h.d.Supervisors())
	}
	if !testplugins.Alive(h.pid("base")) {
		t.Fatal("base is gone")
	}
}

func TestStartSupervisorRevivesRoot(t *testing.T) {
	h := startHost(t, `
supervisor "root" {
  intensity = 1
  period    = "1h"
  worker "a" {
    class = "chaos"
  }
}
`)
	pid := h.waitStarted("a")
	pid = h.kill("a", pid)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	h.escalated("root")
	res, err := h.d.StartSupervisor(context.Background(), control.SupervisorSpec{Name: "root"})
	if err != nil || res.Action != "revived" || res.Supervisor != "root" || res.State != "running" {
		t.Fatalf("StartSupervisor(root) = %+v, %v", res, err)
	}
	if ws, _ := h.d.Worker("a"); ws.State != "running" {
		t.Fatalf("a = %+v", ws)
	}
}
