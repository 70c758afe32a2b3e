package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/host/internal/monitor"
)

// Vumi metrics and heartbeats, published over AMQP when an amqp block is
// configured (DESIGN §6). Metric names:
//
//	<prefix>.host.rss_bytes, .cpu_seconds, .open_fds, .threads, .uptime_seconds,
//	.workers.<state>, .control.handled, .control.failed
//	<prefix>.worker.<name>.rss_bytes, .cpu_seconds, .open_fds, .threads,
//	.uptime_seconds, .restarts, .up
//	<prefix>.supervisor.<path>.workers, .running, .rss_bytes, .cpu_seconds,
//	.restarts_in_period
//	<prefix>.worker.<name>.<metric>.<agg> for what workers report
//
// where <prefix> is monitor.HostPrefix(system_id, host) and names are
// sanitized by monitor.SanitizeName.

// topology declares the exchanges of the control channel and of
// monitoring.
func topology(systemID, host string) func(ch *amqp.Channel) error {
	ctl := control.Topology(systemID, host)
	return func(ch *amqp.Channel) error {
		if err := ctl(ch); err != nil {
			return err
		}
		for _, ex := range []string{monitor.MetricsExchange, monitor.HeartbeatExchange} {
			if err := ch.ExchangeDeclare(ex, "direct", true, false, false, false, nil); err != nil {
				return fmt.Errorf("declaring exchange %s: %w", ex, err)
			}
		}
		return nil
	}
}

// metricDatapoints turns a snapshot (and the workers' own metrics) into
// Vumi datapoints.
func (d *Daemon) metricDatapoints(snap *monitor.Snapshot) []monitor.Datapoint {
	prefix := monitor.HostPrefix(d.cfg.SystemID, d.cfg.Host.Name)
	at := snap.Time
	one := func(name string, v float64) monitor.Datapoint {
		return monitor.Datapoint{Name: name, Aggregators: []string{monitor.AggAvg}, Points: []monitor.Point{{Time: at, Value: v}}}
	}
	var out []monitor.Datapoint
	out = append(out, monitor.ProcDatapoints(prefix+".host", snap.Host.Proc, at)...)
	for st, n := range snap.Host.WorkersByState {
		out = append(out, one(prefix+".host.workers."+st, float64(n)))
	}
	out = append(out, one(prefix+".host.control.handled", float64(snap.Host.ControlHandled)),
		one(prefix+".host.control.failed", float64(snap.Host.ControlFailed)))
	for _, w := range snap.Workers {
		wp := monitor.WorkerPrefix(d.cfg.SystemID, d.cfg.Host.Name, w.Name)
		if w.Proc != nil {
			out = append(out, monitor.ProcDatapoints(wp, *w.Proc, at)...)
		}
		up := 0.0
		if w.State == "running" {
			up = 1
		}
		out = append(out, one(wp+".restarts", float64(w.Restarts)), one(wp+".up", up))
	}
	for _, s := range snap.Supervisors {
		sp := prefix + ".supervisor." + monitor.SanitizeName(s.Path)
		out = append(out, one(sp+".workers", float64(s.Workers)), one(sp+".running", float64(s.Running)),
			one(sp+".rss_bytes", float64(s.RSSBytes)), one(sp+".cpu_seconds", s.CPUSeconds),
			one(sp+".restarts_in_period", float64(s.RestartsInPeriod)))
	}
	out = append(out, d.workerMetrics.Flush(at)...)
	return out
}

// publishMetrics publishes the snapshot's datapoints to vumi.metrics, and
// heartbeats when one is due. Without a broker it does nothing. It never
// waits for a broker that is away: a sample that cannot go out is dropped.
func (d *Daemon) publishMetrics(ctx context.Context, snap *monitor.Snapshot) {
	if d.tr.conn == nil {
		return
	}
	body, err := json.Marshal(monitor.MetricMessage{Datapoints: d.metricDatapoints(snap)})
	if err != nil {
		d.logger.Error("encoding metrics", "error", err)
		return
	}
	if err := d.tr.conn.TryPublish(ctx, monitor.MetricsExchange, monitor.MetricsRoutingKey,
		amqp.Publishing{ContentType: "application/json", Timestamp: snap.Time, Body: body}); err != nil && ctx.Err() == nil {
		d.logger.Debug("metrics not published", "error", err)
	}
	if snap.Time.Sub(d.lastHeartbeat) < d.cfg.Host.HeartbeatInterval-d.cfg.Host.MetricsInterval/2 {
		return
	}
	d.lastHeartbeat = snap.Time
	d.publishHeartbeats(ctx, snap)
}

// publishHeartbeats publishes a Vumi heartbeat for every worker that runs
// and answered its last health check.
func (d *Daemon) publishHeartbeats(ctx context.Context, snap *monitor.Snapshot) {
	for _, w := range snap.Workers {
		if !w.Healthy {
			continue
		}
		hb := monitor.NewHeartbeat(d.cfg.SystemID, w.Name, d.cfg.Host.Name, w.Pid, time.Now())
		body, err := json.Marshal(hb)
		if err != nil {
			continue
		}
		if err := d.tr.conn.TryPublish(ctx, monitor.HeartbeatExchange, monitor.HeartbeatRoutingKey,
			amqp.Publishing{ContentType: "application/json", Timestamp: snap.Time, Body: body}); err != nil {
			if ctx.Err() == nil {
				d.logger.Debug("heartbeat not published", "worker", w.Name, "error", err)
			}
			return
		}
	}
}
