package supervise

import (
	"fmt"
	"math/rand/v2"
	"time"
)

// Defaults for the zero values of Backoff.
const (
	DefaultBackoffInitial    = 10 * time.Millisecond
	DefaultBackoffMax        = 30 * time.Second
	DefaultBackoffResetAfter = 10 * time.Second
	DefaultBackoffJitter     = 0.2
)

// Backoff spaces out the restarts of a child that keeps crashing, so that a
// worker whose database is down does not spin at full speed.
//
// The first restart after a crash is immediate, because most crashes are
// one-offs and the worker should be back at once. If it crashes again, the
// next restarts wait Initial, 2×Initial, 4×Initial, ... up to Max, each
// varied by ±Jitter so that many workers failing together do not restart in
// lockstep. Once an instance has stayed up for ResetAfter the child counts as
// healthy again: its next crash is restarted immediately and the sequence
// starts over.
//
// A start that fails (with an error not wrapping ErrPermanent) counts as a
// crash of an instance that never ran.
type Backoff struct {
	// Initial is the delay of the second restart. Default 10ms.
	Initial time.Duration
	// Max caps the delay (before jitter). Default 30s.
	Max time.Duration
	// ResetAfter is how long an instance must stay up for the sequence to
	// reset. Default 10s.
	ResetAfter time.Duration
	// Jitter is the relative random variation of each non-zero delay, in
	// [0, 1]. Default 0.2 (±20 %). A negative value means no jitter, which
	// makes delays exact for tests.
	Jitter float64
}

func (b Backoff) withDefaults() (Backoff, error) {
	if b.Initial < 0 || b.Max < 0 || b.ResetAfter < 0 {
		return b, fmt.Errorf("negative backoff duration (initial %v, max %v, reset_after %v)", b.Initial, b.Max, b.ResetAfter)
	}
	if b.Jitter > 1 {
		return b, fmt.Errorf("backoff jitter %v above 1", b.Jitter)
	}
	b = b.defaulted()
	if b.Max < b.Initial {
		return b, fmt.Errorf("backoff max %v below initial %v", b.Max, b.Initial)
	}
	return b, nil
}

// defaulted replaces the zero fields by their defaults, and a negative
// Jitter by 0, without checking the rest: the result must not be
// defaulted again, since its Jitter 0 would then become the default.
func (b Backoff) defaulted() Backoff {
	if b.Initial == 0 {
		b.Initial = DefaultBackoffInitial
	}
	if b.Max == 0 {
		b.Max = DefaultBackoffMax
	}
	if b.ResetAfter == 0 {
		b.ResetAfter = DefaultBackoffResetAfter
	}
	switch {
	case b.Jitter == 0:
		b.Jitter = DefaultBackoffJitter
	case b.Jitter < 0:
		b.Jitter = 0
	}
	return b
}

// Delay returns how long to wait after n consecutive failures, on the
// schedule a supervisor follows between restarts: 0 for n <= 0 (the first
// retry is immediate), then Initial·2^(n-1) capped at Max, varied by
// ±Jitter. Zero fields mean their defaults, as in a ChildSpec; ResetAfter
// plays no part, since the caller counts n and decides when a success
// resets it.
//
// It is the one exponential backoff of the host: code outside a supervisor
// that retries (the broker's reconnections, the replacement of dead warm
// spares) takes its delays from here rather than doubling by hand.
//
// rnd returns values in [0, 1) for the jitter: nil means math/rand/v2's
// Float64, and tests pass a fixed function for exact delays (or set a
// negative Jitter). Delay never returns less than 0, nor, before jitter,
// more than Max, even for a Backoff that a Spec would reject.
func (b Backoff) Delay(n int, rnd func() float64) time.Duration {
	if rnd == nil {
		rnd = rand.Float64
	}
	return b.defaulted().delay(n, rnd)
}

// delay is Delay on a Backoff whose defaults are already in place: how
// long to wait before the next restart when the child has already been
// restarted n times in the current sequence. rnd returns values in [0, 1).
func (b Backoff) delay(n int, rnd func() float64) time.Duration {
	if n <= 0 {
		return 0
	}
	d := min(b.Initial, b.Max) // a Spec rules Max < Initial out; Delay does not
	for i := 1; i < n && d < b.Max; i++ {
		if d > b.Max/2 {
			d = b.Max // doubling would pass Max, or overflow
			break
		}
		d *= 2
	}
	if b.Jitter > 0 {
		d += time.Duration(float64(d) * b.Jitter * (2*rnd() - 1))
	}
	return max(d, 0)
}
