package supervise_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/supervise"
)

// hybridService starts a fake hybrid: each incarnation gets a Family whose
// children are fake services, as the host's hybrid workers get one.
type hybridService struct {
	inner    *fakeService
	h        *harness
	families chan *supervise.Family
}

func (s *hybridService) Start(ctx context.Context) (supervise.Instance, error) {
	fam := supervise.NewFamily(supervise.Spec{Name: "root/hybrid", Clock: s.h.clk, EventHook: s.h.rec.hook,
		Intensity: 1}, func() { s.h.log.add("family ended") })
	inst, err := s.inner.Start(ctx)
	if err != nil {
		fam.Close()
		return nil, err
	}
	s.families <- fam
	return fam.Join(inst), nil
}

// The children of a hybrid incarnation are stopped before its exit is
// reported; a stop stops them first; a failure of their supervisor kills
// the incarnation with an error wrapping ErrEscalated.
func TestFamily(t *testing.T) {
	h := newHarness(t, supervise.Spec{Intensity: 10})
	svc := &hybridService{inner: newFakeService("hybrid", h.log), h: h, families: make(chan *supervise.Family, 10)}
	if err := h.sup.Add(testCtx(t), supervise.ChildSpec{Name: "hybrid", Service: svc, Backoff: noJitter}); err != nil {
		t.Fatal(err)
	}
	started := next[supervise.ChildStarted](t, h.rec, "hybrid")
	fam := <-svc.families
	if f, ok := supervise.FamilyOf(started.Instance); !ok || f != fam {
		t.Fatal("FamilyOf does not find the family of the joined instance")
	}
	if fam.Current() != nil {
		t.Fatal("the children's supervisor was made before first use")
	}
	kids, err := fam.Supervisor()
	if err != nil {
		t.Fatal(err)
	}
	kid := newFakeService("kid", h.log)
	if err := kids.Add(testCtx(t), supervise.ChildSpec{Name: "kid", Service: kid, Backoff: noJitter}); err != nil {
		t.Fatal(err)
	}
	h.log.waitEntry(t, "run kid#1")

	// The incarnation exits by itself: the child is stopped, the family
	// ends, and only then is the exit reported.
	inner := supervise.Unwrap(started.Instance).(*fakeInstance)
	inner.Exit(errCrash)
	exited := next[supervise.ChildExited](t, h.rec, "hybrid")
	if !errors.Is(exited.Err, errCrash) {
		t.Fatalf("exit error = %v, want the incarnation's", exited.Err)
	}
	log := h.log.all()
	stop, end, exit := slices.Index(log, "stop kid#1"), slices.Index(log, "family ended"), slices.Index(log, "exit hybrid#1 crash")
	if stop < 0 || end < stop || exit < 0 {
		t.Fatalf("log = %v, want the child stopped and the family ended", log)
	}
	if _, err := fam.Supervisor(); !errors.Is(err, supervise.ErrFamilyClosed) {
		t.Fatalf("Supervisor after the end = %v, want ErrFamilyClosed", err)
	}

	// The restarted incarnation has a new family; its children's
	// supervisor fails (intensity 1: the second restart escalates), which
	// kills the incarnation.
	next[supervise.ChildStarted](t, h.rec, "hybrid")
	fam2 := <-svc.families
	kids2, err := fam2.Supervisor()
	if err != nil {
		t.Fatal(err)
	}
	kid2 := newFakeService("kid2", h.log)
	if err := kids2.Add(testCtx(t), supervise.ChildSpec{Name: "kid2", Service: kid2, Backoff: noJitter}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 2; i++ {
		ev := next[supervise.ChildStarted](t, h.rec, "kid2")
		ev.Instance.(*fakeInstance).Exit(errCrash)
		if i == 1 {
			next[supervise.ChildRestarting](t, h.rec, "kid2")
		}
	}
	exited = next[supervise.ChildExited](t, h.rec, "hybrid")
	if !errors.Is(exited.Err, supervise.ErrEscalated) {
		t.Fatalf("exit error = %v, want one wrapping ErrEscalated", exited.Err)
	}

	// A stop of the third incarnation (after the backoff of a second
	// restart) stops its children first.
	h.wantPending(10 * time.Millisecond)
	h.clk.Advance(10 * time.Millisecond)
	next[supervise.ChildStarted](t, h.rec, "hybrid")
	fam3 := <-svc.families
	kids3, _ := fam3.Supervisor()
	if err := kids3.Add(testCtx(t), supervise.ChildSpec{Name: "kid3", Service: newFakeService("kid3", h.log)}); err != nil {
		t.Fatal(err)
	}
	if err := h.sup.StopChild(testCtx(t), "hybrid"); err != nil {
		t.Fatal(err)
	}
	log = h.log.all()
	if a, b := slices.Index(log, "stop kid3#1"), slices.Index(log, "stop hybrid#3"); a < 0 || b < a {
		t.Fatalf("log = %v, want kid3 stopped before the hybrid", log)
	}
}
