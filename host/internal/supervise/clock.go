package supervise

import (
	"context"
	"sync"
	"time"
)

// Clock is the supervisor's source of time. It exists so that tests can run
// backoff delays, start and shutdown timeouts and restart periods on a fake
// clock they advance by hand, instead of sleeping.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// NewTimer returns a timer that fires once, after d.
	NewTimer(d time.Duration) Timer
}

// Timer is a one-shot timer made by a Clock.
type Timer interface {
	// C delivers the time once the timer fires.
	C() <-chan time.Time
	// Stop prevents the timer from firing. It reports whether it did: false
	// means the timer already fired or was stopped.
	Stop() bool
}

// RealClock returns the wall clock of package time.
func RealClock() Clock { return realClock{} }

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

type realTimer struct{ t *time.Timer }

func (t realTimer) C() <-chan time.Time { return t.t.C }
func (t realTimer) Stop() bool          { return t.t.Stop() }

// withTimeout is context.WithTimeout on clk: the context is done once d has
// passed on clk, and its Err is then context.DeadlineExceeded. The timer is
// created before withTimeout returns, so a test that sees the effect of the
// call can advance a fake clock past the deadline without a race.
func withTimeout(parent context.Context, clk Clock, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := clk.(realClock); ok {
		return context.WithTimeout(parent, d)
	}
	inner, cancel := context.WithCancelCause(parent)
	ctx := &clockCtx{Context: inner, deadline: clk.Now().Add(d)}
	t := clk.NewTimer(d)
	quit := make(chan struct{})
	go func() {
		select {
		case <-t.C():
			cancel(context.DeadlineExceeded)
		case <-quit:
		case <-inner.Done():
		}
	}()
	var once sync.Once
	return ctx, func() {
		once.Do(func() {
			t.Stop()
			close(quit)
			cancel(context.Canceled)
		})
	}
}

// clockCtx reports a deadline on a fake clock, which context.WithDeadline
// cannot do because it measures deadlines on the wall clock.
type clockCtx struct {
	context.Context
	deadline time.Time
}

func (c *clockCtx) Deadline() (time.Time, bool) { return c.deadline, true }

func (c *clockCtx) Err() error {
	err := c.Context.Err()
	if err != nil && context.Cause(c.Context) == context.DeadlineExceeded {
		return context.DeadlineExceeded
	}
	return err
}
