package supervisetest

import (
	"context"
	"slices"
	"testing"
	"time"
)

func TestClock(t *testing.T) {
	c := NewClock(time.Time{})
	start := c.Now()
	a := c.NewTimer(time.Second)
	b := c.NewTimer(3 * time.Second)
	if got := c.Pending(); !slices.Equal(got, []time.Duration{time.Second, 3 * time.Second}) {
		t.Fatalf("pending = %v", got)
	}
	c.Advance(2 * time.Second)
	select {
	case at := <-a.C():
		if !at.Equal(start.Add(time.Second)) {
			t.Errorf("fired at %v", at)
		}
	default:
		t.Fatal("due timer did not fire")
	}
	select {
	case <-b.C():
		t.Fatal("timer fired early")
	default:
	}
	if a.Stop() {
		t.Error("Stop of a fired timer returned true")
	}
	if !b.Stop() || len(c.Pending()) != 0 {
		t.Error("Stop did not remove the timer")
	}
	c.Advance(time.Hour)
	select {
	case <-b.C():
		t.Fatal("stopped timer fired")
	default:
	}
	if !c.Now().Equal(start.Add(time.Hour + 2*time.Second)) {
		t.Errorf("now = %v", c.Now())
	}
	if z := c.NewTimer(0); len(z.C()) != 1 {
		t.Error("a zero timer does not fire at once")
	}
}

func TestClockWaitFor(t *testing.T) {
	c := NewClock(time.Time{})
	go c.NewTimer(time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.WaitFor(ctx, func(p []time.Duration) bool { return len(p) == 1 }); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := c.WaitFor(ctx, func(p []time.Duration) bool { return len(p) == 2 }); err == nil {
		t.Fatal("WaitFor returned nil after its ctx ended")
	}
}
