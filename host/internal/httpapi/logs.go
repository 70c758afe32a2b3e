package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/control"
)

// LogFollower is optionally implemented by a Doer that can follow a
// worker's log (control.Dispatcher does): it backs the follow form of GET
// /v1/workers/{name}/logs. FollowLogs blocks until the log has lines after
// seq after, or ctx is done (then it returns ctx's error).
type LogFollower interface {
	FollowLogs(ctx context.Context, name string, after uint64) (api.LogsResult, error)
}

var _ LogFollower = (*control.Dispatcher)(nil)

// Defaults of the follow streams.
const (
	// DefaultMaxLogStreams bounds the follow streams open at once when
	// Options.MaxLogStreams is 0.
	DefaultMaxLogStreams = 64
	// DefaultLogKeepAlive is how long a follow stream may stay silent: a
	// blank line is sent after that much time without a log line, so that
	// proxies keep the connection and a client notices a dead peer.
	DefaultLogKeepAlive = 15 * time.Second
)

// NDJSONType is the media type of a follow stream.
const NDJSONType = "application/x-ndjson"

// logsRequest reads the query of GET /v1/workers/{name}/logs: lines (a
// whole number), since (passed on: the Doer checks it), after (a seq, a
// whole number of 0 or more) and follow ("1" or "true"; "0", "false" or
// absent for none). A value of the wrong form is CodeMalformed naming the
// parameter.
func logsRequest(r *http.Request) (*control.Request, bool, *control.Error) {
	q := r.URL.Query()
	req := &control.Request{Operation: control.OpLogs, WorkerName: r.PathValue("name"), Since: q.Get("since")}
	if v := q.Get("lines"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return nil, false, malformed("lines", fmt.Sprintf("the query parameter lines=%s is not a whole number of lines", clip(strconv.Quote(v))))
		}
		req.Lines = n
	}
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return nil, false, malformed("after", fmt.Sprintf("the query parameter after=%s is not a seq of the log (a whole number of 0 or more)", clip(strconv.Quote(v))))
		}
		req.After = n
	}
	follow := false
	switch v := q.Get("follow"); v {
	case "", "0", "false":
	case "1", "true":
		follow = true
	default:
		return nil, false, malformed("follow", fmt.Sprintf("the query parameter follow=%s must be 1 or 0", clip(strconv.Quote(v))))
	}
	return req, follow, nil
}

// handleLogs answers GET /v1/workers/{name}/logs: the operation logs, and
// with follow=1 the NDJSON stream of the worker's log (see the package
// documentation).
func (s *Server) handleLogs(w http.ResponseWriter, r *http.Request) {
	req, follow, cerr := logsRequest(r)
	if cerr != nil {
		s.writeReply(w, fail(cerr))
		return
	}
	if !follow || r.Method == http.MethodHead {
		s.writeReply(w, s.do(r, req))
		return
	}
	f, ok := s.opts.Doer.(LogFollower)
	if !ok {
		s.writeReply(w, fail(control.Errorf(control.CodeConflict, "this API cannot follow logs: ask without follow=1 and poll with after=<next>")))
		return
	}
	select {
	case s.logStreams <- struct{}{}:
		defer func() { <-s.logStreams }()
	default:
		w.Header().Set("Retry-After", "10")
		s.writeReplyStatus(w, fail(control.Errorf(control.CodeConflict,
			"too many log streams are open (%d, the API's limit): close one, or ask without follow=1", cap(s.logStreams))), http.StatusServiceUnavailable)
		return
	}
	// The first answer goes through Do: validation, the control policy,
	// the counters and the log see it as any logs request, and an error is
	// a plain reply with its status.
	rep := s.do(r, req)
	if !rep.OK {
		s.writeReply(w, rep)
		return
	}
	first, err := asLogsResult(rep.Result)
	if err != nil {
		s.logger.Error("a logs result has an unexpected shape", "error", err)
		s.writeReply(w, fail(control.Errorf(control.CodeInternal, "the logs result could not be read (see the host's log)")))
		return
	}
	s.streamLogs(w, r, f, req.WorkerName, first)
}

// asLogsResult returns the result of a logs reply as an api.LogsResult.
func asLogsResult(result any) (api.LogsResult, error) {
	if res, ok := result.(api.LogsResult); ok {
		return res, nil
	}
	if res, ok := result.(*api.LogsResult); ok && res != nil {
		return *res, nil
	}
	raw, err := json.Marshal(result)
	if err != nil {
		return api.LogsResult{}, err
	}
	var res api.LogsResult
	err = json.Unmarshal(raw, &res)
	return res, err
}

// streamLogs writes the follow stream: first's lines, then every new line
// as FollowLogs returns it, with a blank line after each LogKeepAlive of
// silence; it ends when the client goes away, the server shuts down, a
// write fails or FollowLogs fails (then with an {"error": ...} object).
func (s *Server) streamLogs(w http.ResponseWriter, r *http.Request, f LogFollower, name string, first api.LogsResult) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(s.streamsCtx, cancel)() // the server shuts down
	rc := http.NewResponseController(w)
	// The request was read in full: the read deadlines of withLimits and
	// of the server (ReadTimeout) would end the stream, as a failed read
	// of the connection cancels the request's context.
	_ = rc.SetReadDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", NDJSONType)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Accel-Buffering", "no") // nginx: pass each line on at once
	_ = rc.SetWriteDeadline(time.Now().Add(s.timeouts.Write))
	w.WriteHeader(http.StatusOK)
	if rc.Flush() != nil {
		return
	}

	// write sends one chunk within its own write deadline and flushes it.
	write := func(b []byte) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(s.timeouts.Write))
		if _, err := w.Write(b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	send := func(res api.LogsResult) bool {
		var buf []byte
		if res.Skipped > 0 {
			buf = fmt.Appendf(buf, "{\"skipped\":%d}\n", res.Skipped)
		}
		for _, l := range res.Lines {
			b, err := json.Marshal(l)
			if err != nil {
				continue
			}
			buf = append(append(buf, b...), '\n')
		}
		if len(buf) == 0 {
			return true
		}
		return write(buf)
	}
	next := first.Next
	if !send(first) {
		return
	}
	keepAlive := s.logKeepAlive
	for {
		wctx, wcancel := context.WithTimeout(ctx, keepAlive)
		res, err := f.FollowLogs(wctx, name, next)
		silent := wctx.Err() != nil // the keep-alive time went by
		wcancel()
		switch {
		case ctx.Err() != nil:
			return // the client went away or the server shuts down
		case err != nil && silent:
			if !write([]byte("\n")) {
				return
			}
			continue
		case err != nil:
			var ce *control.Error
			if !errors.As(err, &ce) || ce == nil {
				ce = control.Errorf(control.CodeInternal, "following the log failed (see the host's log)")
				s.logger.Error("following a worker's log failed", "worker", name, "error", err)
			}
			b, _ := json.Marshal(map[string]any{"error": ce})
			write(append(b, '\n'))
			return
		}
		if !send(res) {
			return
		}
		// The host's Next is where the log is: it may be lower than before
		// when the worker's log was dropped and begun anew.
		if res.Next > 0 {
			next = res.Next
		} else if n := len(res.Lines); n > 0 {
			next = res.Lines[n-1].Seq
		}
		if len(res.Lines) == 0 && res.Skipped == 0 {
			// A follower that returns nothing new would spin: wait a
			// little before asking again.
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}
