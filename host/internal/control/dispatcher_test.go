package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/dynworkers/dynworkers/host/internal/api"
)

// fakeHost records the calls it gets and answers with err (if set) or
// canned results.
type fakeHost struct {
	mu       sync.Mutex
	calls    []string
	specs    []WorkerSpec
	supSpecs []SupervisorSpec
	err      error
	panic    bool
}

var _ Host = (*fakeHost)(nil)

func (h *fakeHost) record(call string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, call)
	if h.panic {
		panic("boom")
	}
	return h.err
}

func (h *fakeHost) StartWorker(_ context.Context, spec WorkerSpec) (api.StartResult, error) {
	h.mu.Lock()
	h.specs = append(h.specs, spec)
	h.mu.Unlock()
	if err := h.record("start " + spec.Name); err != nil {
		return api.StartResult{}, err
	}
	return api.StartResult{Worker: spec.Name, Action: "started", Pid: 42, State: "running"}, nil
}

func (h *fakeHost) StopWorker(_ context.Context, name string) error { return h.record("stop " + name) }
func (h *fakeHost) RestartWorker(_ context.Context, name string) error {
	return h.record("restart " + name)
}

func (h *fakeHost) Status(context.Context) (api.Status, error) {
	return api.Status{Workers: []api.Worker{}}, h.record("status")
}

func (h *fakeHost) Classes(context.Context) (api.ClassList, error) {
	return api.ClassList{Classes: []api.Class{}}, h.record("classes")
}

func (h *fakeHost) Reload(context.Context) (api.ReloadResult, error) {
	return api.ReloadResult{Unchanged: 1}, h.record("reload")
}

func (h *fakeHost) StartSupervisor(_ context.Context, spec SupervisorSpec) (api.SupervisorResult, error) {
	h.mu.Lock()
	h.supSpecs = append(h.supSpecs, spec)
	h.mu.Unlock()
	if err := h.record("start_supervisor " + spec.Name); err != nil {
		return api.SupervisorResult{}, err
	}
	return api.SupervisorResult{Supervisor: "root/" + spec.Name, Action: "started", State: "running"}, nil
}

func (h *fakeHost) StopSupervisor(_ context.Context, path string) (api.SupervisorResult, error) {
	if err := h.record("stop_supervisor " + path); err != nil {
		return api.SupervisorResult{}, err
	}
	return api.SupervisorResult{Supervisor: path, Action: "removed", State: "stopped", Removed: []string{"w1", path + "/sub"}}, nil
}

func (h *fakeHost) Calls() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.calls...)
}

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newTestDispatcher(h Host) (*Dispatcher, *syncBuffer) {
	var buf syncBuffer
	logger := hclog.New(&hclog.LoggerOptions{Output: &buf, Level: hclog.Trace})
	return NewDispatcher(h, logger), &buf
}

func TestDispatcherRoutes(t *testing.T) {
	tests := []struct {
		body   string
		call   string
		result string // the result as JSON
	}{
		{designExample, "start SMPP Transport for account1",
			`{"worker":"SMPP Transport for account1","action":"started","pid":42,"state":"running"}`},
		{envelope(designExample), "start SMPP Transport for account1",
			`{"worker":"SMPP Transport for account1","action":"started","pid":42,"state":"running"}`},
		{`{"operation": "start_worker", "worker_name": "a", "worker_class": "c"}`, "start a",
			`{"worker":"a","action":"started","pid":42,"state":"running"}`},
		{`{"operation": "stop_worker", "worker_name": "a"}`, "stop a", `{"worker":"a","action":"stopped"}`},
		{`{"operation": "restart_worker", "worker_name": "a"}`, "restart a", `{"worker":"a","action":"restarted"}`},
		{`{"operation": "status"}`, "status", `{"system_id":"","host":"","broker":"","started":"0001-01-01T00:00:00Z","supervisors":null,"workers":[]}`},
		{`{"operation": "list_classes"}`, "classes", `{"classes":[],"broken":null}`},
		{`{"operation": "reload"}`, "reload", `{"added":null,"removed":null,"restarted":null,"resumed":null,"unchanged":1}`},
		{`{"operation": "start_supervisor", "supervisor_name": "campaign-a"}`, "start_supervisor campaign-a",
			`{"supervisor":"root/campaign-a","action":"started","state":"running"}`},
		{envelope(`{"operation": "stop_supervisor", "supervisor": "root/campaign-a"}`), "stop_supervisor root/campaign-a",
			`{"supervisor":"root/campaign-a","action":"removed","state":"stopped","removed":["w1","root/campaign-a/sub"]}`},
	}
	for _, tt := range tests {
		t.Run(tt.call, func(t *testing.T) {
			h := &fakeHost{}
			d, _ := newTestDispatcher(h)
			reply := d.Handle(context.Background(), []byte(tt.body))
			if !reply.OK || reply.Error != nil {
				t.Fatalf("reply = %+v, want ok", reply)
			}
			if calls := h.Calls(); len(calls) != 1 || calls[0] != tt.call {
				t.Errorf("calls = %q, want [%q]", calls, tt.call)
			}
			got, err := json.Marshal(reply.Result)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.result {
				t.Errorf("result = %s, want %s", got, tt.result)
			}
		})
	}
}

func TestDispatcherPassesTheSpec(t *testing.T) {
	h := &fakeHost{}
	d, _ := newTestDispatcher(h)
	req := &Request{Operation: OpStartAlias, WorkerName: "w", WorkerClass: "c", Supervisor: "root/s",
		Replace: true, WorkerConfig: json.RawMessage(`{"a": 1}`)}
	if r := d.Do(context.Background(), req); !r.OK {
		t.Fatalf("reply = %+v", r)
	}
	want := WorkerSpec{Name: "w", Class: "c", Config: json.RawMessage(`{"a": 1}`), Supervisor: "root/s", Replace: true}
	if len(h.specs) != 1 || fmt.Sprint(h.specs[0]) != fmt.Sprint(want) {
		t.Errorf("specs = %+v, want %+v", h.specs, want)
	}
	if req.Operation != OpStartAlias {
		t.Errorf("Do changed the caller's request: operation = %q", req.Operation)
	}
}

func TestDispatcherValidates(t *testing.T) {
	tests := []struct {
		name  string
		req   Request
		code  Code
		field string
	}{
		{"start without name", Request{Operation: OpStartWorker, WorkerClass: "c"}, CodeInvalidConfig, "worker_name"},
		{"start path traversal", Request{Operation: OpStartWorker, WorkerName: "../../bin/sh", WorkerClass: "c"}, CodeInvalidConfig, "worker_name"},
		{"start slash", Request{Operation: OpStartWorker, WorkerName: "/", WorkerClass: "c"}, CodeInvalidConfig, "worker_name"},
		{"start dot dot", Request{Operation: OpStartWorker, WorkerName: "..", WorkerClass: "c"}, CodeInvalidConfig, "worker_name"},
		{"start control char", Request{Operation: OpStartWorker, WorkerName: "a\x00b", WorkerClass: "c"}, CodeInvalidConfig, "worker_name"},
		{"start newline", Request{Operation: OpStartWorker, WorkerName: "a\nlevel=ERROR", WorkerClass: "c"}, CodeInvalidConfig, "worker_name"},
		{"start long name", Request{Operation: OpStartWorker, WorkerName: strings.Repeat("x", 10000), WorkerClass: "c"}, CodeInvalidConfig, "worker_name"},
		{"start without class", Request{Operation: OpStartWorker, WorkerName: "w"}, CodeInvalidConfig, "worker_class"},
		{"start class control char", Request{Operation: OpStartWorker, WorkerName: "w", WorkerClass: "c\x1b[31m"}, CodeInvalidConfig, "worker_class"},
		{"start config string", Request{Operation: OpStartWorker, WorkerName: "w", WorkerClass: "c", WorkerConfig: json.RawMessage(`"x"`)}, CodeMalformed, "worker_config"},
		{"start config array", Request{Operation: OpStartWorker, WorkerName: "w", WorkerClass: "c", WorkerConfig: json.RawMessage(`[1]`)}, CodeMalformed, "worker_config"},
		{"start config not JSON", Request{Operation: OpStartWorker, WorkerName: "w", WorkerClass: "c", WorkerConfig: json.RawMessage(`{`)}, CodeMalformed, "worker_config"},
		{"start bad supervisor", Request{Operation: OpStartWorker, WorkerName: "w", WorkerClass: "c", Supervisor: "root/../x"}, CodeInvalidConfig, "supervisor"},
		{"start empty supervisor segment", Request{Operation: OpStartWorker, WorkerName: "w", WorkerClass: "c", Supervisor: "root//x"}, CodeInvalidConfig, "supervisor"},
		{"stop without name", Request{Operation: OpStopWorker}, CodeInvalidConfig, "worker_name"},
		{"stop hostile name", Request{Operation: OpStopWorker, WorkerName: "../../bin/sh"}, CodeInvalidConfig, "worker_name"},
		{"restart without name", Request{Operation: OpRestartWorker}, CodeInvalidConfig, "worker_name"},
		{"no operation", Request{}, CodeUnknownOperation, "operation"},
		{"unknown operation", Request{Operation: "format_disk"}, CodeUnknownOperation, "operation"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &fakeHost{}
			d, _ := newTestDispatcher(h)
			tt.req.RequestID = "r-1"
			reply := d.Do(context.Background(), &tt.req)
			if reply.OK || reply.Error == nil {
				t.Fatalf("reply = %+v, want an error", reply)
			}
			if reply.Error.Code != tt.code {
				t.Errorf("code = %s, want %s (%v)", reply.Error.Code, tt.code, reply.Error)
			}
			if len(reply.Error.Details) == 0 || reply.Error.Details[0].Attribute != tt.field {
				t.Errorf("details = %+v, want attribute %q", reply.Error.Details, tt.field)
			}
			if len(reply.Error.Message) > 500 {
				t.Errorf("message is %d bytes long", len(reply.Error.Message))
			}
			if reply.RequestID != "r-1" {
				t.Errorf("request_id = %q, want r-1", reply.RequestID)
			}
			if calls := h.Calls(); len(calls) != 0 {
				t.Errorf("host called for a bad request: %q", calls)
			}
		})
	}
}

func TestDispatcherNeedsNothingForQueries(t *testing.T) {
	for _, op := range []string{OpStatus, OpListClasses, OpReload} {
		h := &fakeHost{}
		d, _ := newTestDispatcher(h)
		// Fields the operation does not use are not checked.
		if r := d.Do(context.Background(), &Request{Operation: op, WorkerName: "../x"}); !r.OK {
			t.Errorf("%s: reply = %+v", op, r)
		}
	}
}

func TestDispatcherHostErrors(t *testing.T) {
	conflict := &Error{Code: CodeConflict, Message: `worker "a" is configured in HCL`}
	tests := []struct {
		name string
		err  error
		want *Error
	}{
		{"control error", conflict, conflict},
		{"wrapped control error", fmt.Errorf("starting: %w", conflict), conflict},
		{"not found", Errorf(CodeNotFound, "no worker %q", "a"), Errorf(CodeNotFound, "no worker %q", "a")},
		{"plain error", errors.New("open /var/lib/dynworkers/workers.json: permission denied"),
			&Error{Code: CodeInternal, Message: "internal error (see the host's log)"}},
		{"context", context.DeadlineExceeded, &Error{Code: CodeInternal, Message: "internal error (see the host's log)"}},
		{"typed nil", (*Error)(nil), &Error{Code: CodeInternal, Message: "internal error (see the host's log)"}},
		{"internal control error", Errorf(CodeInternal, "worker a restarted but its start failed"),
			Errorf(CodeInternal, "worker a restarted but its start failed")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &fakeHost{err: tt.err}
			d, logs := newTestDispatcher(h)
			reply := d.Handle(context.Background(), []byte(`{"operation": "stop_worker", "worker_name": "a", "request_id": "r-2"}`))
			if reply.OK || reply.Result != nil {
				t.Fatalf("reply = %+v, want an error", reply)
			}
			if fmt.Sprint(reply.Error) != fmt.Sprint(tt.want) {
				t.Errorf("error = %v, want %v", reply.Error, tt.want)
			}
			if reply.RequestID != "r-2" {
				t.Errorf("request_id = %q", reply.RequestID)
			}
			if tt.want.Code == CodeInternal {
				out := logs.String()
				cause := "nil *control.Error"
				switch {
				case tt.want.Message != internalMessage:
					cause = tt.want.Message
				case tt.err != error((*Error)(nil)):
					cause = tt.err.Error()
				}
				for _, s := range []string{"[ERROR]", "operation=stop_worker", "worker=a", "request_id=r-2", cause} {
					if !strings.Contains(out, s) {
						t.Errorf("log lacks %q:\n%s", s, out)
					}
				}
			}
		})
	}
}

func TestDispatcherRecoversFromPanic(t *testing.T) {
	h := &fakeHost{panic: true}
	d, logs := newTestDispatcher(h)
	reply := d.Do(context.Background(), &Request{Operation: OpStatus})
	if reply.OK || reply.Error.Code != CodeInternal || strings.Contains(reply.Error.Message, "boom") {
		t.Fatalf("reply = %+v, want a generic internal error", reply)
	}
	if !strings.Contains(logs.String(), "panic: boom") {
		t.Errorf("log lacks the panic:\n%s", logs)
	}
}

func TestDispatcherEchoesRequestID(t *testing.T) {
	d, _ := newTestDispatcher(&fakeHost{})
	for _, body := range []string{
		`{"operation": "status", "request_id": "abc"}`,
		envelope(`{"operation": "status", "request_id": "abc"}`),
		`{"operation": "nope", "request_id": "abc"}`,
		`{"operation": "stop_worker", "request_id": "abc"}`,
		`{"operation": "vumi_worker", "worker_config": 1, "request_id": "abc"}`,
	} {
		if r := d.Handle(context.Background(), []byte(body)); r.RequestID != "abc" {
			t.Errorf("%s: request_id = %q, want abc", body, r.RequestID)
		}
	}
}

func TestDispatcherNeverLogsConfig(t *testing.T) {
	const secret = "pa55-SeKrEt-w0rd"
	designSecret := strings.Replace(designExample, `"password": "password"`, `"password": "`+secret+`"`, 1)
	bodies := []string{
		designSecret,
		envelope(designSecret),
		// Rejected before the host: a hostile name, a bad supervisor.
		strings.Replace(designSecret, "SMPP Transport for account1", "../../bin/sh", 1),
		strings.Replace(designSecret, `"operation": "vumi_worker"`, `"operation": "vumi_worker", "supervisor": "/"`, 1),
		// Malformed: a wrong type next to the secret, a secret in bad JSON.
		strings.Replace(designSecret, `"worker_class": "vumi.workers.smpp.transport.SMPPTransport"`, `"worker_class": 7`, 1),
		`{"operation": "vumi_worker", "worker_config": {"password": ` + secret + `}}`,
		`{"operation": "vumi_worker", "worker_config": "` + secret + `"}`,
		`{"operation": "vumi_worker", "replace": ` + secret + `}`,
	}
	for _, hostErr := range []error{nil, errors.New("could not start"), Errorf(CodeInvalidConfig, "bad port")} {
		h := &fakeHost{err: hostErr}
		d, logs := newTestDispatcher(h)
		for _, body := range bodies {
			reply := d.Handle(context.Background(), []byte(body))
			out, err := json.Marshal(reply)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(out), secret) {
				t.Errorf("reply holds the secret: %s", out)
			}
		}
		if out := logs.String(); strings.Contains(out, secret) || strings.Contains(out, "smpp.host.com") {
			t.Errorf("log holds config values:\n%s", out)
		} else if !strings.Contains(out, "SMPP Transport for account1") {
			t.Errorf("log lacks the worker name:\n%s", out)
		}
	}
}

func TestDispatcherStats(t *testing.T) {
	h := &fakeHost{}
	d, _ := newTestDispatcher(h)
	ctx := context.Background()
	d.Handle(ctx, []byte(`{"operation": "status"}`))
	d.Handle(ctx, []byte(`[]`))
	d.Handle(ctx, []byte(`{"operation": "nope"}`))
	d.Do(ctx, &Request{Operation: OpStopWorker, WorkerName: "../x"})
	h.err = errors.New("disk full")
	d.Do(ctx, &Request{Operation: OpStopWorker, WorkerName: "x"})

	s := d.Stats()
	if s.Handled != 5 || s.Failed != 4 {
		t.Errorf("handled, failed = %d, %d; want 5, 4", s.Handled, s.Failed)
	}
	want := map[Code]uint64{CodeMalformed: 1, CodeUnknownOperation: 1, CodeInvalidConfig: 1, CodeInternal: 1}
	if fmt.Sprint(s.Errors) != fmt.Sprint(want) {
		t.Errorf("errors = %v, want %v", s.Errors, want)
	}
	s.Errors[CodeConflict] = 9 // a copy
	if d.Stats().Errors[CodeConflict] != 0 {
		t.Error("Stats returned the live map")
	}
}

func TestDispatcherConcurrent(t *testing.T) {
	d, _ := newTestDispatcher(&fakeHost{})
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			d.Handle(context.Background(), fmt.Appendf(nil, `{"operation": "stop_worker", "worker_name": "w%d"}`, i))
		})
	}
	wg.Wait()
	if s := d.Stats(); s.Handled != 20 || s.Failed != 0 {
		t.Errorf("stats = %+v", s)
	}
}

func TestCodeHTTPStatus(t *testing.T) {
	for code, want := range map[Code]int{
		CodeMalformed: 400, CodeUnknownOperation: 400, CodeUnknownClass: 422, CodeInvalidConfig: 422,
		CodeConflict: 409, CodeNotFound: 404, CodeUnauthorized: 401, CodeInternal: 500, "other": 500,
		CodeUnauthenticated: 401, CodeForbidden: 403,
	} {
		if got := code.HTTPStatus(); got != want {
			t.Errorf("%s: %d %s, want %d", code, got, http.StatusText(got), want)
		}
	}
}

// A refusing dispatcher still answers status and list_classes, and
// answers every other operation with the refusal, without calling the host.
func TestDispatcherRefuse(t *testing.T) {
	h := &fakeHost{}
	d, _ := newTestDispatcher(h)
	d.Refuse(Errorf(CodeConflict, "the host is shutting down"))
	for _, body := range []string{`{"operation": "status"}`, `{"operation": "list_classes"}`} {
		if reply := d.Handle(context.Background(), []byte(body)); !reply.OK {
			t.Errorf("%s: %+v", body, reply)
		}
	}
	for _, body := range []string{
		`{"operation": "vumi_worker", "worker_name": "a", "worker_class": "c"}`,
		`{"operation": "stop_worker", "worker_name": "a"}`,
		`{"operation": "restart_worker", "worker_name": "a"}`,
		`{"operation": "reload"}`,
		`{"operation": "start_supervisor", "supervisor_name": "s"}`,
		`{"operation": "stop_supervisor", "supervisor": "s"}`,
	} {
		reply := d.Handle(context.Background(), []byte(body))
		if reply.OK || reply.Error == nil || reply.Error.Code != CodeConflict || !strings.Contains(reply.Error.Message, "shutting down") {
			t.Errorf("%s: %+v, want the refusal", body, reply)
		}
	}
	if calls := h.Calls(); fmt.Sprint(calls) != "[status classes]" {
		t.Errorf("host calls = %v, want only the read-only ones", calls)
	}
}
