package monitor

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"
)

// HeartbeatVersion is the version Vumi's heartbeat messages carry
// (HeartBeatMessage.VERSION_20130319).
const HeartbeatVersion = "20130319"

// Heartbeat is a Vumi heartbeat message, published on HeartbeatExchange
// with HeartbeatRoutingKey for every healthy worker so that Vumi's
// heartbeat monitor can watch dynworkers workers unchanged. Its JSON is
//
//	{"version":"20130319","system_id":"...","worker_id":"<system_id>:<worker_name>",
//	 "worker_name":"...","hostname":"...","timestamp":1700000000.25,"pid":4242}
//
// with the fields Vumi's worker publishes (vumi.worker, _gen_heartbeat_attrs).
type Heartbeat struct {
	Version    string
	SystemID   string
	WorkerID   string
	WorkerName string
	Hostname   string
	// Timestamp is Unix time in seconds, with a fraction, as Python's
	// time.time() gives it.
	Timestamp float64
	// PID is the pid of the worker's plugin process.
	PID int
}

// WorkerID returns Vumi's worker id for a worker of a system,
// "<system_id>:<worker_name>" (vumi.utils.generate_worker_id).
func WorkerID(systemID, workerName string) string {
	return systemID + ":" + workerName
}

// NewHeartbeat returns the heartbeat of worker workerName of system
// systemID, running as process pid on hostname, at now.
func NewHeartbeat(systemID, workerName, hostname string, pid int, now time.Time) Heartbeat {
	return Heartbeat{
		Version:    HeartbeatVersion,
		SystemID:   systemID,
		WorkerID:   WorkerID(systemID, workerName),
		WorkerName: workerName,
		Hostname:   hostname,
		// Microseconds, like time.time(); the sum of the whole seconds and
		// the fraction keeps them exact where UnixNano()/1e9 would not.
		Timestamp: float64(now.Unix()) + float64(now.Nanosecond()/1000)/1e6,
		PID:       pid,
	}
}

// heartbeatJSON fixes the keys and their order.
type heartbeatJSON struct {
	Version    string  `json:"version"`
	SystemID   string  `json:"system_id"`
	WorkerID   string  `json:"worker_id"`
	WorkerName string  `json:"worker_name"`
	Hostname   string  `json:"hostname"`
	Timestamp  pyFloat `json:"timestamp"`
	PID        int     `json:"pid"`
}

// pyFloat is a float64 that is always written with a decimal point or an
// exponent, so that Python reads it back as a float, as time.time() is.
type pyFloat float64

func (f pyFloat) MarshalJSON() ([]byte, error) {
	if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
		return nil, fmt.Errorf("timestamp %v cannot be encoded as JSON", float64(f))
	}
	return appendFloat(nil, float64(f)), nil
}

// MarshalJSON encodes h with Vumi's keys.
func (h Heartbeat) MarshalJSON() ([]byte, error) {
	return json.Marshal(heartbeatJSON{
		Version: h.Version, SystemID: h.SystemID, WorkerID: h.WorkerID, WorkerName: h.WorkerName,
		Hostname: h.Hostname, Timestamp: pyFloat(h.Timestamp), PID: h.PID,
	})
}

// UnmarshalJSON decodes Vumi's keys; others are ignored.
func (h *Heartbeat) UnmarshalJSON(b []byte) error {
	var w struct {
		Version    string  `json:"version"`
		SystemID   string  `json:"system_id"`
		WorkerID   string  `json:"worker_id"`
		WorkerName string  `json:"worker_name"`
		Hostname   string  `json:"hostname"`
		Timestamp  float64 `json:"timestamp"`
		PID        int     `json:"pid"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return fmt.Errorf("heartbeat: %w", err)
	}
	*h = Heartbeat(w)
	return nil
}

// Validate checks what Vumi's HeartBeatMessage checks: that version,
// system_id, worker_id, worker_name, hostname and pid are there. It also
// checks the version, and that worker_id is WorkerID(system_id, worker_name).
func (h Heartbeat) Validate() error {
	var missing []string
	for _, f := range []struct{ key, val string }{
		{"version", h.Version}, {"system_id", h.SystemID}, {"worker_id", h.WorkerID},
		{"worker_name", h.WorkerName}, {"hostname", h.Hostname},
	} {
		if f.val == "" {
			missing = append(missing, f.key)
		}
	}
	if h.PID <= 0 {
		missing = append(missing, "pid")
	}
	if len(missing) > 0 {
		return fmt.Errorf("heartbeat: missing %s", strings.Join(missing, ", "))
	}
	if h.Version != HeartbeatVersion {
		return fmt.Errorf("heartbeat: version %q, want %q", h.Version, HeartbeatVersion)
	}
	if want := WorkerID(h.SystemID, h.WorkerName); h.WorkerID != want {
		return fmt.Errorf("heartbeat: worker_id %q is not %q", h.WorkerID, want)
	}
	return nil
}
