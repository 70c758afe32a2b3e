package api

import "time"

// ExitOOMKilled is the exit reason (Event.Reason of worker_exited and
// worker_start_failed, Worker.LastExitReason) of a worker whose process
// was killed for reaching its memory limit.
const ExitOOMKilled = "oom_killed"

// ExitReason returns the exit reason of err: that of the first error in its
// chain with an ExitReason method (pluginproc.ExitError has one), or "".
func ExitReason(err error) string {
	for err != nil {
		if r, ok := err.(interface{ ExitReason() string }); ok {
			if s := r.ExitReason(); s != "" {
				return s
			}
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				if s := ExitReason(e); s != "" {
					return s
				}
			}
			return ""
		default:
			return ""
		}
	}
	return ""
}

// Event is a lifecycle event as published on vumi.events (key
// <system_id>.<host>.<event>), listed by GET /v1/events and shown by the
// dashboard. Fields that an event type does not have are absent.
type Event struct {
	// Event is the event's wire name: worker_starting, worker_started,
	// worker_start_failed, worker_exited, worker_restarting,
	// worker_failed, worker_stopping, worker_stopped, worker_removed,
	// supervisor_escalated, and supervisor_* in place of worker_* for a
	// child that is a supervisor.
	Event string    `json:"event"`
	Time  time.Time `json:"time"`
	// SystemID and Host name the host that published it.
	SystemID string `json:"system_id"`
	Host     string `json:"host"`
	// Supervisor is the path of the supervisor that emitted the event.
	Supervisor string `json:"supervisor"`
	// Worker is the worker the event is about; Child, instead, the path of
	// the child supervisor of a supervisor_* event.
	Worker string            `json:"worker,omitempty"`
	Child  string            `json:"child,omitempty"`
	Meta   map[string]string `json:"meta"`
	// Pid is the plugin process of a worker_started event.
	Pid       int    `json:"pid,omitempty"`
	Attempt   int    `json:"attempt,omitempty"`
	Error     string `json:"error,omitempty"`
	Permanent bool   `json:"permanent,omitempty"`
	// Reason is why a worker_failed's supervisor gave up, what a
	// worker_stopping/worker_stopped was for, and, for worker_exited and
	// worker_start_failed, the kind of exit when it has a name of its
	// own: ExitOOMKilled.
	Reason        string   `json:"reason,omitempty"`
	UptimeSeconds *float64 `json:"uptime_seconds,omitempty"`
	DelaySeconds  *float64 `json:"delay_seconds,omitempty"`
	Restarts      *int     `json:"restarts,omitempty"`
	Intensity     *int     `json:"intensity,omitempty"`
	// PeriodSeconds is the intensity period of supervisor_escalated.
	PeriodSeconds *float64 `json:"period,omitempty"`
}
