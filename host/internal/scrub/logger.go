package scrub

import (
	"io"
	"log"

	"github.com/hashicorp/go-hclog"
)

// Logger returns an hclog.Logger that scrubs the message, the field names
// and the field values of everything logged through it (and through the
// loggers derived from it) before l sees them. An empty s returns l.
func Logger(l hclog.Logger, s *Scrubber) hclog.Logger {
	if s.Empty() {
		return l
	}
	return &logger{Logger: l, s: s}
}

type logger struct {
	hclog.Logger
	s *Scrubber
}

// Args scrubs a list of alternating field names and values.
func (s *Scrubber) Args(args []any) []any {
	if s.Empty() || len(args) == 0 {
		return args
	}
	out := make([]any, len(args))
	for i, a := range args {
		out[i] = s.Value(a)
	}
	return out
}

func (l *logger) Log(level hclog.Level, msg string, args ...any) {
	l.Logger.Log(level, l.s.String(msg), l.s.Args(args)...)
}
func (l *logger) Trace(msg string, args ...any) { l.Logger.Trace(l.s.String(msg), l.s.Args(args)...) }
func (l *logger) Debug(msg string, args ...any) { l.Logger.Debug(l.s.String(msg), l.s.Args(args)...) }
func (l *logger) Info(msg string, args ...any)  { l.Logger.Info(l.s.String(msg), l.s.Args(args)...) }
func (l *logger) Warn(msg string, args ...any)  { l.Logger.Warn(l.s.String(msg), l.s.Args(args)...) }
func (l *logger) Error(msg string, args ...any) { l.Logger.Error(l.s.String(msg), l.s.Args(args)...) }

func (l *logger) With(args ...any) hclog.Logger {
	return &logger{Logger: l.Logger.With(l.s.Args(args)...), s: l.s}
}
func (l *logger) Named(name string) hclog.Logger {
	return &logger{Logger: l.Logger.Named(name), s: l.s}
}
func (l *logger) ResetNamed(name string) hclog.Logger {
	return &logger{Logger: l.Logger.ResetNamed(name), s: l.s}
}

func (l *logger) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(l.StandardWriter(opts), "", 0)
}

func (l *logger) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	if opts == nil {
		opts = &hclog.StandardLoggerOptions{}
	}
	return writer{w: l.Logger.StandardWriter(opts), s: l.s}
}

// writer scrubs each Write (the standard logger writes one line per call).
type writer struct {
	w io.Writer
	s *Scrubber
}

func (w writer) Write(b []byte) (int, error) {
	if _, err := io.WriteString(w.w, w.s.String(string(b))); err != nil {
		return 0, err
	}
	return len(b), nil
}
