package supervise_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/supervise"
)

func TestPermanentStartErrorFailsWithoutRetry(t *testing.T) {
	h := newHarness(t, supervise.Spec{})
	svc := newFakeService("w", h.log, startPlan{err: fmt.Errorf("no such binary: %w", supervise.ErrPermanent)})
	err := h.sup.Add(testCtx(t), supervise.ChildSpec{Name: "w", Service: svc})
	if !errors.Is(err, supervise.ErrPermanent) {
		t.Fatalf("Add = %v, want ErrPermanent", err)
	}
	f := next[supervise.ChildFailed](t, h.rec, "w")
	if f.Reason != supervise.ReasonPermanentError || !errors.Is(f.Err, supervise.ErrPermanent) {
		t.Fatalf("failed = %+v", f)
	}
	want := []supervise.EventType{supervise.EventChildStarting, supervise.EventChildStartFailed, supervise.EventChildFailed}
	if got := h.rec.types("w"); !slices.Equal(got, want) {
		t.Fatalf("events = %v, want %v", got, want)
	}
	if sf := h.rec.all("w")[1].(supervise.ChildStartFailed); !sf.Permanent {
		t.Errorf("start failed not marked permanent: %+v", sf)
	}
	h.wantState("w", supervise.StateFailed)
	h.wantPending()
	if svc.starts() != 1 {
		t.Fatalf("starts = %d, want 1", svc.starts())
	}
	// The child stays added: RestartChild tries again.
	if err := h.sup.RestartChild(testCtx(t), "w"); err != nil {
		t.Fatal(err)
	}
	h.wantState("w", supervise.StateRunning)
}

func TestStartErrorCountsAsCrash(t *testing.T) {
	h := newHarness(t, supervise.Spec{Intensity: 2})
	svc := newFakeService("w", h.log, startPlan{err: errCrash}, startPlan{err: errCrash}, startPlan{err: errCrash})
	err := h.sup.Add(testCtx(t), supervise.ChildSpec{Name: "w", Service: svc, Backoff: noJitter})
	if !errors.Is(err, errCrash) {
		t.Fatalf("Add = %v, want the start error", err)
	}
	if _, ok := h.sup.Child("w"); !ok {
		t.Fatal("child not kept after a failed start")
	}
	// First retry at once, the second after Initial, the third exceeds the
	// intensity.
	if r := next[supervise.ChildRestarting](t, h.rec, "w"); r.Delay != 0 {
		t.Fatalf("delay = %v", r.Delay)
	}
	r := next[supervise.ChildRestarting](t, h.rec, "w")
	if r.Delay != 10*time.Millisecond {
		t.Fatalf("delay = %v", r.Delay)
	}
	h.clk.Advance(r.Delay)
	next[supervise.ChildFailed](t, h.rec, "w")
	if svc.starts() != 3 {
		t.Fatalf("starts = %d, want 3", svc.starts())
	}
}

func TestTemporaryStartErrorFails(t *testing.T) {
	h := newHarness(t, supervise.Spec{})
	svc := newFakeService("w", h.log, startPlan{err: errCrash})
	if err := h.sup.Add(testCtx(t), supervise.ChildSpec{Name: "w", Service: svc, Restart: supervise.Temporary}); !errors.Is(err, errCrash) {
		t.Fatalf("Add = %v", err)
	}
	if f := next[supervise.ChildFailed](t, h.rec, "w"); f.Reason != supervise.ReasonStartFailed {
		t.Fatalf("reason = %s", f.Reason)
	}
	if svc.starts() != 1 {
		t.Fatalf("starts = %d", svc.starts())
	}
}

func TestHungStartIsCutOffWithoutBlockingOthers(t *testing.T) {
	h := newHarness(t, supervise.Spec{Intensity: 100})
	flappy, flappyInst := h.add(supervise.ChildSpec{Name: "flappy", Backoff: noJitter})
	idle, _ := h.add(supervise.ChildSpec{Name: "idle"})

	release, open := gate(t)
	hung := newFakeService("hung", h.log, startPlan{block: release, ignoreCtx: true})
	added := async(func() error {
		return h.sup.Add(testCtx(t), supervise.ChildSpec{Name: "hung", Service: hung, StartTimeout: time.Minute})
	})
	next[supervise.ChildStarting](t, h.rec, "hung")
	h.log.waitEntry(t, "start hung#1")

	// While hung's Start blocks, the supervisor still answers and another
	// child keeps being restarted and can be stopped and restarted by hand.
	h.wantState("hung", supervise.StateStarting)
	if n := len(h.sup.Status()); n != 3 {
		t.Fatalf("Status has %d children", n)
	}
	for range 3 {
		flappyInst.Exit(errCrash)
		r := next[supervise.ChildRestarting](t, h.rec, "flappy")
		h.clk.Advance(r.Delay)
		flappyInst = next[supervise.ChildStarted](t, h.rec, "flappy").Instance.(*fakeInstance)
	}
	if err := h.sup.StopChild(testCtx(t), "idle"); err != nil {
		t.Fatal(err)
	}
	if err := h.sup.RestartChild(testCtx(t), "idle"); err != nil {
		t.Fatal(err)
	}
	if flappy.starts() != 4 || idle.starts() != 2 {
		t.Fatalf("starts: flappy %d, idle %d", flappy.starts(), idle.starts())
	}
	select {
	case err := <-added:
		t.Fatalf("Add returned %v before the start timeout", err)
	default:
	}

	// The deadline passes: the attempt fails and is retried.
	h.clk.Advance(time.Minute)
	sf := next[supervise.ChildStartFailed](t, h.rec, "hung")
	if !errors.Is(sf.Err, context.DeadlineExceeded) || sf.Permanent {
		t.Fatalf("start failed = %+v", sf)
	}
	if err := wait(t, added); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Add = %v, want DeadlineExceeded", err)
	}
	next[supervise.ChildStarted](t, h.rec, "hung")
	h.wantState("hung", supervise.StateRunning)

	// The hung Start returns at last: its instance is stopped, not leaked.
	open()
	h.log.waitEntry(t, "stop hung#1")
	if st, _ := h.sup.Child("hung"); st.Instance.(*fakeInstance).id != "hung#2" {
		t.Fatalf("current instance = %v, want hung#2", st.Instance)
	}
}

func TestStartHonouringCtxGetsDeadline(t *testing.T) {
	h := newHarness(t, supervise.Spec{})
	block, _ := gate(t)
	svc := newFakeService("w", h.log, startPlan{block: block})
	added := async(func() error {
		return h.sup.Add(testCtx(t), supervise.ChildSpec{Name: "w", Service: svc, StartTimeout: 5 * time.Second})
	})
	next[supervise.ChildStarting](t, h.rec, "w")
	h.log.waitEntry(t, "start w#1")
	start := h.clk.Now()
	h.clk.Advance(5 * time.Second)
	if err := wait(t, added); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Add = %v", err)
	}
	next[supervise.ChildStarted](t, h.rec, "w") // the retry
	svc.mu.Lock()
	defer svc.mu.Unlock()
	if !svc.deadlines[0].Equal(start.Add(5 * time.Second)) {
		t.Errorf("ctx deadline = %v, want start+5s", svc.deadlines[0])
	}
}

func TestStopChildDuringStartWaitsThenStops(t *testing.T) {
	h := newHarness(t, supervise.Spec{})
	release, open := gate(t)
	svc := newFakeService("w", h.log, startPlan{block: release})
	added := async(func() error { return h.sup.Add(testCtx(t), supervise.ChildSpec{Name: "w", Service: svc}) })
	next[supervise.ChildStarting](t, h.rec, "w")
	stopped := async(func() error { return h.sup.StopChild(testCtx(t), "w") })
	next[supervise.ChildStopping](t, h.rec, "w")
	h.wantState("w", supervise.StateStopping)

	open()
	if err := wait(t, stopped); err != nil {
		t.Fatalf("StopChild: %v", err)
	}
	if err := wait(t, added); err != nil {
		t.Fatalf("Add: %v", err)
	}
	h.wantState("w", supervise.StateStopped)
	want := []string{"start w#1", "run w#1", "stop w#1"}
	if got := h.log.all(); !slices.Equal(got, want) {
		t.Fatalf("log = %v, want %v", got, want)
	}
	wantEv := []supervise.EventType{supervise.EventChildStarting, supervise.EventChildStopping, supervise.EventChildStopped}
	if got := h.rec.types("w"); !slices.Equal(got, wantEv) {
		t.Fatalf("events = %v, want %v", got, wantEv)
	}
}

func TestRemoveDuringStart(t *testing.T) {
	h := newHarness(t, supervise.Spec{})
	release, open := gate(t)
	svc := newFakeService("w", h.log, startPlan{block: release})
	added := async(func() error { return h.sup.Add(testCtx(t), supervise.ChildSpec{Name: "w", Service: svc}) })
	next[supervise.ChildStarting](t, h.rec, "w")
	removed := async(func() error { return h.sup.Remove(testCtx(t), "w") })
	next[supervise.ChildStopping](t, h.rec, "w")
	open()
	if err := wait(t, removed); err != nil {
		t.Fatal(err)
	}
	if err := wait(t, added); err != nil {
		t.Fatal(err)
	}
	if _, ok := h.sup.Child("w"); ok {
		t.Fatal("child still there")
	}
	if got := h.log.all(); !slices.Equal(got, []string{"start w#1", "run w#1", "stop w#1"}) {
		t.Fatalf("log = %v", got)
	}
}

func TestRestartChildOverridesStopDuringStart(t *testing.T) {
	h := newHarness(t, supervise.Spec{})
	release, open := gate(t)
	svc := newFakeService("w", h.log, startPlan{block: release})
	added := async(func() error { return h.sup.Add(testCtx(t), supervise.ChildSpec{Name: "w", Service: svc}) })
	next[supervise.ChildStarting](t, h.rec, "w")
	stopped := async(func() error { return h.sup.StopChild(testCtx(t), "w") })
	next[supervise.ChildStopping](t, h.rec, "w")
	restarted := async(func() error { return h.sup.RestartChild(testCtx(t), "w") })
	if err := wait(t, stopped); !errors.Is(err, supervise.ErrInterrupted) {
		t.Fatalf("StopChild = %v, want ErrInterrupted", err)
	}
	h.wantState("w", supervise.StateStarting)
	open()
	if err := wait(t, restarted); err != nil {
		t.Fatal(err)
	}
	if err := wait(t, added); err != nil {
		t.Fatal(err)
	}
	h.wantState("w", supervise.StateRunning)
	if svc.starts() != 1 {
		t.Fatalf("starts = %d, want 1 (the start in progress is the restart)", svc.starts())
	}
}

func TestRestartChildDuringBackoffStartsAtOnce(t *testing.T) {
	h := newHarness(t, supervise.Spec{})
	_, inst := h.add(supervise.ChildSpec{Name: "w", Backoff: noJitter})
	inst.Exit(errCrash)
	inst = next[supervise.ChildStarted](t, h.rec, "w").Instance.(*fakeInstance)
	inst.Exit(errCrash)
	next[supervise.ChildRestarting](t, h.rec, "w")
	h.wantPending(10 * time.Millisecond)
	if err := h.sup.RestartChild(testCtx(t), "w"); err != nil {
		t.Fatal(err)
	}
	h.wantPending()
	st, _ := h.sup.Child("w")
	if st.State != supervise.StateRunning || st.Restarts != 0 {
		t.Fatalf("status = %+v", st)
	}
	// Fresh backoff: the next crash restarts at once.
	st.Instance.(*fakeInstance).Exit(errCrash)
	if r := next[supervise.ChildRestarting](t, h.rec, "w"); r.Delay != 0 {
		t.Fatalf("delay = %v, want 0", r.Delay)
	}
}

func TestAddCtxBoundsOnlyTheWait(t *testing.T) {
	h := newHarness(t, supervise.Spec{})
	release, open := gate(t)
	svc := newFakeService("w", h.log, startPlan{block: release})
	ctx, cancel := context.WithCancel(context.Background())
	added := async(func() error { return h.sup.Add(ctx, supervise.ChildSpec{Name: "w", Service: svc}) })
	next[supervise.ChildStarting](t, h.rec, "w")
	cancel()
	if err := wait(t, added); !errors.Is(err, context.Canceled) {
		t.Fatalf("Add = %v, want Canceled", err)
	}
	h.wantState("w", supervise.StateStarting)
	open()
	next[supervise.ChildStarted](t, h.rec, "w")
	h.wantState("w", supervise.StateRunning)
}

// AddAsync registers children in call order and lets their first starts
// overlap; each result arrives on its own channel.
func TestAddAsyncOverlapsStartsAndKeepsOrder(t *testing.T) {
	h := newHarness(t, supervise.Spec{})
	release, open := gate(t)
	slow := newFakeService("a", h.log, startPlan{block: release})
	fast := newFakeService("b", h.log)
	ra, err := h.sup.AddAsync(testCtx(t), supervise.ChildSpec{Name: "a", Service: slow})
	if err != nil {
		t.Fatal(err)
	}
	rb, err := h.sup.AddAsync(testCtx(t), supervise.ChildSpec{Name: "b", Service: fast})
	if err != nil {
		t.Fatal(err)
	}
	// b runs while a's start is still blocked.
	if err := wait(t, async(func() error { return <-rb })); err != nil {
		t.Fatalf("b: %v", err)
	}
	h.wantState("a", supervise.StateStarting)
	open()
	if err := wait(t, async(func() error { return <-ra })); err != nil {
		t.Fatalf("a: %v", err)
	}
	var names []string
	for _, st := range h.sup.Status() {
		names = append(names, st.Name)
	}
	if strings.Join(names, ",") != "a,b" {
		t.Fatalf("order = %v, want a,b", names)
	}
	if _, err := h.sup.AddAsync(testCtx(t), supervise.ChildSpec{Name: "a", Service: slow}); !errors.Is(err, supervise.ErrDuplicate) {
		t.Fatalf("duplicate AddAsync = %v, want ErrDuplicate", err)
	}
}
