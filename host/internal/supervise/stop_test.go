package supervise_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/supervise"
)

func TestStopStopsInReverseOrder(t *testing.T) {
	h := newHarness(t, supervise.Spec{})
	h.add(supervise.ChildSpec{Name: "a"})
	h.add(supervise.ChildSpec{Name: "b", ShutdownTimeout: 3 * time.Second}, startPlan{ignoreStop: true})
	h.add(supervise.ChildSpec{Name: "c"})
	if len(supervisorGoroutines()) == 0 {
		t.Fatal("the goroutine check sees no goroutine of a running supervisor")
	}

	stopped := async(func() error { return h.sup.Stop(testCtx(t)) })
	// c goes first; b ignores Stop and holds up a until it is killed.
	next[supervise.ChildStopped](t, h.rec, "c")
	next[supervise.ChildStopping](t, h.rec, "b")
	h.log.waitEntry(t, "stop b#1")
	h.wantState("a", supervise.StateRunning)
	h.clk.Advance(3 * time.Second)
	err := wait(t, stopped)
	if !errors.Is(err, errKilled) {
		t.Fatalf("Stop = %v, want the kill error of b", err)
	}
	want := []string{"stop c#1", "stop b#1", "killed b#1", "stop a#1"}
	if got := slices.DeleteFunc(h.log.all(), func(e string) bool { return e[:4] != "stop" && e[:4] != "kill" }); !slices.Equal(got, want) {
		t.Fatalf("log = %v, want %v", got, want)
	}
	for _, st := range h.sup.Status() {
		if st.State != supervise.StateStopped || st.Instance != nil {
			t.Errorf("after Stop: %+v", st)
		}
	}
	select {
	case <-h.sup.Done():
	default:
		t.Fatal("Done not closed after Stop")
	}
	checkNoGoroutines(t, h.before)

	// Afterwards nothing can be added or restarted; Stop is idempotent.
	ctx := testCtx(t)
	if err := h.sup.Add(ctx, supervise.ChildSpec{Name: "d", Service: newFakeService("d", h.log)}); !errors.Is(err, supervise.ErrStopped) {
		t.Errorf("Add after Stop = %v", err)
	}
	if err := h.sup.RestartChild(ctx, "a"); !errors.Is(err, supervise.ErrStopped) {
		t.Errorf("RestartChild after Stop = %v", err)
	}
	if err := h.sup.Stop(ctx); !errors.Is(err, errKilled) {
		t.Errorf("second Stop = %v", err)
	}
}

func TestStopDuringBackoffCancelsTimer(t *testing.T) {
	h := newHarness(t, supervise.Spec{})
	svc, inst := h.add(supervise.ChildSpec{Name: "w", Backoff: noJitter})
	inst.Exit(errCrash)
	inst = next[supervise.ChildStarted](t, h.rec, "w").Instance.(*fakeInstance)
	inst.Exit(errCrash)
	next[supervise.ChildRestarting](t, h.rec, "w")
	h.wantPending(10 * time.Millisecond)

	if err := h.sup.Stop(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	h.wantPending()
	h.wantState("w", supervise.StateStopped)
	h.clk.Advance(time.Hour)
	if svc.starts() != 2 {
		t.Fatalf("starts = %d", svc.starts())
	}
	checkNoGoroutines(t, h.before)
}

func TestStopWaitsForStartInProgress(t *testing.T) {
	h := newHarness(t, supervise.Spec{})
	h.add(supervise.ChildSpec{Name: "a"})
	release, open := gate(t)
	svc := newFakeService("b", h.log, startPlan{block: release})
	added := async(func() error { return h.sup.Add(testCtx(t), supervise.ChildSpec{Name: "b", Service: svc}) })
	next[supervise.ChildStarting](t, h.rec, "b")

	stopped := async(func() error { return h.sup.Stop(testCtx(t)) })
	next[supervise.ChildStopping](t, h.rec, "b")
	if err := h.sup.Add(testCtx(t), supervise.ChildSpec{Name: "c", Service: newFakeService("c", h.log)}); !errors.Is(err, supervise.ErrStopped) {
		t.Fatalf("Add during Stop = %v", err)
	}
	h.wantState("a", supervise.StateRunning) // a waits for b
	open()
	if err := wait(t, stopped); err != nil {
		t.Fatal(err)
	}
	if err := wait(t, added); err != nil {
		t.Fatal(err)
	}
	want := []string{"start a#1", "run a#1", "start b#1", "run b#1", "stop b#1", "stop a#1"}
	if got := h.log.all(); !slices.Equal(got, want) {
		t.Fatalf("log = %v, want %v", got, want)
	}
}

func TestNothingRestartsDuringStop(t *testing.T) {
	h := newHarness(t, supervise.Spec{})
	_, a := h.add(supervise.ChildSpec{Name: "a"})
	h.add(supervise.ChildSpec{Name: "b", ShutdownTimeout: time.Second}, startPlan{ignoreStop: true})
	stopped := async(func() error { return h.sup.Stop(testCtx(t)) })
	next[supervise.ChildStopping](t, h.rec, "b")
	a.Exit(errCrash) // a crashes while b is being stopped
	next[supervise.ChildExited](t, h.rec, "a")
	next[supervise.ChildStopped](t, h.rec, "a")
	h.clk.Advance(time.Second)
	if err := wait(t, stopped); !errors.Is(err, errKilled) {
		t.Fatal(err)
	}
	if got := h.log.filter("start"); !slices.Equal(got, []string{"start a#1", "start b#1"}) {
		t.Fatalf("starts = %v", got)
	}
}

func TestStopTimesOutButFinishesLater(t *testing.T) {
	h := newHarness(t, supervise.Spec{})
	h.add(supervise.ChildSpec{Name: "w", ShutdownTimeout: time.Second}, startPlan{ignoreStop: true})
	ctx, cancel := context.WithCancel(context.Background())
	stopped := async(func() error { return h.sup.Stop(ctx) })
	next[supervise.ChildStopping](t, h.rec, "w")
	cancel()
	if err := wait(t, stopped); !errors.Is(err, context.Canceled) {
		t.Fatalf("Stop = %v", err)
	}
	h.clk.Advance(time.Second)
	if err := h.sup.Stop(testCtx(t)); !errors.Is(err, errKilled) {
		t.Fatalf("second Stop = %v", err)
	}
}

// TestManyOperationsLeaveNoGoroutines drives every kind of request and then
// checks, after Stop, that every instance ever started has ended and that no
// goroutine is left.
func TestManyOperationsLeaveNoGoroutines(t *testing.T) {
	h := newHarness(t, supervise.Spec{Intensity: 1000})
	insts := map[string][]*fakeInstance{}
	track := func(name string) {
		insts[name] = append(insts[name], next[supervise.ChildStarted](t, h.rec, name).Instance.(*fakeInstance))
	}
	current := func(name string) *fakeInstance { return insts[name][len(insts[name])-1] }
	ctx := testCtx(t)
	for _, name := range []string{"a", "b", "c", "d"} {
		if err := h.sup.Add(ctx, supervise.ChildSpec{Name: name, Service: newFakeService(name, h.log), Backoff: noJitter}); err != nil {
			t.Fatal(err)
		}
		track(name)
	}
	for range 5 {
		current("a").Exit(errCrash)
		r := next[supervise.ChildRestarting](t, h.rec, "a")
		h.clk.Advance(r.Delay)
		track("a")
		if err := h.sup.RestartChild(ctx, "b"); err != nil {
			t.Fatal(err)
		}
		track("b")
	}
	current("c").Exit(nil)
	next[supervise.ChildRestarting](t, h.rec, "c")
	track("c")
	if err := h.sup.StopChild(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if err := h.sup.Remove(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	if err := h.sup.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, list := range insts {
		for _, inst := range list {
			n++
			select {
			case <-inst.Done():
			default:
				t.Errorf("instance %s still running after Stop", inst.id)
			}
		}
	}
	if n != 15 {
		t.Errorf("tracked %d instances, want 15", n)
	}
	checkNoGoroutines(t, h.before)
}
