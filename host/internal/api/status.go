package api

import (
	"encoding/json"
	"time"
)

// Sources of a worker or supervisor: where it was asked for.
const (
	SourceHCL     = "hcl"     // the HCL configuration
	SourceControl = "control" // a control message (persisted in state_dir)
	SourceHybrid  = "hybrid"  // a hybrid worker, through the Host service
	SourceCluster = "cluster" // the cluster's desired state in etcd (placed here by the leader)
)

// Status is the result of the status operation (GET /v1/status).
type Status struct {
	SystemID    string       `json:"system_id"`
	Host        string       `json:"host"`
	Broker      string       `json:"broker"`
	Started     time.Time    `json:"started"`
	Process     *Process     `json:"process,omitempty"`
	Supervisors []Supervisor `json:"supervisors"`
	Workers     []Worker     `json:"workers"`
	// Spares are the warm spares ready (host.warm_spares), per plugin
	// binary, in path order; absent when there are none.
	Spares []SparePool `json:"spares,omitempty"`
}

// SparePool is the warm spares kept ready for one plugin binary: processes
// launched and handshaken, waiting for the Start of one of its workers.
// They are no worker's, and are killed when no longer needed.
type SparePool struct {
	Binary string `json:"binary"` // the plugin binary's path
	Ready  int    `json:"ready"`
	Pids   []int  `json:"pids"`
}

// Process is the host process itself in status.
type Process struct {
	Pid            int            `json:"pid"`
	RSSBytes       uint64         `json:"rss_bytes"`
	CPUSeconds     float64        `json:"cpu_seconds"`
	OpenFDs        int            `json:"open_fds"`
	Threads        int            `json:"threads"`
	UptimeSeconds  float64        `json:"uptime_seconds"`
	WorkersByState map[string]int `json:"workers_by_state"`
	ControlHandled uint64         `json:"control_handled"`
	ControlFailed  uint64         `json:"control_failed"`
	SampledAt      time.Time      `json:"sampled_at"`
}

// Supervisor is what the host knows about one supervisor.
type Supervisor struct {
	Name      string  `json:"name"`
	Path      string  `json:"path"`
	Parent    string  `json:"parent,omitempty"`
	Source    string  `json:"source"`
	Strategy  string  `json:"strategy"`
	Intensity int     `json:"intensity"`
	Period    float64 `json:"period"` // seconds
	State     string  `json:"state"`
	// RestartsInPeriod is the part of the restart budget used: restarts
	// of its children within the last period.
	RestartsInPeriod int       `json:"restarts_in_period"`
	Since            time.Time `json:"since"`
	Failure          string    `json:"failure,omitempty"`
	FailedAt         time.Time `json:"failed_at,omitzero"`
	// Restarts counts its own restarts by its parent (0 for the root).
	Restarts int `json:"restarts"`
	// Totals are those of its subtree in the last sample (status only).
	Totals *SupervisorTotals `json:"totals,omitempty"`
}

// SupervisorTotals are the totals of a supervisor's subtree in status.
type SupervisorTotals struct {
	Workers    int     `json:"workers"`
	Running    int     `json:"running"`
	RSSBytes   uint64  `json:"rss_bytes"`
	CPUSeconds float64 `json:"cpu_seconds"`
}

// Worker is what the host knows about one worker.
type Worker struct {
	Name       string    `json:"name"`
	Supervisor string    `json:"supervisor"`
	Class      string    `json:"class"`
	State      string    `json:"state"`
	Pid        int       `json:"pid,omitempty"`
	Since      time.Time `json:"since"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	Restarts   int       `json:"restarts"`
	LastExit   string    `json:"last_exit,omitempty"`
	LastExitAt time.Time `json:"last_exit_at,omitzero"`
	// LastExitReason classifies LastExit when it is one of the exits with
	// a name of their own: ExitOOMKilled.
	LastExitReason string `json:"last_exit_reason,omitempty"`
	// Source is where the worker was asked for (SourceHCL, ...); Owner is
	// the hybrid worker that started it, for SourceHybrid.
	Source string `json:"source"`
	Owner  string `json:"owner,omitempty"`
	// Config is the worker's config with sensitive values redacted.
	Config map[string]any `json:"config,omitempty"`
	// Metrics are the process figures of the last sample, absent when no
	// process runs.
	Metrics *WorkerMetrics `json:"metrics,omitempty"`
	// Details is what the worker's own Status() answered (sdk.StatusReporter),
	// with any sensitive config value scrubbed; absent when the worker does
	// not run or reports nothing. DetailsError says why it is missing when
	// the worker was asked and did not answer in time or failed.
	Details      json.RawMessage `json:"details,omitempty"`
	DetailsError string          `json:"details_error,omitempty"`
	// DetailsAt is when the worker was asked for the Details or
	// DetailsError shown (they may be kept a few seconds, or longer on a
	// host with many workers, see the control protocol); absent when it
	// was not asked.
	DetailsAt *time.Time `json:"details_at,omitempty"`
}

// WorkerMetrics are a worker's process figures in status.
type WorkerMetrics struct {
	RSSBytes      uint64  `json:"rss_bytes"`
	CPUSeconds    float64 `json:"cpu_seconds"`
	CPUPercent    float64 `json:"cpu_percent"`
	OpenFDs       int     `json:"open_fds"`
	Threads       int     `json:"threads"`
	UptimeSeconds float64 `json:"uptime_seconds"`
}
