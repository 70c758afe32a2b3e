package broker

import (
	"context"
	"slices"
	"sync"
)

// maxFailures is how many failed publishes a pubTracker remembers; a
// range reaching below the oldest one it forgot counts as failed.
const maxFailures = 1024

// pubTracker is the one ack-after-confirm tracker of a worker process: it
// follows the outcomes of the process's deferred publishes, numbered 1,
// 2, ... in the order they were sent, whether they failed before they
// were sent (addFailed) or the broker refused or lost them (add). Their
// outcomes are taken in order, by add as they come and by the ackers that
// wait for them (one at a time, the others waiting for its progress):
// wait tells an acker when every publish up to a number has its outcome
// and whether one in a range failed. Publishes confirmed in order are not
// kept, only the numbers of the failed ones (at most maxFailures).
//
// It bounds the publishes outstanding, those sent whose confirmation has
// not come: reserve waits while limit are, so a worker that publishes
// faster than the broker confirms is held back, and the tracker never
// holds more than limit confirmations. (Not "until its acks": the acks of
// a worker come on the same Outbox stream as its publishes, behind the
// one that would wait, so waiting for them could never end.)
type pubTracker struct {
	limit int // the most outstanding publishes; 0: no limit

	mu        sync.Mutex
	issued    uint64       // the number of the last publish recorded
	resolved  uint64       // every publish up to this one has its outcome
	pending   []pendingPub // recorded, outcome not taken yet, in order
	resolving bool         // a waiter waits for the first pending outcome
	failed    []uint64     // numbers of the failed publishes, ascending
	forgotten uint64       // failures up to this number were dropped from failed
	advanced  chan struct{}
}

type pendingPub struct {
	seq  uint64
	conf confirmation
}

func newPubTracker(limit int) *pubTracker { return &pubTracker{limit: limit} }

// reserve waits until fewer than the limit of publishes are outstanding,
// or ctx ends (its error).
func (t *pubTracker) reserve(ctx context.Context) error {
	t.mu.Lock()
	for {
		t.takeDone()
		if t.limit <= 0 || len(t.pending) < t.limit {
			t.mu.Unlock()
			return nil
		}
		head := t.pending[0].conf
		t.mu.Unlock()
		select {
		case <-head.Done():
		case <-ctx.Done():
			return ctx.Err()
		}
		t.mu.Lock()
	}
}

// add records the confirmation of a deferred publish just sent.
func (t *pubTracker) add(c confirmation) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.issued++
	t.pending = append(t.pending, pendingPub{seq: t.issued, conf: c})
	t.takeDone()
}

// addFailed records a deferred publish that could not be sent.
func (t *pubTracker) addFailed(err error) { t.add(&failedConfirmation{err: err}) }

// failedConfirmation is the outcome of a publish that failed before it
// was sent.
type failedConfirmation struct{ err error }

func (f *failedConfirmation) Done() <-chan struct{} { return closedChan }
func (f *failedConfirmation) Err() error            { return f.err }

// mark returns the number of the last publish recorded: later ones have
// higher numbers.
func (t *pubTracker) mark() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.issued
}

func isDone(c confirmation) bool {
	select {
	case <-c.Done():
		return true
	default:
		return false
	}
}

// takeDone takes the outcomes of the pending publishes that have one, in
// order, up to the first that has none; t.mu is held.
func (t *pubTracker) takeDone() {
	n := 0
	for _, p := range t.pending {
		if !isDone(p.conf) {
			break
		}
		t.settle(p.seq, p.conf.Err())
		n++
	}
	if n > 0 {
		clear(t.pending[:n])
		t.pending = t.pending[n:]
		if len(t.pending) == 0 {
			t.pending = t.pending[:0:0] // let the array go
		}
		t.broadcast()
	}
}

// settle records the outcome of publish seq; t.mu is held.
func (t *pubTracker) settle(seq uint64, err error) {
	t.resolved = seq
	if err == nil {
		return
	}
	t.failed = append(t.failed, seq)
	if len(t.failed) > maxFailures {
		drop := len(t.failed) - maxFailures/2
		t.forgotten = t.failed[drop-1]
		t.failed = append(t.failed[:0], t.failed[drop:]...)
	}
}

// broadcast wakes the waiters; t.mu is held.
func (t *pubTracker) broadcast() {
	if t.advanced != nil {
		close(t.advanced)
		t.advanced = nil
	}
}

// wait waits until every publish up to upTo has its outcome and reports
// whether one numbered above since and up to upTo failed. It returns
// ok false if abandon is closed first. The waiter that finds no other
// waiting for the first pending outcome waits for it itself (on the
// bus's confirmation, with no goroutine in between) and takes it and the
// ones that follow; the others wait for its progress.
func (t *pubTracker) wait(since, upTo uint64, abandon <-chan struct{}) (failed, ok bool) {
	t.mu.Lock()
	for {
		t.takeDone()
		if t.resolved >= upTo {
			failed = t.failedIn(since, upTo)
			t.mu.Unlock()
			return failed, true
		}
		if !t.resolving {
			// resolved < upTo <= issued: something is pending.
			t.resolving = true
			head := t.pending[0].conf
			t.mu.Unlock()
			select {
			case <-head.Done():
			case <-abandon:
				t.mu.Lock()
				t.resolving = false
				t.broadcast() // another waiter takes over
				t.mu.Unlock()
				return false, false
			}
			t.mu.Lock()
			t.resolving = false
			continue
		}
		if t.advanced == nil {
			t.advanced = make(chan struct{})
		}
		ch := t.advanced
		t.mu.Unlock()
		select {
		case <-ch:
		case <-abandon:
			return false, false
		}
		t.mu.Lock()
	}
}

// failedIn reports whether a publish numbered in (since, upTo] failed;
// t.mu is held.
func (t *pubTracker) failedIn(since, upTo uint64) bool {
	if upTo <= since {
		return false
	}
	if since < t.forgotten {
		return true
	}
	i, _ := slices.BinarySearch(t.failed, since+1)
	return i < len(t.failed) && t.failed[i] <= upTo
}
