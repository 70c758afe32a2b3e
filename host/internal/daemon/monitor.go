package daemon

import (
	"context"
	"github.com/dynworkers/dynworkers/host/internal/api"
	"os"
	"sync"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/monitor"
	"github.com/dynworkers/dynworkers/host/internal/supervise"
)

// Monitoring: every host.metrics_interval the host samples /proc for itself
// and every plugin process into a monitor.Snapshot, which status, the
// Prometheus exporter, the Vumi metrics and the dashboard read.

// sampler holds the monitoring state.
type sampler struct {
	mu      sync.Mutex // serialises samples
	s       *monitor.Sampler
	prevCPU map[int]cpuMark // by pid

	snapMu sync.RWMutex
	snap   *monitor.Snapshot
}

type cpuMark struct {
	cpu float64
	at  time.Time
}

// Snapshot returns the latest sample, taking one if none was taken in the
// last second (so that status right after a change shows it).
func (d *Daemon) Snapshot() *monitor.Snapshot {
	d.mon.snapMu.RLock()
	snap := d.mon.snap
	d.mon.snapMu.RUnlock()
	if snap != nil && time.Since(snap.Time) < time.Second {
		return snap
	}
	return d.sample()
}

// sample takes a new snapshot and keeps it.
func (d *Daemon) sample() *monitor.Snapshot {
	d.mon.mu.Lock()
	defer d.mon.mu.Unlock()
	if d.mon.s == nil {
		d.mon.s = monitor.NewSampler()
		d.mon.prevCPU = map[int]cpuMark{}
	}
	now := time.Now()
	snap := &monitor.Snapshot{Time: now}
	h := &snap.Host
	h.SystemID, h.Name, h.Pid, h.Started = d.cfg.SystemID, d.cfg.Host.Name, os.Getpid(), d.started
	if st, err := d.mon.s.Read(h.Pid); err == nil {
		h.Proc = st
	}
	if disp := d.tr.dispatcher; disp != nil {
		st := disp.Stats()
		h.ControlHandled, h.ControlFailed = st.Handled, st.Failed
	}
	h.WorkersByState = map[string]int{}
	for _, st := range supervise.States() {
		h.WorkersByState[string(st)] = 0
	}
	seen := map[int]bool{}
	for _, wi := range d.tree.Workers() {
		ws := wi.Worker
		w := monitor.WorkerStats{Name: ws.Name, Class: ws.Class, Supervisor: ws.Supervisor, State: ws.State,
			Pid: ws.Pid, StartedAt: ws.StartedAt, Restarts: ws.Restarts, LastExit: ws.LastExit, LastExitAt: ws.LastExitAt,
			Source: ws.Source}
		if p := wi.Process(); p != nil {
			w.Healthy = ws.State == string(supervise.StateRunning) && p.Healthy()
			if st, err := d.mon.s.Read(p.Pid()); err == nil {
				w.Proc = &st
				seen[st.Pid] = true
				if prev, ok := d.mon.prevCPU[st.Pid]; ok && now.After(prev.at) {
					w.CPUPercent = max(0, 100*(st.CPUSeconds-prev.cpu)/now.Sub(prev.at).Seconds())
				}
				d.mon.prevCPU[st.Pid] = cpuMark{st.CPUSeconds, now}
			}
		}
		h.WorkersByState[w.State]++
		snap.Workers = append(snap.Workers, w)
	}
	for pid := range d.mon.prevCPU {
		if !seen[pid] {
			delete(d.mon.prevCPU, pid)
		}
	}
	for _, sv := range d.tree.Supervisors() {
		ss := monitor.SupervisorStats{Path: sv.Path, Strategy: sv.Strategy, State: sv.State,
			Intensity: sv.Intensity, Period: time.Duration(sv.Period * float64(time.Second)), RestartsInPeriod: sv.RestartsInPeriod}
		prefix := sv.Path + "/"
		for _, w := range snap.Workers {
			if w.Supervisor != sv.Path && !hasPrefix(w.Supervisor, prefix) {
				continue
			}
			ss.Workers++
			if w.State == string(supervise.StateRunning) {
				ss.Running++
			}
			if w.Proc != nil {
				ss.RSSBytes += w.Proc.RSSBytes
				ss.CPUSeconds += w.Proc.CPUSeconds
			}
		}
		snap.Supervisors = append(snap.Supervisors, ss)
	}
	d.mon.snapMu.Lock()
	d.mon.snap = snap
	d.mon.snapMu.Unlock()
	return snap
}

func hasPrefix(s, prefix string) bool { return len(s) >= len(prefix) && s[:len(prefix)] == prefix }

// workerMetrics returns the metrics of a worker from a snapshot.
func workerMetrics(snap *monitor.Snapshot, name string, pid int) *api.WorkerMetrics {
	for _, w := range snap.Workers {
		if w.Name != name || w.Proc == nil || w.Pid != pid {
			continue
		}
		return &api.WorkerMetrics{RSSBytes: w.Proc.RSSBytes, CPUSeconds: w.Proc.CPUSeconds, CPUPercent: w.CPUPercent,
			OpenFDs: w.Proc.FDs, Threads: w.Proc.Threads, UptimeSeconds: snap.Time.Sub(w.StartedAt).Seconds()}
	}
	return nil
}

func supervisorTotals(snap *monitor.Snapshot, path string) *api.SupervisorTotals {
	for _, s := range snap.Supervisors {
		if s.Path == path {
			return &api.SupervisorTotals{Workers: s.Workers, Running: s.Running, RSSBytes: s.RSSBytes, CPUSeconds: s.CPUSeconds}
		}
	}
	return nil
}

func processReport(snap *monitor.Snapshot) api.Process {
	h := snap.Host
	return api.Process{Pid: h.Pid, RSSBytes: h.Proc.RSSBytes, CPUSeconds: h.Proc.CPUSeconds, OpenFDs: h.Proc.FDs,
		Threads: h.Proc.Threads, UptimeSeconds: snap.Time.Sub(h.Started).Seconds(), WorkersByState: h.WorkersByState,
		ControlHandled: h.ControlHandled, ControlFailed: h.ControlFailed, SampledAt: snap.Time}
}

// runMonitor samples every host.metrics_interval until ctx ends, and
// publishes what the configuration asks for.
func (d *Daemon) runMonitor(ctx context.Context) {
	every := d.cfg.Host.MetricsInterval
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		snap := d.sample()
		d.publishMetrics(ctx, snap)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
