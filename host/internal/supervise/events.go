package supervise

import (
	"fmt"
	"maps"
	"time"
)

// EventType names a kind of event. The values are the routing-key suffixes
// of the lifecycle events the host publishes (DESIGN §5), so that logging,
// metrics and AMQP can use them unchanged.
type EventType string

// The event types, one per event struct.
const (
	EventChildStarting    EventType = "worker_starting"
	EventChildStarted     EventType = "worker_started"
	EventChildStartFailed EventType = "worker_start_failed"
	EventChildExited      EventType = "worker_exited"
	EventChildRestarting  EventType = "worker_restarting"
	EventChildFailed      EventType = "worker_failed"
	EventChildStopping    EventType = "worker_stopping"
	EventChildStopped     EventType = "worker_stopped"
	EventChildRemoved     EventType = "worker_removed"
	// EventSupervisorEscalated is about a supervisor, not a child.
	EventSupervisorEscalated EventType = "supervisor_escalated"
)

// Event is something that happened to a child. The concrete types are the
// Child* structs of this file; switch on the type for the details, or use Map
// for a JSON-friendly form. Events are delivered to Spec.EventHook.
type Event interface {
	// Type names the kind of event.
	Type() EventType
	// String describes the event in one line for logs.
	String() string
	// Map returns the event as a JSON-friendly map: times as RFC 3339
	// strings, durations as float seconds, errors as strings (nil if none).
	Map() map[string]any
}

// EventInfo is what every event carries. It is embedded in each event.
type EventInfo struct {
	// Supervisor is the name of the supervisor that emitted the event.
	Supervisor string
	// Child is the name of the child the event is about.
	Child string
	// Meta is a copy of the child's ChildSpec.Meta; the receiver may keep it.
	Meta map[string]string
	// Time is when the event happened, on the supervisor's clock.
	Time time.Time
}

func (e EventInfo) describe(what string) string {
	return fmt.Sprintf("supervisor %q: worker %q %s", e.Supervisor, e.Child, what)
}

func (e EventInfo) toMap(t EventType) map[string]any {
	meta := maps.Clone(e.Meta)
	if meta == nil {
		meta = map[string]string{}
	}
	return map[string]any{
		"event":      string(t),
		"supervisor": e.Supervisor,
		"worker":     e.Child,
		"meta":       meta,
		"time":       e.Time.UTC().Format(time.RFC3339Nano),
	}
}

func errValue(err error) any {
	if err == nil {
		return nil
	}
	return err.Error()
}

func withErr(s string, err error) string {
	if err == nil {
		return s
	}
	return s + ": " + err.Error()
}

// ChildStarting is emitted when a start attempt begins.
type ChildStarting struct {
	EventInfo
	// Attempt numbers the start attempts of the current run of failures: 1
	// for the first start and after RestartChild or a healthy run
	// (Backoff.ResetAfter), then 2, 3, ... for each automatic restart.
	Attempt int
}

// Type returns EventChildStarting.
func (e ChildStarting) Type() EventType { return EventChildStarting }

// String describes the event for logs.
func (e ChildStarting) String() string {
	return e.describe(fmt.Sprintf("starting (attempt %d)", e.Attempt))
}

// Map returns the event as a JSON-friendly map.
func (e ChildStarting) Map() map[string]any {
	m := e.toMap(e.Type())
	m["attempt"] = e.Attempt
	return m
}

// ChildStarted is emitted when Service.Start returned a running instance.
type ChildStarted struct {
	EventInfo
	Attempt int
	// Instance is the new instance, e.g. for the host to learn its pid. It is
	// left out of Map.
	Instance Instance
}

// Type returns EventChildStarted.
func (e ChildStarted) Type() EventType { return EventChildStarted }

// String describes the event for logs.
func (e ChildStarted) String() string {
	return e.describe(fmt.Sprintf("started (attempt %d)", e.Attempt))
}

// Map returns the event as a JSON-friendly map.
func (e ChildStarted) Map() map[string]any {
	m := e.toMap(e.Type())
	m["attempt"] = e.Attempt
	return m
}

// ChildStartFailed is emitted when Service.Start returned an error or did
// not return within the start timeout. What follows is a ChildRestarting, a
// ChildFailed, or a ChildStopped if a stop was requested meanwhile.
type ChildStartFailed struct {
	EventInfo
	Attempt int
	Err     error
	// Permanent reports that Err wraps ErrPermanent, so no retry follows.
	Permanent bool
}

// Type returns EventChildStartFailed.
func (e ChildStartFailed) Type() EventType { return EventChildStartFailed }

// String describes the event for logs.
func (e ChildStartFailed) String() string {
	s := fmt.Sprintf("failed to start (attempt %d)", e.Attempt)
	if e.Permanent {
		s += " permanently"
	}
	return e.describe(withErr(s, e.Err))
}

// Map returns the event as a JSON-friendly map.
func (e ChildStartFailed) Map() map[string]any {
	m := e.toMap(e.Type())
	m["attempt"] = e.Attempt
	m["error"] = errValue(e.Err)
	m["permanent"] = e.Permanent
	return m
}

// ChildExited is emitted when an instance exited without being asked to.
// (An instance stopped on request ends with ChildStopped instead.)
type ChildExited struct {
	EventInfo
	// Err is the instance's ExitErr: nil for a normal exit.
	Err error
	// Uptime is how long the instance ran.
	Uptime time.Duration
}

// Type returns EventChildExited.
func (e ChildExited) Type() EventType { return EventChildExited }

// String describes the event for logs.
func (e ChildExited) String() string {
	if e.Err == nil {
		return e.describe(fmt.Sprintf("exited normally after %v", e.Uptime))
	}
	return e.describe(withErr(fmt.Sprintf("exited after %v", e.Uptime), e.Err))
}

// Map returns the event as a JSON-friendly map.
func (e ChildExited) Map() map[string]any {
	m := e.toMap(e.Type())
	m["error"] = errValue(e.Err)
	m["uptime_seconds"] = e.Uptime.Seconds()
	return m
}

// ChildRestarting is emitted when the supervisor decided to restart a child
// after an exit or a failed start. A ChildStarting follows after Delay.
type ChildRestarting struct {
	EventInfo
	// Delay is the backoff before the next start; 0 means at once.
	Delay time.Duration
	// Attempt is the number the coming start attempt will have.
	Attempt int
	// Restarts counts the automatic restarts since Add or RestartChild,
	// including this one.
	Restarts int
	// Err is why the child went down (nil for a normal exit of a permanent
	// child).
	Err error
}

// Type returns EventChildRestarting.
func (e ChildRestarting) Type() EventType { return EventChildRestarting }

// String describes the event for logs.
func (e ChildRestarting) String() string {
	if e.Delay == 0 {
		return e.describe(fmt.Sprintf("restarting now (restart %d)", e.Restarts))
	}
	return e.describe(fmt.Sprintf("restarting in %v (restart %d)", e.Delay, e.Restarts))
}

// Map returns the event as a JSON-friendly map.
func (e ChildRestarting) Map() map[string]any {
	m := e.toMap(e.Type())
	m["delay_seconds"] = e.Delay.Seconds()
	m["attempt"] = e.Attempt
	m["restarts"] = e.Restarts
	m["error"] = errValue(e.Err)
	return m
}

// FailReason says why a child was marked failed.
type FailReason string

const (
	// ReasonPermanentError: Service.Start returned an error wrapping
	// ErrPermanent.
	ReasonPermanentError FailReason = "permanent_error"
	// ReasonIntensity: restarting the child would have exceeded its
	// supervisor's restart intensity; the supervisor fails too.
	ReasonIntensity FailReason = "intensity_exceeded"
	// ReasonStartFailed: the start of a Temporary child failed; temporary
	// children are never retried.
	ReasonStartFailed FailReason = "start_failed"
)

// ChildFailed is emitted when a child goes to StateFailed. It stays down
// until RestartChild.
type ChildFailed struct {
	EventInfo
	Reason FailReason
	// Err is the last exit or start error.
	Err error
	// Restarts counts the automatic restarts since Add or RestartChild.
	Restarts int
}

// Type returns EventChildFailed.
func (e ChildFailed) Type() EventType { return EventChildFailed }

// String describes the event for logs.
func (e ChildFailed) String() string {
	return e.describe(withErr(fmt.Sprintf("failed (%s after %d restarts)", e.Reason, e.Restarts), e.Err))
}

// Map returns the event as a JSON-friendly map.
func (e ChildFailed) Map() map[string]any {
	m := e.toMap(e.Type())
	m["reason"] = string(e.Reason)
	m["error"] = errValue(e.Err)
	m["restarts"] = e.Restarts
	return m
}

// ChildStopping is emitted when a stop was requested (StopChild, Remove,
// RestartChild or the supervisor's Stop) for a child that is starting or
// running, or when a group restart (one_for_all, rest_for_one) stops it
// because another child exited. A ChildStopped follows.
type ChildStopping struct {
	EventInfo
	// Reason is empty for a stop on request. For a stop by a group restart
	// it names the cause, e.g. `restart of "b" (one_for_all)`.
	Reason string
}

// Type returns EventChildStopping.
func (e ChildStopping) Type() EventType { return EventChildStopping }

// String describes the event for logs.
func (e ChildStopping) String() string { return e.describe(withReason("stopping", e.Reason)) }

// Map returns the event as a JSON-friendly map. A stop on request has no
// "reason" key.
func (e ChildStopping) Map() map[string]any {
	m := e.toMap(e.Type())
	if e.Reason != "" {
		m["reason"] = e.Reason
	}
	return m
}

// ChildStopped is emitted when a child reached StateStopped on request, was
// taken down on its way to removal or a manual restart, or was stopped by a
// group restart (then Reason is set and the child waits in StateBackoff for
// the group to start it again, or stays StateExited if it is Temporary).
type ChildStopped struct {
	EventInfo
	// Err is what Instance.Stop returned, e.g. that it had to kill.
	Err error
	// Reason is as in ChildStopping.
	Reason string
}

// Type returns EventChildStopped.
func (e ChildStopped) Type() EventType { return EventChildStopped }

// String describes the event for logs.
func (e ChildStopped) String() string {
	return e.describe(withErr(withReason("stopped", e.Reason), e.Err))
}

// Map returns the event as a JSON-friendly map. A stop on request has no
// "reason" key.
func (e ChildStopped) Map() map[string]any {
	m := e.toMap(e.Type())
	m["error"] = errValue(e.Err)
	if e.Reason != "" {
		m["reason"] = e.Reason
	}
	return m
}

func withReason(s, reason string) string {
	if reason == "" {
		return s
	}
	return s + " (" + reason + ")"
}

// ChildRemoved is emitted when a child was forgotten by Remove.
type ChildRemoved struct {
	EventInfo
}

// Type returns EventChildRemoved.
func (e ChildRemoved) Type() EventType { return EventChildRemoved }

// String describes the event for logs.
func (e ChildRemoved) String() string { return e.describe("removed") }

// Map returns the event as a JSON-friendly map.
func (e ChildRemoved) Map() map[string]any { return e.toMap(e.Type()) }

// Interface guards.
var (
	_ Event = ChildStarting{}
	_ Event = ChildStarted{}
	_ Event = ChildStartFailed{}
	_ Event = ChildExited{}
	_ Event = ChildRestarting{}
	_ Event = ChildFailed{}
	_ Event = ChildStopping{}
	_ Event = ChildStopped{}
	_ Event = ChildRemoved{}
)

// SupervisorEscalated is emitted when a supervisor failed: a restart would
// have exceeded its restart intensity, so it stopped all its children and is
// now SupervisorFailed. Its parent, if any, sees it exit and applies its own
// strategy. EventInfo.Child names the child whose restart was one too many;
// Meta is empty.
type SupervisorEscalated struct {
	EventInfo
	// Err says why; it wraps ErrEscalated.
	Err       error
	Intensity int
	Period    time.Duration
}

// Type returns EventSupervisorEscalated.
func (e SupervisorEscalated) Type() EventType { return EventSupervisorEscalated }

// String describes the event for logs.
func (e SupervisorEscalated) String() string {
	return withErr(fmt.Sprintf("supervisor %q failed and escalates", e.Supervisor), e.Err)
}

// Map returns the event as a JSON-friendly map; "worker" names the child
// whose restart was one too many.
func (e SupervisorEscalated) Map() map[string]any {
	m := e.toMap(e.Type())
	m["error"] = errValue(e.Err)
	m["intensity"] = e.Intensity
	m["period"] = e.Period.Seconds()
	return m
}
