package supervise

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// The supervisor's own life: restart intensity, escalation, and nesting.
//
// A supervisor is up (SupervisorRunning) or down (SupervisorStopped,
// SupervisorFailed), with SupervisorStopping between. Taking it down stops
// its children in reverse declared order, like Stop, but the loop goes on:
// Status answers, and Up starts the children again in declared order with
// fresh restart budgets. A supervisor goes down when
//
//   - a restart of one of its children would exceed the restart intensity
//     (Spec.Intensity restarts within Spec.Period, counted over all its
//     children, as in Erlang/OTP): it fails, which is escalation; or
//   - Down is called, e.g. by its parent, which stops it like any child.
//
// AsChild makes a supervisor a child of another: each start of the child is
// an Up, the instance ends when the supervisor goes down (with an error
// wrapping ErrEscalated when it failed), and stopping the instance is a
// Down. The parent thus treats a failed sub-supervisor as a crashed child
// and applies its own strategy and intensity, up to the root.

// SupervisorState is where a supervisor is in its life.
type SupervisorState string

// The states of a supervisor.
const (
	// SupervisorRunning: its children are supervised and restarted.
	SupervisorRunning SupervisorState = "running"
	// SupervisorStopping: its children are being stopped, because it
	// failed or Down was called.
	SupervisorStopping SupervisorState = "stopping"
	// SupervisorStopped: down on request (Down, or New with Spec.Stopped);
	// Up starts it.
	SupervisorStopped SupervisorState = "stopped"
	// SupervisorFailed: it exceeded its restart intensity and stopped its
	// children; Up revives it.
	SupervisorFailed SupervisorState = "failed"
)

// ErrEscalated is wrapped by the error of a supervisor that failed because
// its restart intensity was exceeded: the ExitErr of its AsChild instance
// and the Err of its SupervisorEscalated event.
var ErrEscalated = errors.New("restart intensity exceeded")

// ErrSupervisorDown is returned by Add and RestartChild while the
// supervisor is not running (stopping, stopped or failed).
var ErrSupervisorDown = errors.New("supervisor is not running")

// SupervisorStatus is a snapshot of the supervisor itself.
type SupervisorStatus struct {
	Name      string
	Strategy  Strategy
	Intensity int
	Period    time.Duration
	State     SupervisorState
	// Since is when State was entered.
	Since time.Time
	// RestartsInPeriod is how much of the restart budget is used: the
	// automatic restarts of its children within the last Period.
	RestartsInPeriod int
	// Failure is why it last failed (nil if it never did), and FailedAt when.
	Failure  error
	FailedAt time.Time
}

// Map returns the status as a JSON-friendly map.
func (st SupervisorStatus) Map() map[string]any {
	m := map[string]any{
		"name":               st.Name,
		"strategy":           string(st.Strategy),
		"intensity":          st.Intensity,
		"period":             st.Period.Seconds(),
		"state":              string(st.State),
		"since":              st.Since.UTC().Format(time.RFC3339Nano),
		"restarts_in_period": st.RestartsInPeriod,
		"failure":            errValue(st.Failure),
	}
	if !st.FailedAt.IsZero() {
		m["failed_at"] = st.FailedAt.UTC().Format(time.RFC3339Nano)
	}
	return m
}

// Info returns a snapshot of the supervisor itself. Like Status it never
// waits.
func (s *Supervisor) Info() SupervisorStatus {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.info0
}

// epoch is one period of a supervisor being up, from Up to the end of the
// next take-down. AsChild's instances are epochs.
type epoch struct {
	done chan struct{}
	err  error // set before done is closed
}

// downOp is a take-down in progress.
type downOp struct {
	failed  bool
	trigger string // the child whose restart exceeded the intensity
	cause   error
	queue   []*child // children left to stop, in reverse declared order
	waiters []chan<- error
}

// Up starts a supervisor that is down (stopped or failed): its children
// (but those stopped by StopChild) are started one after the other in
// declared order with fresh restart budgets, and Up returns once each has
// had its first start attempt. Up on a running supervisor does nothing. It
// fails with ErrSupervisorDown while the supervisor is stopping, and with
// ErrStopped after Stop.
func (s *Supervisor) Up(ctx context.Context) error {
	_, err := s.up(ctx)
	return err
}

func (s *Supervisor) up(ctx context.Context) (*epoch, error) {
	var ep *epoch
	err := s.call(ctx, func(reply chan<- error) {
		if s.shuttingDown {
			s.reply(reply, ErrStopped)
			return
		}
		switch s.sstate {
		case SupervisorRunning:
			ep = s.epoch
			if s.grouping && len(s.upWaiters) > 0 {
				s.upWaiters = append(s.upWaiters, reply) // an Up in progress
				return
			}
			s.reply(reply, nil)
			return
		case SupervisorStopping:
			s.reply(reply, fmt.Errorf("supervisor %q is stopping: %w", s.name, ErrSupervisorDown))
			return
		}
		s.setSupState(SupervisorRunning)
		s.window = nil
		s.epoch = &epoch{done: make(chan struct{})}
		ep = s.epoch
		for _, c := range s.order {
			if c.adminStop || c.busy() {
				continue
			}
			s.cancelTimer(c)
			c.resetBudget()
			s.touch(c)
			c.target = targetRun
			c.held, c.heldReason = true, ""
		}
		s.grouping = true
		s.upWaiters = append(s.upWaiters, reply)
	})
	return ep, err
}

// Down stops the supervisor's children in reverse declared order, each
// within its ShutdownTimeout, and leaves it SupervisorStopped (a failed
// supervisor stays SupervisorFailed). Unlike Stop, the supervisor stays
// usable: Up starts it again. Down on a supervisor that is down does
// nothing; during a take-down it waits for it.
func (s *Supervisor) Down(ctx context.Context) error {
	return s.call(ctx, func(reply chan<- error) {
		if s.shuttingDown {
			s.reply(reply, nil)
			return
		}
		switch s.sstate {
		case SupervisorStopped, SupervisorFailed:
			s.reply(reply, nil)
			return
		case SupervisorRunning:
			s.beginDown(false, "", nil)
		}
		s.down.waiters = append(s.down.waiters, reply)
	})
}

// AsChild returns a Service that runs s as the child of another supervisor:
// Start is Up, the instance ends when s goes down, with an ExitErr wrapping
// ErrEscalated if s failed, and Instance.Stop is Down. Give the child spec a
// StartTimeout and ShutdownTimeout that cover all of s's children. The
// parent should be stopped before s, so that s is taken down by its parent
// rather than seen to exit.
func (s *Supervisor) AsChild() Service {
	return ServiceFunc(func(ctx context.Context) (Instance, error) {
		ep, err := s.up(ctx)
		if err != nil {
			return nil, err
		}
		if ep == nil {
			return nil, fmt.Errorf("supervisor %q: %w", s.name, ErrSupervisorDown)
		}
		return &supInstance{s: s, ep: ep}, nil
	})
}

type supInstance struct {
	s  *Supervisor
	ep *epoch
}

func (i *supInstance) Done() <-chan struct{} { return i.ep.done }

func (i *supInstance) ExitErr() error {
	select {
	case <-i.ep.done:
		return i.ep.err
	default:
		return nil
	}
}

func (i *supInstance) Stop(ctx context.Context) error {
	select {
	case <-i.ep.done:
		return nil // down already; a later Up is not ours to stop
	default:
	}
	err := i.s.Down(ctx)
	if errors.Is(err, ErrStopped) {
		return nil
	}
	return err
}

// Supervisor returns the supervisor an instance made by AsChild runs, and
// whether inst is one.
func SupervisorOf(inst Instance) (*Supervisor, bool) {
	si, ok := inst.(*supInstance)
	if !ok {
		return nil, false
	}
	return si.s, true
}

func (s *Supervisor) setSupState(st SupervisorState) {
	s.sstate = st
	s.sstateSince = s.clock.Now()
}

// escalate fails the supervisor: c's restart would exceed the intensity.
func (s *Supervisor) escalate(c *child, err error) {
	s.fail(c, ReasonIntensity, err)
	cause := fmt.Errorf("%w: more than %d restarts within %v; %q would have been restarted after: %w",
		ErrEscalated, s.intensity, s.period, c.spec.Name, err)
	s.beginDown(true, c.spec.Name, cause)
}

// beginDown starts a take-down; advanceDown moves it along.
func (s *Supervisor) beginDown(failed bool, trigger string, cause error) {
	s.cancelGroup()
	s.answer(&s.upWaiters, fmt.Errorf("supervisor %q went down while starting: %w", s.name, ErrSupervisorDown))
	s.setSupState(SupervisorStopping)
	q := slices.Clone(s.order)
	slices.Reverse(q)
	s.down = &downOp{failed: failed, trigger: trigger, cause: cause, queue: q}
	for _, c := range s.order {
		c.downBegun = false
	}
}

func (s *Supervisor) advanceDown() {
	d := s.down
	reason := fmt.Sprintf("supervisor %q stopped", s.name)
	if d.failed {
		reason = fmt.Sprintf("supervisor %q failed", s.name)
	}
	for len(d.queue) > 0 {
		c := d.queue[0]
		if !c.removed {
			if !c.downBegun {
				c.downBegun = true
				if c.busy() || c.state == StateRunning || c.state == StateBackoff {
					if c.target != targetRemove {
						c.target = targetStop
					}
					c.stopReason = reason
					s.bringDown(c)
				}
			}
			if c.busy() {
				return
			}
		}
		d.queue = d.queue[1:]
	}
	s.down = nil
	s.window = nil
	ep := s.epoch
	s.epoch = nil
	if d.failed {
		s.failure, s.failedAt = d.cause, s.clock.Now()
		s.setSupState(SupervisorFailed)
		s.emit(SupervisorEscalated{
			EventInfo: EventInfo{Supervisor: s.name, Child: d.trigger, Time: s.clock.Now()},
			Err:       d.cause, Intensity: s.intensity, Period: s.period,
		})
	} else {
		s.setSupState(SupervisorStopped)
	}
	s.answer(&d.waiters, nil)
	if ep != nil {
		if d.failed {
			ep.err = fmt.Errorf("supervisor %q failed: %w", s.name, d.cause)
		}
		close(ep.done)
	}
}

// endEpoch closes the current epoch when the loop ends.
func (s *Supervisor) endEpoch() {
	if s.down != nil {
		s.answer(&s.down.waiters, nil)
		s.down = nil
	}
	s.answer(&s.upWaiters, ErrStopped)
	if s.epoch != nil {
		close(s.epoch.done)
		s.epoch = nil
	}
}

// restartsInPeriod counts the restarts within the period before now.
func (s *Supervisor) restartsInPeriod(now time.Time) int {
	n := 0
	for _, t := range s.window {
		if now.Sub(t) < s.period {
			n++
		}
	}
	return n
}

func (s *Supervisor) supStatus() SupervisorStatus {
	return SupervisorStatus{
		Name:             s.name,
		Strategy:         s.strategy,
		Intensity:        s.intensity,
		Period:           s.period,
		State:            s.sstate,
		Since:            s.sstateSince,
		RestartsInPeriod: s.restartsInPeriod(s.clock.Now()),
		Failure:          s.failure,
		FailedAt:         s.failedAt,
	}
}

// Reconfigure changes the strategy and restart intensity of a running (or
// down) supervisor without touching its children: the strategy applies
// from the next exit, the intensity and period from the next restart. Zero
// values mean the defaults, as in Spec.
func (s *Supervisor) Reconfigure(ctx context.Context, strategy Strategy, intensity int, period time.Duration) error {
	sp, err := Spec{Name: s.name, Strategy: strategy, Intensity: intensity, Period: period}.withDefaults()
	if err != nil {
		return err
	}
	return s.call(ctx, func(reply chan<- error) {
		if s.shuttingDown {
			s.reply(reply, ErrStopped)
			return
		}
		s.strategy, s.intensity, s.period = sp.Strategy, sp.Intensity, sp.Period
		s.reply(reply, nil)
	})
}
