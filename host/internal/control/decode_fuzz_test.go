package control

import (
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/hashicorp/go-hclog"

	"github.com/dynworkers/dynworkers/host/internal/config"
)

// fuzzSeeds are control bodies for the fuzz targets' seed corpus, on top
// of testdata/fuzz: the design example and one body per operation and per
// kind of error TestDecode checks.
var fuzzSeeds = []string{
	designExample,
	envelope(designExample),
	`{"operation": "start_worker", "worker_name": "a", "worker_class": "c"}`,
	`{"operation": "vumi_worker", "worker_name": "a", "worker_class": "c", "worker_config": {}, "supervisor": "root/s", "replace": true, "request_id": "r-1"}`,
	`{"operation": "status", "worker_name": null, "worker_config": null, "replace": null}`,
	`{"operation": "status", "future": [1, 2]}`,
	`{"payload": {"operation": "list_classes"}}`,
	`{"operation": "stop_worker", "worker_name": "a"}`,
	`{"operation": "restart_worker", "worker_name": "a"}`,
	`{"operation": "reload"}`,
	`{"operation": "start_supervisor", "supervisor_name": "campaign-a", "supervisor": "root", "strategy": "one_for_all", "intensity": 3, "period": "1m30s", "request_id": "r-2"}`,
	`{"operation": "start_supervisor", "supervisor_name": "s", "period": 90, "intensity": 0}`,
	`{"operation": "start_supervisor", "supervisor_name": "s", "period": -1, "intensity": 1e400}`,
	`{"operation": "stop_supervisor", "supervisor": "root/campaign-a"}`,
	`{"operation": "vumi_worker", "worker_name": "a", "worker_class": "c", "cluster": true, "constraints": {"zone": "a", "rack": null}}`,
	`{"operation": "vumi_worker", "worker_name": "a", "worker_class": "c", "cluster": "yes", "constraints": {"zone": ["hunter2-password"]}}`,
	`{"operation": "drain", "host": "h1"}`,
	`{"operation": "undrain", "host": 7}`,
	`{"operation": "cluster_status", "host": "all"}`,
	`{"operation": "status"`,
	``,
	`[{"operation": "status"}]`,
	`null`,
	envelope(`"status"`),
	`{"operation": "stop_wroker"}`,
	`{"operation": 1, "worker_name": 2}`,
	`{"operation": "vumi_worker", "worker_name": "a", "worker_class": "c", "worker_config": "{\"password\": \"s3cr3t\"}"}`,
	`{"operation": "vumi_worker", "worker_name": "a", "worker_class": "c", "worker_config": "hunter2-password"}`,
	`{"operation": "vumi_worker", "worker_name": "a", "worker_class": "c", "worker_config": ["hunter2-password"], "intensity": "7"}`,
	`{"operation": "vumi_worker", "worker_name": "..", "worker_class": "c", "supervisor": "root//x/"}`,
	`{"operation": "vumi_worker", "worker_name": "a\u0000b", "worker_class": "c\u202e"}`,
	`{"Operation": "status", "OPERATION": "reload"}`,
	`{"operation": "status", "operation": "reload", "payload": null}`,
}

// FuzzDecode checks Decode's promises on any body: it never panics; it
// returns a request or an error, never both; an error has a code and a
// message, and its message never repeats a string of worker_config; a
// decoded request has a known operation and decodes to itself again once
// encoded as JSON (Request's JSON form is the bare payload).
func FuzzDecode(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := Decode(body)
		if (req == nil) == (err == nil) {
			t.Fatalf("Decode = %+v, %v: want exactly one of a request and an error", req, err)
		}
		if err != nil {
			checkError(t, err)
			checkNoConfigStrings(t, body, func(b []byte) string {
				if _, err := Decode(b); err != nil {
					return err.Error()
				}
				return ""
			})
			return
		}
		switch req.Operation {
		case OpStartWorker, OpStopWorker, OpRestartWorker, OpStatus, OpListClasses, OpReload,
			OpStartSupervisor, OpStopSupervisor, OpDrain, OpUndrain, OpClusterStatus:
		default:
			t.Fatalf("Decode accepted the operation %q", req.Operation)
		}
		if !validRaw(req.WorkerConfig, "an object") || !validRaw(req.Intensity, "a number") ||
			!validRaw(req.Period, "a string", "a number") {
			t.Fatalf("Decode kept a member of the wrong type: %+v", req)
		}
		again, merr := json.Marshal(req)
		if merr != nil {
			t.Fatalf("the decoded request does not encode: %v", merr)
		}
		req2, err2 := Decode(again)
		if err2 != nil {
			t.Fatalf("the decoded request, encoded as %s, does not decode: %v", again, err2)
		}
		if !sameRequest(req, req2) {
			t.Fatalf("round trip changed the request:\n%+v\n%+v", req, req2)
		}
	})
}

// FuzzHandle runs any body through a Dispatcher on a fake host: it never
// panics; the reply encodes as JSON; a failure has a code and a message
// and reaches no host method; a success reaches exactly one, with names
// that config.ValidateName accepts; neither the reply nor the log repeats
// a string of worker_config.
func FuzzHandle(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		h := &fakeHost{}
		var logs bytes.Buffer
		d := NewDispatcher(h, hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Trace, DisableTime: true}))
		reply := d.Handle(context.Background(), body)
		out, err := json.Marshal(reply)
		if err != nil {
			t.Fatalf("the reply does not encode: %v", err)
		}
		calls := h.Calls()
		if !reply.OK {
			if reply.Error == nil {
				t.Fatalf("failed reply without an error: %s", out)
			}
			checkError(t, reply.Error)
			if len(calls) != 0 {
				t.Fatalf("a failed request reached the host: %v (%s)", calls, out)
			}
		} else if len(calls) != 1 {
			t.Fatalf("a successful request made %d host calls: %v", len(calls), calls)
		}
		for _, spec := range h.specs {
			if err := config.ValidateName(spec.Name); err != nil {
				t.Fatalf("the host got a start of worker %q: %v", spec.Name, err)
			}
			if spec.Class == "" || !utf8.ValidString(spec.Class) {
				t.Fatalf("the host got a start of class %q", spec.Class)
			}
		}
		for _, spec := range h.supSpecs {
			if err := config.ValidateName(spec.Name); err != nil {
				t.Fatalf("the host got a start of supervisor %q: %v", spec.Name, err)
			}
		}
		checkNoConfigStrings(t, body, func(b []byte) string {
			var logs bytes.Buffer
			d := NewDispatcher(&fakeHost{}, hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Trace, DisableTime: true}))
			out, _ := json.Marshal(d.Handle(context.Background(), b))
			return string(out) + "\n" + logs.String()
		})
	})
}

func checkError(t *testing.T, err *Error) {
	t.Helper()
	if err.Code == "" || err.Message == "" {
		t.Fatalf("error without a code or a message: %+v", err)
	}
	if st := err.Code.HTTPStatus(); st < 400 || st > 599 {
		t.Fatalf("error code %s maps to HTTP %d", err.Code, st)
	}
}

// validRaw reports whether raw is absent or a valid JSON value of one of
// the kinds.
func validRaw(raw json.RawMessage, kinds ...string) bool {
	if len(raw) == 0 {
		return true
	}
	if !json.Valid(raw) {
		return false
	}
	for _, k := range kinds {
		if kind(raw) == k {
			return true
		}
	}
	return false
}

// sameRequest compares two requests, their raw JSON members as JSON
// values: encoding compacts them and escapes "&", "<" and ">".
func sameRequest(a, b *Request) bool {
	x, y := *a, *b
	for _, p := range []struct{ a, b *json.RawMessage }{
		{&x.WorkerConfig, &y.WorkerConfig}, {&x.Intensity, &y.Intensity}, {&x.Period, &y.Period},
	} {
		if (len(*p.a) == 0) != (len(*p.b) == 0) || !reflect.DeepEqual(rawValue(*p.a), rawValue(*p.b)) {
			return false
		}
		*p.a, *p.b = nil, nil
	}
	return reflect.DeepEqual(x, y)
}

// checkNoConfigStrings checks that output(body) shows no string of the
// body's worker_config: the body is rebuilt with every string in its
// worker_config (keys included) replaced by "x", and a string s of the
// original worker_config that output(body) holds must be in the output for
// the rebuilt body too (then it comes from the output's fixed text), or in
// another member of the payload (which the output may quote).
func checkNoConfigStrings(t *testing.T, body []byte, output func([]byte) string) {
	t.Helper()
	secrets, public, rebuilt := redactConfig(body)
	if len(secrets) == 0 {
		return
	}
	got, without := output(body), ""
	for _, s := range secrets {
		if len(s) < 4 || !strings.Contains(got, s) || strings.Contains(public, s) {
			continue
		}
		if without == "" {
			without = output(rebuilt)
		}
		if !strings.Contains(without, s) {
			t.Fatalf("the output repeats %q of worker_config:\n%s", s, got)
		}
	}
}

// redactConfig reads body as Decode does and returns the strings (keys
// and values) of its worker_config, every other member and key of the
// payload joined (what the output may quote), and the body with every
// string of worker_config replaced by "x".
func redactConfig(body []byte) (secrets []string, public string, rebuilt []byte) {
	outer, err := object(body)
	if err != nil {
		return nil, "", nil
	}
	members := outer
	var pub []string
	if raw, ok := outer["payload"]; ok {
		if members, err = object(raw); err != nil {
			return nil, "", nil
		}
		for k, v := range outer {
			pub = append(pub, k)
			if k != "payload" {
				pub = appendStrings(pub, rawValue(v))
			}
		}
	}
	for k, v := range members {
		pub = append(pub, k)
		if k != "worker_config" {
			pub = appendStrings(pub, rawValue(v))
		}
	}
	raw, ok := members["worker_config"]
	if !ok {
		return nil, "", nil
	}
	cfg := rawValue(raw)
	secrets = appendStrings(nil, cfg)
	red, err := json.Marshal(replaceStrings(cfg))
	if err != nil {
		return nil, "", nil
	}
	members["worker_config"] = red
	if _, ok := outer["payload"]; ok {
		p, err := json.Marshal(members)
		if err != nil {
			return nil, "", nil
		}
		outer["payload"] = p
	}
	rebuilt, err = json.Marshal(outer)
	if err != nil {
		return nil, "", nil
	}
	return secrets, strings.Join(pub, "\x00"), rebuilt
}

// rawValue decodes raw as a generic JSON value, numbers as written.
func rawValue(raw json.RawMessage) any {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var x any
	if dec.Decode(&x) != nil {
		return nil
	}
	return x
}

func appendStrings(out []string, v any) []string {
	switch x := v.(type) {
	case string:
		out = append(out, x)
	case []any:
		for _, e := range x {
			out = appendStrings(out, e)
		}
	case map[string]any:
		for k, e := range x {
			out = appendStrings(append(out, k), e)
		}
	}
	return out
}

func replaceStrings(v any) any {
	switch x := v.(type) {
	case string:
		return "x"
	case []any:
		for i, e := range x {
			x[i] = replaceStrings(e)
		}
	case map[string]any:
		m := map[string]any{}
		for _, e := range x {
			m["x"] = replaceStrings(e)
		}
		return m
	}
	return v
}
