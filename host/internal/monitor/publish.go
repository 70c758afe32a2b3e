package monitor

import (
	"context"
	"slices"
	"time"
)

// Datapoints returns a snapshot's figures as Vumi datapoints, each with
// the aggregator avg and one point at the snapshot's time. With <prefix>
// HostPrefix(systemID, host), the names are
//
//	<prefix>.host.rss_bytes, .cpu_seconds, .open_fds, .threads, .uptime_seconds,
//	.workers.<state>, .control.handled, .control.failed
//	<prefix>.worker.<name>.rss_bytes, .cpu_seconds, .open_fds, .threads,
//	.uptime_seconds, .restarts, .up
//	<prefix>.supervisor.<path>.workers, .running, .rss_bytes, .cpu_seconds,
//	.restarts_in_period
//
// sanitised by SanitizeName. The workers' own metrics come from
// Registry.Flush, not from here.
func Datapoints(systemID, host string, snap *Snapshot) []Datapoint {
	prefix := HostPrefix(systemID, host)
	at := snap.Time
	avg := []string{AggAvg}
	one := func(name string, v float64) Datapoint {
		return Datapoint{Name: name, Aggregators: avg, Points: []Point{{Time: at, Value: v}}}
	}
	var out []Datapoint
	out = append(out, ProcDatapoints(prefix+".host", snap.Host.Proc, at)...)
	states := make([]string, 0, len(snap.Host.WorkersByState))
	for st := range snap.Host.WorkersByState {
		states = append(states, st)
	}
	slices.Sort(states)
	for _, st := range states {
		out = append(out, one(prefix+".host.workers."+sanitizeComponent(st), float64(snap.Host.WorkersByState[st])))
	}
	out = append(out, one(prefix+".host.control.handled", float64(snap.Host.ControlHandled)),
		one(prefix+".host.control.failed", float64(snap.Host.ControlFailed)))
	for _, w := range snap.Workers {
		wp := WorkerPrefix(systemID, host, w.Name)
		if w.Proc != nil {
			out = append(out, ProcDatapoints(wp, *w.Proc, at)...)
		}
		up := 0.0
		if w.State == StateRunning {
			up = 1
		}
		out = append(out, one(wp+".restarts", float64(w.Restarts)), one(wp+".up", up))
	}
	for _, s := range snap.Supervisors {
		sp := prefix + ".supervisor." + SanitizeName(s.Path)
		out = append(out, one(sp+".workers", float64(s.Workers)), one(sp+".running", float64(s.Running)),
			one(sp+".rss_bytes", float64(s.RSSBytes)), one(sp+".cpu_seconds", s.CPUSeconds),
			one(sp+".restarts_in_period", float64(s.RestartsInPeriod)))
	}
	return out
}

// publishMetrics publishes the snapshot's datapoints and the workers'
// flushed ones in one message on vumi.metrics. A message that cannot go out
// is dropped.
func (m *Monitor) publishMetrics(ctx context.Context, snap *Snapshot, workerDPs []Datapoint) {
	dps := append(Datapoints(m.opts.SystemID, m.opts.Host, snap), workerDPs...)
	// MarshalJSON directly, not through json.Marshal, which would copy and
	// check the ~0.7 MB of a 1,000-worker host's message again.
	body, err := MetricMessage{Datapoints: dps}.MarshalJSON()
	if err != nil {
		m.logger.Error("encoding metrics", "error", err)
		return
	}
	if err := m.opts.Publish(ctx, MetricsExchange, MetricsRoutingKey, body); err != nil && ctx.Err() == nil {
		m.logger.Debug("metrics not published", "error", err)
	}
}

// publishHeartbeats publishes a Vumi heartbeat for every worker that runs
// and passed its last health check, all in one Publish: on a broker they
// are all sent before any confirmation is awaited, so the broker confirms
// them together and the monitor waits once, not once per worker.
func (m *Monitor) publishHeartbeats(ctx context.Context, snap *Snapshot) {
	bodies := make([][]byte, 0, len(snap.Workers))
	for _, w := range snap.Workers {
		if !w.Healthy || w.Pid <= 0 {
			continue
		}
		body, err := NewHeartbeat(m.opts.SystemID, w.Name, m.opts.Host, w.Pid, time.Now()).MarshalJSON()
		if err != nil {
			continue
		}
		bodies = append(bodies, body)
	}
	if len(bodies) == 0 {
		return
	}
	if err := m.opts.Publish(ctx, HeartbeatExchange, HeartbeatRoutingKey, bodies...); err != nil && ctx.Err() == nil {
		m.logger.Debug("heartbeats not published", "workers", len(bodies), "error", err)
	}
}
