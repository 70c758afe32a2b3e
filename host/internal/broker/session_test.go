package broker

import (
	"testing"
	"time"
)

// The broker's retries double from MinBackoff up to MaxBackoff, each delay
// drawn uniformly from the upper half of its nominal value, as Options
// promise.
func TestBackoffDoublesIsCappedAndJittered(t *testing.T) {
	b := reconnectBackoff(100*time.Millisecond, 10*time.Second)
	lowest := func() float64 { return 0 }
	highest := func() float64 { return 1 - 1.0/(1<<53) } // the largest value below 1
	for n, want := range map[int]time.Duration{
		1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 3: 400 * time.Millisecond,
		8: 10 * time.Second, 100: 10 * time.Second,
	} {
		if d := b.Delay(n, lowest); d != want/2 {
			t.Errorf("Delay(%d) with the lowest draw = %v, want %v", n, d, want/2)
		}
		if d := b.Delay(n, highest); d > want || d < want-time.Microsecond {
			t.Errorf("Delay(%d) with the highest draw = %v, want just under %v", n, d, want)
		}
		seen := map[time.Duration]bool{}
		for range 200 {
			d := b.Delay(n, nil)
			if d < want/2 || d > want {
				t.Fatalf("Delay(%d) = %v, want within [%v, %v]", n, d, want/2, want)
			}
			seen[d] = true
		}
		if len(seen) < 10 {
			t.Fatalf("Delay(%d) is not jittered: %d distinct values in 200", n, len(seen))
		}
	}
	// The first attempt is the manager's own and waits for nothing; a
	// nanosecond's bounds do not fall back to supervise's defaults.
	if d := b.Delay(0, nil); d != 0 {
		t.Errorf("Delay(0) = %v, want 0", d)
	}
	if d := reconnectBackoff(1, 1).Delay(5, lowest); d > 1 {
		t.Errorf("1ns bounds: Delay = %v, want at most 1ns", d)
	}
}
