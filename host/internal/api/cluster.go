package api

import "time"

// ClusterView is the whole system of a cluster: GET /v1/cluster, the
// cluster_status operation, dynworkers status -cluster.
type ClusterView struct {
	SystemID string `json:"system_id"`
	// Prefix is the etcd key prefix of the system.
	Prefix string `json:"prefix"`
	// Leader is the host that places workers now ("" while none is).
	Leader string `json:"leader"`
	// From is the host that answered; Revision the etcd revision read.
	From     string          `json:"from"`
	Revision int64           `json:"revision"`
	ReadAt   time.Time       `json:"read_at"`
	Hosts    []ClusterHost   `json:"hosts"`
	Workers  []ClusterWorker `json:"workers"`
}

// ClusterHost is one host of a cluster: a live one, or one that is drained
// or still has workers assigned.
type ClusterHost struct {
	Name     string            `json:"name"`
	Alive    bool              `json:"alive"`
	Draining bool              `json:"draining"`
	Leader   bool              `json:"leader"`
	Capacity int               `json:"capacity"` // max_workers; 0: no limit
	Assigned int               `json:"assigned"` // cluster workers placed on it
	Load     int               `json:"load"`     // cluster workers it runs
	Labels   map[string]string `json:"labels,omitempty"`
	HTTPAddr string            `json:"http_addr,omitempty"`
	Started  time.Time         `json:"started,omitempty"`
	Version  string            `json:"version,omitempty"`
}

// ClusterWorker is one cluster worker.
type ClusterWorker struct {
	Name        string            `json:"name"`
	Class       string            `json:"class"`
	Supervisor  string            `json:"supervisor,omitempty"`
	Constraints map[string]string `json:"constraints,omitempty"`
	// Host is where the leader placed it; RunningOn the host that runs it
	// (they differ while it moves); both "" while it is not placed.
	Host      string    `json:"host,omitempty"`
	RunningOn string    `json:"running_on,omitempty"`
	State     string    `json:"state"` // the running host's state of it, or "pending", "moving"
	Pid       int       `json:"pid,omitempty"`
	Since     time.Time `json:"since,omitempty"` // on its current host
	Restarts  int       `json:"restarts"`
	Moves     int       `json:"moves"`
	// Pending says why it is not placed.
	Pending string    `json:"pending,omitempty"`
	Created time.Time `json:"created"`
	// Error is its last first-start failure on its host, if any.
	Error string `json:"error,omitempty"`
}

// DrainResult is the result of the drain and undrain operations.
type DrainResult struct {
	Host string `json:"host"`
	// Action is "draining", "undrained" or "unchanged".
	Action string `json:"action"`
	// Workers are the cluster workers still on the host.
	Workers []string `json:"workers"`
}
