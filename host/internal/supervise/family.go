package supervise

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// A Family is the nesting of a hybrid child: one incarnation of a child
// that starts children of its own. The children run in a supervisor that
// belongs to that incarnation, and the two are one Instance to the parent
// supervisor:
//
//   - the children's supervisor is made on first use (Supervisor), so a
//     child that never starts children costs nothing;
//   - the joined Instance (Join) is done only once the incarnation has
//     exited and its children are stopped, so a restarted hybrid starts
//     with no children and creates what it wants again;
//   - stopping it stops the children first, in reverse order, then the
//     incarnation;
//   - if the children's supervisor fails (its restart intensity is
//     exceeded), the incarnation is stopped at once (killed: Stop with an
//     expired deadline) and exits with an error wrapping ErrEscalated, so
//     its own supervisor applies its strategy and budget to it, as it would
//     to a failed sub-supervisor.
//
// Make a Family before the incarnation starts (its Start may already start
// children), Join the instance its Start returned, or Close the Family if
// the Start failed.
type Family struct {
	spec  Spec
	onEnd func() // called once the children are stopped for good

	mu      sync.Mutex
	sup     *Supervisor
	watch   Instance // sup as a child: done when sup goes down
	closing bool
	failed  error         // sup failed before the instance was joined
	joined  *familyMember // set by Join
	ended   chan struct{} // closed once the children are stopped for good
}

// ErrFamilyClosed is returned by Family.Supervisor once the incarnation is
// stopping or gone: it cannot start children any more.
var ErrFamilyClosed = errors.New("the worker is stopping: it cannot start children")

// NewFamily returns the Family of one incarnation. spec configures the
// children's supervisor (its name, strategy, event hook, clock); onEnd, if
// not nil, is called once the children are stopped for good.
func NewFamily(spec Spec, onEnd func()) *Family {
	return &Family{spec: spec, onEnd: onEnd, ended: make(chan struct{})}
}

// Supervisor returns the children's supervisor, making and starting it on
// first use. It fails with ErrFamilyClosed once the incarnation is
// stopping or gone.
func (f *Family) Supervisor() (*Supervisor, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closing {
		return nil, ErrFamilyClosed
	}
	if f.sup != nil {
		return f.sup, nil
	}
	sup, err := New(f.spec)
	if err != nil {
		return nil, err
	}
	// Up on a new, empty supervisor returns at once; its instance tells
	// when the supervisor fails.
	watch, err := sup.AsChild().Start(context.Background())
	if err != nil {
		_ = sup.Stop(context.Background())
		return nil, err
	}
	f.sup, f.watch = sup, watch
	go f.watchChildren(watch)
	return sup, nil
}

// Current returns the children's supervisor if it was made, else nil.
func (f *Family) Current() *Supervisor {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sup
}

// watchChildren waits for the children's supervisor to go down; a failure
// (escalation) ends the incarnation.
func (f *Family) watchChildren(watch Instance) {
	<-watch.Done()
	err := watch.ExitErr()
	if err == nil {
		return // taken down by close
	}
	f.mu.Lock()
	m := f.joined
	if m == nil {
		f.failed = err
	}
	f.mu.Unlock()
	if m != nil {
		m.kill(err)
	}
}

// Join returns inst joined with the children (see Family). Call it once,
// with the instance the incarnation's Start returned.
func (f *Family) Join(inst Instance) Instance {
	m := &familyMember{f: f, inst: inst, done: make(chan struct{})}
	f.mu.Lock()
	f.joined = m
	failed := f.failed
	f.mu.Unlock()
	go func() {
		<-inst.Done()
		f.Close()
		close(m.done)
	}()
	if failed != nil {
		m.kill(failed)
	}
	return m
}

// Close stops the children, in reverse order, each within its shutdown
// timeout, and ends the Family: later Supervisor calls fail. It may be
// called more than once and from several goroutines; every call returns
// once the children are stopped.
func (f *Family) Close() {
	f.mu.Lock()
	if f.closing {
		f.mu.Unlock()
		<-f.ended
		return
	}
	f.closing = true
	sup := f.sup
	f.mu.Unlock()
	if sup != nil {
		_ = sup.Stop(context.Background())
	}
	if f.onEnd != nil {
		f.onEnd()
	}
	close(f.ended)
}

// FamilyOf returns the Family of an instance made by Family.Join.
func FamilyOf(inst Instance) (*Family, bool) {
	m, ok := inst.(*familyMember)
	if !ok {
		return nil, false
	}
	return m.f, true
}

// Unwrap returns the instance a Family joined, or inst itself.
func Unwrap(inst Instance) Instance {
	if m, ok := inst.(*familyMember); ok {
		return m.inst
	}
	return inst
}

// familyMember is the joined Instance.
type familyMember struct {
	f    *Family
	inst Instance
	done chan struct{}

	mu      sync.Mutex
	killErr error // why the children's failure ended the incarnation
}

func (m *familyMember) Done() <-chan struct{} { return m.done }

func (m *familyMember) ExitErr() error {
	m.mu.Lock()
	kerr := m.killErr
	m.mu.Unlock()
	if kerr != nil {
		return kerr
	}
	return m.inst.ExitErr()
}

// Stop stops the children, then the incarnation.
func (m *familyMember) Stop(ctx context.Context) error {
	m.f.Close()
	err := m.inst.Stop(ctx)
	<-m.done
	return err
}

// kill ends the incarnation because its children's supervisor failed.
func (m *familyMember) kill(cause error) {
	m.mu.Lock()
	if m.killErr == nil {
		m.killErr = fmt.Errorf("its children's supervisor failed: %w", cause)
	}
	m.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // an expired deadline: Instance.Stop kills at once
	_ = m.inst.Stop(ctx)
}
