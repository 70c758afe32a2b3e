package daemon

import (
	"context"
	"errors"
	"fmt"
	"github.com/dynworkers/dynworkers/host/internal/api"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/host/internal/pluginproc"
	"github.com/dynworkers/dynworkers/host/internal/supervise"
)

func startPoolHost(t *testing.T, body string) *harness {
	t.Helper()
	dir := t.TempDir()
	linkPlugin(t, filepath.Join(dir, "plugins"), "chaos")
	linkPlugin(t, filepath.Join(dir, "plugins"), "pool")
	return startHostIn(t, dir, body)
}

// A pool of 3 (plugins/pool, a hybrid): killing a child restarts only it;
// killing the pool stops its children first, then the pool and 3 new
// children come back.
func TestPoolOfThree(t *testing.T) {
	h := startPoolHost(t, `
worker "pool-a" {
  class = "dynworkers.pool"
  config {
    class = "chaos"
    size  = 3
    config = {
      message = "from the pool"
    }
  }
}
`)
	names := []string{"pool-a.1", "pool-a.2", "pool-a.3"}
	pool := h.waitStarted("pool-a")
	kids := map[string]int{}
	for _, n := range names {
		kids[n] = h.waitStarted(n)
		ws, ok := h.d.Worker(n)
		if !ok || ws.Supervisor != "root/pool-a" || ws.Class != "chaos" || ws.State != "running" {
			t.Fatalf("%s = %+v", n, ws)
		}
	}
	if s := h.supervisor("root/pool-a"); s.Source != api.SourceHybrid || s.State != "running" {
		t.Fatalf("children's supervisor = %+v", s)
	}

	// Kill one child: only it restarts.
	kids["pool-a.2"] = h.kill("pool-a.2", kids["pool-a.2"])
	for _, n := range []string{"pool-a.1", "pool-a.3"} {
		if h.pid(n) != kids[n] {
			t.Fatalf("%s was restarted", n)
		}
	}
	if h.pid("pool-a") != pool {
		t.Fatal("the pool was restarted")
	}

	// Kill the pool: its children stop before its exit is reported, then
	// it comes back and starts 3 new children.
	if err := syscall.Kill(pool, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	newPool := h.waitStarted("pool-a")
	for _, n := range names {
		waitGone(t, 5*time.Second, kids[n])
		if p := h.waitStarted(n); p == kids[n] {
			t.Fatalf("%s kept its pid", n)
		}
	}
	if newPool == pool {
		t.Fatal("pool kept its pid")
	}
	var order []string
	for _, ev := range h.d.Events() {
		switch e := ev.(type) {
		case supervise.ChildExited:
			if e.Child == "pool-a" {
				order = append(order, "pool exited")
			}
		case supervise.ChildStopped:
			if slices.Contains(names, e.Child) {
				order = append(order, "child stopped")
			}
		case supervise.ChildStarting:
			if e.Child == "pool-a" && e.Attempt > 1 {
				order = append(order, "pool starting")
			}
		}
	}
	if want := []string{"child stopped", "child stopped", "child stopped", "pool exited", "pool starting"}; !slices.Equal(order, want) {
		t.Fatalf("order = %v, want %v", order, want)
	}
	for _, n := range names {
		if ws, _ := h.d.Worker(n); ws.State != "running" {
			t.Fatalf("%s = %+v", n, ws)
		}
	}
}

// The Host service's errors reach the hybrid with their meaning, and a
// child name cannot take another worker's name.
func TestChildHostErrors(t *testing.T) {
	h := startPoolHost(t, `
worker "taken.1" {
  class = "chaos"
}
worker "taken" {
  class = "chaos"
}
`)
	h.waitStarted("taken")
	h.waitStarted("taken.1")
	ch, ok := h.d.tree.ChildHost("taken")
	if !ok {
		t.Fatal("no ChildHost for taken")
	}
	ctx := context.Background()
	cases := []struct {
		req  pluginproc.ChildRequest
		want error
	}{
		{pluginproc.ChildRequest{Name: "1", Class: "chaos"}, pluginproc.ErrChildExists},
		{pluginproc.ChildRequest{Name: "../x", Class: "chaos"}, pluginproc.ErrInvalidChild},
		{pluginproc.ChildRequest{Name: "x", Class: "nope"}, pluginproc.ErrInvalidChild},
		{pluginproc.ChildRequest{Name: "x", Class: "chaos", Restart: "sometimes"}, pluginproc.ErrInvalidChild},
		{pluginproc.ChildRequest{Name: "x", Class: "chaos", ConfigJSON: []byte(`{"mode": "dance"}`)}, nil},
	}
	for _, c := range cases {
		_, _, err := ch.StartChild(ctx, c.req)
		if c.want != nil && !errors.Is(err, c.want) || c.want == nil && err == nil {
			t.Errorf("StartChild(%+v) = %v, want %v", c.req, err, c.want)
		}
	}
	if err := ch.StopChild(ctx, "nobody"); !errors.Is(err, pluginproc.ErrChildNotFound) {
		t.Errorf("StopChild = %v", err)
	}
	info, outcome, err := ch.StartChild(ctx, pluginproc.ChildRequest{Name: "ok", Class: "chaos"})
	if err != nil || outcome != pluginproc.ChildStarted || info.Pid == 0 {
		t.Fatalf("StartChild(ok) = %+v %s %v", info, outcome, err)
	}
	if _, outcome, _ := ch.StartChild(ctx, pluginproc.ChildRequest{Name: "ok", Class: "chaos"}); outcome != pluginproc.ChildUnchanged {
		t.Fatalf("again: %s", outcome)
	}
	// A child whose start failed stays, as failed, like any worker.
	list, _ := ch.ListChildren(ctx)
	if got := fmt.Sprint(list[0].Name, list[0].State, list[1].Name, list[1].State); len(list) != 2 || got != "xfailedokrunning" {
		t.Fatalf("list = %+v", list)
	}
	// Control messages cannot take the hybrid's children from it.
	var cerr *control.Error
	if err := h.d.StopWorker(ctx, "taken.ok"); !errors.As(err, &cerr) || cerr.Code != control.CodeConflict {
		t.Fatalf("StopWorker(child) = %v", err)
	}
	if _, err := h.d.StartWorker(ctx, control.WorkerSpec{Name: "intruder", Class: "chaos", Supervisor: "root/taken"}); !errors.As(err, &cerr) || cerr.Code != control.CodeConflict {
		t.Fatalf("StartWorker into the children's supervisor = %v", err)
	}
	if _, err := h.d.StopSupervisor(ctx, "root/taken"); !errors.As(err, &cerr) || cerr.Code != control.CodeConflict {
		t.Fatalf("StopSupervisor(children's supervisor) = %v", err)
	}
	// A restart of the worker ends its incarnation, and its children
	// with it.
	if err := h.d.RestartWorker(ctx, "taken"); err != nil {
		t.Fatal(err)
	}
	if _, ok := h.d.Worker("taken.ok"); ok {
		t.Fatal("child still known after its owner's incarnation ended")
	}
	waitGone(t, 5*time.Second, info.Pid)
}

// A reload that removes the supervisor of a hybrid removes the hybrid and
// its children with it.
func TestReloadRemovesHybridWithItsSupervisor(t *testing.T) {
	h := startPoolHost(t, `
supervisor "root" {
  supervisor "pools" {
    worker "p" {
      class = "dynworkers.pool"
      config {
        class = "chaos"
        size  = 2
      }
    }
  }
}
`)
	h.waitStarted("p")
	kids := []int{h.waitStarted("p.1"), h.waitStarted("p.2")}
	h.rewrite(`
worker "other" {
  class = "chaos"
}
`)
	out, err := h.d.Reload(context.Background())
	if err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if res := out; fmt.Sprint(res.SupervisorsRemoved, res.Removed) != "[root/pools] [p]" {
		t.Fatalf("result = %+v", res)
	}
	waitGone(t, 5*time.Second, kids...)
	for _, w := range []string{"p", "p.1", "p.2"} {
		if _, ok := h.d.Worker(w); ok {
			t.Errorf("%s still known", w)
		}
	}
	h.waitStarted("other")
}
