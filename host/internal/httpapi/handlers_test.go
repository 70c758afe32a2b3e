package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/control"
)

// fakeDoer records the requests it gets and answers with reply (ok with no
// result when reply is nil).
type fakeDoer struct {
	mu    sync.Mutex
	reqs  []control.Request
	reply func(*control.Request) control.Reply
}

func (f *fakeDoer) Do(_ context.Context, req *control.Request) control.Reply {
	f.mu.Lock()
	f.reqs = append(f.reqs, *req)
	f.mu.Unlock()
	if f.reply != nil {
		return f.reply(req)
	}
	return control.Reply{OK: true, RequestID: req.RequestID}
}

func (f *fakeDoer) requests() []control.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]control.Request(nil), f.reqs...)
}

// serve runs one request through a Server's handler, as a program would
// send it: with the header RequestHeader and, with a body, Content-Type
// application/json, unless header sets them (to "" to leave them out).
func serve(t *testing.T, s *Server, method, path, body string, header ...string) (*httptest.ResponseRecorder, control.Reply) {
	t.Helper()
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	r.Header.Set(RequestHeader, "1")
	if body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] == "" {
			r.Header.Del(header[i])
			continue
		}
		r.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, r)
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q, want application/json", method, path, ct)
	}
	var rep control.Reply
	if err := json.Unmarshal(w.Body.Bytes(), &rep); err != nil {
		t.Fatalf("%s %s: the answer is not a JSON reply: %v\n%s", method, path, err, w.Body)
	}
	return w, rep
}

func TestRoutesMapToRequests(t *testing.T) {
	tests := []struct {
		name         string
		method, path string
		body         string
		want         control.Request
	}{
		{"status", "GET", "/v1/status", "", control.Request{Operation: control.OpStatus}},
		{"classes", "GET", "/v1/classes", "", control.Request{Operation: control.OpListClasses}},
		{"start", "POST", "/v1/workers",
			`{"name":"w1","class":"hello","config":{"port":"2773","tags":["a"]},"supervisor":"root/a","replace":true,"request_id":"r1"}`,
			control.Request{Operation: control.OpStartWorker, WorkerName: "w1", WorkerClass: "hello",
				WorkerConfig: json.RawMessage(`{"port":"2773","tags":["a"]}`), Supervisor: "root/a", Replace: true, RequestID: "r1"}},
		{"start minimal", "POST", "/v1/workers", `{"name":"w1","class":"hello"}`,
			control.Request{Operation: control.OpStartWorker, WorkerName: "w1", WorkerClass: "hello"}},
		{"cluster start", "POST", "/v1/workers", `{"name":"w1","class":"hello","cluster":true,"constraints":{"zone":"a","disk":"ssd"}}`,
			control.Request{Operation: control.OpStartWorker, WorkerName: "w1", WorkerClass: "hello",
				Cluster: true, Constraints: map[string]string{"zone": "a", "disk": "ssd"}}},
		{"cluster status", "GET", "/v1/cluster", "", control.Request{Operation: control.OpClusterStatus}},
		{"drain", "POST", "/v1/cluster/hosts/host-b/drain", "", control.Request{Operation: control.OpDrain, Host: "host-b"}},
		{"undrain", "POST", "/v1/cluster/hosts/host-b/undrain", "", control.Request{Operation: control.OpUndrain, Host: "host-b"}},
		{"drain escaped host", "POST", "/v1/cluster/hosts/rack%201/drain", "", control.Request{Operation: control.OpDrain, Host: "rack 1"}},
		{"stop", "DELETE", "/v1/workers/w1", "", control.Request{Operation: control.OpStopWorker, WorkerName: "w1"}},
		{"stop escaped name", "DELETE", "/v1/workers/SMPP%20Transport%20for%20account1", "",
			control.Request{Operation: control.OpStopWorker, WorkerName: "SMPP Transport for account1"}},
		{"restart", "POST", "/v1/workers/w1/restart", "", control.Request{Operation: control.OpRestartWorker, WorkerName: "w1"}},
		{"control bare payload", "POST", "/v1/control",
			`{"operation":"vumi_worker","worker_name":"w2","worker_class":"c","worker_config":{"a":"1"},"request_id":"x"}`,
			control.Request{Operation: control.OpStartWorker, WorkerName: "w2", WorkerClass: "c",
				WorkerConfig: json.RawMessage(`{"a":"1"}`), RequestID: "x"}},
		{"start supervisor", "POST", "/v1/supervisors",
			`{"supervisor_name":"campaign-a","supervisor":"root","strategy":"one_for_all","intensity":3,"period":"1m30s","request_id":"r2"}`,
			control.Request{Operation: control.OpStartSupervisor, SupervisorName: "campaign-a", Supervisor: "root",
				Strategy: "one_for_all", Intensity: json.RawMessage(`3`), Period: json.RawMessage(`"1m30s"`), RequestID: "r2"}},
		{"start supervisor minimal", "POST", "/v1/supervisors", `{"supervisor_name":"campaign-a"}`,
			control.Request{Operation: control.OpStartSupervisor, SupervisorName: "campaign-a"}},
		{"start supervisor period in seconds", "POST", "/v1/supervisors", `{"supervisor_name":"b","period":90}`,
			control.Request{Operation: control.OpStartSupervisor, SupervisorName: "b", Period: json.RawMessage(`90`)}},
		{"start supervisor nulls", "POST", "/v1/supervisors", `{"supervisor_name":"b","supervisor":null,"strategy":null,"intensity":null,"period":null}`,
			control.Request{Operation: control.OpStartSupervisor, SupervisorName: "b"}},
		{"stop supervisor by name", "DELETE", "/v1/supervisors/campaign-a", "",
			control.Request{Operation: control.OpStopSupervisor, Supervisor: "campaign-a"}},
		{"stop supervisor by path", "DELETE", "/v1/supervisors/root/campaign-a", "",
			control.Request{Operation: control.OpStopSupervisor, Supervisor: "root/campaign-a"}},
		{"stop supervisor escaped", "DELETE", "/v1/supervisors/root/SMPP%20campaigns%2Fa", "",
			control.Request{Operation: control.OpStopSupervisor, Supervisor: "root/SMPP campaigns/a"}},
		{"stop supervisor empty", "DELETE", "/v1/supervisors/", "",
			control.Request{Operation: control.OpStopSupervisor}},
		{"control start supervisor", "POST", "/v1/control",
			`{"operation":"start_supervisor","supervisor_name":"c","intensity":0}`,
			control.Request{Operation: control.OpStartSupervisor, SupervisorName: "c", Intensity: json.RawMessage(`0`)}},
		{"control envelope", "POST", "/v1/control",
			`{"message_version":"20110707","message_type":"control","source_name":"t","source_id":"t","timestamp":[2024,1,2,3,4,5],"payload":{"operation":"stop_worker","worker_name":"w3"}}`,
			control.Request{Operation: control.OpStopWorker, WorkerName: "w3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &fakeDoer{}
			w, rep := serve(t, New(Options{Doer: d}), tt.method, tt.path, tt.body)
			if w.Code != http.StatusOK || !rep.OK {
				t.Fatalf("got %d %s", w.Code, w.Body)
			}
			reqs := d.requests()
			if len(reqs) != 1 {
				t.Fatalf("Doer got %d requests, want 1", len(reqs))
			}
			if !reflect.DeepEqual(reqs[0], tt.want) {
				t.Errorf("request\n got %+v\nwant %+v", reqs[0], tt.want)
			}
		})
	}
}

func TestErrorCodesMapToStatuses(t *testing.T) {
	tests := map[control.Code]int{
		control.CodeMalformed:        400,
		control.CodeUnknownOperation: 400,
		control.CodeUnknownClass:     422,
		control.CodeInvalidConfig:    422,
		control.CodeConflict:         409,
		control.CodeNotFound:         404,
		control.CodeUnauthorized:     401,
		control.CodeInternal:         500,
	}
	for code, want := range tests {
		d := &fakeDoer{reply: func(r *control.Request) control.Reply {
			return control.Reply{Error: &control.Error{Code: code, Message: "m",
				Details: []control.Detail{{Attribute: "port", Summary: "s"}}}, RequestID: r.RequestID}
		}}
		w, rep := serve(t, New(Options{Doer: d}), "POST", "/v1/workers", `{"name":"w","class":"c","request_id":"r9"}`)
		if w.Code != want {
			t.Errorf("%s: HTTP %d, want %d", code, w.Code, want)
		}
		if rep.OK || rep.Error == nil || rep.Error.Code != code || rep.RequestID != "r9" ||
			len(rep.Error.Details) != 1 || rep.Error.Details[0].Attribute != "port" {
			t.Errorf("%s: reply %s", code, w.Body)
		}
	}
	// A failed reply without an error is a bug behind the Doer: internal.
	d := &fakeDoer{reply: func(*control.Request) control.Reply { return control.Reply{} }}
	w, rep := serve(t, New(Options{Doer: d}), "GET", "/v1/status", "")
	if w.Code != 500 || rep.Error == nil || rep.Error.Code != control.CodeInternal {
		t.Errorf("empty failure: %d %s", w.Code, w.Body)
	}
}

func TestAuthentication(t *testing.T) {
	const token = "s3cret-token-0123456789"
	d := &fakeDoer{}
	s := New(Options{Doer: d, Token: token})
	routes := []struct{ method, path, body string }{
		{"GET", "/v1/status", ""},
		{"GET", "/v1/classes", ""},
		{"POST", "/v1/control", `{"operation":"status"}`},
		{"POST", "/v1/workers", `{"name":"w","class":"c"}`},
		{"DELETE", "/v1/workers/w", ""},
		{"POST", "/v1/workers/w/restart", ""},
		{"POST", "/v1/supervisors", `{"supervisor_name":"s"}`},
		{"DELETE", "/v1/supervisors/root/s", ""},
		{"GET", "/v1/cluster", ""},
		{"POST", "/v1/cluster/hosts/h/drain", ""},
		{"POST", "/v1/cluster/hosts/h/undrain", ""},
		{"GET", "/nowhere", ""},
	}
	for _, r := range routes {
		for _, hdr := range [][]string{nil, {"Authorization", "Bearer wrong"}, {"Authorization", token},
			{"Authorization", "Basic " + token}, {"Authorization", "Bearer " + token + "x"}} {
			w, rep := serve(t, s, r.method, r.path, r.body, hdr...)
			if w.Code != 401 || rep.Error == nil || rep.Error.Code != control.CodeUnauthorized {
				t.Errorf("%s %s with %q: %d %s", r.method, r.path, hdr, w.Code, w.Body)
			}
			if !strings.HasPrefix(w.Header().Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s %s: no WWW-Authenticate header", r.method, r.path)
			}
			if strings.Contains(w.Body.String(), token) {
				t.Errorf("the answer repeats the token: %s", w.Body)
			}
		}
	}
	if n := len(d.requests()); n != 0 {
		t.Fatalf("the Doer got %d unauthenticated requests", n)
	}
	for _, r := range routes[:len(routes)-1] {
		w, _ := serve(t, s, r.method, r.path, r.body, "Authorization", "bearer  "+token)
		if w.Code != 200 {
			t.Errorf("%s %s with the token: %d %s", r.method, r.path, w.Code, w.Body)
		}
	}
	if n := len(d.requests()); n != len(routes)-1 {
		t.Errorf("the Doer got %d requests, want %d", n, len(routes)-1)
	}
	w, rep := serve(t, s, "GET", "/healthz", "")
	if w.Code != 200 || !rep.OK {
		t.Errorf("/healthz without the token: %d %s", w.Code, w.Body)
	}
}

func TestHealthzDoesNotCallTheDoer(t *testing.T) {
	d := &fakeDoer{}
	w, rep := serve(t, New(Options{Doer: d}), "GET", "/healthz", "")
	if w.Code != 200 || !rep.OK || strings.TrimSpace(w.Body.String()) != `{"ok":true}` {
		t.Errorf("got %d %s", w.Code, w.Body)
	}
	if len(d.requests()) != 0 {
		t.Error("/healthz called the Doer")
	}
}

func TestBodyLimit(t *testing.T) {
	d := &fakeDoer{}
	s := New(Options{Doer: d})
	pad := strings.Repeat(" ", MaxBodyBytes)
	for _, path := range []string{"/v1/control", "/v1/workers", "/v1/supervisors"} {
		w, rep := serve(t, s, "POST", path, `{"operation":"status"}`+pad)
		if w.Code != http.StatusRequestEntityTooLarge || rep.Error == nil || rep.Error.Code != control.CodeMalformed ||
			!strings.Contains(rep.Error.Message, "larger than") {
			t.Errorf("%s: %d %s", path, w.Code, w.Body)
		}
	}
	// Exactly the limit is fine.
	body := `{"operation":"status"}`
	w, _ := serve(t, s, "POST", "/v1/control", body+strings.Repeat(" ", MaxBodyBytes-len(body)))
	if w.Code != 200 {
		t.Errorf("a body of MaxBodyBytes: %d %s", w.Code, w.Body)
	}
	if n := len(d.requests()); n != 1 {
		t.Errorf("the Doer got %d requests, want 1", n)
	}
}

func TestMalformedBodies(t *testing.T) {
	tests := []struct {
		name, path, body string
		code             control.Code
		status           int
		attr, inMessage  string
	}{
		{"control not JSON", "/v1/control", `{"operation":`, control.CodeMalformed, 400, "", "JSON"},
		{"control array", "/v1/control", `[1]`, control.CodeMalformed, 400, "", "object"},
		{"control unknown op", "/v1/control", `{"operation":"dance"}`, control.CodeUnknownOperation, 400, "operation", "dance"},
		{"start empty", "/v1/workers", ``, control.CodeMalformed, 400, "", "empty"},
		{"start not JSON", "/v1/workers", `{"name":`, control.CodeMalformed, 400, "", "not valid JSON"},
		{"start array", "/v1/workers", `["w"]`, control.CodeMalformed, 400, "", "JSON object"},
		{"start wrong type", "/v1/workers", `{"name":3,"class":"c"}`, control.CodeMalformed, 400, "name", `"name" must be a string`},
		{"start replace type", "/v1/workers", `{"name":"w","class":"c","replace":"yes"}`, control.CodeMalformed, 400, "replace", "true or false"},
		{"start unknown member", "/v1/workers", `{"name":"w","class":"c","confg":{}}`, control.CodeMalformed, 400, "confg", `unknown member "confg"`},
		{"start cluster type", "/v1/workers", `{"name":"w","class":"c","cluster":"yes"}`, control.CodeMalformed, 400, "cluster", `"cluster" must be true or false`},
		{"start constraints list", "/v1/workers", `{"name":"w","class":"c","constraints":["zone=a"]}`, control.CodeMalformed, 400, "constraints", `"constraints" must be a JSON object`},
		{"start constraint number", "/v1/workers", `{"name":"w","class":"c","constraints":{"zone":1}}`, control.CodeMalformed, 400, "", `must be a string`},
		{"start control shape", "/v1/workers", `{"worker_name":"w"}`, control.CodeMalformed, 400, "worker_name", "POST /v1/control"},
		{"start two values", "/v1/workers", `{"name":"w","class":"c"} {}`, control.CodeMalformed, 400, "", "after top-level value"},
		{"supervisor empty", "/v1/supervisors", ``, control.CodeMalformed, 400, "", `send a JSON object with "supervisor_name"`},
		{"supervisor not JSON", "/v1/supervisors", `{"supervisor_name":`, control.CodeMalformed, 400, "", "not valid JSON"},
		{"supervisor array", "/v1/supervisors", `["s"]`, control.CodeMalformed, 400, "", "JSON object"},
		{"supervisor name type", "/v1/supervisors", `{"supervisor_name":1}`, control.CodeMalformed, 400, "supervisor_name", `"supervisor_name" must be a string`},
		{"supervisor strategy type", "/v1/supervisors", `{"supervisor_name":"s","strategy":true}`, control.CodeMalformed, 400, "strategy", `"strategy" must be a string`},
		{"supervisor unknown member", "/v1/supervisors", `{"supervisor_name":"s","intensty":3}`, control.CodeMalformed, 400, "intensty",
			`unknown member "intensty": start_supervisor takes "supervisor_name", "supervisor", "strategy", "intensity", "period" and "request_id"`},
		{"supervisor worker shape", "/v1/supervisors", `{"name":"s"}`, control.CodeMalformed, 400, "name", `unknown member "name"`},
		{"supervisor control shape", "/v1/supervisors", `{"operation":"start_supervisor","supervisor_name":"s"}`, control.CodeMalformed, 400, "operation", "POST /v1/control"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &fakeDoer{}
			w, rep := serve(t, New(Options{Doer: d}), "POST", tt.path, tt.body)
			if w.Code != tt.status || rep.OK || rep.Error == nil || rep.Error.Code != tt.code {
				t.Fatalf("got %d %s", w.Code, w.Body)
			}
			if !strings.Contains(rep.Error.Message, tt.inMessage) {
				t.Errorf("message %q lacks %q", rep.Error.Message, tt.inMessage)
			}
			if tt.attr != "" && (len(rep.Error.Details) == 0 || rep.Error.Details[0].Attribute != tt.attr) {
				t.Errorf("details %+v do not name %q", rep.Error.Details, tt.attr)
			}
			if len(d.requests()) != 0 {
				t.Error("the Doer was called")
			}
		})
	}
}

func TestMethodNotAllowedAndUnknownPaths(t *testing.T) {
	tests := []struct{ method, path, allow string }{
		{"GET", "/v1/control", "POST"},
		{"POST", "/v1/status", "GET"},
		{"DELETE", "/v1/classes", "GET"},
		{"GET", "/v1/workers", "POST"},
		{"PUT", "/v1/workers/w", "DELETE"},
		{"GET", "/v1/workers/w/restart", "POST"},
		{"POST", "/healthz", "GET"},
		{"GET", "/v1/supervisors", "POST"},
		{"DELETE", "/v1/supervisors", "POST"},
		{"GET", "/v1/supervisors/root/a", "DELETE"},
		{"POST", "/v1/supervisors/a", "DELETE"},
		{"POST", "/v1/cluster", "GET"},
		{"GET", "/v1/cluster/hosts/h/drain", "POST"},
		{"DELETE", "/v1/cluster/hosts/h/undrain", "POST"},
	}
	d := &fakeDoer{}
	s := New(Options{Doer: d})
	for _, tt := range tests {
		w, rep := serve(t, s, tt.method, tt.path, "")
		if w.Code != 405 || w.Header().Get("Allow") != tt.allow || rep.Error == nil || rep.Error.Code != control.CodeMalformed {
			t.Errorf("%s %s: %d Allow %q %s", tt.method, tt.path, w.Code, w.Header().Get("Allow"), w.Body)
		}
	}
	for _, p := range []string{"/", "/v2/status", "/v1/workers/w/stop"} {
		w, rep := serve(t, s, "GET", p, "")
		if w.Code != 404 || rep.Error == nil || rep.Error.Code != control.CodeNotFound {
			t.Errorf("GET %s: %d %s", p, w.Code, w.Body)
		}
	}
	if len(d.requests()) != 0 {
		t.Error("the Doer was called")
	}
}

// handlerDoer also decodes bodies itself, as control.Dispatcher does.
type handlerDoer struct {
	fakeDoer
	bodies []string
}

func (h *handlerDoer) Handle(_ context.Context, body []byte) control.Reply {
	h.bodies = append(h.bodies, string(body))
	return control.Reply{OK: true, RequestID: "from-handle"}
}

func TestControlUsesHandleWhenTheDoerHasIt(t *testing.T) {
	h := &handlerDoer{}
	body := `{"operation":"status","request_id":"r"}`
	_, rep := serve(t, New(Options{Doer: h}), "POST", "/v1/control", body)
	if rep.RequestID != "from-handle" || len(h.bodies) != 1 || h.bodies[0] != body || len(h.requests()) != 0 {
		t.Errorf("reply %+v, bodies %q, requests %v", rep, h.bodies, h.requests())
	}
}

// fakeHost is a control.Host for a test through a real Dispatcher.
type fakeHost struct{ control.Host }

func (fakeHost) StopWorker(_ context.Context, name string) error {
	return control.Errorf(control.CodeNotFound, "no worker %q", name)
}

func (fakeHost) StartSupervisor(_ context.Context, spec control.SupervisorSpec) (api.SupervisorResult, error) {
	if spec.Name == "taken" {
		return api.SupervisorResult{}, control.Errorf(control.CodeConflict, "supervisor %q exists with different settings", "root/taken")
	}
	return api.SupervisorResult{Supervisor: "root/" + spec.Name, Action: "started", State: "running"}, nil
}

func (fakeHost) StopSupervisor(_ context.Context, path string) (api.SupervisorResult, error) {
	if path != "root/campaign-a" {
		return api.SupervisorResult{}, control.Errorf(control.CodeNotFound, "supervisor %q not found", path)
	}
	return api.SupervisorResult{Supervisor: path, Action: "removed", State: "stopped", Removed: []string{"a1", path}}, nil
}

func TestThroughTheDispatcher(t *testing.T) {
	s := New(Options{Doer: control.NewDispatcher(fakeHost{}, nil)})
	w, rep := serve(t, s, "POST", "/v1/control", `{"payload":{"operation":"stop_worker","worker_name":"w","request_id":"r1"}}`)
	if w.Code != 404 || rep.Error == nil || rep.Error.Code != control.CodeNotFound || rep.RequestID != "r1" {
		t.Errorf("stop: %d %s", w.Code, w.Body)
	}
	w, rep = serve(t, s, "POST", "/v1/control", `{"operation":"nope","request_id":"r2"}`)
	if w.Code != 400 || rep.Error == nil || rep.Error.Code != control.CodeUnknownOperation || rep.RequestID != "r2" {
		t.Errorf("unknown operation: %d %s", w.Code, w.Body)
	}
	w, rep = serve(t, s, "POST", "/v1/workers", `{"name":"","class":"c"}`)
	if w.Code != 422 || rep.Error == nil || rep.Error.Code != control.CodeInvalidConfig {
		t.Errorf("start without a name: %d %s", w.Code, w.Body)
	}
}

func TestRequestsAreLoggedWithoutBodies(t *testing.T) {
	var buf bytes.Buffer
	logger := hclog.New(&hclog.LoggerOptions{Output: &buf, Level: hclog.Debug})
	const token = "s3cret-token-0123456789"
	s := New(Options{Doer: &fakeDoer{}, Logger: logger, Token: token})
	serve(t, s, "POST", "/v1/workers", `{"name":"w","class":"c","config":{"password":"hunter2"}}`, "Authorization", "Bearer "+token)
	out := buf.String()
	for _, want := range []string{"http request", "method=POST", "path=/v1/workers", "status=200", "duration="} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	for _, secret := range []string{"hunter2", token} {
		if strings.Contains(out, secret) {
			t.Errorf("log holds %q:\n%s", secret, out)
		}
	}
}

func TestSupervisorsThroughTheDispatcher(t *testing.T) {
	s := New(Options{Doer: control.NewDispatcher(fakeHost{}, nil)})
	tests := []struct {
		name, method, path, body string
		status                   int
		want                     string // the answer, or part of it
	}{
		{"start", "POST", "/v1/supervisors", `{"supervisor_name":"campaign-a","strategy":"one_for_all","intensity":3,"period":30,"request_id":"r1"}`,
			200, `{"ok":true,"result":{"supervisor":"root/campaign-a","action":"started","state":"running"},"request_id":"r1"}`},
		{"conflict", "POST", "/v1/supervisors", `{"supervisor_name":"taken"}`, 409, `"code":"conflict"`},
		{"no name", "POST", "/v1/supervisors", `{"strategy":"one_for_one","request_id":"r2"}`, 422,
			`"code":"invalid_config","message":"supervisor_name is missing: name the supervisor","details":[{"attribute":"supervisor_name"`},
		{"bad strategy", "POST", "/v1/supervisors", `{"supervisor_name":"s","strategy":"all"}`, 422, `"attribute":"strategy"`},
		{"intensity string", "POST", "/v1/supervisors", `{"supervisor_name":"s","intensity":"5"}`, 400,
			`"code":"malformed","message":"\"intensity\" must be a whole number, not a string"`},
		{"intensity fraction", "POST", "/v1/supervisors", `{"supervisor_name":"s","intensity":1.5}`, 422, `"attribute":"intensity"`},
		{"period bool", "POST", "/v1/supervisors", `{"supervisor_name":"s","period":true}`, 400, `"attribute":"period"`},
		{"period zero", "POST", "/v1/supervisors", `{"supervisor_name":"s","period":"0s"}`, 422, `period must be greater than zero`},
		{"stop", "DELETE", "/v1/supervisors/root/campaign-a", "", 200,
			`{"ok":true,"result":{"supervisor":"root/campaign-a","action":"removed","state":"stopped","removed":["a1","root/campaign-a"]}}`},
		{"stop unknown", "DELETE", "/v1/supervisors/ghost", "", 404, `supervisor \"ghost\" not found`},
		{"stop nothing", "DELETE", "/v1/supervisors/", "", 422, `"attribute":"supervisor"`},
		{"stop traversal", "DELETE", "/v1/supervisors/root/%2E%2E/x", "", 422, `not a supervisor path`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, _ := serve(t, s, tt.method, tt.path, tt.body)
			if w.Code != tt.status || !strings.Contains(w.Body.String(), tt.want) {
				t.Errorf("got %d %s\nwant %d with %s", w.Code, w.Body, tt.status, tt.want)
			}
		})
	}
}
