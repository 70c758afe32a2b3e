package events

import (
	"github.com/hashicorp/go-hclog"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/supervise"
)

// Level is the log level of an event: errors for failures and
// escalations, warnings for crashes and restarts, info for the rest.
func Level(ev supervise.Event) hclog.Level {
	switch e := ev.(type) {
	case supervise.ChildFailed, supervise.ChildStartFailed, supervise.SupervisorEscalated:
		return hclog.Error
	case supervise.ChildExited:
		if e.Err != nil {
			return hclog.Warn
		}
	case supervise.ChildRestarting:
		return hclog.Warn
	}
	return hclog.Info
}

// LogArgs flattens an event into log key/value pairs: the worker (or the
// child supervisor) and the supervisor first, so that a log line reads
// "worker_started: worker=w1 supervisor=root ...", then the class and the
// event's own fields in a fixed order, leaving out those the event does not
// have. The event name is the log message and the time the log line's own,
// so both are left out.
func LogArgs(e api.Event) []any {
	var args []any
	if e.Child != "" {
		args = append(args, "child", e.Child)
	} else {
		args = append(args, "worker", e.Worker)
	}
	args = append(args, "supervisor", e.Supervisor)
	if c := e.Meta["class"]; c != "" {
		args = append(args, "class", c)
	}
	if e.Pid != 0 {
		args = append(args, "pid", e.Pid)
	}
	if e.Attempt != 0 {
		args = append(args, "attempt", e.Attempt)
	}
	if e.DelaySeconds != nil {
		args = append(args, "delay_seconds", *e.DelaySeconds)
	}
	if e.Error != "" {
		args = append(args, "error", e.Error)
	}
	if e.Intensity != nil {
		args = append(args, "intensity", *e.Intensity)
	}
	if e.PeriodSeconds != nil {
		args = append(args, "period", *e.PeriodSeconds)
	}
	if e.Permanent {
		args = append(args, "permanent", true)
	}
	if e.Reason != "" {
		args = append(args, "reason", e.Reason)
	}
	if e.Restarts != nil {
		args = append(args, "restarts", *e.Restarts)
	}
	if e.UptimeSeconds != nil {
		args = append(args, "uptime_seconds", *e.UptimeSeconds)
	}
	return args
}
