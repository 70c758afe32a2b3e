package api

// ClassList is the list_classes result: every class of the plugin catalog
// and every plugin file the catalog could not use.
type ClassList struct {
	Classes []Class      `json:"classes"`
	Broken  []BrokenFile `json:"broken"`
}

// Class describes one class of the catalog.
type Class struct {
	Name        string      `json:"name"`
	Aliases     []string    `json:"aliases,omitempty"`
	Description string      `json:"description,omitempty"`
	Version     string      `json:"version,omitempty"`
	Binary      string      `json:"binary"`
	SHA256      string      `json:"sha256"`
	Schema      []Attribute `json:"schema"`
}

// Attribute describes one config attribute of a class.
type Attribute struct {
	Name        string `json:"name"`
	Type        string `json:"type"`
	Required    bool   `json:"required,omitempty"`
	Default     any    `json:"default,omitempty"`
	Sensitive   bool   `json:"sensitive,omitempty"`
	Description string `json:"description,omitempty"`
}

// BrokenFile is a plugin file the catalog could not use.
type BrokenFile struct {
	Path  string `json:"path"`
	Error string `json:"error"`
}

// ReloadResult says what a reload changed.
type ReloadResult struct {
	// Supervisors added, removed (with their subtree) and reconfigured
	// (strategy, intensity or period changed; their children keep running).
	SupervisorsAdded        []string `json:"supervisors_added,omitempty"`
	SupervisorsRemoved      []string `json:"supervisors_removed,omitempty"`
	SupervisorsReconfigured []string `json:"supervisors_reconfigured,omitempty"`
	// SupervisorsResumed lists supervisors from HCL that a stop_supervisor
	// had stopped, started again.
	SupervisorsResumed []string `json:"supervisors_resumed,omitempty"`

	Added     []string `json:"added"`     // HCL workers new in the configuration, started
	Removed   []string `json:"removed"`   // HCL workers gone from it, stopped
	Restarted []string `json:"restarted"` // HCL workers whose spec or place changed, restarted with the new one
	Resumed   []string `json:"resumed"`   // HCL workers stopped by a control message, started again
	Unchanged int      `json:"unchanged"` // HCL workers left alone (same process)
	// Ignored lists settings that changed but only take effect when the
	// host restarts (host block, amqp block, system_id).
	Ignored []string `json:"ignored,omitempty"`
}

// StartResult says what a worker start did.
type StartResult struct {
	Worker string `json:"worker"`
	// Action is "started", "unchanged" (same name and spec: a no-op) or
	// "replaced".
	Action string `json:"action"`
	Pid    int    `json:"pid,omitempty"`
	State  string `json:"state"`
	// Host is the host that runs the worker: set for a cluster start
	// (which may run anywhere in the system).
	Host string `json:"host,omitempty"`
	// Pending says why a cluster worker is not placed yet (State
	// "pending"), e.g. no live host has the capacity or the labels.
	Pending string `json:"pending,omitempty"`
}

// WorkerResult is the result of stop_worker and restart_worker.
type WorkerResult struct {
	Worker string `json:"worker"`
	// Action is "stopped" or "restarted".
	Action string `json:"action"`
	// Killed is true when a stopped worker did not stop within its
	// shutdown_timeout and was killed: it is stopped all the same.
	Killed bool `json:"killed,omitempty"`
	// Detail says how, when Killed.
	Detail string `json:"detail,omitempty"`
}

// SupervisorResult says what start_supervisor or stop_supervisor did.
type SupervisorResult struct {
	// Supervisor is the supervisor's path, e.g. "root/campaign-a".
	Supervisor string `json:"supervisor"`
	// Action is "started", "unchanged" (it runs with that spec already),
	// "revived" (it was failed or stopped and runs again), "stopped" (a
	// supervisor from HCL, until the next reload or host restart) or
	// "removed" (a supervisor started by a control message, forgotten
	// with its subtree).
	Action string `json:"action"`
	State  string `json:"state"`
	// Removed lists the workers and supervisors a stop removed with it.
	Removed []string `json:"removed,omitempty"`
}
