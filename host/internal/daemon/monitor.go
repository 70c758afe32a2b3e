package daemon

import (
	"context"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/monitor"
	"github.com/dynworkers/dynworkers/host/internal/supervise"
)

// Monitoring is monitor.Monitor's: every host.metrics_interval it samples
// /proc for the host and every plugin process into a monitor.Snapshot,
// which status, the Prometheus exporter, the Vumi metrics and the
// dashboard read, and publishes the Vumi metrics and heartbeats. This file
// feeds it the supervision tree (monitorList) and the control counters;
// vumimetrics.go gives it a way to publish.

// monitor returns the host's Monitor, made at the first call. That comes
// after Run has set d.started: the HTTP API, whose status and /metrics ask
// for snapshots, and the monitor goroutine start after it.
func (d *Daemon) monitor() *monitor.Monitor {
	d.monOnce.Do(func() {
		d.mon = monitor.New(monitor.Options{
			SystemID:          d.cfg.SystemID,
			Host:              d.cfg.Host.Name,
			Started:           d.started,
			Interval:          d.cfg.Host.MetricsInterval,
			HeartbeatInterval: d.cfg.Host.HeartbeatInterval,
			States:            stringsOf(supervise.States()),
			List:              d.monitorList,
			Publish:           d.publishMonitoring,
			Control:           d.controlStats,
			Registry:          d.workerMetrics,
			Logger:            d.logger.Named("monitor"),
		})
	})
	return d.mon
}

// Snapshot returns the latest sample, taking one if none was taken in the
// last second (so that status right after a change shows it).
func (d *Daemon) Snapshot() *monitor.Snapshot { return d.monitor().Snapshot() }

// runMonitor samples every host.metrics_interval until ctx ends, and
// publishes the Vumi metrics and heartbeats.
func (d *Daemon) runMonitor(ctx context.Context) { d.monitor().Run(ctx) }

// monitorList lists the workers and supervisors for the Monitor, without
// process figures.
func (d *Daemon) monitorList() ([]monitor.WorkerStats, []monitor.SupervisorStats) {
	var workers []monitor.WorkerStats
	for _, wi := range d.tree.Workers() {
		ws := wi.Worker
		w := monitor.WorkerStats{Name: ws.Name, Class: ws.Class, Supervisor: ws.Supervisor, State: ws.State,
			Pid: ws.Pid, StartedAt: ws.StartedAt, Restarts: ws.Restarts, LastExit: ws.LastExit, LastExitAt: ws.LastExitAt,
			Source: ws.Source}
		if p := wi.Process(); p != nil {
			w.Healthy = ws.State == string(supervise.StateRunning) && p.Healthy()
		}
		workers = append(workers, w)
	}
	var sups []monitor.SupervisorStats
	for _, sv := range d.tree.Supervisors() {
		sups = append(sups, monitor.SupervisorStats{Path: sv.Path, Strategy: sv.Strategy, State: sv.State,
			Intensity: sv.Intensity, Period: time.Duration(sv.Period * float64(time.Second)), RestartsInPeriod: sv.RestartsInPeriod})
	}
	return workers, sups
}

// controlStats counts the control requests answered so far.
func (d *Daemon) controlStats() (handled, failed uint64) {
	if disp := d.tr.dispatcher; disp != nil {
		st := disp.Stats()
		return st.Handled, st.Failed
	}
	return 0, 0
}

func stringsOf[S ~string](ss []S) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = string(s)
	}
	return out
}
