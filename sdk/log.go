package sdk

import (
	"io"
	"log/slog"
	"strings"
	"time"
)

// The plugin's log: JSON lines on stderr in the form the host parses
// (hclog's JSON form: "@level", "@message", "@timestamp", then the
// attributes), which the host re-logs under the worker's name with the
// levels kept.

// levelTrace is hclog's trace level, below slog's debug.
const levelTrace = slog.LevelDebug - 4

// parseLevel reads a log level as the host gives it (trace, debug, info,
// warn, error; any case); info when it is empty or unknown.
func parseLevel(s string) slog.Level {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "trace":
		return levelTrace
	case "debug":
		return slog.LevelDebug
	case "warn", "warning":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// levelName is a level's name as the host reads it.
func levelName(l slog.Level) string {
	switch {
	case l < slog.LevelDebug:
		return "trace"
	case l < slog.LevelInfo:
		return "debug"
	case l < slog.LevelWarn:
		return "info"
	case l < slog.LevelError:
		return "warn"
	}
	return "error"
}

// timestampFormat is hclog's JSON timestamp, which the host parses.
const timestampFormat = "2006-01-02T15:04:05.000000Z07:00"

// newLogger returns a logger writing the host's JSON lines to w at level
// and above.
func newLogger(w io.Writer, level slog.Leveler) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.TimeKey:
				if t, ok := a.Value.Any().(time.Time); ok {
					return slog.String("@timestamp", t.Format(timestampFormat))
				}
			case slog.LevelKey:
				if l, ok := a.Value.Any().(slog.Level); ok {
					return slog.String("@level", levelName(l))
				}
			case slog.MessageKey:
				return slog.Attr{Key: "@message", Value: a.Value}
			}
			return a
		},
	}))
}
