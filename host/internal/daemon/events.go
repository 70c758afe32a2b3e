package daemon

import (
	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/config"
	"github.com/dynworkers/dynworkers/host/internal/events"
	"github.com/dynworkers/dynworkers/host/internal/supervise"
)

// eventLogSize is how many recent events GET /v1/events lists.
const eventLogSize = 100

// onEvent logs a supervision event, keeps it for the status API, queues it
// for vumi.events and passes it on to the configured hook. It runs on the
// supervisor's goroutine, so it must stay quick and must not call back into
// the supervisor's mutating methods; the publisher's Publish never blocks.
func (d *Daemon) onEvent(ev supervise.Event) {
	wire := d.eventMapper.Map(ev)
	d.logger.Log(events.Level(ev), wire.Event, events.LogArgs(wire)...)
	d.eventLog.Add(wire, ev)
	if p := d.tr.pub.Load(); p != nil {
		p.Publish(wire)
	}
	d.clusterWorkerChanged(wire.Worker)
	if d.opts.EventHook != nil {
		d.opts.EventHook(ev)
	}
}

// newEventMapper maps the events of the host cfg describes: its system_id
// and name (a reload does not change them), and the pid of a started
// worker's plugin process.
func newEventMapper(cfg *config.Config) events.Mapper {
	return events.Mapper{
		SystemID: cfg.SystemID,
		Host:     cfg.Host.Name,
		Pid: func(inst supervise.Instance) int {
			if p := ProcessOf(inst); p != nil {
				return p.Pid()
			}
			return 0
		},
	}
}

// Events returns the most recent supervision events as the supervisors
// emitted them, oldest first.
func (d *Daemon) Events() []supervise.Event { return d.eventLog.Emitted() }

// EventLog returns the most recent events as published on vumi.events,
// oldest first; it backs GET /v1/events and the dashboard.
func (d *Daemon) EventLog() []api.Event { return d.eventLog.List() }
