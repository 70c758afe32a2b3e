package supervise

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// The helper goroutines. Each does one blocking thing (a Start, a Stop,
// waiting for an exit or a timer) and reports to the loop with send. They get
// what they need as arguments and never touch a child's fields, which belong
// to the loop.

type startResult struct {
	inst Instance
	err  error
}

// runStart calls Service.Start and reports the result. Start runs in a
// goroutine of its own so that one ignoring ctx is cut off at the deadline:
// the attempt then counts as failed, and an instance that Start returns
// later is stopped by reapLate.
func (s *Supervisor) runStart(c *child, gen uint64, ctx context.Context, cancel context.CancelFunc) {
	defer s.wg.Done()
	svc, timeout := c.spec.Service, c.spec.StartTimeout
	res := make(chan startResult, 1)
	go func() {
		var r startResult
		defer func() {
			if p := recover(); p != nil {
				r = startResult{err: fmt.Errorf("start panicked: %v", p)}
			}
			res <- r
		}()
		r.inst, r.err = svc.Start(ctx)
	}()
	var r startResult
	select {
	case r = <-res:
	case <-ctx.Done():
		select {
		case r = <-res:
		default:
			r.err = fmt.Errorf("start did not return within %v: %w", timeout, context.DeadlineExceeded)
			go s.reapLate(res, c.spec.ShutdownTimeout)
		}
	}
	cancel()
	switch {
	case r.err != nil && r.inst != nil:
		s.discard(r.inst, c.spec.ShutdownTimeout) // Start broke its contract
		r.inst = nil
	case r.err == nil && r.inst == nil:
		r.err = errors.New("start returned neither an instance nor an error")
	}
	s.send(func() { s.onStartDone(c, gen, r.inst, r.err) }, nil)
}

// reapLate waits for a Start that overran its deadline and stops the
// instance it returns, if any. It is not counted in s.wg: such a Start may
// never return, and Stop must not wait for it.
func (s *Supervisor) reapLate(res <-chan startResult, timeout time.Duration) {
	if r := <-res; r.inst != nil {
		s.stopQuietly(r.inst, timeout)
	}
}

// discard stops an instance nobody wants, in the background.
func (s *Supervisor) discard(inst Instance, timeout time.Duration) {
	go s.stopQuietly(inst, timeout)
}

func (s *Supervisor) stopQuietly(inst Instance, timeout time.Duration) {
	ctx, cancel := withTimeout(context.Background(), s.clock, timeout)
	defer cancel()
	_ = safeStop(ctx, inst)
}

// runStop calls Instance.Stop and reports its error.
func (s *Supervisor) runStop(c *child, gen uint64, inst Instance, ctx context.Context, cancel context.CancelFunc) {
	defer s.wg.Done()
	err := safeStop(ctx, inst)
	cancel()
	s.send(func() { s.onStopDone(c, gen, err) }, nil)
}

// safeStop turns a panic in Instance.Stop into an error, so that a broken
// instance cannot take the supervisor down.
func safeStop(ctx context.Context, inst Instance) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("stop panicked: %v", p)
		}
	}()
	return inst.Stop(ctx)
}

// watch reports the exit of inst, unless the loop released it first.
func (s *Supervisor) watch(c *child, gen uint64, inst Instance, unwatch chan struct{}) {
	defer s.wg.Done()
	select {
	case <-inst.Done():
		err := inst.ExitErr()
		s.send(func() { s.onExit(c, gen, inst, err) }, unwatch)
	case <-unwatch:
	}
}

// backoffTimer is the pending restart of a child in StateBackoff.
type backoffTimer struct {
	t    Timer
	quit chan struct{}
}

func (bt *backoffTimer) cancel() {
	bt.t.Stop()
	close(bt.quit)
}

// startTimer makes the timer on the loop, so that it is pending on a fake
// clock by the time ChildRestarting is emitted, and waits for it in a helper.
func (s *Supervisor) startTimer(c *child, d time.Duration) *backoffTimer {
	bt := &backoffTimer{t: s.clock.NewTimer(d), quit: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		select {
		case <-bt.t.C():
			s.send(func() { s.onTimer(c, bt) }, bt.quit)
		case <-bt.quit:
		}
	}()
	return bt
}
