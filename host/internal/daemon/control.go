package daemon

import (
	"context"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/host/internal/status"
)

// The daemon is the control.Host of its transports: control operations go
// to the tree, which owns every name and its persistence.

var _ control.Host = (*Daemon)(nil)

// StartWorker starts a worker asked for by a control message (see
// tree.Tree.StartWorker).
func (d *Daemon) StartWorker(ctx context.Context, spec control.WorkerSpec) (api.StartResult, error) {
	return d.tree.StartWorker(ctx, spec)
}

// StopWorker stops a worker by control message (see tree.Tree.StopWorker).
func (d *Daemon) StopWorker(ctx context.Context, name string) error {
	return d.tree.StopWorker(ctx, name)
}

// StopWorkerResult is StopWorker, saying whether the worker was killed at
// its shutdown_timeout (control.WorkerStopper).
func (d *Daemon) StopWorkerResult(ctx context.Context, name string) (api.WorkerResult, error) {
	return d.tree.StopWorkerResult(ctx, name)
}

// RestartWorker restarts a worker by hand (see tree.Tree.RestartWorker).
func (d *Daemon) RestartWorker(ctx context.Context, name string) error {
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
	h := status.Host{SystemID: d.cfg.SystemID, Name: d.cfg.Host.Name, Broker: d.brokerDescription(), Started: d.started}
	return status.Report(ctx, h, d.tree, d.Snapshot()), nil
}

// Classes reports the plugin catalog.
func (d *Daemon) Classes(context.Context) (api.ClassList, error) {
	return d.Catalog().List(), nil
}
