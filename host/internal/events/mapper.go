package events

import (
	"maps"
	"strings"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/supervise"
)

// Child-spec metadata that marks a child which is itself a supervisor. The
// daemon sets them on the ChildSpec.Meta of a sub-supervisor; Map names
// that child's events supervisor_* and reports MetaPath as the event's
// child.
const (
	// MetaKind is the Meta key whose value says what kind of child it is.
	MetaKind = "kind"
	// KindSupervisor is MetaKind's value for a child that is a supervisor.
	KindSupervisor = "supervisor"
	// MetaPath is the Meta key holding a supervisor child's path.
	MetaPath = "path"
)

// IsSupervisor reports whether a child's Meta marks it as a supervisor.
func IsSupervisor(meta map[string]string) bool { return meta[MetaKind] == KindSupervisor }

// Mapper maps the supervise events of one host to their wire form. The
// zero value works, with empty host names and no pids.
type Mapper struct {
	// SystemID and Host name the host in every event.
	SystemID string
	Host     string
	// Pid returns the process id of a started instance (0 when it has
	// none); it fills Pid of worker_started. nil leaves Pid out.
	Pid func(supervise.Instance) int
}

// Map returns ev as published on vumi.events. Events about a child that is
// a supervisor are named supervisor_* instead of worker_*
// (supervisor_started, supervisor_restarting, ...) and carry the child's
// path as Child instead of Worker; Supervisor is always the supervisor that
// emitted the event. Fields an event type does not have stay zero, so that
// they are omitted from the JSON.
func (m Mapper) Map(ev supervise.Event) api.Event {
	out := api.Event{Event: string(ev.Type()), SystemID: m.SystemID, Host: m.Host}
	var info supervise.EventInfo
	switch e := ev.(type) {
	case supervise.ChildStarting:
		info, out.Attempt = e.EventInfo, e.Attempt
	case supervise.ChildStarted:
		info, out.Attempt = e.EventInfo, e.Attempt
		if m.Pid != nil && e.Instance != nil {
			out.Pid = m.Pid(e.Instance)
		}
	case supervise.ChildStartFailed:
		info, out.Attempt, out.Error, out.Permanent = e.EventInfo, e.Attempt, errString(e.Err), e.Permanent
		out.Reason = api.ExitReason(e.Err)
	case supervise.ChildExited:
		info, out.Error, out.UptimeSeconds = e.EventInfo, errString(e.Err), ptr(seconds(e.Uptime))
		out.Reason = api.ExitReason(e.Err)
	case supervise.ChildRestarting:
		info, out.Attempt, out.Error = e.EventInfo, e.Attempt, errString(e.Err)
		out.DelaySeconds, out.Restarts = ptr(seconds(e.Delay)), ptr(e.Restarts)
	case supervise.ChildFailed:
		info, out.Reason, out.Error, out.Restarts = e.EventInfo, string(e.Reason), errString(e.Err), ptr(e.Restarts)
	case supervise.ChildStopping:
		info, out.Reason = e.EventInfo, e.Reason
	case supervise.ChildStopped:
		info, out.Reason, out.Error = e.EventInfo, e.Reason, errString(e.Err)
	case supervise.ChildRemoved:
		info = e.EventInfo
	case supervise.SupervisorEscalated:
		info, out.Error = e.EventInfo, errString(e.Err)
		out.Intensity, out.PeriodSeconds = ptr(e.Intensity), ptr(seconds(e.Period))
	default:
		// An event type this package does not know yet still gets its
		// name and common fields, from the map every event offers.
		info = infoFromMap(ev.Map())
		if s, ok := ev.Map()["error"].(string); ok {
			out.Error = s
		}
	}
	out.Supervisor, out.Worker, out.Time = info.Supervisor, info.Child, info.Time.UTC()
	out.Meta = maps.Clone(info.Meta)
	if out.Meta == nil {
		// Always an object on the wire, never null.
		out.Meta = map[string]string{}
	}
	if IsSupervisor(info.Meta) && strings.HasPrefix(out.Event, "worker_") {
		out.Event = "supervisor_" + strings.TrimPrefix(out.Event, "worker_")
		out.Child, out.Worker = info.Meta[MetaPath], ""
	}
	return out
}

func infoFromMap(m map[string]any) supervise.EventInfo {
	var info supervise.EventInfo
	info.Supervisor, _ = m["supervisor"].(string)
	info.Child, _ = m["worker"].(string)
	info.Meta, _ = m["meta"].(map[string]string)
	if s, ok := m["time"].(string); ok {
		info.Time, _ = time.Parse(time.RFC3339Nano, s)
	}
	return info
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func ptr[T any](v T) *T { return &v }

// seconds is d in seconds to the millisecond: an event's JSON says 1.5,
// not 1.500212047 or the float noise of a division.
func seconds(d time.Duration) float64 {
	return float64(d.Round(time.Millisecond).Milliseconds()) / 1000
}
