package control

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/api"
)

// MaxLogLines bounds the lines member of a logs request.
const MaxLogLines = 100000

// noLogsHost is the error of logs (and FollowLogs) on a Host that keeps no
// worker logs.
func noLogsHost() *Error {
	return Errorf(CodeConflict, "this host keeps no worker logs (its Host does not implement the logs operation)")
}

// logsQuery checks the fields of a logs request and returns the query it
// asks for, with a since duration counted back from now: worker_name must
// be a valid name; lines 0 means DefaultLogLines, and must be 0 to
// MaxLogLines; since is "", an RFC 3339 time or a Go duration of 0 or more
// ("10m"); after is passed on. Errors are CodeInvalidConfig naming the
// field.
func logsQuery(r *Request, now time.Time) (LogsQuery, *Error) {
	if err := checkName("worker_name", r.WorkerName); err != nil {
		return LogsQuery{}, err
	}
	q := LogsQuery{Name: r.WorkerName, Lines: r.Lines, After: r.After}
	switch {
	case r.Lines == 0:
		q.Lines = DefaultLogLines
	case r.Lines < 0:
		return LogsQuery{}, invalid("lines", "lines is %d: it must be a number of lines from 1 to %d (0 or absent: %d)", r.Lines, MaxLogLines, DefaultLogLines)
	case r.Lines > MaxLogLines:
		return LogsQuery{}, invalid("lines", "lines is %d: at most %d lines are returned (the host keeps at most host.log_lines per worker)", r.Lines, MaxLogLines)
	}
	since, err := parseSince(r.Since, now)
	if err != nil {
		return LogsQuery{}, err
	}
	q.Since = since
	return q, nil
}

// parseSince reads the since member: "" (no limit), an RFC 3339 time, or
// a Go duration back from now.
func parseSince(s string, now time.Time) (time.Time, *Error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return time.Time{}, invalid("since", "since %s is neither an RFC 3339 time (2026-12-03T16:40:00Z) nor a duration back from now (10m, 1h30m)", quoteShort(s))
	}
	if d < 0 {
		return time.Time{}, invalid("since", "since %s is a negative duration: give how far back from now, such as 10m", quoteShort(s))
	}
	return now.Add(-d), nil
}

// logs answers the logs operation on the Host's LogsHost.
func (d *Dispatcher) logs(ctx context.Context, r *Request) (any, error) {
	lh, ok := d.host.(LogsHost)
	if !ok {
		return nil, noLogsHost()
	}
	q, err := logsQuery(r, time.Now())
	if err != nil {
		return nil, err // validate checked it already
	}
	return lh.Logs(ctx, q)
}

// FollowLogs waits until worker name's log has lines after seq after, or
// ctx is done, and returns them (the Host's LogsHost.WaitLogs): the HTTP
// API's follow stream calls it in a loop. It neither authorises nor counts
// the call: the stream's first request goes through Do, which does both,
// and FollowLogs is only called after that request was answered ok. A bad
// name is CodeInvalidConfig and a Host without LogsHost CodeConflict, as
// in Do; a Host error that is not an *Error, or a panic, is logged and
// becomes CodeInternal with a generic message; ctx's error is returned as
// it is.
func (d *Dispatcher) FollowLogs(ctx context.Context, name string, after uint64) (res api.LogsResult, err error) {
	if cerr := checkName("worker_name", name); cerr != nil {
		return api.LogsResult{}, cerr
	}
	lh, ok := d.host.(LogsHost)
	if !ok {
		return api.LogsResult{}, noLogsHost()
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v\n%s", p, debug.Stack())
		}
		if err == nil || ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return
		}
		if ce, ok := asError(err); ok {
			err = ce
			return
		}
		d.logger.Error("following a worker's log failed", "worker", short(name), "error", err)
		err = Errorf(CodeInternal, internalMessage)
	}()
	return lh.WaitLogs(ctx, name, after)
}

// asError returns the *Error err is or wraps, if it is a non-nil one.
func asError(err error) (*Error, bool) {
	var ce *Error
	if errors.As(err, &ce) && ce != nil {
		return ce, true
	}
	return nil, false
}
