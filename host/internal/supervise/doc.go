// Package supervise keeps children running: it starts them, watches them,
// restarts them when they exit (by Erlang/OTP restart types, with
// exponential backoff and a restart intensity) and stops them in order.
//
// # Why
//
// The dynworkers host runs every worker in a process of its own. Processes
// crash, hang on start, ignore stop requests and crash again in a loop; the
// host must survive all of it without one worker disturbing another. This
// package is the part of the host that decides what to do about it. It knows
// nothing about plugins or processes: it supervises anything that implements
// Service (start one instance) and Instance (Done, ExitErr, Stop), and the
// host adapts its plugin processes to those. That also makes it testable
// with fake children on a fake clock (package supervisetest).
//
// # The model
//
// A Supervisor (New, configured by a Spec) has an ordered list of children.
// Each child is a ChildSpec: a name, a Service, a RestartType, timeouts, a
// Backoff and opaque Meta labels. Add starts a child; StopChild, RestartChild
// and Remove act on one; Stop stops them all in reverse declared order, so
// that a child can rely on the children declared before it for as long as it
// runs. Status and Child return snapshots.
//
// Each supervisor has one goroutine that owns all its state and handles
// requests and reports one at a time. Everything that may block - a
// Service.Start, an Instance.Stop, waiting for an exit or a backoff timer -
// runs in a goroutine of its own and reports back to it. So a child whose
// Start hangs holds up nobody: the other children keep being restarted,
// StopChild works on them and Status answers. A Start that outlives its
// StartTimeout counts as failed even if it ignores its ctx; should it return
// an instance later, that instance is stopped.
//
// # States
//
// A child's transitions ("decide" is the restart decision made after every
// exit and failed start):
//
//	Add ------------------------------------------> starting
//	starting --Start returned an instance---------> running
//	starting --error or StartTimeout--------------> decide
//	starting --error wrapping ErrPermanent--------> failed
//	running  --the instance exited----------------> decide
//	decide   --restart type says no---------------> exited (failed after a start error)
//	decide   --more than Intensity in Period------> failed
//	decide   --first restart of a sequence--------> starting
//	decide   --later restarts---------------------> backoff --delay over--> starting
//	starting, running --StopChild, Stop-----------> stopping --> stopped
//	backoff, exited, failed --StopChild-----------> stopped
//	any --RestartChild----------------------------> (stopping -->) starting
//	any --Remove----------------------------------> (stopping -->) gone
//
// In a table:
//
//	state     meaning                               leaves by
//	starting  Service.Start runs                    success, error, StartTimeout, stop request
//	running   an instance runs                      exit, stop request, RestartChild
//	backoff   waiting for the next start (or for    delay over, stop request, RestartChild
//	          a group restart to start it)
//	stopping  stopping the instance (or the start)  Instance.Stop returned
//	stopped   stopped on request                    RestartChild, Remove
//	exited    exited, restart type says stay down   RestartChild, StopChild, Remove
//	failed    gave up (see below)                   RestartChild, StopChild, Remove
//
// stopped, exited and failed are final until someone acts: only
// RestartChild starts such a child again.
//
// # Stopping
//
// StopChild and Stop wait for a start in progress to finish (or time out)
// and then stop the new instance, within ShutdownTimeout; Instance.Stop must
// kill at that deadline. Stop goes through the children one at a time, last
// declared first, and restarts nothing meanwhile: a child that crashes while
// it waits for its turn ends stopped (or exited, if its restart type would
// not have restarted it anyway). Exited and failed children are left as they
// are. Stop returns once every goroutine of the supervisor has ended.
//
// # Restart types
//
// As in OTP: a Permanent child (the default) is restarted after every exit,
// even a normal one (ExitErr() == nil). A Transient child is restarted only
// after an abnormal exit; after a normal one it stays exited. A Temporary
// child is never restarted. A failed Start counts as an abnormal exit, except
// that a Temporary child then goes to failed, not exited.
//
// # Backoff
//
// The first restart after a crash is immediate. If the child keeps crashing,
// the next restarts wait Backoff.Initial (10ms), then twice as long each time,
// up to Backoff.Max (30s), each delay varied by ±Backoff.Jitter (20 %). An
// instance that stayed up for Backoff.ResetAfter (10s) resets the sequence:
// its crash is restarted immediately again. RestartChild resets it too.
//
// # Intensity
//
// Backoff slows a crash loop down; intensity ends it. As in Erlang/OTP the
// budget is the supervisor's: when a restart of any of its children would
// be the (Intensity+1)-th within Period (by default: a sixth restart within
// 30s), that child goes to StateFailed (ChildFailed, reason
// intensity_exceeded) and the supervisor fails: it stops its other
// children in reverse declared order (ChildStopping/ChildStopped with
// reason `supervisor "x" failed`), goes to SupervisorFailed and emits
// SupervisorEscalated. A failed supervisor keeps answering Status, refuses
// Add and RestartChild with ErrSupervisorDown, and starts again with Up,
// which starts every child (but those stopped by StopChild) in declared
// order with fresh budgets. A start error wrapping ErrPermanent fails the
// child at once, without retries and without using the budget.
//
// # Nesting and escalation
//
// AsChild makes a supervisor the child of another: the parent's start of
// it is Up, its stop is Down, and its failure is an exit with an error
// wrapping ErrEscalated. The parent applies its own strategy and intensity
// to that exit like to any crash, so a failure climbs the tree exactly as
// far as the intensities say: a parent with budget left restarts the
// failed sub-supervisor (and, under one_for_all or rest_for_one, its
// siblings); a parent without fails in turn. Nothing is above the root: a
// failed root stays failed, its whole tree down, until Up. See tree.go.

// # Strategies
//
// Spec.Strategy says which children are restarted when one exits and its
// restart type says to restart it (a Permanent child always, a Transient one
// after an abnormal exit or failed start). An exit that is not to be
// restarted (a normal exit of a Transient child, any exit of a Temporary
// one) restarts nothing under any strategy.
//
// one_for_one (the default) restarts just that child.
//
// one_for_all stops all other children that are up (starting, running or in
// backoff), one at a time in reverse declared order, each within its
// ShutdownTimeout, and then starts all of them, the exited child included,
// one at a time in declared order (each start waits for the previous one
// to finish). With children a, b, c and b crashing:
//
//	stop c, stop a, (b's backoff delay), start a, start b, start c
//
// rest_for_one does the same for the exited child and the children declared
// after it only. With a, b, c and b crashing:
//
//	stop c, (b's backoff delay), start b, start c    - a runs on untouched
//
// Details, which follow OTP where it has an answer:
//   - Children in StateStopped, StateExited or StateFailed are left as they
//     are: a group restart neither stops nor starts them.
//   - Temporary children are stopped but not restarted (OTP drops them);
//     here they stay in StateExited until RestartChild.
//   - A group restart is one restart of the child that triggered it: it
//     counts once against the supervisor's intensity budget and uses the
//     triggering child's backoff
//     (first restart immediate, then Backoff.Initial, doubling). The delay
//     runs from the decision, concurrently with the stops; the starts begin
//     once both are over. The other children's backoff and Restarts counts
//     are not touched.
//   - Events: the trigger gets ChildExited and ChildRestarting as under
//     one_for_one. Each child the group stops gets ChildStopping and
//     ChildStopped with Reason set, e.g. `restart of "b" (one_for_all)`,
//     and waits in StateBackoff; each start gives the usual ChildStarting
//     and ChildStarted.
//   - A member that exits by itself before the group stops it gets
//     ChildExited and is restarted with the group. A start of the group
//     that fails, or another child that exits meanwhile and is to be
//     restarted, merges into the group restart in progress: its group is
//     added, children already started again are stopped again (in reverse
//     order) and the starts begin anew. So at most one group restart runs
//     at a time.
//   - StopChild and Remove on a member take it out of the group and act at
//     once (a running member waiting for its turn is stopped right away);
//     the group carries on without it. RestartChild on a member skips its
//     backoff delay, resets its backoff and returns once the group has
//     started it. On a child outside the group, and for Add, requests act
//     at once as under one_for_one.
//   - The supervisor's Stop cancels a group restart in progress: nothing
//     more is started, and Stop takes every child down as usual.
//
// # Events
//
// Everything that happens to a child is an Event: ChildStarting,
// ChildStarted, ChildStartFailed, ChildExited, ChildRestarting, ChildFailed,
// ChildStopping, ChildStopped and ChildRemoved. Each carries the supervisor
// and child names, the child's Meta and the time, has a Type whose value is
// the lifecycle event name the host publishes ("worker_started", ...), a
// one-line String for logs and a JSON-friendly Map. Spec.EventHook receives
// them all, in order, on the supervisor's goroutine: it must be quick (hand
// them to a channel if in doubt) and must not call the supervisor's blocking
// methods. Logging, metrics, AMQP events and status pages all subscribe to
// the hook; the status snapshot is updated before each event, so a hook that
// calls Status sees at least the state the event reports.
//
// A crash of a running child gives ChildExited, ChildRestarting (with the
// delay), then after the delay ChildStarting and ChildStarted. Under
// one_for_all and rest_for_one the stops of the group (ChildStopping and
// ChildStopped with a Reason) come between ChildRestarting and the starts.
//
// # Example
//
//	sup, err := supervise.New(supervise.Spec{
//		Name:      "root",
//		Intensity: 5,
//		Period:    30 * time.Second,
//		EventHook: func(ev supervise.Event) { log.Print(ev) },
//	})
//	if err != nil { ... }
//	defer sup.Stop(context.Background())
//
//	err = sup.Add(ctx, supervise.ChildSpec{
//		Name:            "SMPP Transport for account1",
//		Service:         smppService, // its Start launches the worker
//		Restart:         supervise.Permanent,
//		ShutdownTimeout: 5 * time.Second,
//		Backoff:         supervise.Backoff{Initial: 10 * time.Millisecond, Max: 30 * time.Second},
//		Meta:            map[string]string{"class": "vumi.transports.smpp.SmppTransport"},
//	})
//	// err is the first start's error, if any; the child is supervised anyway.
//
// # Testing
//
// Give Spec.Clock a supervisetest.Clock and advance it by hand: backoff
// delays, start and shutdown timeouts and the intensity period all run on
// it. The supervisor creates each timer before it emits the event that
// announces it (ChildRestarting, ChildStarting, ChildStopping), so a test
// that waited for the event can advance the clock at once. Use a negative
// Backoff.Jitter for exact delays.
package supervise
