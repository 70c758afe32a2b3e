package daemon

import (
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/dynworkers/dynworkers/host/internal/supervise"
	"github.com/dynworkers/dynworkers/host/internal/tree"
)

// onEvent logs a supervision event, keeps it for the status API and passes
// it on to the configured hook. It runs on the supervisor's goroutine, so it
// must stay quick and must not call back into the supervisor's mutating
// methods.
func (d *Daemon) onEvent(ev supervise.Event) {
	name, _ := eventBody(ev)
	d.logger.Log(eventLevel(ev), name, eventArgs(ev)...)
	d.events.add(ev)
	d.queueEvent(ev)
	if d.opts.EventHook != nil {
		d.opts.EventHook(ev)
	}
}

func eventLevel(ev supervise.Event) hclog.Level {
	switch e := ev.(type) {
	case supervise.ChildFailed, supervise.ChildStartFailed:
		return hclog.Error
	case supervise.ChildExited:
		if e.Err != nil {
			return hclog.Warn
		}
	case supervise.ChildRestarting:
		return hclog.Warn
	case supervise.SupervisorEscalated:
		return hclog.Error
	}
	return hclog.Info
}

// eventBody returns an event's name and body as the host logs and
// publishes it. Events about a child that is a supervisor are named
// supervisor_* instead of worker_* (supervisor_started,
// supervisor_restarting, ...) and carry the child's path as "child"
// instead of "worker"; "supervisor" is always the supervisor that emitted
// the event.
func eventBody(ev supervise.Event) (string, map[string]any) {
	m := ev.Map()
	name := string(ev.Type())
	if meta, ok := m["meta"].(map[string]string); ok && meta[tree.MetaKind] == tree.KindSupervisor {
		name = "supervisor_" + strings.TrimPrefix(name, "worker_")
		m["event"] = name
		m["child"] = meta["path"]
		delete(m, "worker")
	}
	return name, m
}

// eventArgs flattens an event into log key/value pairs: the worker first,
// then the event's own fields in a stable order. The event name is the
// message and the time is the log line's own, so both are left out.
func eventArgs(ev supervise.Event) []any {
	_, m := eventBody(ev)
	var args []any
	if c, ok := m["child"]; ok {
		args = []any{"child", c, "supervisor", m["supervisor"]}
	} else {
		args = []any{"worker", m["worker"], "supervisor", m["supervisor"]}
	}
	if meta, ok := m["meta"].(map[string]string); ok && meta["class"] != "" {
		args = append(args, "class", meta["class"])
	}
	if e, ok := ev.(supervise.ChildStarted); ok {
		if p := tree.ProcessOf(e.Instance); p != nil {
			args = append(args, "pid", p.Pid())
		}
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		switch k {
		case "worker", "child", "supervisor", "meta", "event", "time":
			continue
		}
		if m[k] == nil {
			continue
		}
		args = append(args, k, m[k])
	}
	return args
}

// eventLog is a ring of the most recent events.
type eventLog struct {
	mu   sync.Mutex
	buf  []supervise.Event
	next int
	full bool
}

func newEventLog(n int) *eventLog { return &eventLog{buf: make([]supervise.Event, n)} }

func (l *eventLog) add(ev supervise.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf[l.next] = ev
	l.next = (l.next + 1) % len(l.buf)
	if l.next == 0 {
		l.full = true
	}
}

func (l *eventLog) list() []supervise.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.full {
		return append([]supervise.Event(nil), l.buf[:l.next]...)
	}
	return append(append([]supervise.Event(nil), l.buf[l.next:]...), l.buf[:l.next]...)
}

// eventMaps returns the recent events as published on vumi.events, oldest
// first, for GET /v1/events and the dashboard.
func (d *Daemon) eventMaps() []map[string]any {
	evs := d.Events()
	out := make([]map[string]any, 0, len(evs))
	for _, ev := range evs {
		_, m := d.publishedEvent(ev)
		out = append(out, m)
	}
	return out
}

// publishedEvent is an event as published on vumi.events: eventBody plus
// the host's system_id and name, and the pid of a started worker.
func (d *Daemon) publishedEvent(ev supervise.Event) (string, map[string]any) {
	name, m := eventBody(ev)
	m["system_id"], m["host"] = d.cfg.SystemID, d.cfg.Host.Name
	if e, ok := ev.(supervise.ChildStarted); ok {
		if p := tree.ProcessOf(e.Instance); p != nil {
			m["pid"] = p.Pid()
		}
	}
	return name, m
}
