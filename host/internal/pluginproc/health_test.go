package pluginproc

import (
	"testing"
	"time"
)

// Health checks of workers with the same interval fall on the same
// instants, however their workers started, and never come further apart
// than the interval (so the bound on killing a hung worker holds).
func TestHealthWaitIsAlignedAndWithinTheInterval(t *testing.T) {
	base := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	for _, interval := range []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, time.Second, 5 * time.Second, time.Minute} {
		grid := min(interval/4, healthGridMax)
		for i := range 200 {
			// Starts spread over two intervals, at odd offsets.
			now := base.Add(time.Duration(i) * (2 * interval / 200)).Add(time.Duration(i*7919) * time.Microsecond % grid)
			d := healthWait(now, interval)
			if d <= 0 || d > interval || d <= interval-grid {
				t.Fatalf("interval %v, now %v: wait %v, want in (%v, %v]", interval, now, d, interval-grid, interval)
			}
			at := now.Add(d)
			if at.Truncate(grid) != at {
				t.Fatalf("interval %v: check at %v, not on the %v grid", interval, at, grid)
			}
		}
	}
	// A zero grid (an interval under 4 ns) waits the interval.
	if d := healthWait(base, 3); d != 3 {
		t.Errorf("wait %v for a 3ns interval", d)
	}
}
