package control

import (
	"context"
	"crypto/ed25519"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/auth"
)

// logsHost is a locatingHost that keeps logs: it records the queries it
// gets and answers with one line per query; WaitLogs blocks until ctx is
// done unless waitResult is set. err, when set, is Logs' and WaitLogs'
// answer.
type logsHost struct {
	locatingHost
	lmu        sync.Mutex
	queries    []LogsQuery
	waits      []uint64
	waitResult *api.LogsResult
	logsErr    error
	waitPanic  bool
}

var _ LogsHost = (*logsHost)(nil)

func (h *logsHost) Logs(_ context.Context, q LogsQuery) (api.LogsResult, error) {
	h.lmu.Lock()
	h.queries = append(h.queries, q)
	h.lmu.Unlock()
	if err := h.record("logs " + q.Name); err != nil {
		return api.LogsResult{}, err
	}
	if h.logsErr != nil {
		return api.LogsResult{}, h.logsErr
	}
	return api.LogsResult{Worker: q.Name, Lines: []api.LogLine{{Seq: 7, Text: "hello", Level: "info"}}, Next: 7}, nil
}

func (h *logsHost) WaitLogs(ctx context.Context, name string, after uint64) (api.LogsResult, error) {
	h.lmu.Lock()
	h.waits = append(h.waits, after)
	res, err, p := h.waitResult, h.logsErr, h.waitPanic
	h.lmu.Unlock()
	if p {
		panic("wait boom")
	}
	if err != nil {
		return api.LogsResult{}, err
	}
	if res != nil {
		return *res, nil
	}
	<-ctx.Done()
	return api.LogsResult{}, ctx.Err()
}

func (h *logsHost) Queries() []LogsQuery {
	h.lmu.Lock()
	defer h.lmu.Unlock()
	return slices.Clone(h.queries)
}

// A logs message is decoded (lines, since, after) and reaches the Host as
// a LogsQuery: lines 0 is DefaultLogLines, an RFC 3339 since is that time,
// a duration since is counted back from now.
func TestDispatcherLogs(t *testing.T) {
	h := &logsHost{}
	d, _ := newTestDispatcher(h)
	before := time.Now()
	bodies := []string{
		`{"operation": "logs", "worker_name": "w1"}`,
		`{"operation": "logs", "worker_name": "w1", "lines": 5, "since": "2026-12-03T16:40:00.5Z", "after": 12}`,
		envelope(`{"operation": "logs", "worker_name": "w1", "since": "10m", "lines": null}`),
	}
	for _, b := range bodies {
		rep := d.Handle(context.Background(), []byte(b))
		if !rep.OK {
			t.Fatalf("%s: %+v", b, rep.Error)
		}
		res, ok := rep.Result.(api.LogsResult)
		if !ok || res.Worker != "w1" || len(res.Lines) != 1 || res.Next != 7 {
			t.Fatalf("%s: result %#v", b, rep.Result)
		}
	}
	after := time.Now()
	q := h.Queries()
	if len(q) != 3 {
		t.Fatalf("queries %+v", q)
	}
	if q[0] != (LogsQuery{Name: "w1", Lines: DefaultLogLines}) {
		t.Errorf("default query %+v", q[0])
	}
	want := LogsQuery{Name: "w1", Lines: 5, After: 12, Since: time.Date(2026, 12, 3, 16, 40, 0, 5e8, time.UTC)}
	if !q[1].Since.Equal(want.Since) || q[1].Lines != 5 || q[1].After != 12 || q[1].Name != "w1" {
		t.Errorf("query %+v, want %+v", q[1], want)
	}
	if s := q[2].Since; s.Before(before.Add(-10*time.Minute)) || s.After(after.Add(-10*time.Minute)) || q[2].Lines != DefaultLogLines {
		t.Errorf("since 10m: query %+v, want since between %s and %s", q[2], before.Add(-10*time.Minute), after.Add(-10*time.Minute))
	}
}

// Bad fields of a logs request are refused naming the field, and never
// reach the Host.
func TestDispatcherLogsValidates(t *testing.T) {
	tests := []struct {
		body  string
		code  Code
		field string
	}{
		{`{"operation": "logs"}`, CodeInvalidConfig, "worker_name"},
		{`{"operation": "logs", "worker_name": "../etc"}`, CodeInvalidConfig, "worker_name"},
		{`{"operation": "logs", "worker_name": "w", "lines": -1}`, CodeInvalidConfig, "lines"},
		{`{"operation": "logs", "worker_name": "w", "lines": 100001}`, CodeInvalidConfig, "lines"},
		{`{"operation": "logs", "worker_name": "w", "since": "yesterday"}`, CodeInvalidConfig, "since"},
		{`{"operation": "logs", "worker_name": "w", "since": "-5m"}`, CodeInvalidConfig, "since"},
		{`{"operation": "logs", "worker_name": "w", "since": "2026-12-03 16:40"}`, CodeInvalidConfig, "since"},
		{`{"operation": "logs", "worker_name": "w", "lines": "10"}`, CodeMalformed, "lines"},
		{`{"operation": "logs", "worker_name": "w", "lines": 1.5}`, CodeMalformed, "lines"},
		{`{"operation": "logs", "worker_name": "w", "after": -1}`, CodeMalformed, "after"},
		{`{"operation": "logs", "worker_name": "w", "since": 10}`, CodeMalformed, "since"},
	}
	for _, tt := range tests {
		h := &logsHost{}
		d, _ := newTestDispatcher(h)
		rep := d.Handle(context.Background(), []byte(tt.body))
		if rep.OK || rep.Error.Code != tt.code {
			t.Errorf("%s: %+v, want code %s", tt.body, rep.Error, tt.code)
			continue
		}
		if len(rep.Error.Details) == 0 || rep.Error.Details[0].Attribute != tt.field || !strings.Contains(rep.Error.Message, tt.field) {
			t.Errorf("%s: %+v, want it to name %q", tt.body, rep.Error, tt.field)
		}
		if calls := h.Calls(); len(calls) != 0 {
			t.Errorf("%s: host called: %q", tt.body, calls)
		}
	}
	// The largest lines is taken.
	h := &logsHost{}
	d, _ := newTestDispatcher(h)
	if rep := d.Do(context.Background(), &Request{Operation: OpLogs, WorkerName: "w", Lines: MaxLogLines}); !rep.OK {
		t.Errorf("lines %d: %+v", MaxLogLines, rep.Error)
	}
}

// A Host that keeps no logs answers logs with a conflict; a Host error
// goes back as it is.
func TestDispatcherLogsHostErrors(t *testing.T) {
	d, _ := newTestDispatcher(&fakeHost{})
	rep := d.Do(context.Background(), &Request{Operation: OpLogs, WorkerName: "w"})
	if rep.OK || rep.Error.Code != CodeConflict || !strings.Contains(rep.Error.Message, "logs") {
		t.Errorf("without LogsHost: %+v", rep.Error)
	}
	h := &logsHost{logsErr: Errorf(CodeNotFound, "no worker %q", "w")}
	d, _ = newTestDispatcher(h)
	rep = d.Do(context.Background(), &Request{Operation: OpLogs, WorkerName: "w"})
	if rep.OK || rep.Error.Code != CodeNotFound {
		t.Errorf("unknown worker: %+v", rep.Error)
	}
}

// logs only reads: a stopping host (Refuse) still answers it, and a
// local read of the HTTP API (a GET with the bearer token, no signature)
// may use it under a policy that requires a principal.
func TestDispatcherLogsIsReadOnly(t *testing.T) {
	h := &logsHost{}
	d, _ := newTestDispatcher(h)
	d.Refuse(Errorf(CodeConflict, "the host is stopping"))
	if rep := d.Do(context.Background(), &Request{Operation: OpLogs, WorkerName: "w"}); !rep.OK {
		t.Errorf("a stopping host refused logs: %+v", rep.Error)
	}
	if rep := d.Do(context.Background(), &Request{Operation: OpRestartWorker, WorkerName: "w"}); rep.OK {
		t.Errorf("a stopping host took restart_worker")
	}

	d, _ = newTestDispatcher(&logsHost{})
	p, _ := testPolicy(t, true)
	d.SetPolicy(p)
	if rep := d.Do(auth.WithLocalRead(context.Background()), &Request{Operation: OpLogs, WorkerName: "w"}); !rep.OK {
		t.Errorf("local read of logs: %+v", rep.Error)
	}
	if rep := d.Do(context.Background(), &Request{Operation: OpLogs, WorkerName: "w"}); rep.OK || rep.Error.Code != CodeUnauthenticated {
		t.Errorf("logs without a principal nor a local read: %+v", rep)
	}
}

// A principal may read the logs of the workers it may act on: it needs
// the operation "logs", the worker's class and the supervisor it runs
// under, as for stop_worker; "status" does not give it.
func TestDispatcherAuthorizesLogs(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	pubAll, privAll, _ := ed25519.GenerateKey(nil)
	p, err := auth.NewPolicy(auth.Options{Require: true, Principals: []auth.PrincipalConfig{
		{Name: "reader", KeyID: "reader", PublicKey: pub, Operations: []string{"logs"},
			Classes: []string{"smpp"}, Supervisors: []string{"/campaigns"}},
		{Name: "watcher", KeyID: "watcher", PublicKey: pubAll, Operations: []string{"status", "stop_worker"},
			Classes: []string{"*"}, Supervisors: []string{"root"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	reader, _ := auth.NewEd25519Signer("reader", priv)
	watcher, _ := auth.NewEd25519Signer("watcher", privAll)
	h := &logsHost{}
	d, _ := newTestDispatcher(h)
	d.SetPolicy(p)
	cases := []struct {
		s    *auth.Signer
		body string
		code Code
	}{
		{reader, `{"operation": "logs", "worker_name": "w-camp"}`, ""},
		{reader, `{"operation": "logs", "worker_name": "w-root"}`, CodeForbidden},  // outside its subtree
		{reader, `{"operation": "logs", "worker_name": "unknown"}`, CodeForbidden}, // class and place unknown
		{watcher, `{"operation": "logs", "worker_name": "w-camp"}`, CodeForbidden}, // status does not give logs
	}
	for _, tc := range cases {
		rep := d.Handle(signedCtx(tc.s, tc.body), []byte(tc.body))
		got := Code("")
		if rep.Error != nil {
			got = rep.Error.Code
		}
		if got != tc.code {
			t.Errorf("%s: %+v, want code %q", tc.body, rep.Error, tc.code)
		}
	}
	if calls := h.Calls(); !slices.Equal(calls, []string{"logs w-camp"}) {
		t.Errorf("host calls %v", calls)
	}
}

// FollowLogs hands on WaitLogs' answer; ctx's end is returned as it is,
// other Host errors as control errors, never their text.
func TestDispatcherFollowLogs(t *testing.T) {
	want := api.LogsResult{Worker: "w", Lines: []api.LogLine{{Seq: 13, Text: "new"}}, Next: 13, Skipped: 2}
	h := &logsHost{waitResult: &want}
	d, _ := newTestDispatcher(h)
	got, err := d.FollowLogs(context.Background(), "w", 10)
	if err != nil || got.Next != 13 || got.Skipped != 2 || len(got.Lines) != 1 {
		t.Fatalf("FollowLogs = %+v, %v", got, err)
	}
	if h.waits[0] != 10 {
		t.Errorf("waited after %v, want 10", h.waits)
	}

	h = &logsHost{}
	d, _ = newTestDispatcher(h)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := d.FollowLogs(ctx, "w", 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("after ctx's end: %v, want DeadlineExceeded", err)
	}

	h = &logsHost{logsErr: errors.New("open /secret/path: denied")}
	d, logs := newTestDispatcher(h)
	_, err = d.FollowLogs(context.Background(), "w", 0)
	var ce *Error
	if !errors.As(err, &ce) || ce.Code != CodeInternal || strings.Contains(ce.Message, "secret") {
		t.Errorf("plain host error: %v", err)
	}
	if !strings.Contains(logs.String(), "/secret/path") {
		t.Errorf("the cause is not logged:\n%s", logs.String())
	}

	h = &logsHost{waitPanic: true}
	d, _ = newTestDispatcher(h)
	if _, err := d.FollowLogs(context.Background(), "w", 0); !errors.As(err, &ce) || ce.Code != CodeInternal {
		t.Errorf("panic: %v", err)
	}
	if _, err := d.FollowLogs(context.Background(), "../x", 0); !errors.As(err, &ce) || ce.Code != CodeInvalidConfig {
		t.Errorf("bad name: %v", err)
	}
	d, _ = newTestDispatcher(&fakeHost{})
	if _, err := d.FollowLogs(context.Background(), "w", 0); !errors.As(err, &ce) || ce.Code != CodeConflict {
		t.Errorf("without LogsHost: %v", err)
	}
}
