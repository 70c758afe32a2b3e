package wire

import "time"

// HealthGridMax is the largest step of the grid health checks are aligned
// to.
const HealthGridMax = time.Second

// NextHealthCheck returns when the health check that follows one due at
// last (or a start at last) is due, for a worker checked every interval:
// the last point of a grid of step min(interval/4, HealthGridMax) that is
// at most interval after last. The host's polled checks and the SDK's
// health beats both follow it, so that the checks of workers with the same
// interval, however they started, come at the same instants (the host wakes
// once for a batch of them), and never more than interval apart (between
// 3/4 of it and all of it): a hung worker is still killed within
// health_interval × health_failures + health_timeout.
func NextHealthCheck(last time.Time, interval time.Duration) time.Time {
	grid := min(interval/4, HealthGridMax)
	if grid <= 0 {
		return last.Add(interval)
	}
	if next := last.Add(interval).Truncate(grid); next.After(last) {
		return next
	}
	return last.Add(interval)
}
