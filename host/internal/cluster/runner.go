package cluster

import (
	"context"
	"encoding/json"
	"time"
)

// Runner is the host side of the cluster: what the agent drives on its own
// host. The daemon implements it on the tree: cluster workers are tree
// nodes of source api.SourceCluster, supervised like every worker, but
// their desired state is in etcd, not in workers.json.
type Runner interface {
	// Resolve checks a start on this host with its catalog, exactly as a
	// local control start is checked (unknown class, invalid config and
	// name errors are *control.Error values), and returns the spec as the
	// cluster stores it.
	Resolve(name, class string, cfg json.RawMessage, supervisor string) (Resolved, error)
	// Run makes the worker run on this host with spec: starts it, or
	// replaces it when it runs with another SpecHash, and returns once its
	// first start has ended (its state then says how). An error that
	// errors.Is supervise.ErrPermanent means that retrying cannot help
	// (the plugin rejected the config, ...): the worker is then not on the
	// host any more.
	Run(ctx context.Context, spec Spec) (WorkerState, error)
	// Stop stops the cluster worker and removes it from the host; nil if
	// it is not there. If ctx ends before it stopped, it is killed: Stop
	// returns only once no process of the worker is left.
	Stop(ctx context.Context, name string) error
	// Restart restarts the cluster worker with a fresh restart budget.
	Restart(ctx context.Context, name string) (WorkerState, error)
	// Local lists the cluster workers on this host and their states.
	Local() map[string]WorkerState
	// Offers says what this host can run: its classes (canonical names and
	// aliases) and the paths of its running supervisors.
	Offers() Offers
}

// Resolved is a start checked by Runner.Resolve.
type Resolved struct {
	Class      string          // canonical class name
	Supervisor string          // the supervisor's path
	Config     json.RawMessage // after conversion and defaults (config.Worker.ConfigJSON)
	SpecHash   string          // config.Worker.SpecHash
	// Sensitive names the top-level config attributes the class's schema
	// marks sensitive: what Sealer seals.
	Sensitive []string
}

// Spec is what Runner.Run runs: a WorkerRecord with its config unsealed.
type Spec struct {
	Name       string
	Class      string
	Supervisor string
	Config     json.RawMessage
	SpecHash   string
	Generation int64
}

// WorkerState is a cluster worker's state on its host.
type WorkerState struct {
	State    string // as in status: starting, running, backoff, stopping, stopped, exited, failed
	PID      int
	Since    time.Time
	Restarts int
	LastExit string
}

// Offers is what a host can run (HostRecord.Classes, .Supervisors).
type Offers struct {
	Classes     []string
	Supervisors []string
}
