package control

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/config"
)

// Each input limit of the dispatcher: the request is refused with an
// error naming the limit, and the Host is never called.
func TestDispatcherInputLimits(t *testing.T) {
	bigConfig, _ := json.Marshal(map[string]string{"a": strings.Repeat("x", 200<<10), "b": strings.Repeat("x", 200<<10),
		"c": strings.Repeat("x", 200<<10), "d": strings.Repeat("x", 200<<10), "e": strings.Repeat("x", 200<<10), "f": strings.Repeat("x", 200<<10)})
	bigValue, _ := json.Marshal(map[string]string{"host": "h", "secret": "SeKrEt" + strings.Repeat("x", 300<<10)})
	deep := "root" + strings.Repeat("/s", config.MaxDepth)
	tests := []struct {
		name, body string
		code       Code
		want       string
	}{
		{"worker_config total", `{"operation":"vumi_worker","worker_name":"w","worker_class":"echo","worker_config":` + string(bigConfig) + `}`,
			CodeInvalidConfig, "a worker's config may be at most 1 MiB"},
		{"worker_config value", `{"operation":"vumi_worker","worker_name":"w","worker_class":"echo","worker_config":` + string(bigValue) + `}`,
			CodeInvalidConfig, `worker_config."secret" is 307208 bytes; a config value may be at most 256 KiB`},
		{"request_id", `{"operation":"status","request_id":"` + strings.Repeat("r", MaxRequestIDLen+1) + `"}`,
			CodeMalformed, "request_id is 257 bytes; it may be at most 256 bytes"},
		{"request_id control", `{"operation":"status","request_id":"a\u001b[2Jb"}`, CodeMalformed, "control or format characters"},
		{"bidi name", `{"operation":"vumi_worker","worker_name":"pay\u202egnp","worker_class":"echo"}`, CodeInvalidConfig, "U+202E"},
		{"zero-width name", `{"operation":"stop_worker","worker_name":"a\u200bb"}`, CodeInvalidConfig, "U+200B"},
		{"root worker", `{"operation":"vumi_worker","worker_name":"root","worker_class":"echo"}`, CodeInvalidConfig, `"root" is reserved`},
		{"supervisor name", `{"operation":"start_supervisor","supervisor_name":"x\u2066y"}`, CodeInvalidConfig, "U+2066"},
		{"depth", `{"operation":"vumi_worker","worker_name":"w","worker_class":"echo","supervisor":"` + deep + `"}`,
			CodeInvalidConfig, fmt.Sprintf("%d levels deep; supervisors may nest at most %d levels", config.MaxDepth+1, config.MaxDepth)},
		{"depth of a new supervisor's parent", `{"operation":"start_supervisor","supervisor_name":"x","supervisor":"` + deep + `"}`,
			CodeInvalidConfig, "levels deep"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := &fakeHost{}
			d, logs := newTestDispatcher(h)
			r := d.Handle(context.Background(), []byte(tc.body))
			if r.OK || r.Error == nil || r.Error.Code != tc.code || !strings.Contains(r.Error.Message, tc.want) {
				t.Errorf("reply %+v, want %s containing %q", r.Error, tc.code, tc.want)
			}
			if r.RequestID != "" {
				t.Errorf("the reply echoes request_id %.20q...", r.RequestID)
			}
			if calls := h.Calls(); len(calls) != 0 {
				t.Errorf("the host was called: %v", calls)
			}
			b, _ := json.Marshal(r)
			for _, leak := range []string{"SeKrEt", strings.Repeat("r", 300)} {
				if strings.Contains(string(b), leak) || strings.Contains(logs.String(), leak) {
					t.Errorf("the reply or the log holds %.10q...", leak)
				}
			}
		})
	}
}

// A request built by the HTTP API (Do) gets the same request_id check.
func TestDoRefusesALongRequestID(t *testing.T) {
	h := &fakeHost{}
	d, _ := newTestDispatcher(h)
	r := d.Do(context.Background(), &Request{Operation: OpStatus, RequestID: strings.Repeat("x", 10<<20)})
	if r.OK || r.Error.Code != CodeMalformed || r.RequestID != "" || len(h.Calls()) != 0 {
		t.Errorf("Do = ok %v, %v, request_id of %d bytes, calls %v", r.OK, r.Error, len(r.RequestID), h.Calls())
	}
	r = d.Do(context.Background(), &Request{Operation: OpStatus, RequestID: strings.Repeat("x", MaxRequestIDLen)})
	if !r.OK || len(r.RequestID) != MaxRequestIDLen {
		t.Errorf("a request_id of %d bytes: %+v", MaxRequestIDLen, r.Error)
	}
}

// A body over the dispatcher's limit is refused without being decoded;
// the limit is settable and named in the error.
func TestHandleRefusesAnOversizedBody(t *testing.T) {
	h := &fakeHost{}
	d, _ := newTestDispatcher(h)
	body := []byte(`{"operation":"status","request_id":"r","x":"` + strings.Repeat("y", DefaultMaxMessageBytes) + `"}`)
	r := d.Handle(context.Background(), body)
	if r.OK || r.Error.Code != CodeMalformed || !strings.Contains(r.Error.Message, "at most 2 MiB (input_limits.control_message_size)") || r.RequestID != "" {
		t.Errorf("reply %+v (request_id %q)", r.Error, r.RequestID)
	}
	d.SetMaxMessageBytes(64 << 10)
	r = d.Handle(context.Background(), []byte(`{"operation":"status","x":"`+strings.Repeat("y", 64<<10)+`"}`))
	if r.OK || !strings.Contains(r.Error.Message, "at most 64 KiB") {
		t.Errorf("with a 64 KiB limit: %+v", r.Error)
	}
	if len(h.Calls()) != 0 {
		t.Errorf("the host was called: %v", h.Calls())
	}
	if r := d.Handle(context.Background(), []byte(`{"operation":"status"}`)); !r.OK {
		t.Errorf("a small body: %+v", r.Error)
	}
	if _, err := Decode(body); err == nil || err.Code != CodeMalformed || !strings.Contains(err.Message, "at most 2 MiB") {
		t.Errorf("Decode of an oversized body = %v", err)
	}
	if s := d.Stats(); s.Errors[CodeMalformed] != 2 {
		t.Errorf("stats %+v: the refusals are not counted", s)
	}
}

// killingHost stops workers by killing them at their deadline.
type killingHost struct{ fakeHost }

func (h *killingHost) StopWorkerResult(_ context.Context, name string) (api.WorkerResult, error) {
	return api.WorkerResult{Worker: name, Action: "stopped", Killed: true, Detail: "killed"}, h.record("stop " + name)
}

// A Host that says a stop killed the worker answers stop_worker with that
// result, a success.
func TestStopWorkerSaysKilled(t *testing.T) {
	h := &killingHost{}
	d, _ := newTestDispatcher(h)
	r := d.Handle(context.Background(), []byte(`{"operation":"stop_worker","worker_name":"stubborn"}`))
	res, ok := r.Result.(api.WorkerResult)
	if !r.OK || !ok || !res.Killed || res.Action != "stopped" {
		t.Errorf("reply %+v", r)
	}
}
