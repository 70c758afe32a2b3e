package control

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/api"
)

func TestStartSupervisorPassesTheSpec(t *testing.T) {
	tests := []struct {
		name string
		body string
		want SupervisorSpec
	}{
		{"minimal", `{"operation": "start_supervisor", "supervisor_name": "campaign-a"}`,
			SupervisorSpec{Name: "campaign-a"}},
		{"every field", `{"operation": "start_supervisor", "supervisor_name": "campaign-a", "supervisor": "root/campaigns",
			"strategy": "rest_for_one", "intensity": 3, "period": "1m30s", "request_id": "r-1"}`,
			SupervisorSpec{Name: "campaign-a", Parent: "root/campaigns", Strategy: "rest_for_one", Intensity: 3, Period: 90 * time.Second}},
		{"in an envelope", envelope(`{"operation": "start_supervisor", "supervisor_name": "b", "strategy": "one_for_all"}`),
			SupervisorSpec{Name: "b", Strategy: "one_for_all"}},
		{"parent by name", `{"operation": "start_supervisor", "supervisor_name": "b", "supervisor": "campaign-a"}`,
			SupervisorSpec{Name: "b", Parent: "campaign-a"}},
		{"period in seconds", `{"operation": "start_supervisor", "supervisor_name": "b", "period": 90}`,
			SupervisorSpec{Name: "b", Period: 90 * time.Second}},
		{"period in fractional seconds", `{"operation": "start_supervisor", "supervisor_name": "b", "period": 0.25}`,
			SupervisorSpec{Name: "b", Period: 250 * time.Millisecond}},
		{"intensity 0 allows no restart", `{"operation": "start_supervisor", "supervisor_name": "b", "intensity": 0}`,
			SupervisorSpec{Name: "b", Intensity: -1}},
		{"intensity 5.0 is whole", `{"operation": "start_supervisor", "supervisor_name": "b", "intensity": 5.0}`,
			SupervisorSpec{Name: "b", Intensity: 5}},
		{"intensity maximum", `{"operation": "start_supervisor", "supervisor_name": "b", "intensity": 1e6}`,
			SupervisorSpec{Name: "b", Intensity: 1000000}},
		{"nulls are defaults", `{"operation": "start_supervisor", "supervisor_name": "b", "supervisor": null,
			"strategy": null, "intensity": null, "period": null}`,
			SupervisorSpec{Name: "b"}},
		{"worker fields are ignored", `{"operation": "start_supervisor", "supervisor_name": "b", "worker_name": "../x", "worker_class": ""}`,
			SupervisorSpec{Name: "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &fakeHost{}
			d, _ := newTestDispatcher(h)
			reply := d.Handle(context.Background(), []byte(tt.body))
			if !reply.OK {
				t.Fatalf("reply = %+v, want ok", reply.Error)
			}
			if len(h.supSpecs) != 1 || !reflect.DeepEqual(h.supSpecs[0], tt.want) {
				t.Errorf("specs = %+v, want [%+v]", h.supSpecs, tt.want)
			}
			if calls := h.Calls(); len(calls) != 1 {
				t.Errorf("calls = %q", calls)
			}
			if _, ok := reply.Result.(api.SupervisorResult); !ok {
				t.Errorf("result = %#v, want the Host's api.SupervisorResult", reply.Result)
			}
		})
	}
}

func TestStartSupervisorFromAGoRequest(t *testing.T) {
	// The HTTP API and the CLI build Requests themselves.
	h := &fakeHost{}
	d, _ := newTestDispatcher(h)
	req := &Request{Operation: OpStartSupervisor, SupervisorName: "s", Supervisor: "root", Strategy: "one_for_one",
		Intensity: json.RawMessage(`10`), Period: json.RawMessage(` "2m" `), RequestID: "r"}
	if r := d.Do(context.Background(), req); !r.OK || r.RequestID != "r" {
		t.Fatalf("reply = %+v", r)
	}
	want := SupervisorSpec{Name: "s", Parent: "root", Strategy: "one_for_one", Intensity: 10, Period: 2 * time.Minute}
	if len(h.supSpecs) != 1 || h.supSpecs[0] != want {
		t.Errorf("specs = %+v, want [%+v]", h.supSpecs, want)
	}
}

func TestStopSupervisorPassesThePath(t *testing.T) {
	for _, path := range []string{"campaign-a", "root/campaign-a", "root/campaign-a/", "/root/campaigns/a", "root", "SMPP campaigns"} {
		h := &fakeHost{}
		d, _ := newTestDispatcher(h)
		body, _ := json.Marshal(map[string]any{"operation": "stop_supervisor", "supervisor": path, "request_id": "r-5"})
		reply := d.Handle(context.Background(), body)
		if !reply.OK || reply.RequestID != "r-5" {
			t.Fatalf("%q: reply = %+v", path, reply)
		}
		if calls := h.Calls(); len(calls) != 1 || calls[0] != "stop_supervisor "+path {
			t.Errorf("%q: calls = %q", path, calls)
		}
		got, _ := json.Marshal(reply.Result)
		if !strings.Contains(string(got), `"action":"removed"`) || !strings.Contains(string(got), `"removed":["w1",`) {
			t.Errorf("%q: result = %s", path, got)
		}
	}
}

func TestSupervisorOpsRejectBadInput(t *testing.T) {
	const start = `{"operation": "start_supervisor", "request_id": "r-1", `
	tests := []struct {
		name  string
		body  string
		code  Code
		field string
		msg   string // part of the message
	}{
		// start_supervisor: the name.
		{"no name", start + `"strategy": "one_for_one"}`, CodeInvalidConfig, "supervisor_name", "supervisor_name is missing: name the supervisor"},
		{"empty name", start + `"supervisor_name": ""}`, CodeInvalidConfig, "supervisor_name", "missing"},
		{"path traversal", start + `"supervisor_name": "../../bin/sh"}`, CodeInvalidConfig, "supervisor_name", "not a valid name"},
		{"name with slash", start + `"supervisor_name": "root/a"}`, CodeInvalidConfig, "supervisor_name", `must not contain "/"`},
		{"name dot dot", start + `"supervisor_name": ".."}`, CodeInvalidConfig, "supervisor_name", "not a valid name"},
		{"name control char", start + `"supervisor_name": "a\u001b[31m"}`, CodeInvalidConfig, "supervisor_name", "control characters"},
		{"name too long", start + `"supervisor_name": "` + strings.Repeat("x", 5000) + `"}`, CodeInvalidConfig, "supervisor_name", "at most 200 bytes"},
		{"name wrong type", start + `"supervisor_name": ["a"]}`, CodeMalformed, "supervisor_name", "must be a string"},
		// The parent.
		{"bad parent", start + `"supervisor_name": "a", "supervisor": "root/../x"}`, CodeInvalidConfig, "supervisor", "not a supervisor path"},
		{"empty parent segment", start + `"supervisor_name": "a", "supervisor": "root//x"}`, CodeInvalidConfig, "supervisor", "not a supervisor path"},
		{"parent wrong type", start + `"supervisor_name": "a", "supervisor": 1}`, CodeMalformed, "supervisor", "must be a string"},
		// The strategy.
		{"unknown strategy", start + `"supervisor_name": "a", "strategy": "all_for_one"}`, CodeInvalidConfig, "strategy",
			`strategy "all_for_one" is not a supervisor strategy: use "one_for_one", "one_for_all" or "rest_for_one"`},
		{"misspelt strategy", start + `"supervisor_name": "a", "strategy": "one_for_al"}`, CodeInvalidConfig, "strategy", `did you mean "one_for_all"?`},
		{"strategy in capitals", start + `"supervisor_name": "a", "strategy": "ONE_FOR_ONE"}`, CodeInvalidConfig, "strategy", "not a supervisor strategy"},
		{"strategy wrong type", start + `"supervisor_name": "a", "strategy": 1}`, CodeMalformed, "strategy", "must be a string"},
		// The intensity.
		{"intensity string", start + `"supervisor_name": "a", "intensity": "5"}`, CodeMalformed, "intensity", `"intensity" must be a whole number, not a string`},
		{"intensity object", start + `"supervisor_name": "a", "intensity": {}}`, CodeMalformed, "intensity", "not an object"},
		{"intensity fraction", start + `"supervisor_name": "a", "intensity": 2.5}`, CodeInvalidConfig, "intensity", "whole number from 0 to 1000000, not 2.5"},
		{"intensity negative", start + `"supervisor_name": "a", "intensity": -1}`, CodeInvalidConfig, "intensity", "not -1"},
		{"intensity too large", start + `"supervisor_name": "a", "intensity": 1000001}`, CodeInvalidConfig, "intensity", "from 0 to 1000000"},
		{"intensity out of float range", start + `"supervisor_name": "a", "intensity": 1e400}`, CodeInvalidConfig, "intensity", "whole number"},
		// The period.
		{"period not a duration", start + `"supervisor_name": "a", "period": "soon"}`, CodeInvalidConfig, "period", `period "soon" is not a duration`},
		{"period without unit", start + `"supervisor_name": "a", "period": "30"}`, CodeInvalidConfig, "period", `such as "30s" or "1m30s", or a number of seconds`},
		{"period zero string", start + `"supervisor_name": "a", "period": "0s"}`, CodeInvalidConfig, "period", "greater than zero"},
		{"period negative string", start + `"supervisor_name": "a", "period": "-5s"}`, CodeInvalidConfig, "period", "greater than zero"},
		{"period zero", start + `"supervisor_name": "a", "period": 0}`, CodeInvalidConfig, "period", "greater than zero, not 0"},
		{"period negative", start + `"supervisor_name": "a", "period": -30}`, CodeInvalidConfig, "period", "greater than zero"},
		{"period below a nanosecond", start + `"supervisor_name": "a", "period": 1e-12}`, CodeInvalidConfig, "period", "less than a nanosecond"},
		{"period too long", start + `"supervisor_name": "a", "period": 1e12}`, CodeInvalidConfig, "period", "too long"},
		{"period out of float range", start + `"supervisor_name": "a", "period": 1e400}`, CodeInvalidConfig, "period", "too long"},
		{"period overflowing string", start + `"supervisor_name": "a", "period": "999999999999h"}`, CodeInvalidConfig, "period", "not a duration"},
		{"period bool", start + `"supervisor_name": "a", "period": true}`, CodeMalformed, "period", "not a boolean"},
		{"period array", start + `"supervisor_name": "a", "period": ["30s"]}`, CodeMalformed, "period", "not an array"},
		// stop_supervisor.
		{"stop without supervisor", `{"operation": "stop_supervisor", "request_id": "r-1"}`, CodeInvalidConfig, "supervisor",
			"supervisor is missing: give the path or name of the supervisor to stop"},
		{"stop empty supervisor", `{"operation": "stop_supervisor", "supervisor": "", "request_id": "r-1"}`, CodeInvalidConfig, "supervisor", "missing"},
		{"stop slash", `{"operation": "stop_supervisor", "supervisor": "/", "request_id": "r-1"}`, CodeInvalidConfig, "supervisor", "missing"},
		{"stop null", `{"operation": "stop_supervisor", "supervisor": null, "request_id": "r-1"}`, CodeInvalidConfig, "supervisor", "missing"},
		{"stop traversal", `{"operation": "stop_supervisor", "supervisor": "root/../../etc", "request_id": "r-1"}`, CodeInvalidConfig, "supervisor", "not a supervisor path"},
		{"stop control char", `{"operation": "stop_supervisor", "supervisor": "root/a\nlevel=ERROR", "request_id": "r-1"}`, CodeInvalidConfig, "supervisor", "not a supervisor path"},
		{"stop wrong type", `{"operation": "stop_supervisor", "supervisor": {"path": "a"}, "request_id": "r-1"}`, CodeMalformed, "supervisor", "must be a string"},
		{"stop by worker_name only", `{"operation": "stop_supervisor", "worker_name": "a", "request_id": "r-1"}`, CodeInvalidConfig, "supervisor", "missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &fakeHost{}
			d, logs := newTestDispatcher(h)
			reply := d.Handle(context.Background(), []byte(tt.body))
			if reply.OK || reply.Error == nil {
				t.Fatalf("reply = %+v, want an error", reply)
			}
			if reply.Error.Code != tt.code {
				t.Errorf("code = %s, want %s (%v)", reply.Error.Code, tt.code, reply.Error)
			}
			if len(reply.Error.Details) == 0 || reply.Error.Details[0].Attribute != tt.field {
				t.Errorf("details = %+v, want attribute %q", reply.Error.Details, tt.field)
			}
			if !strings.Contains(reply.Error.Message, tt.msg) {
				t.Errorf("message = %q, want it to contain %q", reply.Error.Message, tt.msg)
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
			// A newline from the network must not start a forged log line.
			for _, l := range strings.Split(logs.String(), "\n") {
				if strings.HasPrefix(l, "level=ERROR") {
					t.Errorf("forged log line: %q", l)
				}
			}
		})
	}
}

func TestSupervisorOpsValidateGoRequests(t *testing.T) {
	// Requests built in Go (HTTP API, CLI) get the same checks, the JSON
	// types included.
	tests := []struct {
		name  string
		req   Request
		code  Code
		field string
	}{
		{"intensity string", Request{Operation: OpStartSupervisor, SupervisorName: "a", Intensity: json.RawMessage(`"5"`)}, CodeMalformed, "intensity"},
		{"intensity not JSON", Request{Operation: OpStartSupervisor, SupervisorName: "a", Intensity: json.RawMessage(`5x`)}, CodeMalformed, "intensity"},
		{"intensity fraction", Request{Operation: OpStartSupervisor, SupervisorName: "a", Intensity: json.RawMessage(`0.5`)}, CodeInvalidConfig, "intensity"},
		{"period bool", Request{Operation: OpStartSupervisor, SupervisorName: "a", Period: json.RawMessage(`true`)}, CodeMalformed, "period"},
		{"period not JSON", Request{Operation: OpStartSupervisor, SupervisorName: "a", Period: json.RawMessage(`30s`)}, CodeMalformed, "period"},
		{"period zero", Request{Operation: OpStartSupervisor, SupervisorName: "a", Period: json.RawMessage(`"0"`)}, CodeInvalidConfig, "period"},
		{"no name", Request{Operation: OpStartSupervisor, Strategy: "one_for_all"}, CodeInvalidConfig, "supervisor_name"},
		{"bad strategy", Request{Operation: OpStartSupervisor, SupervisorName: "a", Strategy: "random"}, CodeInvalidConfig, "strategy"},
		{"stop nothing", Request{Operation: OpStopSupervisor}, CodeInvalidConfig, "supervisor"},
		{"stop slashes", Request{Operation: OpStopSupervisor, Supervisor: "//"}, CodeInvalidConfig, "supervisor"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &fakeHost{}
			d, _ := newTestDispatcher(h)
			reply := d.Do(context.Background(), &tt.req)
			if reply.OK || reply.Error == nil || reply.Error.Code != tt.code {
				t.Fatalf("reply = %+v, want a %s error", reply.Error, tt.code)
			}
			if len(reply.Error.Details) == 0 || reply.Error.Details[0].Attribute != tt.field {
				t.Errorf("details = %+v, want attribute %q", reply.Error.Details, tt.field)
			}
			if calls := h.Calls(); len(calls) != 0 {
				t.Errorf("host called for a bad request: %q", calls)
			}
		})
	}
}

func TestSupervisorOpsHostErrors(t *testing.T) {
	conflict := Errorf(CodeConflict, `supervisor "root/a" exists with different settings`)
	for _, body := range []string{
		`{"operation": "start_supervisor", "supervisor_name": "a", "request_id": "r-3"}`,
		`{"operation": "stop_supervisor", "supervisor": "a", "request_id": "r-3"}`,
	} {
		h := &fakeHost{err: conflict}
		d, _ := newTestDispatcher(h)
		if reply := d.Handle(context.Background(), []byte(body)); reply.OK || reply.Error != conflict || reply.RequestID != "r-3" || reply.Result != nil {
			t.Errorf("%s: reply = %+v, want the host's conflict", body, reply)
		}
		h = &fakeHost{err: errors.New("write /var/supervisors.json: no space left on device")}
		d, logs := newTestDispatcher(h)
		reply := d.Handle(context.Background(), []byte(body))
		if reply.OK || reply.Error.Code != CodeInternal || reply.Error.Message != internalMessage {
			t.Errorf("%s: reply = %+v, want a generic internal error", body, reply.Error)
		}
		for _, s := range []string{"[ERROR]", "no space left on device", "request_id=r-3", "supervisor"} {
			if !strings.Contains(logs.String(), s) {
				t.Errorf("%s: log lacks %q:\n%s", body, s, logs)
			}
		}
	}
}

func TestSupervisorOpsAreLogged(t *testing.T) {
	h := &fakeHost{}
	d, logs := newTestDispatcher(h)
	d.Handle(context.Background(), []byte(`{"operation": "start_supervisor", "supervisor_name": "campaign-a", "supervisor": "root", "request_id": "r-4"}`))
	d.Handle(context.Background(), []byte(`{"operation": "stop_supervisor", "supervisor": "root/campaign-a"}`))
	out := logs.String()
	for _, s := range []string{
		"[INFO]  control request done: operation=start_supervisor supervisor_name=campaign-a supervisor=root request_id=r-4",
		"[INFO]  control request done: operation=stop_supervisor supervisor=root/campaign-a",
	} {
		if !strings.Contains(out, s) {
			t.Errorf("log lacks %q:\n%s", s, out)
		}
	}
}
