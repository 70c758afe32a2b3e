package supervise

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"
)

// Supervisor starts children, restarts them by their restart type, backoff
// and the restart intensity, and stops them in reverse order.
//
// All its state is owned by one goroutine, started by New and ended by Stop;
// the methods send requests to it and wait for the answer. Service.Start and
// Instance.Stop run in goroutines of their own that report back, so a child
// that hangs never holds up another. Call Stop when done with a Supervisor,
// or its goroutine stays behind.
type Supervisor struct {
	name      string
	strategy  Strategy
	intensity int
	period    time.Duration
	clock     Clock
	hook      func(Event)
	rand      func() float64

	// inbox carries closures to run on the loop goroutine: requests from the
	// methods and reports from the helper goroutines.
	inbox chan func()
	// loopDone is closed when the loop has ended; after that nothing reads
	// inbox, so every sender also selects on it.
	loopDone chan struct{}
	// wg counts the helper goroutines (starts, stops, watches, timers) so
	// that Stop returns only once they are gone. It does not count a
	// Service.Start that overran its deadline, which may never return.
	wg sync.WaitGroup
	// stopErr is set by the loop before it closes loopDone.
	stopErr error

	// Owned by the loop goroutine.
	children     map[string]*child
	order        []*child // declared order
	shuttingDown bool
	shutQueue    []*child // children left to stop, in reverse declared order
	shutErrs     []error
	finished     bool
	replies      []pendingReply // to deliver after the next publish
	// dirty holds the children whose status changed since the last
	// publish (touch); relayout is set when a child left order, so that
	// publish rebuilds the snapshot instead of updating it.
	dirty    []*child
	relayout bool
	// grouping is set while a group restart (one_for_all, rest_for_one)
	// is in progress; groupStarting is the member it is starting.
	grouping      bool
	groupStarting *child

	// The supervisor's own state (tree.go).
	sstate      SupervisorState
	sstateSince time.Time
	window      []time.Time // restart times, for the intensity
	epoch       *epoch      // while up
	down        *downOp     // a take-down in progress
	upWaiters   []chan<- error
	failure     error
	failedAt    time.Time

	// The last published snapshot, for Status and Child.
	mu      sync.RWMutex
	snap    []ChildStatus
	snapIdx map[string]int
	info0   SupervisorStatus
}

// New validates spec, fills in its defaults and starts the supervisor's
// goroutine. The supervisor has no children until Add.
func New(spec Spec) (*Supervisor, error) {
	sp, err := spec.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Supervisor{
		name:      sp.Name,
		strategy:  sp.Strategy,
		intensity: sp.Intensity,
		period:    sp.Period,
		clock:     sp.Clock,
		hook:      sp.EventHook,
		rand:      sp.Rand,
		inbox:     make(chan func()),
		loopDone:  make(chan struct{}),
		children:  map[string]*child{},
	}
	if sp.Stopped {
		s.setSupState(SupervisorStopped)
	} else {
		s.setSupState(SupervisorRunning)
		s.epoch = &epoch{done: make(chan struct{})}
	}
	s.publish()
	go s.run()
	return s, nil
}

// Name returns the supervisor's name.
func (s *Supervisor) Name() string { return s.name }

// Done returns a channel that is closed once Stop has stopped every child.
func (s *Supervisor) Done() <-chan struct{} { return s.loopDone }

// Add adds a child and starts it. It returns once the first start attempt
// has finished: nil if the child runs, else the start error (wrapped). Either
// way the child stays added and supervised: after a failed start it is in
// StateBackoff or StateStarting (being retried) or StateFailed, as its spec
// says. Add fails with ErrDuplicate if the name is taken, ErrInvalidSpec if
// cs is invalid and ErrStopped once Stop was called.
//
// ctx bounds only the wait, not the child's life: if ctx ends first, Add
// returns ctx's error and the start goes on. (If ctx ends before the
// supervisor took the request, the child is not added; Child tells.)
func (s *Supervisor) Add(ctx context.Context, cs ChildSpec) error {
	cs, err := cs.withDefaults()
	if err != nil {
		return err
	}
	return s.call(ctx, func(reply chan<- error) { s.doAdd(cs, reply) })
}

// AddAsync adds a child and starts it like Add, but returns as soon as the
// child is registered, so that a caller can add many children in declared
// order and let their first starts overlap. The outcome of the first start
// attempt (what Add would return) arrives on the returned channel, which
// receives exactly one value. Registration errors (ErrDuplicate,
// ErrInvalidSpec, ErrStopped, ctx's error) are returned directly.
func (s *Supervisor) AddAsync(ctx context.Context, cs ChildSpec) (<-chan error, error) {
	cs, err := cs.withDefaults()
	if err != nil {
		return nil, err
	}
	result := make(chan error, 1)
	err = s.call(ctx, func(reply chan<- error) {
		if err := s.addable(cs.Name); err != nil {
			s.reply(reply, err)
			return
		}
		s.doAdd(cs, result)
		s.reply(reply, nil)
	})
	if err != nil {
		return nil, err
	}
	return result, nil
}

// StopChild stops the named child and keeps it in StateStopped, without
// restarts, until RestartChild. If a start is in progress it waits for it to
// finish (or time out) and then stops the new instance. It returns the error
// of Instance.Stop, if any; the child is stopped either way. Stopping a
// stopped child is a no-op. Unknown names give ErrNotFound.
func (s *Supervisor) StopChild(ctx context.Context, name string) error {
	return s.call(ctx, func(reply chan<- error) { s.doStopChild(name, reply) })
}

// RestartChild starts the named child by hand, from any state, with a fresh
// restart budget and backoff sequence. A running child is stopped first; a
// child whose start is in progress just keeps that start. It returns once the
// start attempt has finished, with its error. Unknown names give
// ErrNotFound.
func (s *Supervisor) RestartChild(ctx context.Context, name string) error {
	return s.call(ctx, func(reply chan<- error) { s.doRestartChild(name, reply) })
}

// Remove stops the named child if it runs (as StopChild does) and forgets
// it; its name can then be added again. Unknown names give ErrNotFound.
func (s *Supervisor) Remove(ctx context.Context, name string) error {
	return s.call(ctx, func(reply chan<- error) { s.doRemove(name, reply) })
}

// Stop stops all children in reverse declared order, one after the other,
// each within its own ShutdownTimeout (a child still starting is first
// allowed to finish its start, within its StartTimeout). Nothing is restarted
// meanwhile. Stop returns once every child is down and every goroutine of the
// supervisor has ended (but for a Service.Start that overran its deadline
// and still has not returned), with the errors of the Instance.Stop calls
// joined. If
// ctx ends first Stop returns ctx's error and the shutdown goes on; call Stop
// again to wait for it. Afterwards Add and the other requests fail with
// ErrStopped, while Status still answers.
func (s *Supervisor) Stop(ctx context.Context) error {
	select {
	case s.inbox <- s.beginShutdown:
	case <-s.loopDone:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-s.loopDone:
	case <-ctx.Done():
		return ctx.Err()
	}
	s.wg.Wait()
	return s.stopErr
}

// Status returns a snapshot of every child, in declared order. It never
// waits for a child, not even one whose start hangs.
func (s *Supervisor) Status() []ChildStatus {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]ChildStatus, len(s.snap))
	for i, st := range s.snap {
		st.Meta = maps.Clone(st.Meta)
		out[i] = st
	}
	return out
}

// Child returns a snapshot of the named child, and whether it exists.
func (s *Supervisor) Child(name string) (ChildStatus, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	i, ok := s.snapIdx[name]
	if !ok {
		return ChildStatus{}, false
	}
	st := s.snap[i]
	st.Meta = maps.Clone(st.Meta)
	return st, true
}

// call runs op on the loop goroutine and waits for its reply. op must
// answer exactly once with s.reply, now or later; reply is buffered, so the
// loop never blocks on a caller that gave up.
func (s *Supervisor) call(ctx context.Context, op func(reply chan<- error)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	reply := make(chan error, 1)
	select {
	case s.inbox <- func() { op(reply) }:
	case <-s.loopDone:
		return ErrStopped
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// send delivers a report from a helper goroutine to the loop. It gives up
// when abandon is closed (the loop no longer wants the report) or the loop
// has ended, so that no helper can block forever.
func (s *Supervisor) send(f func(), abandon <-chan struct{}) {
	select {
	case s.inbox <- f:
	case <-abandon:
	case <-s.loopDone:
	}
}

// run is the loop goroutine. After each request or report it moves the
// shutdown along and publishes the new snapshot.
func (s *Supervisor) run() {
	for !s.finished {
		f := <-s.inbox
		f()
		switch {
		case s.shuttingDown:
			s.advanceShutdown()
		case s.down != nil:
			s.advanceDown()
		case s.grouping:
			s.advanceGroup()
		}
		if !s.grouping && len(s.upWaiters) > 0 && s.sstate == SupervisorRunning {
			s.answer(&s.upWaiters, nil) // Up's start phase is over
		}
		s.publish()
		s.flushReplies()
	}
	s.stopErr = errors.Join(s.shutErrs...)
	s.endEpoch()
	for _, c := range s.order {
		s.answer(&c.startWaiters, ErrStopped)
		s.answer(&c.stopWaiters, nil)
	}
	s.flushReplies()
	close(s.loopDone)
}

// addable tells whether a child named name can be added now.
func (s *Supervisor) addable(name string) error {
	if s.shuttingDown {
		return ErrStopped
	}
	if _, dup := s.children[name]; dup {
		return fmt.Errorf("adding %q: %w", name, ErrDuplicate)
	}
	if s.sstate != SupervisorRunning {
		return fmt.Errorf("adding %q: supervisor %q is %s: %w", name, s.name, s.sstate, ErrSupervisorDown)
	}
	return nil
}

func (s *Supervisor) doAdd(cs ChildSpec, reply chan<- error) {
	if err := s.addable(cs.Name); err != nil {
		s.reply(reply, err)
		return
	}
	c := &child{spec: cs, target: targetRun}
	s.children[cs.Name] = c
	s.order = append(s.order, c)
	c.startWaiters = append(c.startWaiters, reply)
	s.startChild(c)
}

// Register adds a child without starting it: it is StateStopped and starts
// with the supervisor's next Up. It is meant for building a supervisor that
// is down (Spec.Stopped); on a running supervisor the child stays stopped
// until RestartChild. It fails with ErrDuplicate, ErrInvalidSpec or
// ErrStopped.
func (s *Supervisor) Register(ctx context.Context, cs ChildSpec) error {
	cs, err := cs.withDefaults()
	if err != nil {
		return err
	}
	return s.call(ctx, func(reply chan<- error) {
		if s.shuttingDown {
			s.reply(reply, ErrStopped)
			return
		}
		if _, dup := s.children[cs.Name]; dup {
			s.reply(reply, fmt.Errorf("adding %q: %w", cs.Name, ErrDuplicate))
			return
		}
		c := &child{spec: cs, target: targetStop}
		s.setState(c, StateStopped)
		s.children[cs.Name] = c
		s.order = append(s.order, c)
		s.reply(reply, nil)
	})
}

func (s *Supervisor) lookup(name string, reply chan<- error) *child {
	c := s.children[name]
	if c == nil {
		s.reply(reply, fmt.Errorf("child %q: %w", name, ErrNotFound))
	}
	return c
}

func (s *Supervisor) doStopChild(name string, reply chan<- error) {
	c := s.lookup(name, reply)
	if c == nil {
		return
	}
	c.adminStop = true
	if c.state == StateStopped && !c.busy() {
		s.reply(reply, nil)
		return
	}
	if c.target != targetRemove {
		c.target = targetStop
	}
	c.stopWaiters = append(c.stopWaiters, reply)
	s.bringDown(c)
}

func (s *Supervisor) doRemove(name string, reply chan<- error) {
	if s.shuttingDown {
		s.reply(reply, ErrStopped)
		return
	}
	c := s.lookup(name, reply)
	if c == nil {
		return
	}
	c.target = targetRemove
	c.stopWaiters = append(c.stopWaiters, reply)
	s.bringDown(c)
}

func (s *Supervisor) doRestartChild(name string, reply chan<- error) {
	if s.shuttingDown {
		s.reply(reply, ErrStopped)
		return
	}
	c := s.lookup(name, reply)
	if c == nil {
		return
	}
	if c.target == targetRemove {
		s.reply(reply, fmt.Errorf("child %q is being removed: %w", name, ErrNotFound))
		return
	}
	if s.sstate != SupervisorRunning {
		s.reply(reply, fmt.Errorf("restarting %q: supervisor %q is %s: %w", name, s.name, s.sstate, ErrSupervisorDown))
		return
	}
	c.adminStop = false
	c.resetBudget()
	s.touch(c)
	c.target = targetRun
	c.startWaiters = append(c.startWaiters, reply)
	switch {
	case c.held:
		// A group restart is about to start it: RestartChild just skips
		// its backoff delay and returns once the group has started it.
		s.cancelTimer(c)
	case c.starting:
		// The start in progress is the restart. A stop requested during
		// it no longer applies.
		if c.state == StateStopping {
			s.setState(c, StateStarting)
		}
		s.answer(&c.stopWaiters, fmt.Errorf("child %q: %w", name, ErrInterrupted))
	case c.stopping:
		// settle starts the child once the stop in progress is done.
	case c.state == StateRunning:
		s.stopInstance(c)
	default:
		s.cancelTimer(c)
		s.startChild(c)
	}
}

// beginShutdown starts Stop's work: children are then taken down one at a
// time, in reverse declared order, by advanceShutdown.
func (s *Supervisor) beginShutdown() {
	if s.shuttingDown {
		return
	}
	s.shuttingDown = true
	s.cancelGroup()
	s.shutQueue = slices.Clone(s.order)
	slices.Reverse(s.shutQueue)
}

// advanceShutdown takes down the next child once the previous one is down,
// and ends the loop when all are.
func (s *Supervisor) advanceShutdown() {
	for len(s.shutQueue) > 0 {
		c := s.shutQueue[0]
		if !c.removed {
			if !c.shutBegun {
				c.shutBegun = true
				if c.busy() || c.state == StateRunning || c.state == StateBackoff {
					if c.target != targetRemove {
						c.target = targetStop
					}
					s.bringDown(c)
				}
			}
			if c.busy() {
				return
			}
		}
		s.shutQueue = s.shutQueue[1:]
	}
	s.finished = true
}

// publish makes the current state visible to Status and Child. It runs
// before every event, so that a hook that sees an event sees (at least) the
// state it describes.
//
// It runs after every request and report of the loop and before every
// event, several times per child start, so it does not copy every child's
// status each time (with n children, starting them all would cost n² copies
// and their garbage): it appends the children added since, updates those
// touched since, and rebuilds the snapshot only when a child was removed.
// Status and Child copy what they read under mu, so the snapshot can be
// updated in place.
func (s *Supervisor) publish() {
	info := s.supStatus()
	s.mu.Lock()
	s.info0 = info
	if s.relayout || s.snapIdx == nil {
		// Rebuilt in the same slice and map: removing many children
		// one after another (a reload) allocates nothing.
		if s.snapIdx == nil {
			s.snapIdx = make(map[string]int, len(s.order))
		}
		clear(s.snapIdx)
		clear(s.snap)
		s.snap = s.snap[:0]
		for i, c := range s.order {
			s.snap = append(s.snap, c.status())
			s.snapIdx[c.spec.Name] = i
		}
		s.relayout = false
	} else {
		// Children are only ever appended to order between two
		// rebuilds: order[len(snap):] are those added since.
		for _, c := range s.order[len(s.snap):] {
			s.snapIdx[c.spec.Name] = len(s.snap)
			s.snap = append(s.snap, c.status())
		}
		for _, c := range s.dirty {
			if i, ok := s.snapIdx[c.spec.Name]; ok && !c.removed {
				s.snap[i] = c.status()
			}
		}
	}
	for _, c := range s.dirty {
		c.dirty = false
	}
	clear(s.dirty)
	s.dirty = s.dirty[:0]
	if checkSnapshots {
		s.checkSnapshot()
	}
	s.mu.Unlock()
}

// checkSnapshots makes publish check its snapshot against one built afresh
// (set by the package's tests: a change to a child's status that is not
// followed by touch fails them).
var checkSnapshots bool

// checkSnapshot panics if the published snapshot differs from the
// children's current status. Called with mu held.
func (s *Supervisor) checkSnapshot() {
	if len(s.snap) != len(s.order) || len(s.snapIdx) != len(s.order) {
		panic(fmt.Sprintf("supervisor %q: snapshot of %d children (%d indexed), want %d", s.name, len(s.snap), len(s.snapIdx), len(s.order)))
	}
	for i, c := range s.order {
		want := c.status()
		got := s.snap[i]
		if s.snapIdx[c.spec.Name] != i || !sameStatus(got, want) {
			panic(fmt.Sprintf("supervisor %q: published status of %q is %+v, want %+v (a change without touch?)", s.name, c.spec.Name, got, want))
		}
	}
}

// sameStatus compares two ChildStatus values field by field (Meta only by
// its length: a child's spec, and so its Meta, never changes).
func sameStatus(a, b ChildStatus) bool {
	return a.Name == b.Name && a.State == b.State && a.Instance == b.Instance &&
		a.Since.Equal(b.Since) && a.StartedAt.Equal(b.StartedAt) && a.Restarts == b.Restarts &&
		a.LastExit == b.LastExit && a.LastExitAt.Equal(b.LastExitAt) && a.Restart == b.Restart &&
		a.NextStart.Equal(b.NextStart) && len(a.Meta) == len(b.Meta)
}

func (s *Supervisor) emit(ev Event) {
	s.publish()
	if s.hook != nil {
		s.hook(ev)
	}
}

func (s *Supervisor) info(c *child) EventInfo {
	return EventInfo{Supervisor: s.name, Child: c.spec.Name, Meta: maps.Clone(c.spec.Meta), Time: s.clock.Now()}
}

// reply queues err as the answer to a request. The loop delivers replies
// only after it published the snapshot, so that a caller whose request
// returned sees its effect in Status.
func (s *Supervisor) reply(w chan<- error, err error) {
	s.replies = append(s.replies, pendingReply{w, err})
}

// answer replies err to every waiter and forgets them.
func (s *Supervisor) answer(waiters *[]chan<- error, err error) {
	for _, w := range *waiters {
		s.reply(w, err)
	}
	*waiters = nil
}

type pendingReply struct {
	w   chan<- error
	err error
}

// flushReplies delivers the queued replies. Every reply channel is buffered
// and answered once, so this never blocks.
func (s *Supervisor) flushReplies() {
	for _, r := range s.replies {
		r.w <- r.err
	}
	clear(s.replies)
	s.replies = s.replies[:0]
}
