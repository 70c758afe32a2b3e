package daemon

import (
	"maps"
	"slices"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/dynworkers/dynworkers/host/internal/pluginproc"
	"github.com/dynworkers/dynworkers/host/internal/supervise"
)

// onEvent logs a supervision event, keeps it for the status API and passes
// it on to the configured hook. It runs on the supervisor's goroutine, so it
// must stay quick and must not call back into the supervisor's mutating
// methods.
func (d *Daemon) onEvent(ev supervise.Event) {
	d.logger.Log(eventLevel(ev), string(ev.Type()), eventArgs(ev)...)
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
	}
	return hclog.Info
}

// eventArgs flattens an event into log key/value pairs: the worker first,
// then the event's own fields in a stable order. The event name is the
// message and the time is the log line's own, so both are left out.
func eventArgs(ev supervise.Event) []any {
	m := ev.Map()
	args := []any{"worker", m["worker"], "supervisor", m["supervisor"]}
	if meta, ok := m["meta"].(map[string]string); ok && meta["class"] != "" {
		args = append(args, "class", meta["class"])
	}
	if e, ok := ev.(supervise.ChildStarted); ok {
		if p, ok := e.Instance.(*pluginproc.Process); ok {
			args = append(args, "pid", p.Pid())
		}
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		switch k {
		case "worker", "supervisor", "meta", "event", "time":
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
