package supervise

import (
	"context"
	"errors"
)

// Service is something the supervisor can start: a recipe for instances.
//
// The supervisor calls Start whenever the child has to run: on Add, on every
// automatic restart and on RestartChild. Every call must make a fresh
// Instance; the supervisor never reuses an instance that has exited.
//
// Start must return once the instance runs, not when it ends. ctx carries the
// start deadline (ChildSpec.StartTimeout): a Start that is still busy when ctx
// is done should give up, clean up what it began and return ctx's error. A
// Start that ignores ctx cannot block the supervisor: the attempt is counted
// as failed at the deadline, and should Start return an Instance later, the
// supervisor stops that instance at once.
//
// An error wrapping ErrPermanent means that retrying cannot help (a missing
// binary, an invalid config): the child goes straight to StateFailed and is
// not restarted until RestartChild. Any other error is treated like a crash
// and retried with backoff, within the restart intensity.
//
// A Service is called from several goroutines over its life (never two Starts
// of the same child at once), so it must not rely on goroutine identity.
type Service interface {
	// Start starts one instance and returns once it runs. It returns either a
	// running instance and a nil error, or a nil instance and an error.
	Start(ctx context.Context) (Instance, error)
}

// Instance is one running incarnation of a Service, for example one process.
//
// The supervisor watches Done to learn that the instance exited by itself and
// calls Stop when it wants the instance gone; it calls Stop at most once.
type Instance interface {
	// Done returns a channel that is closed once the instance has exited, for
	// whatever reason, including a Stop.
	Done() <-chan struct{}
	// ExitErr tells why the instance exited: nil means a normal exit (exit
	// code 0, or the work was finished). It is only valid after Done is
	// closed. Transient children are restarted only when it is not nil.
	ExitErr() error
	// Stop stops the instance gracefully and returns once it is gone. ctx's
	// deadline is the child's ShutdownTimeout: when it passes, Stop must kill
	// the instance and return (an error saying so is welcome). Stop may be
	// called after the instance exited by itself, before the supervisor
	// noticed; it must then just return. The supervisor
	// does not cut off a Stop that overruns its deadline, because it cannot
	// know that the instance is gone; an Instance that honours this contract
	// keeps the supervisor responsive.
	Stop(ctx context.Context) error
}

// ServiceFunc adapts a function to the Service interface.
type ServiceFunc func(ctx context.Context) (Instance, error)

// Start calls f(ctx).
func (f ServiceFunc) Start(ctx context.Context) (Instance, error) { return f(ctx) }

// Sentinel errors, to be checked with errors.Is.
var (
	// ErrPermanent marks a start error that retrying cannot fix. Wrap it:
	// fmt.Errorf("config: %w", supervise.ErrPermanent).
	ErrPermanent = errors.New("permanent failure, not retried")
	// ErrDuplicate is returned by Add when a child of that name exists.
	ErrDuplicate = errors.New("a child with this name already exists")
	// ErrNotFound is returned for a child name the supervisor does not have.
	ErrNotFound = errors.New("no such child")
	// ErrStopped is returned by calls made while or after the supervisor
	// stops: nothing can be added or (re)started any more.
	ErrStopped = errors.New("supervisor stopped")
	// ErrInvalidSpec is wrapped by every validation error of New and Add.
	ErrInvalidSpec = errors.New("invalid spec")
	// ErrInterrupted is returned by RestartChild when a later StopChild,
	// Remove or supervisor Stop overtook the restart before it started.
	ErrInterrupted = errors.New("interrupted by a later request")
)
