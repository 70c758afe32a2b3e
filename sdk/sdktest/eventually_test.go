package sdktest_test

import (
	"fmt"
	"regexp"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/sdk/sdktest"
)

// fakeTB records a Fatalf instead of ending the test. Its other methods are
// those of the nil testing.TB it embeds: Eventually must not call them.
type fakeTB struct {
	testing.TB
	fatals []string
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.fatals = append(f.fatals, fmt.Sprintf(format, args...))
}

// callCount shows a count as it is when formatted.
type callCount struct{ n *int }

func (c callCount) String() string { return fmt.Sprint(*c.n) }

func TestEventuallyReturnsOnceTheConditionHolds(t *testing.T) {
	var calls int
	sdktest.Eventually(t, 10*time.Second, func() bool {
		calls++
		return calls == 5
	}, "cond never held")
	if calls != 5 {
		t.Errorf("cond called %d times, want 5: Eventually must stop at the first true", calls)
	}

	// A condition made true by another goroutine.
	var flag atomic.Bool
	go flag.Store(true)
	sdktest.Eventually(t, 10*time.Second, flag.Load, "the flag was not set")

	// A condition true at once is not waited on, whatever the timeout.
	begin := time.Now()
	sdktest.Eventually(t, time.Hour, func() bool { return true }, "true is false")
	if d := time.Since(begin); d > time.Second {
		t.Errorf("a condition true at once took %s", d)
	}
}

func TestEventuallyFailsWhenTheConditionNeverHolds(t *testing.T) {
	const timeout = 200 * time.Millisecond
	var (
		calls int
		last  time.Time
	)
	ft := &fakeTB{}
	begin := time.Now()
	sdktest.Eventually(ft, timeout, func() bool {
		calls++
		last = time.Now()
		return false
	}, "worker %q did not start after %s checks", "w1", callCount{&calls})
	if len(ft.fatals) != 1 {
		t.Fatalf("Fatalf called %d times, want once: %q", len(ft.fatals), ft.fatals)
	}
	// The message is formatted at the end: callCount shows the last count.
	want := fmt.Sprintf(`^worker "w1" did not start after %d checks \(waited [0-9.]+m?s\)$`, calls)
	if msg := ft.fatals[0]; !regexp.MustCompile(want).MatchString(msg) {
		t.Errorf("message %q, want the formatted message and how long it waited", msg)
	}
	if last.Sub(begin) < timeout {
		t.Errorf("cond last called %s after the start, want a last call at the %s timeout", last.Sub(begin), timeout)
	}
	// 1, 2, 4 ... 50 ms apart: about ten calls in 200 ms, fewer on a busy
	// machine, never a busy loop.
	if calls < 2 || calls > 50 {
		t.Errorf("cond called %d times in %s", calls, timeout)
	}
}
