package supervise_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/supervise"
	"github.com/dynworkers/dynworkers/sdk/sdktest"
)

// stopsAndStarts returns the "stop" and "start" entries of the log from
// index from on.
func stopsAndStarts(l *lifeLog, from int) []string {
	return slices.DeleteFunc(l.all()[from:], func(e string) bool {
		return !strings.HasPrefix(e, "stop ") && !strings.HasPrefix(e, "start ")
	})
}

// roundTrip makes a request that goes through the supervisor's loop, so
// that everything the loop did for earlier reports is visible afterwards.
func roundTrip(t *testing.T, h *harness) {
	t.Helper()
	if err := h.sup.RestartChild(testCtx(t), "no such child"); !errors.Is(err, supervise.ErrNotFound) {
		t.Fatalf("RestartChild(no such child) = %v", err)
	}
}

// nextOf waits for the next event of type T of child on the cursor of all
// children, which unlike the per-child cursors keeps the order across
// children.
func nextOf[T supervise.Event](t *testing.T, r *recorder, child string) T {
	t.Helper()
	ev := r.waitFor(t, "", fmt.Sprintf("%T of %q", *new(T), child), func(ev supervise.Event) bool {
		_, ok := ev.(T)
		return ok && childOf(ev) == child
	})
	return ev.(T)
}

// groupHarness adds a, b and c (permanent unless restart says otherwise)
// to a supervisor with the given strategy and returns their instances.
func groupHarness(t *testing.T, st supervise.Strategy, restart map[string]supervise.RestartType) (*harness, map[string]*fakeInstance) {
	h := newHarness(t, supervise.Spec{Strategy: st, Intensity: 10, Period: time.Hour})
	insts := map[string]*fakeInstance{}
	for _, name := range []string{"a", "b", "c"} {
		_, insts[name] = h.add(supervise.ChildSpec{Name: name, Restart: restart[name], Backoff: noJitter})
	}
	return h, insts
}

func TestGroupRestartOrder(t *testing.T) {
	for _, tc := range []struct {
		strategy supervise.Strategy
		stopped  []string // children stopped by the group, in order
		want     []string
	}{
		{supervise.StrategyOneForAll, []string{"c", "a"}, []string{"stop c#1", "stop a#1", "start a#2", "start b#2", "start c#2"}},
		{supervise.StrategyRestForOne, []string{"c"}, []string{"stop c#1", "start b#2", "start c#2"}},
	} {
		t.Run(string(tc.strategy), func(t *testing.T) {
			h, insts := groupHarness(t, tc.strategy, nil)
			mark := len(h.log.all())
			insts["b"].Exit(errCrash)
			if r := next[supervise.ChildRestarting](t, h.rec, "b"); r.Delay != 0 {
				t.Fatalf("first restart delay = %v, want 0", r.Delay)
			}
			next[supervise.ChildStarted](t, h.rec, "b")
			next[supervise.ChildStarted](t, h.rec, "c")
			if got := stopsAndStarts(h.log, mark); !slices.Equal(got, tc.want) {
				t.Fatalf("log = %v, want %v", got, tc.want)
			}
			reason := `restart of "b" (` + string(tc.strategy) + `)`
			var stops []string
			for _, ev := range h.rec.all("") {
				switch ev := ev.(type) {
				case supervise.ChildStopping:
					stops = append(stops, "stopping "+ev.Child)
					if ev.Reason != reason {
						t.Errorf("%v: reason %q, want %q", ev, ev.Reason, reason)
					}
				case supervise.ChildStopped:
					stops = append(stops, "stopped "+ev.Child)
					if ev.Reason != reason || ev.Map()["reason"] != reason {
						t.Errorf("%v: reason %q, want %q", ev, ev.Reason, reason)
					}
				}
			}
			var want []string
			for _, name := range tc.stopped {
				want = append(want, "stopping "+name, "stopped "+name)
			}
			if !slices.Equal(stops, want) {
				t.Errorf("stop events = %v, want %v", stops, want)
			}
			for _, name := range []string{"a", "b", "c"} {
				h.wantState(name, supervise.StateRunning)
			}
			if tc.strategy == supervise.StrategyRestForOne {
				if st, _ := h.sup.Child("a"); st.Instance != insts["a"] {
					t.Errorf("a was restarted: instance %v, want %v", st.Instance, insts["a"])
				}
			}
			// A group restart counts as one restart of the trigger only.
			for name, want := range map[string]int{"a": 0, "b": 1, "c": 0} {
				if st, _ := h.sup.Child(name); st.Restarts != want {
					t.Errorf("Restarts of %s = %d, want %d", name, st.Restarts, want)
				}
			}
		})
	}
}

func TestGroupTransientNormalExitRestartsNothing(t *testing.T) {
	for _, st := range []supervise.Strategy{supervise.StrategyOneForAll, supervise.StrategyRestForOne} {
		t.Run(string(st), func(t *testing.T) {
			h, insts := groupHarness(t, st, map[string]supervise.RestartType{"b": supervise.Transient})
			mark := len(h.log.all())
			insts["b"].Exit(nil)
			next[supervise.ChildExited](t, h.rec, "b")
			roundTrip(t, h)
			h.wantState("b", supervise.StateExited)
			for _, name := range []string{"a", "c"} {
				h.wantState(name, supervise.StateRunning)
				if st, _ := h.sup.Child(name); st.Instance != insts[name] {
					t.Errorf("%s was restarted", name)
				}
			}
			if got := stopsAndStarts(h.log, mark); len(got) != 0 {
				t.Fatalf("log = %v, want no stops or starts", got)
			}
		})
	}
}

func TestGroupTemporaryMemberNotRestarted(t *testing.T) {
	for _, tc := range []struct {
		strategy supervise.Strategy
		want     []string
	}{
		{supervise.StrategyOneForAll, []string{"stop c#1", "stop a#1", "start b#2"}},
		{supervise.StrategyRestForOne, []string{"stop c#1", "start b#2"}},
	} {
		t.Run(string(tc.strategy), func(t *testing.T) {
			temp := map[string]supervise.RestartType{"c": supervise.Temporary}
			if tc.strategy == supervise.StrategyOneForAll {
				temp["a"] = supervise.Temporary
			}
			h, _ := groupHarness(t, tc.strategy, temp)
			mark := len(h.log.all())
			st, _ := h.sup.Child("b")
			st.Instance.(*fakeInstance).Exit(errCrash)
			next[supervise.ChildStarted](t, h.rec, "b")
			roundTrip(t, h)
			if got := stopsAndStarts(h.log, mark); !slices.Equal(got, tc.want) {
				t.Fatalf("log = %v, want %v", got, tc.want)
			}
			h.wantState("c", supervise.StateExited)
			evs := h.rec.all("c")
			if ev, ok := evs[len(evs)-1].(supervise.ChildStopped); !ok || ev.Reason == "" {
				t.Errorf("last event of c = %v, want ChildStopped with a reason", evs[len(evs)-1])
			}
			if tc.strategy == supervise.StrategyOneForAll {
				h.wantState("a", supervise.StateExited)
			} else {
				h.wantState("a", supervise.StateRunning)
			}
		})
	}
}

func TestGroupRestartWaitsForBackoff(t *testing.T) {
	for _, tc := range []struct {
		strategy supervise.Strategy
		lastStop string // the last child the group stops
		want     []string
	}{
		{supervise.StrategyOneForAll, "a", []string{"stop c#2", "stop a#2", "start a#3", "start b#3", "start c#3"}},
		{supervise.StrategyRestForOne, "c", []string{"stop c#2", "start b#3", "start c#3"}},
	} {
		t.Run(string(tc.strategy), func(t *testing.T) {
			h, insts := groupHarness(t, tc.strategy, nil)
			insts["b"].Exit(errCrash)
			b := next[supervise.ChildStarted](t, h.rec, "b").Instance.(*fakeInstance)
			// Move the all-children cursor past the first group restart.
			for range 2 {
				nextOf[supervise.ChildStarted](t, h.rec, "c")
			}

			mark := len(h.log.all())
			b.Exit(errCrash) // within ResetAfter (an hour): backoff applies
			if r := next[supervise.ChildRestarting](t, h.rec, "b"); r.Delay != 10*time.Millisecond || r.Attempt != 3 {
				t.Fatalf("second restart: delay %v attempt %d, want 10ms and 3", r.Delay, r.Attempt)
			}
			nextOf[supervise.ChildStopped](t, h.rec, tc.lastStop)
			h.wantPending(10 * time.Millisecond)
			h.clk.Advance(9 * time.Millisecond)
			h.wantPending(time.Millisecond)
			roundTrip(t, h)
			h.wantState("b", supervise.StateBackoff)
			h.wantState(tc.lastStop, supervise.StateBackoff)
			if got := stopsAndStarts(h.log, mark); slices.ContainsFunc(got, func(e string) bool { return strings.HasPrefix(e, "start") }) {
				t.Fatalf("started before the delay: %v", got)
			}
			h.clk.Advance(time.Millisecond)
			nextOf[supervise.ChildStarted](t, h.rec, "c")
			if got := stopsAndStarts(h.log, mark); !slices.Equal(got, tc.want) {
				t.Fatalf("log = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestGroupIntensityEscalates(t *testing.T) {
	for _, st := range []supervise.Strategy{supervise.StrategyOneForAll, supervise.StrategyRestForOne} {
		t.Run(string(st), func(t *testing.T) {
			h := newHarness(t, supervise.Spec{Strategy: st, Intensity: 1, Period: time.Hour})
			for _, name := range []string{"a", "b", "c"} {
				h.add(supervise.ChildSpec{Name: name, Backoff: noJitter})
			}
			st0, _ := h.sup.Child("b")
			st0.Instance.(*fakeInstance).Exit(errCrash)
			inst := next[supervise.ChildStarted](t, h.rec, "b").Instance.(*fakeInstance)
			next[supervise.ChildStarted](t, h.rec, "c")

			mark := len(h.log.all())
			inst.Exit(errCrash)
			if f := next[supervise.ChildFailed](t, h.rec, "b"); f.Reason != supervise.ReasonIntensity {
				t.Fatalf("failed = %+v", f)
			}
			next[supervise.SupervisorEscalated](t, h.rec, "b")
			h.wantState("b", supervise.StateFailed)
			for _, name := range []string{"a", "c"} {
				h.wantState(name, supervise.StateStopped)
			}
			// The others are stopped in reverse declared order; nothing
			// is started.
			want := []string{"stop c#2", "stop a#1"}
			if st == supervise.StrategyOneForAll {
				want = []string{"stop c#2", "stop a#2"}
			}
			if got := stopsAndStarts(h.log, mark); !slices.Equal(got, want) {
				t.Fatalf("log = %v, want %v", got, want)
			}
		})
	}
}

func TestStopDuringGroupRestart(t *testing.T) {
	for _, st := range []supervise.Strategy{supervise.StrategyOneForAll, supervise.StrategyRestForOne} {
		t.Run(string(st), func(t *testing.T) {
			h := newHarness(t, supervise.Spec{Strategy: st, Intensity: 10, Period: time.Hour})
			svcA, _ := h.add(supervise.ChildSpec{Name: "a", Backoff: noJitter})
			svcB, b := h.add(supervise.ChildSpec{Name: "b", Backoff: noJitter})
			// c ignores Stop, so the group restart hangs in its stop phase.
			svcC, _ := h.add(supervise.ChildSpec{Name: "c", Backoff: noJitter, ShutdownTimeout: 3 * time.Second}, startPlan{ignoreStop: true})

			b.Exit(errCrash)
			next[supervise.ChildStopping](t, h.rec, "c")
			h.log.waitEntry(t, "stop c#1")
			// Status answers during the group restart.
			h.wantState("c", supervise.StateStopping)
			h.wantState("b", supervise.StateBackoff)
			h.wantState("a", supervise.StateRunning)

			stopped := async(func() error { return h.sup.Stop(testCtx(t)) })
			// Wait until Stop has reached the loop: requests fail then.
			sdktest.Eventually(t, waitTimeout, func() bool {
				return errors.Is(h.sup.RestartChild(testCtx(t), "no such child"), supervise.ErrStopped)
			}, "Stop did not begin")
			h.clk.Advance(3 * time.Second) // c is killed
			if err := wait(t, stopped); !errors.Is(err, errKilled) {
				t.Fatalf("Stop = %v, want the kill error of c", err)
			}
			for _, s := range h.sup.Status() {
				if s.State != supervise.StateStopped || s.Instance != nil {
					t.Errorf("after Stop: %+v", s)
				}
			}
			h.wantPending()
			h.clk.Advance(time.Hour)
			if svcA.starts() != 1 || svcB.starts() != 1 || svcC.starts() != 1 {
				t.Errorf("starts a, b, c = %d, %d, %d, want 1 each", svcA.starts(), svcB.starts(), svcC.starts())
			}
			checkNoGoroutines(t, h.before)
		})
	}
}

func TestStopChildDuringGroupRestart(t *testing.T) {
	h := newHarness(t, supervise.Spec{Strategy: supervise.StrategyOneForAll, Intensity: 10, Period: time.Hour})
	h.add(supervise.ChildSpec{Name: "a", Backoff: noJitter})
	_, b := h.add(supervise.ChildSpec{Name: "b", Backoff: noJitter})
	h.add(supervise.ChildSpec{Name: "c", Backoff: noJitter, ShutdownTimeout: 3 * time.Second}, startPlan{ignoreStop: true})

	mark := len(h.log.all())
	b.Exit(errCrash)
	h.log.waitEntry(t, "stop c#1")
	// a waits for its turn in the group; StopChild takes it out of the
	// group and stops it at once.
	if err := h.sup.StopChild(testCtx(t), "a"); err != nil {
		t.Fatal(err)
	}
	h.wantState("a", supervise.StateStopped)
	h.clk.Advance(3 * time.Second)
	next[supervise.ChildStarted](t, h.rec, "c")
	roundTrip(t, h)
	want := []string{"stop c#1", "stop a#1", "start b#2", "start c#2"}
	if got := stopsAndStarts(h.log, mark); !slices.Equal(got, want) {
		t.Fatalf("log = %v, want %v", got, want)
	}
	h.wantState("a", supervise.StateStopped)
	h.wantState("b", supervise.StateRunning)
	h.wantState("c", supervise.StateRunning)
}
