package cluster

// OWNER: helper B (agent).

import (
	"context"
	"time"

	"github.com/hashicorp/go-hclog"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// AgentOptions configure an Agent.
type AgentOptions struct {
	Client   *clientv3.Client
	Cache    *Cache
	Host     string
	TTL      time.Duration // the lease TTL (config: cluster.lease_ttl)
	Capacity int           // max_workers; 0: no limit
	Labels   map[string]string
	HTTPAddr string
	Version  string
	Runner   Runner
	Sealer   *Sealer // nil: configs are not sealed
	Logger   hclog.Logger
}

// Agent is a host's member of the cluster: it registers the host under its
// lease, renews the lease and fences (stops its cluster workers) when it
// cannot, runs the leader's campaign (Lead), and makes the host run exactly
// the cluster workers assigned to it, holding running/<name> for each.
type Agent struct {
	o AgentOptions
}

// NewAgent returns an agent; Run runs it.
func NewAgent(o AgentOptions) *Agent { return &Agent{o: o} }

// Run runs the agent until ctx ends. It returns ctx's error, or an error
// when the host cannot join at all (e.g. its name is taken by a live host).
func (a *Agent) Run(ctx context.Context) error { return errTODO }

// Leave stops this host's cluster workers (with the runner), releases
// their running keys and revokes the host's lease, so that the leader
// re-places them at once rather than after the TTL. The daemon calls it
// at shutdown.
func (a *Agent) Leave(ctx context.Context) error { return errTODO }

// WorkerChanged tells the agent that the local state of a cluster worker
// changed (the daemon calls it from its supervision event hook), so that it
// updates running/<name>.
func (a *Agent) WorkerChanged(name string) {}

// Fenced reports whether the host has stopped its cluster workers because
// it could not renew its lease, and not yet joined again.
func (a *Agent) Fenced() bool { return false }

// Leader reports whether this host is the leader now.
func (a *Agent) Leader() bool { return false }
