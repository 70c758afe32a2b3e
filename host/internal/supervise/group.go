package supervise

import (
	"fmt"
	"slices"
	"time"
)

// Group restarts: the strategies one_for_all and rest_for_one.
//
// A group restart has no record of its own. Its members are the children
// marked held; the loop moves it along in advanceGroup after every request
// and report, like advanceShutdown does for Stop:
//
//  1. stop phase: the last declared held child that is still up is stopped
//     (or, if a start or stop of it is in progress, waited for), one at a
//     time;
//  2. wait phase: a held child with a backoff timer (the child whose exit
//     triggered the group) holds the group back until the timer fires;
//  3. start phase: the held children are started one at a time in declared
//     order, each after the previous start has finished.
//
// An exit during a group restart that calls for another one merges into it:
// the new trigger and its members are marked held too, and the phases start
// over from the stop phase, so children started meanwhile are stopped again.

// restartGroup is restartOrFail's last step under one_for_all and
// rest_for_one: it marks the child that went down and the members of its
// group held, and arms the child's backoff timer. ev is the child's
// ChildRestarting, emitted here.
func (s *Supervisor) restartGroup(c *child, delay time.Duration, ev ChildRestarting) {
	c.held, c.heldReason = true, ""
	s.setState(c, StateBackoff)
	if delay > 0 {
		c.next = s.clock.Now().Add(delay)
		s.touch(c)
		c.timer = s.startTimer(c, delay)
	}
	reason := fmt.Sprintf("restart of %q (%s)", c.spec.Name, s.strategy)
	members := s.order
	if s.strategy == StrategyRestForOne {
		members = members[slices.Index(members, c)+1:]
	}
	for _, m := range members {
		if m == c || m.held || m.target != targetRun {
			continue // already in, or being stopped or removed on request
		}
		switch m.state {
		case StateStarting, StateRunning, StateBackoff, StateStopping:
			m.held, m.heldReason = true, reason
		default:
			// Stopped, exited and failed children stay as they are.
		}
	}
	s.grouping = true
	s.emit(ev)
}

// advanceGroup moves the group restart in progress along; see above.
func (s *Supervisor) advanceGroup() {
	for _, m := range slices.Backward(s.order) {
		if !m.held {
			continue
		}
		if m.busy() {
			return
		}
		if m.state == StateRunning {
			m.stopReason = m.heldReason
			s.stopInstance(m)
			return
		}
	}
	for _, m := range s.order {
		if m.held && m.timer != nil {
			return
		}
	}
	if g := s.groupStarting; g != nil {
		if g.starting {
			return
		}
		s.groupStarting = nil
	}
	for _, m := range s.order {
		if m.held {
			m.held, m.heldReason = false, ""
			s.groupStarting = m
			s.startChild(m)
			return
		}
	}
	s.grouping = false
}

// groupStopped settles a held child that the group restart stopped: it
// waits in StateBackoff for the group to start it, except that a Temporary
// child is not restarted (as in OTP) and stays StateExited.
func (s *Supervisor) groupStopped(c *child, stopErr error, reason string) {
	if c.spec.Restart == Temporary {
		c.held = false
		s.setState(c, StateExited)
	} else {
		s.setState(c, StateBackoff)
	}
	s.emit(ChildStopped{EventInfo: s.info(c), Err: stopErr, Reason: reason})
	s.answer(&c.stopWaiters, stopErr)
}

// groupDown handles a held child that exited by itself before the group
// restart stopped it (ChildExited is already emitted): the group restarts
// it like the members it stopped.
func (s *Supervisor) groupDown(c *child) {
	if c.spec.Restart == Temporary {
		c.held = false // stays StateExited
		return
	}
	s.setState(c, StateBackoff)
}

// cancelGroup drops the group restart in progress, for the supervisor's
// Stop: held children are then stopped like all others.
func (s *Supervisor) cancelGroup() {
	s.grouping, s.groupStarting = false, nil
	for _, c := range s.order {
		c.held, c.heldReason = false, ""
	}
}
