package pluginproc

import (
	"io"
	"log"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
)

// retargetLogger is an hclog.Logger whose output goes to a target that can
// be swapped at any time with retarget. The loggers derived from it with
// Named, With and ResetNamed follow the swap.
//
// A warm spare needs it: go-plugin fixes a client's logger when the client is
// made, and derives the logger the plugin's stderr is re-logged under from it
// once (Named with the binary's base name) when the process starts, but the
// spare learns which worker it serves only when it is taken.
type retargetLogger struct {
	root   *retargetRoot
	parent *retargetLogger // nil for the root
	// derive makes this logger from its parent's current logger.
	derive func(hclog.Logger) hclog.Logger
	// cache holds the logger derived for the current target.
	cache atomic.Pointer[derivedLogger]
}

type retargetRoot struct {
	target atomic.Pointer[targetBox]
}

// targetBox wraps a target; a new box per retarget marks a new generation,
// even when the same logger is set again.
type targetBox struct{ l hclog.Logger }

type derivedLogger struct {
	from *targetBox
	l    hclog.Logger
}

var _ hclog.Logger = (*retargetLogger)(nil)

// newRetargetLogger returns a root logger writing to target.
func newRetargetLogger(target hclog.Logger) *retargetLogger {
	r := &retargetLogger{root: &retargetRoot{}}
	r.root.target.Store(&targetBox{l: target})
	return r
}

// retarget sends the output of this logger and of every logger derived from
// it, now and later, to target.
func (r *retargetLogger) retarget(target hclog.Logger) {
	r.root.target.Store(&targetBox{l: target})
}

// current is the logger this one writes to now.
func (r *retargetLogger) current() hclog.Logger {
	return r.resolve(r.root.target.Load())
}

func (r *retargetLogger) resolve(box *targetBox) hclog.Logger {
	if r.parent == nil {
		return box.l
	}
	if c := r.cache.Load(); c != nil && c.from == box {
		return c.l
	}
	l := r.derive(r.parent.resolve(box))
	r.cache.Store(&derivedLogger{from: box, l: l})
	return l
}

func (r *retargetLogger) child(derive func(hclog.Logger) hclog.Logger) *retargetLogger {
	return &retargetLogger{root: r.root, parent: r, derive: derive}
}

func (r *retargetLogger) Log(level hclog.Level, msg string, args ...any) {
	r.current().Log(level, msg, args...)
}
func (r *retargetLogger) Trace(msg string, args ...any) { r.current().Trace(msg, args...) }
func (r *retargetLogger) Debug(msg string, args ...any) { r.current().Debug(msg, args...) }
func (r *retargetLogger) Info(msg string, args ...any)  { r.current().Info(msg, args...) }
func (r *retargetLogger) Warn(msg string, args ...any)  { r.current().Warn(msg, args...) }
func (r *retargetLogger) Error(msg string, args ...any) { r.current().Error(msg, args...) }
func (r *retargetLogger) IsTrace() bool                 { return r.current().IsTrace() }
func (r *retargetLogger) IsDebug() bool                 { return r.current().IsDebug() }
func (r *retargetLogger) IsInfo() bool                  { return r.current().IsInfo() }
func (r *retargetLogger) IsWarn() bool                  { return r.current().IsWarn() }
func (r *retargetLogger) IsError() bool                 { return r.current().IsError() }
func (r *retargetLogger) ImpliedArgs() []any            { return r.current().ImpliedArgs() }
func (r *retargetLogger) Name() string                  { return r.current().Name() }
func (r *retargetLogger) SetLevel(level hclog.Level)    { r.current().SetLevel(level) }
func (r *retargetLogger) GetLevel() hclog.Level         { return r.current().GetLevel() }

func (r *retargetLogger) With(args ...any) hclog.Logger {
	return r.child(func(l hclog.Logger) hclog.Logger { return l.With(args...) })
}

func (r *retargetLogger) Named(name string) hclog.Logger {
	return r.child(func(l hclog.Logger) hclog.Logger { return l.Named(name) })
}

func (r *retargetLogger) ResetNamed(name string) hclog.Logger {
	return r.child(func(l hclog.Logger) hclog.Logger { return l.ResetNamed(name) })
}

func (r *retargetLogger) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(r.StandardWriter(opts), "", 0)
}

// StandardWriter returns a writer that follows retargets too.
func (r *retargetLogger) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	if opts == nil {
		opts = &hclog.StandardLoggerOptions{}
	}
	return retargetWriter{r: r, opts: opts}
}

type retargetWriter struct {
	r    *retargetLogger
	opts *hclog.StandardLoggerOptions
}

func (w retargetWriter) Write(b []byte) (int, error) {
	return w.r.current().StandardWriter(w.opts).Write(b)
}
