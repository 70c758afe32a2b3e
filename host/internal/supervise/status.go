package supervise

import (
	"maps"
	"time"
)

// State is where a child is in its life. See the package documentation for
// the transitions.
type State string

// The states of a child.
const (
	// StateStarting: Service.Start is running.
	StateStarting State = "starting"
	// StateRunning: an instance runs.
	StateRunning State = "running"
	// StateBackoff: the child went down and waits for its next start, or
	// (one_for_all, rest_for_one) waits for a group restart to start it.
	StateBackoff State = "backoff"
	// StateStopping: a stop was requested and the instance (or the start in
	// progress) is being brought down.
	StateStopping State = "stopping"
	// StateStopped: stopped on request (StopChild or the supervisor's Stop);
	// it stays down until RestartChild.
	StateStopped State = "stopped"
	// StateExited: the instance exited and its restart type says not to
	// restart it (a normal exit of a transient child, any exit of a
	// temporary one). It stays down until RestartChild.
	StateExited State = "exited"
	// StateFailed: given up on, after a permanent start error or too many
	// restarts. It stays down until RestartChild.
	StateFailed State = "failed"
)

// States lists every state, in the order above, e.g. for a metric of
// children by state that must report zeros too.
func States() []State {
	return []State{StateStarting, StateRunning, StateBackoff, StateStopping, StateStopped, StateExited, StateFailed}
}

// ChildStatus is a snapshot of one child, as returned by Status and Child.
type ChildStatus struct {
	Name  string
	State State
	// Meta is a copy of ChildSpec.Meta; the receiver may keep it.
	Meta map[string]string
	// Instance is the current instance while running or stopping, else nil.
	// The host type-asserts it to learn, e.g., the process id.
	Instance Instance
	// Since is when the current state was entered.
	Since time.Time
	// StartedAt is when the current instance became running (zero if none).
	StartedAt time.Time
	// Restarts counts the automatic restarts since Add or the last
	// RestartChild, not counting the first start.
	Restarts int
	// LastExit is the last error from an unrequested exit or a failed start
	// (nil if none, or if the last exit was normal). Exits caused by a stop
	// request do not change it.
	LastExit   error
	LastExitAt time.Time
	// NextStart is when the next start is due, during StateBackoff.
	NextStart time.Time
	Restart   RestartType
}

// Map returns the status as a JSON-friendly map, in the style of Event.Map:
// times as RFC 3339 strings (omitted when zero), errors as strings.
func (st ChildStatus) Map() map[string]any {
	meta := maps.Clone(st.Meta)
	if meta == nil {
		meta = map[string]string{}
	}
	m := map[string]any{
		"name":      st.Name,
		"state":     string(st.State),
		"meta":      meta,
		"since":     st.Since.UTC().Format(time.RFC3339Nano),
		"restarts":  st.Restarts,
		"restart":   st.Restart.String(),
		"last_exit": errValue(st.LastExit),
	}
	for k, t := range map[string]time.Time{"started_at": st.StartedAt, "last_exit_at": st.LastExitAt, "next_start": st.NextStart} {
		if !t.IsZero() {
			m[k] = t.UTC().Format(time.RFC3339Nano)
		}
	}
	return m
}
