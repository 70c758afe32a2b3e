package daemon

import (
	"context"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/control"
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
// Status() details.
func (d *Daemon) Status(ctx context.Context) (api.Status, error) {
	snap := d.Snapshot()
	rep := api.Status{SystemID: d.cfg.SystemID, Host: d.cfg.Host.Name, Broker: d.brokerDescription(),
		Started: d.started, Process: new(processReport(snap)), Supervisors: d.tree.Supervisors(), Workers: []api.Worker{}}
	for i := range rep.Supervisors {
		rep.Supervisors[i].Totals = supervisorTotals(snap, rep.Supervisors[i].Path)
	}
	infos := d.tree.Workers()
	for _, wi := range infos {
		w := wi.Worker
		if w.Pid != 0 {
			w.Metrics = workerMetrics(snap, w.Name, w.Pid)
		}
		rep.Workers = append(rep.Workers, w)
	}
	fillDetails(ctx, rep.Workers, infos)
	return rep, nil
}

// Classes reports the plugin catalog.
func (d *Daemon) Classes(context.Context) (api.ClassList, error) {
	return d.Catalog().List(), nil
}
