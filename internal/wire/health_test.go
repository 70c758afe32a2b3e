package wire

import (
	"testing"
	"time"
)

// Health checks of workers with the same interval fall on the same
// instants, however their workers started, and are never due further apart
// than the interval (so the bound on killing a hung worker holds).
func TestHealthChecksAreAlignedAndWithinTheInterval(t *testing.T) {
	base := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	for _, interval := range []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, time.Second, 5 * time.Second, time.Minute} {
		grid := min(interval/4, HealthGridMax)
		for i := range 200 {
			// Starts spread over two intervals, at odd offsets.
			now := base.Add(time.Duration(i) * (2 * interval / 200)).Add(time.Duration(i*7919) * time.Microsecond % grid)
			at := now
			for range 3 { // from a start, then from each check
				next := NextHealthCheck(at, interval)
				if d := next.Sub(at); d > interval || d <= interval-grid {
					t.Fatalf("interval %v, from %v: next check after %v, want in (%v, %v]", interval, at, d, interval-grid, interval)
				}
				if next.Truncate(grid) != next {
					t.Fatalf("interval %v: check at %v, not on the %v grid", interval, next, grid)
				}
				at = next
			}
		}
	}
	// A zero grid (an interval under 4 ns) waits the interval.
	if next := NextHealthCheck(base, 3); next.Sub(base) != 3 {
		t.Errorf("next check %v after the last for a 3ns interval", next.Sub(base))
	}
}
