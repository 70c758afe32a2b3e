package daemon

import (
	"context"
	"strings"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/host/internal/status"
)

// The daemon is the control.Host of its transports: control operations go
// to the tree, which owns every name and its persistence.

var _ control.Host = (*Daemon)(nil)

// StartWorker starts a worker asked for by a control message. A cluster
// start (spec.Cluster) goes to the cluster (see cluster.go); any other is
// this host's (see tree.Tree.StartWorker), but a name that is a cluster
// worker, here or on another host, is a conflict.
func (d *Daemon) StartWorker(ctx context.Context, spec control.WorkerSpec) (api.StartResult, error) {
	if spec.Cluster && d.cl == nil && systemWideRoute(control.RouteOf(ctx)) {
		// The dispatcher marks every start through .any or .all as a
		// cluster start; a host without a cluster block takes those as it
		// always did, on its own.
		spec.Cluster = false
	}
	if spec.Cluster {
		return d.startClusterWorker(ctx, spec)
	}
	if err := d.checkNotCluster(ctx, spec.Name); err != nil {
		return api.StartResult{}, err
	}
	return d.tree.StartWorker(ctx, spec)
}

// checkNotCluster refuses a local start of a name that is a cluster
// worker somewhere in the system. When etcd cannot be asked, the start
// goes on: this host's own workers do not depend on etcd.
func (d *Daemon) checkNotCluster(ctx context.Context, name string) error {
	if d.cl == nil {
		return nil
	}
	p := d.cl.parts.Load()
	if p == nil || d.tree.IsCluster(name) {
		return nil // the tree refuses a cluster worker of this host itself
	}
	hctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	has, err := p.store.Has(hctx, name)
	if err != nil {
		d.logger.Warn("cannot ask the cluster whether a name is a cluster worker; starting it on this host", "worker", name, "error", err)
		return nil
	}
	if has {
		return control.Errorf(control.CodeConflict, "worker %q is a cluster worker; start it with cluster: true", name)
	}
	return nil
}

// StopWorker stops a worker by control message: a cluster worker through
// the cluster, wherever it runs, any other on this host (see
// tree.Tree.StopWorker).
func (d *Daemon) StopWorker(ctx context.Context, name string) error {
	_, err := d.StopWorkerResult(ctx, name)
	return err
}

// StopWorkerResult is StopWorker, saying whether the worker was killed at
// its shutdown_timeout (control.WorkerStopper).
func (d *Daemon) StopWorkerResult(ctx context.Context, name string) (api.WorkerResult, error) {
	if res, handled, err := d.stopClusterWorker(ctx, name); handled || err != nil {
		return res, err
	}
	return d.tree.StopWorkerResult(ctx, name)
}

// RestartWorker restarts a worker by hand: a cluster worker through the
// cluster, any other on this host (see tree.Tree.RestartWorker).
func (d *Daemon) RestartWorker(ctx context.Context, name string) error {
	if handled, err := d.restartClusterWorker(ctx, name); handled || err != nil {
		return err
	}
	return d.tree.RestartWorker(ctx, name)
}

// StartSupervisor starts a supervisor by control message (see
// tree.Tree.StartSupervisor).
func (d *Daemon) StartSupervisor(ctx context.Context, spec control.SupervisorSpec) (api.SupervisorResult, error) {
	return d.tree.StartSupervisor(ctx, spec)
}

// StopSupervisor stops a supervisor by control message (see
// tree.Tree.StopSupervisor).
func (d *Daemon) StopSupervisor(ctx context.Context, path string) (api.SupervisorResult, error) {
	return d.tree.StopSupervisor(ctx, path)
}

// Status reports the host, every supervisor and every worker, in tree
// order, with the last sample's figures and each running worker's own
// Status() details (see package status).
func (d *Daemon) Status(ctx context.Context) (api.Status, error) {
	h := status.Host{SystemID: d.cfg.SystemID, Name: d.cfg.Host.Name, Broker: d.brokerDescription(), Started: d.started, Spares: d.spares, Details: &d.details}
	return status.Report(ctx, h, d.tree, d.Snapshot()), nil
}

// Classes reports the plugin catalog.
func (d *Daemon) Classes(context.Context) (api.ClassList, error) {
	return d.Catalog().List(), nil
}

// systemWideRoute reports whether an AMQP routing key addresses the whole
// system ("<system_id>.any" or ".all") rather than one host.
func systemWideRoute(key string) bool {
	return strings.HasSuffix(key, ".any") || strings.HasSuffix(key, ".all")
}
