package sdktest

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
)

// LogEntry is a line a worker logged.
type LogEntry struct {
	// Level is the line's level: slog.LevelDebug, LevelInfo, LevelWarn,
	// LevelError (or one in between).
	Level   slog.Level
	Message string
	// Args are the attributes of the line, including those of the
	// logger's With; an attribute of a group g is "g.key".
	Args map[string]any
}

func (l LogEntry) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "[%s] %s", l.Level, l.Message)
	for _, k := range slices.Sorted(maps.Keys(l.Args)) {
		fmt.Fprintf(&b, " %s=%v", k, l.Args[k])
	}
	return b.String()
}

// recorder is the slog.Handler of an Env's logger: it records every line
// (all levels) and shows it with t.Log until the test ends.
type recorder struct {
	e      *Env
	w      *testWriter
	attrs  map[string]any
	prefix string // the open groups, "g1.g2."
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }

func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	entry := LogEntry{Level: rec.Level, Message: rec.Message, Args: maps.Clone(r.attrs)}
	if entry.Args == nil {
		entry.Args = map[string]any{}
	}
	rec.Attrs(func(a slog.Attr) bool {
		addAttr(entry.Args, r.prefix, a)
		return true
	})
	r.e.record(func() { r.e.logs = append(r.e.logs, entry) })
	r.w.line(entry.String())
	return nil
}

func (r *recorder) WithAttrs(attrs []slog.Attr) slog.Handler {
	n := *r
	n.attrs = maps.Clone(r.attrs)
	if n.attrs == nil {
		n.attrs = map[string]any{}
	}
	for _, a := range attrs {
		addAttr(n.attrs, r.prefix, a)
	}
	return &n
}

func (r *recorder) WithGroup(name string) slog.Handler {
	if name == "" {
		return r
	}
	n := *r
	n.prefix = r.prefix + name + "."
	return &n
}

// addAttr adds a to m under prefix, a group's attributes under
// "group.key".
func addAttr(m map[string]any, prefix string, a slog.Attr) {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p += a.Key + "."
		}
		for _, ga := range v.Group() {
			addAttr(m, p, ga)
		}
		return
	}
	if a.Key == "" {
		return
	}
	m[prefix+a.Key] = v.Any()
}
