package supervise_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/supervise"
)

// sub makes a supervisor that is down, on h's clock and recorder, adds it
// to parent as the child name, and returns it. The test's cleanup stops the
// root (h.sup) first, which takes the subtree down, and then sub.
func (h *harness) sub(parent *supervise.Supervisor, name string, spec supervise.Spec, children ...string) *supervise.Supervisor {
	h.t.Helper()
	spec.Name, spec.Stopped, spec.Clock, spec.EventHook = name, true, h.clk, h.rec.hook
	s, err := supervise.New(spec)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if err := h.sup.Stop(ctx); err != nil && errors.Is(err, context.DeadlineExceeded) {
			h.t.Error(err)
		}
		if err := s.Stop(ctx); err != nil {
			h.t.Errorf("stopping %s: %v", name, err)
		}
	})
	for _, c := range children {
		cs := supervise.ChildSpec{Name: c, Service: newFakeService(c, h.log), Backoff: noJitter}
		if err := s.Register(testCtx(h.t), cs); err != nil {
			h.t.Fatal(err)
		}
	}
	if st, _ := s.Child(children[0]); st.State != supervise.StateStopped {
		h.t.Fatalf("registered child is %s", st.State)
	}
	cs := supervise.ChildSpec{Name: name, Service: s.AsChild(), StartTimeout: time.Hour, ShutdownTimeout: time.Hour, Backoff: noJitter}
	if err := parent.Add(testCtx(h.t), cs); err != nil {
		h.t.Fatalf("adding %s: %v", name, err)
	}
	return s
}

func escalations(h *harness) map[string]int {
	n := map[string]int{}
	for _, ev := range h.rec.all("") {
		if e, ok := ev.(supervise.SupervisorEscalated); ok {
			n[e.Supervisor]++
		}
	}
	return n
}

// A three-level tree whose leaf worker crashes repeatedly: each level fails
// when its own intensity says so, and escalation stops where a level still
// has budget left.
func TestEscalationReachesExactlyAsFarAsIntensitiesSay(t *testing.T) {
	h := newHarness(t, supervise.Spec{Name: "root", Intensity: 5, Period: time.Hour})
	mid := h.sub(h.sup, "mid", supervise.Spec{Intensity: 1, Period: time.Hour}, "m1")
	leaf := h.sub(mid, "leaf", supervise.Spec{Intensity: 1, Period: time.Hour}, "w")
	if st, _ := leaf.Child("w"); st.State != supervise.StateRunning {
		t.Fatalf("w is %s", st.State)
	}
	w := func() *fakeInstance {
		t.Helper()
		return next[supervise.ChildStarted](t, h.rec, "w").Instance.(*fakeInstance)
	}
	crash := func(inst *fakeInstance) {
		inst.Exit(errCrash)
	}

	inst := w()
	// Crash 1: the leaf restarts w (1 of its 1).
	crash(inst)
	inst = w()
	if got := escalations(h); len(got) != 0 {
		t.Fatalf("escalations = %v", got)
	}
	// Crash 2: the leaf fails; mid restarts it (1 of its 1); w comes back.
	crash(inst)
	next[supervise.SupervisorEscalated](t, h.rec, "w")
	inst = w()
	if got := escalations(h); !maps(got, map[string]int{"leaf": 1}) {
		t.Fatalf("escalations = %v", got)
	}
	if info := mid.Info(); info.State != supervise.SupervisorRunning || info.RestartsInPeriod != 1 {
		t.Fatalf("mid = %+v", info)
	}
	if st, _ := mid.Child("m1"); st.Restarts != 0 {
		t.Fatalf("m1 was restarted: %+v", st)
	}
	// Crashes 3 and 4: the leaf fails again, mid has no budget left and
	// fails too (stopping m1); root restarts mid, which starts m1 and leaf.
	crash(inst)
	inst = w()
	crash(inst)
	esc := next[supervise.SupervisorEscalated](t, h.rec, "leaf") // mid's, naming its child leaf
	if esc.Supervisor != "mid" || !errors.Is(esc.Err, supervise.ErrEscalated) {
		t.Fatalf("escalated = %+v", esc)
	}
	inst = w()
	next[supervise.ChildStarted](t, h.rec, "mid") // the first start
	next[supervise.ChildStarted](t, h.rec, "mid") // root's restart, once its subtree is up
	if got := escalations(h); !maps(got, map[string]int{"leaf": 2, "mid": 1}) {
		t.Fatalf("escalations = %v", got)
	}
	// Root has budget left: it stays up with one restart used.
	root := h.sup.Info()
	if root.State != supervise.SupervisorRunning || root.RestartsInPeriod != 1 {
		t.Fatalf("root = %+v", root)
	}
	st, _ := h.sup.Child("mid")
	if st.State != supervise.StateRunning || st.Restarts != 1 || !errors.Is(st.LastExit, supervise.ErrEscalated) {
		t.Fatalf("mid child = %+v", st)
	}
	for _, s := range []*supervise.Supervisor{mid, leaf} {
		if info := s.Info(); info.State != supervise.SupervisorRunning || info.RestartsInPeriod != 0 {
			t.Fatalf("%s = %+v", info.Name, info)
		}
	}
	// The worker now keeps running; nothing more escalates.
	h.clk.Advance(time.Minute)
	if got := escalations(h); !maps(got, map[string]int{"leaf": 2, "mid": 1}) {
		t.Fatalf("escalations = %v", got)
	}
	if ws, _ := leaf.Child("w"); ws.State != supervise.StateRunning || ws.Instance != supervise.Instance(inst) {
		t.Fatalf("w = %+v", ws)
	}
}

func maps(got, want map[string]int) bool {
	if len(got) != len(want) {
		return false
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

// The root failing leaves it failed, its subtree down and its Status
// answering; Up revives the whole tree.
func TestRootFailureAndRevival(t *testing.T) {
	h := newHarness(t, supervise.Spec{Name: "root", Intensity: 0, Period: time.Hour}) // default 5
	h.add(supervise.ChildSpec{Name: "a", Backoff: noJitter})
	sub := h.sub(h.sup, "sub", supervise.Spec{Intensity: -1}, "s1", "s2")
	h.add(supervise.ChildSpec{Name: "z", Backoff: noJitter})
	mark := len(h.log.all())
	for i := range 6 {
		st, _ := h.sup.Child("z")
		st.Instance.(*fakeInstance).Exit(errCrash)
		if i < 5 {
			r := next[supervise.ChildRestarting](t, h.rec, "z")
			h.clk.Advance(r.Delay)
			next[supervise.ChildStarted](t, h.rec, "z")
		}
	}
	next[supervise.SupervisorEscalated](t, h.rec, "z")
	if info := h.sup.Info(); info.State != supervise.SupervisorFailed {
		t.Fatalf("root = %+v", info)
	}
	if info := sub.Info(); info.State != supervise.SupervisorStopped {
		t.Fatalf("sub = %+v", info)
	}
	// Stopped in reverse declared order, the subtree's children in its
	// reverse order too.
	stops := slices.DeleteFunc(stopsAndStarts(h.log, mark), func(e string) bool { return e[:5] == "start" })
	if want := []string{"stop s2#1", "stop s1#1", "stop a#1"}; !slices.Equal(stops, want) {
		t.Fatalf("stops = %v, want %v", stops, want)
	}
	for _, name := range []string{"a", "sub"} {
		h.wantState(name, supervise.StateStopped)
	}
	h.wantState("z", supervise.StateFailed)

	mark = len(h.log.all())
	if err := h.sup.Up(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if got, want := stopsAndStarts(h.log, mark), []string{"start a#2", "start s1#2", "start s2#2", "start z#7"}; !slices.Equal(got, want) {
		t.Fatalf("log = %v, want %v", got, want)
	}
	if info := sub.Info(); info.State != supervise.SupervisorRunning {
		t.Fatalf("sub = %+v", info)
	}
}

// Down takes a supervisor down in reverse order and Up brings it back; a
// parent's one_for_all restart stops and starts a sub-supervisor like any
// child.
func TestSubSupervisorInOneForAllParent(t *testing.T) {
	h := newHarness(t, supervise.Spec{Strategy: supervise.StrategyOneForAll, Intensity: 10, Period: time.Hour})
	h.add(supervise.ChildSpec{Name: "a", Backoff: noJitter})
	sub := h.sub(h.sup, "sub", supervise.Spec{}, "s1", "s2")
	_, c := h.add(supervise.ChildSpec{Name: "c", Backoff: noJitter})

	mark := len(h.log.all())
	c.Exit(errCrash)
	next[supervise.ChildStarted](t, h.rec, "c")
	want := []string{"stop s2#1", "stop s1#1", "stop a#1", "start a#2", "start s1#2", "start s2#2", "start c#2"}
	if got := stopsAndStarts(h.log, mark); !slices.Equal(got, want) {
		t.Fatalf("log = %v, want %v", got, want)
	}
	// A stop of the sub-supervisor child is a Down; its restart an Up.
	mark = len(h.log.all())
	if err := h.sup.StopChild(testCtx(t), "sub"); err != nil {
		t.Fatal(err)
	}
	if info := sub.Info(); info.State != supervise.SupervisorStopped {
		t.Fatalf("sub = %+v", info)
	}
	if err := h.sup.RestartChild(testCtx(t), "sub"); err != nil {
		t.Fatal(err)
	}
	want = []string{"stop s2#2", "stop s1#2", "start s1#3", "start s2#3"}
	if got := stopsAndStarts(h.log, mark); !slices.Equal(got, want) {
		t.Fatalf("log = %v, want %v", got, want)
	}
	// The sub-supervisor takes children at run time, like any supervisor.
	if err := sub.Add(testCtx(t), supervise.ChildSpec{Name: "s3", Service: newFakeService("s3", h.log)}); err != nil {
		t.Fatal(err)
	}
	if err := sub.Down(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	// The parent sees its child exit normally and restarts it (permanent).
	next[supervise.ChildExited](t, h.rec, "sub")
	ev := next[supervise.ChildStarted](t, h.rec, "sub")
	if si, ok := supervise.SupervisorOf(ev.Instance); !ok || si != sub {
		t.Fatalf("instance = %#v", ev.Instance)
	}
	if st, _ := sub.Child("s3"); st.State != supervise.StateRunning {
		t.Fatalf("s3 = %+v", st)
	}
}

func TestReconfigureKeepsChildren(t *testing.T) {
	h := newHarness(t, supervise.Spec{Intensity: 1, Period: time.Hour})
	_, inst := h.add(supervise.ChildSpec{Name: "w", Backoff: noJitter})
	if err := h.sup.Reconfigure(testCtx(t), supervise.StrategyOneForAll, 3, time.Minute); err != nil {
		t.Fatal(err)
	}
	if info := h.sup.Info(); info.Strategy != supervise.StrategyOneForAll || info.Intensity != 3 || info.Period != time.Minute {
		t.Fatalf("info = %+v", info)
	}
	if st, _ := h.sup.Child("w"); st.Instance != supervise.Instance(inst) {
		t.Fatal("w was restarted")
	}
	// Two crashes no longer exceed the budget.
	for range 2 {
		inst.Exit(errCrash)
		r := next[supervise.ChildRestarting](t, h.rec, "w")
		h.clk.Advance(r.Delay)
		inst = next[supervise.ChildStarted](t, h.rec, "w").Instance.(*fakeInstance)
	}
	if err := h.sup.Reconfigure(testCtx(t), "bogus", 0, 0); !errors.Is(err, supervise.ErrInvalidSpec) {
		t.Fatalf("bogus strategy = %v", err)
	}
}
