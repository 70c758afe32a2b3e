package supervise_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/supervise"
	"github.com/dynworkers/dynworkers/host/internal/supervise/supervisetest"
)

func TestCrashEventSequence(t *testing.T) {
	h := newHarness(t, supervise.Spec{})
	_, inst := h.add(supervise.ChildSpec{Name: "w", Meta: map[string]string{"class": "echo"}})
	h.clk.Advance(3 * time.Second)
	inst.Exit(errCrash)
	next[supervise.ChildStarted](t, h.rec, "w")

	want := []supervise.EventType{
		supervise.EventChildStarting, supervise.EventChildStarted,
		supervise.EventChildExited, supervise.EventChildRestarting,
		supervise.EventChildStarting, supervise.EventChildStarted,
	}
	if got := h.rec.types("w"); !slices.Equal(got, want) {
		t.Fatalf("events = %v, want %v", got, want)
	}
	evs := h.rec.all("w")
	exited := evs[2].(supervise.ChildExited)
	if !errors.Is(exited.Err, errCrash) || exited.Uptime != 3*time.Second {
		t.Errorf("exited = %+v, want err %v and uptime 3s", exited, errCrash)
	}
	restarting := evs[3].(supervise.ChildRestarting)
	if restarting.Delay != 0 || restarting.Attempt != 2 || restarting.Restarts != 1 {
		t.Errorf("restarting = %+v, want delay 0, attempt 2, restarts 1", restarting)
	}
	if a := evs[5].(supervise.ChildStarted).Attempt; a != 2 {
		t.Errorf("second start attempt = %d, want 2", a)
	}

	// Map is JSON-friendly and carries the common fields.
	m := exited.Map()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatalf("marshal %v: %v", m, err)
	}
	var back map[string]any
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	wantKV := map[string]any{
		"event": "worker_exited", "supervisor": "root", "worker": "w", "error": "crash",
		"uptime_seconds": 3.0, "meta": map[string]any{"class": "echo"},
	}
	for k, v := range wantKV {
		if fmt.Sprint(back[k]) != fmt.Sprint(v) {
			t.Errorf("Map()[%q] = %v, want %v", k, back[k], v)
		}
	}
	if exited.Meta["class"] != "echo" || exited.String() == "" {
		t.Errorf("event info = %+v", exited.EventInfo)
	}
	st, _ := h.sup.Child("w")
	if st.Restarts != 1 || !errors.Is(st.LastExit, errCrash) || st.LastExitAt.IsZero() || st.StartedAt.IsZero() {
		t.Errorf("status = %+v", st)
	}
}

func TestBackoffFirstRestartImmediateThenExponential(t *testing.T) {
	h := newHarness(t, supervise.Spec{Intensity: 100, Period: time.Hour})
	_, inst := h.add(supervise.ChildSpec{Name: "w", Backoff: noJitter})

	wantDelays := []time.Duration{0, 10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond, 80 * time.Millisecond, 80 * time.Millisecond}
	for i, want := range wantDelays {
		inst.Exit(errCrash)
		r := next[supervise.ChildRestarting](t, h.rec, "w")
		if r.Delay != want || r.Attempt != i+2 {
			t.Fatalf("restart %d: delay %v attempt %d, want %v and %d", i+1, r.Delay, r.Attempt, want, i+2)
		}
		if want > 0 {
			h.wantState("w", supervise.StateBackoff)
			h.wantPending(want)
			st, _ := h.sup.Child("w")
			if !st.NextStart.Equal(h.clk.Now().Add(want)) {
				t.Fatalf("NextStart = %v, want now+%v", st.NextStart, want)
			}
			h.clk.Advance(want - time.Millisecond)
			h.wantPending(time.Millisecond) // not yet
			h.wantState("w", supervise.StateBackoff)
			h.clk.Advance(time.Millisecond)
		}
		inst = next[supervise.ChildStarted](t, h.rec, "w").Instance.(*fakeInstance)
	}
	if st, _ := h.sup.Child("w"); st.Restarts != len(wantDelays) {
		t.Errorf("Restarts = %d, want %d", st.Restarts, len(wantDelays))
	}
}

func TestBackoffResetsAfterHealthyRun(t *testing.T) {
	h := newHarness(t, supervise.Spec{Intensity: 100, Period: time.Hour})
	b := noJitter
	b.ResetAfter = time.Minute
	_, inst := h.add(supervise.ChildSpec{Name: "w", Backoff: b})

	crash := func(wantDelay time.Duration) {
		t.Helper()
		inst.Exit(errCrash)
		if r := next[supervise.ChildRestarting](t, h.rec, "w"); r.Delay != wantDelay {
			t.Fatalf("delay = %v, want %v", r.Delay, wantDelay)
		}
		h.clk.Advance(wantDelay)
		inst = next[supervise.ChildStarted](t, h.rec, "w").Instance.(*fakeInstance)
	}
	crash(0)
	crash(10 * time.Millisecond)
	crash(20 * time.Millisecond)
	h.clk.Advance(time.Minute - time.Nanosecond) // not quite healthy
	crash(40 * time.Millisecond)
	h.clk.Advance(time.Minute) // healthy: the sequence starts over
	inst.Exit(errCrash)
	r := next[supervise.ChildRestarting](t, h.rec, "w")
	if r.Delay != 0 || r.Attempt != 2 {
		t.Fatalf("after a healthy run: delay %v attempt %d, want 0 and 2", r.Delay, r.Attempt)
	}
	inst = next[supervise.ChildStarted](t, h.rec, "w").Instance.(*fakeInstance)
	crash(10 * time.Millisecond)
}

func TestJitterVariesDelay(t *testing.T) {
	h := newHarness(t, supervise.Spec{Rand: func() float64 { return 0.75 }})
	_, inst := h.add(supervise.ChildSpec{Name: "w", Backoff: supervise.Backoff{Initial: 100 * time.Millisecond}})
	inst.Exit(errCrash)
	inst = next[supervise.ChildStarted](t, h.rec, "w").Instance.(*fakeInstance)
	inst.Exit(errCrash)
	// Default jitter 0.2, rand 0.75: 100ms × (1 + 0.2×(2×0.75−1)) = 110ms.
	if r := next[supervise.ChildRestarting](t, h.rec, "w"); r.Delay != 110*time.Millisecond {
		t.Fatalf("delay = %v, want 110ms", r.Delay)
	}
	h.wantPending(110 * time.Millisecond)
}

func TestRestartTypes(t *testing.T) {
	for _, tc := range []struct {
		restart     supervise.RestartType
		exitErr     error
		wantRestart bool
	}{
		{supervise.Permanent, nil, true},
		{supervise.Permanent, errCrash, true},
		{supervise.Transient, nil, false},
		{supervise.Transient, errCrash, true},
		{supervise.Temporary, nil, false},
		{supervise.Temporary, errCrash, false},
	} {
		t.Run(fmt.Sprintf("%s/%v", tc.restart, tc.exitErr), func(t *testing.T) {
			h := newHarness(t, supervise.Spec{})
			svc, inst := h.add(supervise.ChildSpec{Name: "w", Restart: tc.restart})
			inst.Exit(tc.exitErr)
			next[supervise.ChildExited](t, h.rec, "w")
			if tc.wantRestart {
				next[supervise.ChildStarted](t, h.rec, "w")
				h.wantState("w", supervise.StateRunning)
				return
			}
			h.wantState("w", supervise.StateExited)
			st, _ := h.sup.Child("w")
			if st.Instance != nil || st.Restarts != 0 || !errors.Is(st.LastExit, tc.exitErr) || st.Restart != tc.restart {
				t.Errorf("status = %+v", st)
			}
			if got := h.rec.types("w"); got[len(got)-1] != supervise.EventChildExited {
				t.Errorf("events = %v, want exited last", got)
			}
			if svc.starts() != 1 {
				t.Errorf("starts = %d, want 1", svc.starts())
			}
			// RestartChild revives it.
			if err := h.sup.RestartChild(testCtx(t), "w"); err != nil {
				t.Fatal(err)
			}
			h.wantState("w", supervise.StateRunning)
		})
	}
}

func TestIntensityExceededFailsSupervisorUntilUp(t *testing.T) {
	h := newHarness(t, supervise.Spec{Intensity: 3, Period: time.Minute})
	svc, inst := h.add(supervise.ChildSpec{Name: "w", Backoff: noJitter})
	other, _ := h.add(supervise.ChildSpec{Name: "other"})
	kept, _ := h.add(supervise.ChildSpec{Name: "kept"})
	if err := h.sup.StopChild(testCtx(t), "kept"); err != nil {
		t.Fatal(err)
	}

	for i := range 3 {
		inst.Exit(errCrash)
		r := next[supervise.ChildRestarting](t, h.rec, "w")
		h.clk.Advance(r.Delay)
		inst = next[supervise.ChildStarted](t, h.rec, "w").Instance.(*fakeInstance)
		if r.Restarts != i+1 {
			t.Fatalf("restarts = %d, want %d", r.Restarts, i+1)
		}
	}
	if info := h.sup.Info(); info.RestartsInPeriod != 3 || info.State != supervise.SupervisorRunning {
		t.Fatalf("info = %+v", info)
	}
	mark := len(h.log.all())
	inst.Exit(fmt.Errorf("fourth: %w", errCrash))
	f := next[supervise.ChildFailed](t, h.rec, "w")
	if f.Reason != supervise.ReasonIntensity || !errors.Is(f.Err, errCrash) || f.Restarts != 3 {
		t.Fatalf("failed = %+v", f)
	}
	// The supervisor fails: it stops its other children and escalates.
	esc := next[supervise.SupervisorEscalated](t, h.rec, "w")
	if !errors.Is(esc.Err, supervise.ErrEscalated) || !errors.Is(esc.Err, errCrash) || esc.Supervisor != "root" {
		t.Fatalf("escalated = %+v", esc)
	}
	if stop := next[supervise.ChildStopping](t, h.rec, "other"); stop.Reason != `supervisor "root" failed` {
		t.Fatalf("stopping = %+v", stop)
	}
	if got, want := stopsAndStarts(h.log, mark), []string{"stop other#1"}; !slices.Equal(got, want) {
		t.Fatalf("log = %v, want %v", got, want)
	}
	info := h.sup.Info()
	if info.State != supervise.SupervisorFailed || !errors.Is(info.Failure, supervise.ErrEscalated) || info.RestartsInPeriod != 0 {
		t.Fatalf("info = %+v", info)
	}
	h.wantState("w", supervise.StateFailed)
	h.wantState("other", supervise.StateStopped)
	h.wantState("kept", supervise.StateStopped)
	h.wantPending() // nothing is scheduled
	h.clk.Advance(time.Hour)
	h.wantState("w", supervise.StateFailed)

	// A failed supervisor refuses new children and restarts, and changes
	// nothing doing so.
	if err := h.sup.Add(testCtx(t), supervise.ChildSpec{Name: "new", Service: newFakeService("new", h.log)}); !errors.Is(err, supervise.ErrSupervisorDown) {
		t.Fatalf("Add = %v", err)
	}
	if err := h.sup.RestartChild(testCtx(t), "w"); !errors.Is(err, supervise.ErrSupervisorDown) {
		t.Fatalf("RestartChild = %v", err)
	}
	if _, ok := h.sup.Child("new"); ok || svc.starts() != 4 {
		t.Fatalf("a refused request changed something")
	}

	// Up revives it: all children but the one stopped by hand start again in
	// declared order, with fresh budgets.
	mark = len(h.log.all())
	if err := h.sup.Up(testCtx(t)); err != nil {
		t.Fatalf("Up: %v", err)
	}
	if got, want := stopsAndStarts(h.log, mark), []string{"start w#5", "start other#2"}; !slices.Equal(got, want) {
		t.Fatalf("log = %v, want %v", got, want)
	}
	st, _ := h.sup.Child("w")
	if st.State != supervise.StateRunning || st.Restarts != 0 || h.sup.Info().State != supervise.SupervisorRunning {
		t.Fatalf("after Up: %+v %+v", st, h.sup.Info())
	}
	h.wantState("kept", supervise.StateStopped)
	if other.starts() != 2 || kept.starts() != 1 {
		t.Fatalf("starts: other %d, kept %d", other.starts(), kept.starts())
	}
	inst = st.Instance.(*fakeInstance)
	next[supervise.ChildStarted](t, h.rec, "w")
	for range 3 {
		inst.Exit(errCrash)
		r := next[supervise.ChildRestarting](t, h.rec, "w")
		h.clk.Advance(r.Delay)
		inst = next[supervise.ChildStarted](t, h.rec, "w").Instance.(*fakeInstance)
	}
	inst.Exit(errCrash)
	next[supervise.SupervisorEscalated](t, h.rec, "w")
}

func TestIntensityCountsOnlyRestartsWithinPeriod(t *testing.T) {
	h := newHarness(t, supervise.Spec{Intensity: 1, Period: 10 * time.Second})
	_, inst := h.add(supervise.ChildSpec{Name: "w", Backoff: noJitter})
	inst.Exit(errCrash)
	inst = next[supervise.ChildStarted](t, h.rec, "w").Instance.(*fakeInstance)
	h.clk.Advance(10 * time.Second) // the first restart leaves the window
	inst.Exit(errCrash)
	r := next[supervise.ChildRestarting](t, h.rec, "w")
	h.clk.Advance(r.Delay)
	inst = next[supervise.ChildStarted](t, h.rec, "w").Instance.(*fakeInstance)
	inst.Exit(errCrash) // a second restart within 10s: too many
	next[supervise.ChildFailed](t, h.rec, "w")
	h.wantState("w", supervise.StateFailed)
	next[supervise.SupervisorEscalated](t, h.rec, "w")
}

func TestStopChildKeepsStoppedUntilRestartChild(t *testing.T) {
	h := newHarness(t, supervise.Spec{})
	svc, inst := h.add(supervise.ChildSpec{Name: "w"})
	if err := h.sup.StopChild(testCtx(t), "w"); err != nil {
		t.Fatal(err)
	}
	st, _ := h.sup.Child("w")
	if st.State != supervise.StateStopped || st.Instance != nil || st.LastExit != nil {
		t.Fatalf("status = %+v", st)
	}
	select {
	case <-inst.Done():
	default:
		t.Fatal("instance still running")
	}
	h.wantPending()
	if err := h.sup.StopChild(testCtx(t), "w"); err != nil { // idempotent
		t.Fatal(err)
	}
	if svc.starts() != 1 {
		t.Fatalf("restarted after StopChild")
	}
	if err := h.sup.RestartChild(testCtx(t), "w"); err != nil {
		t.Fatal(err)
	}
	st, _ = h.sup.Child("w")
	if st.State != supervise.StateRunning || st.Instance.(*fakeInstance).id != "w#2" {
		t.Fatalf("status = %+v", st)
	}
}

func TestRestartChildOfRunningChildStopsThenStarts(t *testing.T) {
	h := newHarness(t, supervise.Spec{})
	h.add(supervise.ChildSpec{Name: "w"})
	if err := h.sup.RestartChild(testCtx(t), "w"); err != nil {
		t.Fatal(err)
	}
	want := []string{"start w#1", "run w#1", "stop w#1", "start w#2", "run w#2"}
	if got := h.log.all(); !slices.Equal(got, want) {
		t.Fatalf("log = %v, want %v", got, want)
	}
	wantEv := []supervise.EventType{
		supervise.EventChildStarting, supervise.EventChildStarted,
		supervise.EventChildStopping, supervise.EventChildStopped,
		supervise.EventChildStarting, supervise.EventChildStarted,
	}
	if got := h.rec.types("w"); !slices.Equal(got, wantEv) {
		t.Fatalf("events = %v, want %v", got, wantEv)
	}
}

func TestStopChildIgnoringStopIsKilledAtShutdownTimeout(t *testing.T) {
	h := newHarness(t, supervise.Spec{})
	h.add(supervise.ChildSpec{Name: "w", ShutdownTimeout: 2 * time.Second}, startPlan{ignoreStop: true})
	stopped := async(func() error { return h.sup.StopChild(testCtx(t), "w") })
	next[supervise.ChildStopping](t, h.rec, "w")
	h.log.waitEntry(t, "stop w#1")
	h.wantPending(2 * time.Second)
	h.clk.Advance(2 * time.Second)
	if err := wait(t, stopped); !errors.Is(err, errKilled) {
		t.Fatalf("StopChild = %v, want the kill error", err)
	}
	if ev := next[supervise.ChildStopped](t, h.rec, "w"); !errors.Is(ev.Err, errKilled) {
		t.Fatalf("stopped event = %+v", ev)
	}
	h.wantState("w", supervise.StateStopped)
}

func TestStopChildDuringBackoffCancelsTimer(t *testing.T) {
	h := newHarness(t, supervise.Spec{})
	svc, inst := h.add(supervise.ChildSpec{Name: "w", Backoff: noJitter})
	inst.Exit(errCrash)
	inst = next[supervise.ChildStarted](t, h.rec, "w").Instance.(*fakeInstance)
	inst.Exit(errCrash)
	next[supervise.ChildRestarting](t, h.rec, "w")
	h.wantState("w", supervise.StateBackoff)
	h.wantPending(10 * time.Millisecond)

	if err := h.sup.StopChild(testCtx(t), "w"); err != nil {
		t.Fatal(err)
	}
	h.wantState("w", supervise.StateStopped)
	h.wantPending()
	h.clk.Advance(time.Hour)
	if svc.starts() != 2 {
		t.Fatalf("starts = %d, want 2", svc.starts())
	}
	if st, _ := h.sup.Child("w"); !st.NextStart.IsZero() {
		t.Fatalf("NextStart = %v after stop", st.NextStart)
	}
}

func TestRemove(t *testing.T) {
	h := newHarness(t, supervise.Spec{})
	h.add(supervise.ChildSpec{Name: "a"})
	h.add(supervise.ChildSpec{Name: "b"})
	if err := h.sup.Remove(testCtx(t), "a"); err != nil {
		t.Fatal(err)
	}
	want := []supervise.EventType{
		supervise.EventChildStarting, supervise.EventChildStarted,
		supervise.EventChildStopping, supervise.EventChildStopped, supervise.EventChildRemoved,
	}
	if got := h.rec.types("a"); !slices.Equal(got, want) {
		t.Fatalf("events = %v, want %v", got, want)
	}
	if _, ok := h.sup.Child("a"); ok {
		t.Fatal("removed child still listed")
	}
	if st := h.sup.Status(); len(st) != 1 || st[0].Name != "b" {
		t.Fatalf("status = %+v", st)
	}
	h.log.waitEntry(t, "stop a#1")

	// The name is free again; removing a stopped child just forgets it.
	h.add(supervise.ChildSpec{Name: "a"})
	if err := h.sup.StopChild(testCtx(t), "a"); err != nil {
		t.Fatal(err)
	}
	if err := h.sup.Remove(testCtx(t), "a"); err != nil {
		t.Fatal(err)
	}
	if st := h.sup.Status(); len(st) != 1 {
		t.Fatalf("status = %+v", st)
	}
}

func TestRequestErrors(t *testing.T) {
	h := newHarness(t, supervise.Spec{})
	h.add(supervise.ChildSpec{Name: "a"})
	ctx := testCtx(t)
	if err := h.sup.Add(ctx, supervise.ChildSpec{Name: "a", Service: newFakeService("a", h.log)}); !errors.Is(err, supervise.ErrDuplicate) {
		t.Errorf("duplicate Add = %v", err)
	}
	for name, f := range map[string]func() error{
		"StopChild":    func() error { return h.sup.StopChild(ctx, "nope") },
		"RestartChild": func() error { return h.sup.RestartChild(ctx, "nope") },
		"Remove":       func() error { return h.sup.Remove(ctx, "nope") },
	} {
		if err := f(); !errors.Is(err, supervise.ErrNotFound) {
			t.Errorf("%s(unknown) = %v, want ErrNotFound", name, err)
		}
	}
	for _, cs := range []supervise.ChildSpec{
		{Service: newFakeService("x", h.log)},
		{Name: "x"},
		{Name: "x", Service: newFakeService("x", h.log), Restart: 7},
		{Name: "x", Service: newFakeService("x", h.log), StartTimeout: -1},
		{Name: "x", Service: newFakeService("x", h.log), Backoff: supervise.Backoff{Initial: time.Minute, Max: time.Second}},
		{Name: "x", Service: newFakeService("x", h.log), Backoff: supervise.Backoff{Jitter: 2}},
	} {
		if err := h.sup.Add(ctx, cs); !errors.Is(err, supervise.ErrInvalidSpec) {
			t.Errorf("Add(%+v) = %v, want ErrInvalidSpec", cs, err)
		}
	}
	if _, ok := h.sup.Child("x"); ok {
		t.Error("invalid child was added")
	}
	done, cancel := context.WithCancel(ctx)
	cancel()
	if err := h.sup.Add(done, supervise.ChildSpec{Name: "late", Service: newFakeService("late", h.log)}); !errors.Is(err, context.Canceled) {
		t.Errorf("Add with a done ctx = %v", err)
	}
}

func TestStatusIsASnapshot(t *testing.T) {
	h := newHarness(t, supervise.Spec{})
	meta := map[string]string{"class": "echo"}
	h.add(supervise.ChildSpec{Name: "a", Meta: meta, Restart: supervise.Transient})
	meta["class"] = "changed by caller"
	st := h.sup.Status()
	if st[0].Meta["class"] != "echo" {
		t.Fatalf("meta = %v, want the copy made by Add", st[0].Meta)
	}
	st[0].Meta["class"] = "changed by reader"
	if c, _ := h.sup.Child("a"); c.Meta["class"] != "echo" || c.Restart != supervise.Transient {
		t.Fatalf("status = %+v", c)
	}
	if _, err := json.Marshal(st[0].Map()); err != nil {
		t.Fatal(err)
	}
}

func TestStopChildOfFailedOrExitedChild(t *testing.T) {
	h := newHarness(t, supervise.Spec{})
	_, inst := h.add(supervise.ChildSpec{Name: "w", Restart: supervise.Temporary})
	inst.Exit(errCrash)
	next[supervise.ChildExited](t, h.rec, "w")
	h.wantState("w", supervise.StateExited)
	if err := h.sup.StopChild(testCtx(t), "w"); err != nil {
		t.Fatal(err)
	}
	h.wantState("w", supervise.StateStopped)
	st, _ := h.sup.Child("w")
	if !errors.Is(st.LastExit, errCrash) {
		t.Fatalf("LastExit = %v, want the crash kept", st.LastExit)
	}
	if got := h.rec.types("w"); got[len(got)-1] != supervise.EventChildStopped {
		t.Fatalf("events = %v", got)
	}
}

func TestHookSeesStatusOfItsEvent(t *testing.T) {
	before := goroutineIDs(supervisorGoroutines())
	var (
		mu         sync.Mutex
		mismatches []string
	)
	// A hook that calls Child must not deadlock and must see the state the
	// event reports.
	clk := supervisetest.NewClock(time.Time{})
	var sup *supervise.Supervisor
	sup, err := supervise.New(supervise.Spec{Clock: clk, EventHook: func(ev supervise.Event) {
		want := map[supervise.EventType]supervise.State{
			supervise.EventChildStarted:  supervise.StateRunning,
			supervise.EventChildExited:   supervise.StateExited,
			supervise.EventChildStopping: supervise.StateStopping,
			supervise.EventChildStopped:  supervise.StateStopped,
		}[ev.Type()]
		if want == "" {
			return
		}
		st, _ := sup.Child(childOf(ev))
		if st.State != want {
			mu.Lock()
			mismatches = append(mismatches, fmt.Sprintf("%s: state %s", ev.Type(), st.State))
			mu.Unlock()
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	log := newLifeLog()
	ctx := testCtx(t)
	if err := sup.Add(ctx, supervise.ChildSpec{Name: "w", Service: newFakeService("w", log), Restart: supervise.Transient}); err != nil {
		t.Fatal(err)
	}
	st, _ := sup.Child("w")
	st.Instance.(*fakeInstance).Exit(nil)
	if err := sup.RestartChild(ctx, "w"); err != nil {
		t.Fatal(err)
	}
	if err := sup.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	checkNoGoroutines(t, before)
	mu.Lock()
	defer mu.Unlock()
	if len(mismatches) > 0 {
		t.Fatal(mismatches)
	}
}
