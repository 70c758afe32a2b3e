package control

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// designExample is the design note's example payload.
const designExample = `{"operation": "vumi_worker", "worker_name": "SMPP Transport for account1",
 "worker_class": "vumi.workers.smpp.transport.SMPPTransport",
 "worker_config": {"host": "smpp.host.com", "port": "2773", "username": "account1",
                   "password": "password", "system_id": "abc"}}`

const designConfig = `{"host": "smpp.host.com", "port": "2773", "username": "account1",
                   "password": "password", "system_id": "abc"}`

func envelope(payload string) string {
	return `{"message_version": "20110707", "message_type": "control",
  "source_name": "vumi-ops", "source_id": "ops-1", "timestamp": [2011, 7, 7, 12, 0, 0],
  "payload": ` + payload + `}`
}

func TestDecode(t *testing.T) {
	smpp := &Request{
		Operation:    OpStartWorker,
		WorkerName:   "SMPP Transport for account1",
		WorkerClass:  "vumi.workers.smpp.transport.SMPPTransport",
		WorkerConfig: json.RawMessage(designConfig),
	}
	tests := []struct {
		name  string
		body  string
		want  *Request
		code  Code
		field string // the Detail's Attribute, if any
		msg   string // part of the error message
	}{
		{name: "design example bare", body: designExample, want: smpp},
		{name: "design example in envelope", body: envelope(designExample), want: smpp},
		{name: "alias", body: `{"operation": "start_worker", "worker_name": "a", "worker_class": "c"}`,
			want: &Request{Operation: OpStartWorker, WorkerName: "a", WorkerClass: "c"}},
		{name: "all fields", body: `{"operation": "vumi_worker", "worker_name": "a", "worker_class": "c",
			"worker_config": {}, "supervisor": "root/s", "replace": true, "request_id": "r-1"}`,
			want: &Request{Operation: OpStartWorker, WorkerName: "a", WorkerClass: "c", WorkerConfig: json.RawMessage(`{}`),
				Supervisor: "root/s", Replace: true, RequestID: "r-1"}},
		{name: "nulls mean absent", body: `{"operation": "status", "worker_name": null, "worker_config": null, "replace": null}`,
			want: &Request{Operation: OpStatus}},
		{name: "unknown members ignored", body: `{"operation": "status", "future": [1, 2]}`,
			want: &Request{Operation: OpStatus}},
		{name: "envelope with minimal metadata", body: `{"payload": {"operation": "list_classes"}}`,
			want: &Request{Operation: OpListClasses}},
		{name: "stop", body: `{"operation": "stop_worker", "worker_name": "a"}`,
			want: &Request{Operation: OpStopWorker, WorkerName: "a"}},
		{name: "restart", body: `{"operation": "restart_worker", "worker_name": "a"}`,
			want: &Request{Operation: OpRestartWorker, WorkerName: "a"}},
		{name: "reload", body: `{"operation": "reload"}`, want: &Request{Operation: OpReload}},
		{name: "start_supervisor", body: `{"operation": "start_supervisor", "supervisor_name": "campaign-a", "supervisor": "root",
			"strategy": "one_for_all", "intensity": 3, "period": "1m30s", "request_id": "r-2"}`,
			want: &Request{Operation: OpStartSupervisor, SupervisorName: "campaign-a", Supervisor: "root", Strategy: "one_for_all",
				Intensity: json.RawMessage(`3`), Period: json.RawMessage(`"1m30s"`), RequestID: "r-2"}},
		{name: "start_supervisor period in seconds", body: `{"operation": "start_supervisor", "supervisor_name": "s", "period": 90}`,
			want: &Request{Operation: OpStartSupervisor, SupervisorName: "s", Period: json.RawMessage(`90`)}},
		{name: "start_supervisor nulls", body: `{"operation": "start_supervisor", "supervisor_name": "s", "strategy": null, "intensity": null, "period": null}`,
			want: &Request{Operation: OpStartSupervisor, SupervisorName: "s"}},
		{name: "stop_supervisor", body: `{"operation": "stop_supervisor", "supervisor": "root/campaign-a"}`,
			want: &Request{Operation: OpStopSupervisor, Supervisor: "root/campaign-a"}},

		{name: "not JSON", body: `{"operation": "status"`, code: CodeMalformed, msg: "not valid JSON"},
		{name: "empty body", body: ``, code: CodeMalformed, msg: "not valid JSON"},
		{name: "garbage", body: `operation=status`, code: CodeMalformed, msg: "not valid JSON"},
		{name: "trailing data", body: `{"operation": "status"} {}`, code: CodeMalformed, msg: "not valid JSON"},
		{name: "array body", body: `[{"operation": "status"}]`, code: CodeMalformed, msg: "an array, not a JSON object"},
		{name: "string body", body: `"status"`, code: CodeMalformed, msg: "a string, not a JSON object"},
		{name: "null body", body: `null`, code: CodeMalformed, msg: "null, not a JSON object"},
		{name: "payload not object", body: envelope(`"status"`), code: CodeMalformed, field: "payload", msg: "payload is a string"},
		{name: "payload array", body: envelope(`[]`), code: CodeMalformed, field: "payload", msg: "payload is an array"},
		{name: "operation missing", body: `{"worker_name": "a"}`, code: CodeUnknownOperation, field: "operation", msg: "missing"},
		{name: "operation empty", body: `{"operation": ""}`, code: CodeUnknownOperation, field: "operation", msg: "missing"},
		{name: "operation missing in envelope", body: envelope(`{}`), code: CodeUnknownOperation, field: "operation"},
		{name: "operation unknown", body: `{"operation": "launch_missiles"}`, code: CodeUnknownOperation, field: "operation", msg: `"launch_missiles"`},
		{name: "operation misspelt", body: `{"operation": "stop_wroker"}`, code: CodeUnknownOperation, msg: `did you mean "stop_worker"?`},
		{name: "operation misspelt supervisor", body: `{"operation": "stop_supervisr"}`, code: CodeUnknownOperation, msg: `did you mean "stop_supervisor"?`},
		{name: "supervisor_name number", body: `{"operation": "start_supervisor", "supervisor_name": 7}`, code: CodeMalformed, field: "supervisor_name", msg: `"supervisor_name" must be a string, not a number`},
		{name: "strategy array", body: `{"operation": "start_supervisor", "supervisor_name": "s", "strategy": ["one_for_all"]}`, code: CodeMalformed, field: "strategy"},
		{name: "intensity string", body: `{"operation": "start_supervisor", "supervisor_name": "s", "intensity": "5"}`, code: CodeMalformed, field: "intensity", msg: `"intensity" must be a whole number, not a string`},
		{name: "intensity bool", body: `{"operation": "start_supervisor", "supervisor_name": "s", "intensity": true}`, code: CodeMalformed, field: "intensity"},
		{name: "period bool", body: `{"operation": "start_supervisor", "supervisor_name": "s", "period": false}`, code: CodeMalformed, field: "period", msg: `"period" must be a duration string such as "30s" or a number of seconds, not a boolean`},
		{name: "period object", body: `{"operation": "start_supervisor", "supervisor_name": "s", "period": {"s": 30}}`, code: CodeMalformed, field: "period"},
		{name: "operation number", body: `{"operation": 1}`, code: CodeMalformed, field: "operation", msg: `"operation" must be a string, not a number`},
		{name: "worker_name object", body: `{"operation": "stop_worker", "worker_name": {"a": 1}}`, code: CodeMalformed, field: "worker_name", msg: "not an object"},
		{name: "worker_class array", body: `{"operation": "vumi_worker", "worker_name": "a", "worker_class": ["c"]}`, code: CodeMalformed, field: "worker_class"},
		{name: "worker_config string", body: `{"operation": "vumi_worker", "worker_name": "a", "worker_class": "c", "worker_config": "{\"password\": \"s3cr3t\"}"}`,
			code: CodeMalformed, field: "worker_config", msg: `"worker_config" must be an object, not a string`},
		{name: "worker_config array", body: `{"operation": "vumi_worker", "worker_name": "a", "worker_class": "c", "worker_config": []}`, code: CodeMalformed, field: "worker_config"},
		{name: "replace string", body: `{"operation": "vumi_worker", "replace": "yes"}`, code: CodeMalformed, field: "replace", msg: "true or false"},
		{name: "supervisor bool", body: `{"operation": "vumi_worker", "supervisor": true}`, code: CodeMalformed, field: "supervisor"},
		{name: "request_id number", body: `{"operation": "status", "request_id": 7}`, code: CodeMalformed, field: "request_id"},
		{name: "two wrong fields", body: `{"operation": 1, "worker_name": 2}`, code: CodeMalformed, msg: "(and 1 more)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode([]byte(tt.body))
			if tt.want != nil {
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				// Compare the config as JSON values, not as bytes.
				gotCfg, wantCfg := got.WorkerConfig, tt.want.WorkerConfig
				g, w := *got, *tt.want
				g.WorkerConfig, w.WorkerConfig = nil, nil
				for _, f := range []struct {
					name      string
					got, want *json.RawMessage
				}{{"intensity", &g.Intensity, &w.Intensity}, {"period", &g.Period, &w.Period}} {
					if !jsonEqual(t, *f.got, *f.want) {
						t.Errorf("%s = %s, want %s", f.name, *f.got, *f.want)
					}
					*f.got, *f.want = nil, nil
				}
				if !reflect.DeepEqual(g, w) {
					t.Errorf("Decode = %+v, want %+v", g, w)
				}
				if !jsonEqual(t, gotCfg, wantCfg) {
					t.Errorf("worker_config = %s, want %s", gotCfg, wantCfg)
				}
				return
			}
			if err == nil {
				t.Fatalf("Decode = %+v, want a %s error", got, tt.code)
			}
			if got != nil {
				t.Errorf("Decode returned a request with an error: %+v", got)
			}
			if err.Code != tt.code {
				t.Errorf("code = %s, want %s (%v)", err.Code, tt.code, err)
			}
			if tt.field != "" && (len(err.Details) == 0 || err.Details[0].Attribute != tt.field) {
				t.Errorf("details = %+v, want attribute %q", err.Details, tt.field)
			}
			if !strings.Contains(err.Message, tt.msg) {
				t.Errorf("message = %q, want it to contain %q", err.Message, tt.msg)
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("error quotes the body: %v", err)
			}
		})
	}
}

func TestDecodeKeepsRequestIDOfBadRequest(t *testing.T) {
	req, err := decode([]byte(`{"operation": "nope", "worker_name": "w", "request_id": "r-9"}`))
	if err == nil || req.RequestID != "r-9" || req.Operation != "nope" || req.WorkerName != "w" {
		t.Fatalf("decode = %+v, %v; want the partial request and an error", req, err)
	}
	for _, body := range []string{`[]`, `{"payload": 1}`} {
		if req, err := decode([]byte(body)); req == nil || err == nil {
			t.Errorf("decode(%s) = %v, %v; want an empty request and an error", body, req, err)
		}
	}
}

func jsonEqual(t *testing.T, a, b json.RawMessage) bool {
	t.Helper()
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		t.Fatalf("unmarshal %s: %v", a, err)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Fatalf("unmarshal %s: %v", b, err)
	}
	return reflect.DeepEqual(va, vb)
}
