package supervise

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// target is what the child should end up as once the operation in progress
// (a start or a stop) is over. Requests change the target; the handlers of
// the reports act on it.
type target int

const (
	targetRun    target = iota // keep it running (restart it as its spec says)
	targetStop                 // bring it down and keep it StateStopped
	targetRemove               // bring it down and forget it
)

// child is the loop goroutine's record of one child. Only the loop touches
// it; the helper goroutines get the values they need as arguments.
type child struct {
	spec  ChildSpec // with defaults; never changed after Add
	state State
	since time.Time

	inst      Instance // while running or stopping
	startedAt time.Time
	unwatch   chan struct{} // closed to release the watcher of inst

	// gen numbers the start attempts; reports of an older attempt are
	// stale and ignored.
	gen      uint64
	attempt  int
	starting bool // Service.Start in progress
	stopping bool // Instance.Stop in progress
	target   target
	timer    *backoffTimer // during StateBackoff
	next     time.Time     // when timer fires

	failures int // restarts in the current backoff sequence
	restarts int // automatic restarts since Add or RestartChild

	lastExit   error
	lastExitAt time.Time

	startWaiters []chan<- error // answered when the start in progress ends (Add, RestartChild)
	stopWaiters  []chan<- error // answered when the child is down (StopChild, Remove)

	removed bool
	// dirty: a field status() reads changed since the last publish (the
	// child is in Supervisor.dirty).
	dirty     bool
	shutBegun bool // the supervisor's Stop has reached this child
	downBegun bool // the take-down in progress has reached this child
	// adminStop marks a child stopped by StopChild: Up leaves it stopped.
	adminStop bool

	// held marks a member of the group restart in progress (one_for_all,
	// rest_for_one): it is to be stopped, if up, and then started by the
	// group (see group.go). heldReason says which child's exit caused it.
	held       bool
	heldReason string
	// stopReason labels the ChildStopping and ChildStopped events of a
	// stop made by a group restart.
	stopReason string
}

// busy reports whether a start or stop is in progress, so the child cannot
// settle yet.
func (c *child) busy() bool { return c.starting || c.stopping }

func (c *child) resetBudget() {
	c.failures, c.restarts = 0, 0
}

// shouldRestart applies the restart type to an exit.
func (c *child) shouldRestart(exitErr error) bool {
	switch c.spec.Restart {
	case Permanent:
		return true
	case Transient:
		return exitErr != nil
	default:
		return false
	}
}

func (c *child) status() ChildStatus {
	st := ChildStatus{
		Name:       c.spec.Name,
		State:      c.state,
		Meta:       c.spec.Meta,
		Instance:   c.inst,
		Since:      c.since,
		StartedAt:  c.startedAt,
		Restarts:   c.restarts,
		LastExit:   c.lastExit,
		LastExitAt: c.lastExitAt,
		Restart:    c.spec.Restart,
	}
	if c.state == StateBackoff {
		st.NextStart = c.next
	}
	return st
}

func (s *Supervisor) setState(c *child, st State) {
	c.state = st
	c.since = s.clock.Now()
	s.touch(c)
}

// touch records that c's status changed, for the next publish: every
// change to a field status() reads is followed by touch (setState does it).
func (s *Supervisor) touch(c *child) {
	if !c.dirty {
		c.dirty = true
		s.dirty = append(s.dirty, c)
	}
}

// startChild begins a start attempt. The start deadline's timer is made
// here, on the loop, before ChildStarting is emitted: a test that sees the
// event can advance its fake clock past the deadline.
func (s *Supervisor) startChild(c *child) {
	c.gen++
	c.attempt = c.failures + 1
	c.starting = true
	s.setState(c, StateStarting)
	ctx, cancel := withTimeout(context.Background(), s.clock, c.spec.StartTimeout)
	s.wg.Add(1)
	go s.runStart(c, c.gen, ctx, cancel)
	s.emit(ChildStarting{EventInfo: s.info(c), Attempt: c.attempt})
}

func (s *Supervisor) onStartDone(c *child, gen uint64, inst Instance, err error) {
	if c.removed || gen != c.gen || !c.starting {
		// Cannot happen: a child has one start in flight and is removed
		// only once it settled. Do not leak the instance anyway.
		if inst != nil {
			s.discard(inst, c.spec.ShutdownTimeout)
		}
		return
	}
	c.starting = false
	if err != nil {
		c.lastExit, c.lastExitAt = err, s.clock.Now()
		s.touch(c)
		permanent := errors.Is(err, ErrPermanent)
		s.emit(ChildStartFailed{EventInfo: s.info(c), Attempt: c.attempt, Err: err, Permanent: permanent})
		s.answer(&c.startWaiters, fmt.Errorf("starting %q: %w", c.spec.Name, err))
		switch {
		case c.target != targetRun:
			s.settle(c, nil)
		case permanent:
			s.fail(c, ReasonPermanentError, err)
		case c.spec.Restart == Temporary:
			s.fail(c, ReasonStartFailed, err)
		case c.held:
			// A group restart was going to stop it anyway; it waits for
			// the group to start it again.
			s.setState(c, StateBackoff)
		default:
			s.restartOrFail(c, err)
		}
		return
	}
	c.inst = inst
	s.touch(c)
	c.unwatch = make(chan struct{})
	s.wg.Add(1)
	go s.watch(c, gen, inst, c.unwatch)
	if c.target != targetRun {
		// A stop was requested while the start was in progress.
		s.answer(&c.startWaiters, nil)
		s.stopInstance(c)
		return
	}
	c.startedAt = s.clock.Now()
	s.setState(c, StateRunning)
	s.emit(ChildStarted{EventInfo: s.info(c), Attempt: c.attempt, Instance: inst})
	s.answer(&c.startWaiters, nil)
}

// onExit handles an instance that exited without being asked to.
func (s *Supervisor) onExit(c *child, gen uint64, inst Instance, err error) {
	if c.removed || gen != c.gen || c.inst != inst || c.stopping {
		return // stale, or expected because we are stopping it
	}
	now := s.clock.Now()
	uptime := now.Sub(c.startedAt)
	c.inst, c.unwatch, c.startedAt = nil, nil, time.Time{}
	c.lastExit, c.lastExitAt = err, now
	s.touch(c)
	s.setState(c, StateExited)
	s.emit(ChildExited{EventInfo: s.info(c), Err: err, Uptime: uptime})
	if c.held {
		// It went down before the group restart got to stop it: the group
		// restarts it (unless it is temporary), as if it had stopped it.
		s.groupDown(c)
		return
	}
	if uptime >= c.spec.Backoff.ResetAfter {
		c.failures = 0 // it was healthy: restart at once, as after a first crash
	}
	if c.shouldRestart(err) {
		s.restartOrFail(c, err)
	}
}

// restartOrFail restarts a child that went down, after its backoff delay,
// unless that would exceed the restart intensity.
func (s *Supervisor) restartOrFail(c *child, err error) {
	if s.shuttingDown || s.sstate != SupervisorRunning {
		s.heldDown(c)
		return
	}
	now := s.clock.Now()
	s.window = slices.DeleteFunc(s.window, func(t time.Time) bool { return now.Sub(t) >= s.period })
	if len(s.window) >= s.intensity {
		s.escalate(c, err)
		return
	}
	s.window = append(s.window, now)
	c.restarts++
	s.touch(c)
	delay := c.spec.Backoff.delay(c.failures, s.rand)
	c.failures++
	ev := ChildRestarting{EventInfo: s.info(c), Delay: delay, Attempt: c.failures + 1, Restarts: c.restarts, Err: err}
	if s.strategy != StrategyOneForOne {
		s.restartGroup(c, delay, ev)
		return
	}
	if delay <= 0 {
		s.emit(ev)
		s.startChild(c)
		return
	}
	c.next = now.Add(delay)
	s.setState(c, StateBackoff)
	c.timer = s.startTimer(c, delay)
	s.emit(ev)
}

func (s *Supervisor) onTimer(c *child, t *backoffTimer) {
	if c.removed || c.timer != t {
		return // cancelled meanwhile
	}
	c.timer = nil
	if s.shuttingDown || s.sstate != SupervisorRunning {
		s.heldDown(c)
		return
	}
	if c.held {
		c.next = time.Time{} // the group restart starts it in turn
		s.touch(c)
		return
	}
	s.startChild(c)
}

// heldDown records a child that would be (re)started now as stopped
// instead, because the supervisor is stopping and starts nothing any more.
func (s *Supervisor) heldDown(c *child) {
	s.setState(c, StateStopped)
	s.emit(ChildStopped{EventInfo: s.info(c)})
}

func (s *Supervisor) fail(c *child, reason FailReason, err error) {
	c.held = false
	s.setState(c, StateFailed)
	s.emit(ChildFailed{EventInfo: s.info(c), Reason: reason, Err: err, Restarts: c.restarts})
}

// stopInstance calls Instance.Stop on the current instance. As for starts,
// the deadline's timer is made before ChildStopping is emitted.
func (s *Supervisor) stopInstance(c *child) {
	c.stopping = true
	announce := c.state != StateStopping
	s.setState(c, StateStopping)
	ctx, cancel := withTimeout(context.Background(), s.clock, c.spec.ShutdownTimeout)
	s.wg.Add(1)
	go s.runStop(c, c.gen, c.inst, ctx, cancel)
	if announce {
		s.emit(ChildStopping{EventInfo: s.info(c), Reason: c.stopReason})
	}
}

func (s *Supervisor) onStopDone(c *child, gen uint64, err error) {
	if c.removed || gen != c.gen || !c.stopping {
		return
	}
	c.stopping = false
	close(c.unwatch)
	c.inst, c.unwatch, c.startedAt = nil, nil, time.Time{}
	s.touch(c)
	if err != nil {
		err = fmt.Errorf("stopping %q: %w", c.spec.Name, err)
		if s.shuttingDown {
			s.shutErrs = append(s.shutErrs, err)
		}
	}
	s.settle(c, err)
}

// bringDown acts on a stop or remove request (c.target already says which):
// it stops what runs, or waits for the start or stop in progress, or settles
// the child at once if nothing runs.
func (s *Supervisor) bringDown(c *child) {
	switch {
	case c.busy():
		if c.state != StateStopping {
			s.setState(c, StateStopping)
			s.emit(ChildStopping{EventInfo: s.info(c), Reason: c.stopReason})
		}
	case c.state == StateRunning:
		s.stopInstance(c)
	default:
		s.cancelTimer(c)
		s.settle(c, nil)
	}
}

// settle finishes a child that has nothing in progress any more, as its
// target says. stopErr is the error of the Instance.Stop just done, if any.
func (s *Supervisor) settle(c *child, stopErr error) {
	reason := c.stopReason
	c.stopReason = ""
	switch c.target {
	case targetRemove:
		if c.state == StateStopping {
			s.emit(ChildStopped{EventInfo: s.info(c), Err: stopErr, Reason: reason})
		}
		s.removeChild(c, stopErr)
	case targetStop:
		c.held = false // a stop request takes the child out of a group restart
		s.setState(c, StateStopped)
		s.emit(ChildStopped{EventInfo: s.info(c), Err: stopErr, Reason: reason})
		s.answer(&c.stopWaiters, stopErr)
		s.answer(&c.startWaiters, fmt.Errorf("child %q: %w", c.spec.Name, ErrInterrupted))
	case targetRun:
		if c.held {
			// Stopped by a group restart, which starts it again in turn.
			s.groupStopped(c, stopErr, reason)
			return
		}
		// The stop half of a RestartChild (or of a group restart cut
		// short by the supervisor's Stop).
		s.setState(c, StateStopped)
		s.emit(ChildStopped{EventInfo: s.info(c), Err: stopErr, Reason: reason})
		s.answer(&c.stopWaiters, stopErr)
		if s.shuttingDown {
			s.answer(&c.startWaiters, ErrStopped)
			return
		}
		if s.sstate != SupervisorRunning {
			s.answer(&c.startWaiters, fmt.Errorf("supervisor %q is %s: %w", s.name, s.sstate, ErrSupervisorDown))
			return
		}
		s.startChild(c)
	}
}

func (s *Supervisor) removeChild(c *child, stopErr error) {
	c.removed = true
	c.held = false
	delete(s.children, c.spec.Name)
	s.order = slices.DeleteFunc(s.order, func(o *child) bool { return o == c })
	s.relayout = true
	s.emit(ChildRemoved{EventInfo: s.info(c)})
	s.answer(&c.stopWaiters, stopErr)
	s.answer(&c.startWaiters, fmt.Errorf("child %q: %w", c.spec.Name, ErrInterrupted))
}

func (s *Supervisor) cancelTimer(c *child) {
	if c.timer != nil {
		c.timer.cancel()
		c.timer = nil
	}
	if !c.next.IsZero() {
		c.next = time.Time{}
		s.touch(c)
	}
}
