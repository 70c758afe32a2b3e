// Package supervisetest provides a fake clock for tests of code built on
// package supervise, so that backoff delays and timeouts can be driven by
// hand instead of waited for.
package supervisetest

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/supervise"
)

// Clock is a fake supervise.Clock. Time stands still until Advance moves it;
// timers fire during Advance, in deadline order. It is safe for concurrent
// use.
type Clock struct {
	mu      sync.Mutex
	now     time.Time
	timers  []*timer
	changed chan struct{} // closed and replaced whenever timers change
}

var _ supervise.Clock = (*Clock)(nil)

// NewClock returns a fake clock set to start, or to 2000-01-01 UTC if start
// is zero.
func NewClock(start time.Time) *Clock {
	if start.IsZero() {
		start = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	return &Clock{now: start, changed: make(chan struct{})}
}

// Now returns the fake current time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// NewTimer returns a timer that fires once Advance has moved the clock d
// past now. A timer with d <= 0 fires at once.
func (c *Clock) NewTimer(d time.Duration) supervise.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &timer{clock: c, when: c.now.Add(d), ch: make(chan time.Time, 1)}
	if d <= 0 {
		t.ch <- c.now
		return t
	}
	c.timers = append(c.timers, t)
	c.notifyLocked()
	return t
}

// Advance moves the clock forward by d and fires every timer that is due.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	slices.SortStableFunc(c.timers, func(a, b *timer) int { return a.when.Compare(b.when) })
	n := 0
	for _, t := range c.timers {
		if t.when.After(c.now) {
			break
		}
		t.ch <- t.when // buffered, and each timer fires once
		n++
	}
	if n > 0 {
		c.timers = slices.Delete(c.timers, 0, n)
		c.notifyLocked()
	}
}

// Pending returns how far in the future each pending timer fires, shortest
// first.
func (c *Clock) Pending() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]time.Duration, len(c.timers))
	for i, t := range c.timers {
		out[i] = t.when.Sub(c.now)
	}
	slices.Sort(out)
	return out
}

// WaitFor waits until cond, called with Pending(), returns true, or ctx
// ends. It lets a test wait for a timer made by another goroutine without
// sleeping.
func (c *Clock) WaitFor(ctx context.Context, cond func(pending []time.Duration) bool) error {
	for {
		c.mu.Lock()
		changed := c.changed
		c.mu.Unlock()
		if cond(c.Pending()) {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (c *Clock) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

type timer struct {
	clock *Clock
	when  time.Time
	ch    chan time.Time
}

func (t *timer) C() <-chan time.Time { return t.ch }

func (t *timer) Stop() bool {
	c := t.clock
	c.mu.Lock()
	defer c.mu.Unlock()
	i := slices.Index(c.timers, t)
	if i < 0 {
		return false
	}
	c.timers = slices.Delete(c.timers, i, i+1)
	c.notifyLocked()
	return true
}
