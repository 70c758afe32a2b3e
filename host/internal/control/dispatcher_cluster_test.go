package control

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/auth"
)

// clusterFakeHost is a fakeHost that is part of a cluster.
type clusterFakeHost struct{ fakeHost }

var _ ClusterHost = (*clusterFakeHost)(nil)

func (h *clusterFakeHost) Drain(_ context.Context, host string, on bool) (api.DrainResult, error) {
	if err := h.record(fmt.Sprintf("drain %s %v", host, on)); err != nil {
		return api.DrainResult{}, err
	}
	action := "undrained"
	if on {
		action = "draining"
	}
	return api.DrainResult{Host: host, Action: action, Workers: []string{"w1"}}, nil
}

func (h *clusterFakeHost) ClusterStatus(context.Context) (api.ClusterView, error) {
	if err := h.record("cluster_status"); err != nil {
		return api.ClusterView{}, err
	}
	return api.ClusterView{SystemID: "s", Leader: "h1", Hosts: []api.ClusterHost{{Name: "h1", Alive: true}}}, nil
}

func TestDispatcherClusterOperations(t *testing.T) {
	tests := []struct {
		body   string
		call   string
		result string
	}{
		{`{"operation": "drain", "host": "h2"}`, "drain h2 true", `{"host":"h2","action":"draining","workers":["w1"]}`},
		{envelope(`{"operation": "undrain", "host": "h2.example.com"}`), "drain h2.example.com false", `{"host":"h2.example.com","action":"undrained","workers":["w1"]}`},
		{`{"operation": "cluster_status"}`, "cluster_status", ""},
		// Fields an operation does not use are not checked.
		{`{"operation": "cluster_status", "host": "all"}`, "cluster_status", ""},
	}
	for _, tt := range tests {
		t.Run(tt.call, func(t *testing.T) {
			h := &clusterFakeHost{}
			d, logs := newTestDispatcher(h)
			reply := d.Handle(context.Background(), []byte(tt.body))
			if !reply.OK {
				t.Fatalf("reply = %+v", reply.Error)
			}
			if calls := h.Calls(); len(calls) != 1 || calls[0] != tt.call {
				t.Errorf("calls = %q, want [%q]", calls, tt.call)
			}
			got, _ := json.Marshal(reply.Result)
			if tt.result != "" && string(got) != tt.result {
				t.Errorf("result = %s, want %s", got, tt.result)
			}
			if v, ok := reply.Result.(api.ClusterView); tt.call == "cluster_status" && (!ok || v.Leader != "h1") {
				t.Errorf("result = %#v, want the host's ClusterView", reply.Result)
			}
			if strings.HasPrefix(tt.call, "drain") && !strings.Contains(logs.String(), "host=h2") {
				t.Errorf("the log does not name the host:\n%s", logs)
			}
		})
	}
}

// A host that is not a ClusterHost answers the cluster operations with a
// conflict that says why.
func TestDispatcherClusterOperationsWithoutACluster(t *testing.T) {
	for _, body := range []string{`{"operation": "drain", "host": "h2"}`, `{"operation": "undrain", "host": "h2"}`, `{"operation": "cluster_status"}`} {
		h := &fakeHost{}
		d, _ := newTestDispatcher(h)
		reply := d.Handle(context.Background(), []byte(body))
		if reply.OK || reply.Error.Code != CodeConflict || reply.Error.Message != "this host is not part of a cluster (it has no cluster block)" {
			t.Errorf("%s: %+v", body, reply)
		}
		if calls := h.Calls(); len(calls) != 0 {
			t.Errorf("%s: host calls %q", body, calls)
		}
	}
}

func TestDispatcherClusterValidation(t *testing.T) {
	many := map[string]string{}
	for i := range MaxConstraints + 1 {
		many[fmt.Sprintf("k%d", i)] = "v"
	}
	start := func(c map[string]string) Request {
		return Request{Operation: OpStartWorker, WorkerName: "w", WorkerClass: "c", Cluster: true, Constraints: c}
	}
	tests := []struct {
		name  string
		req   Request
		field string
		msg   string
	}{
		{"drain without host", Request{Operation: OpDrain}, "host", "host is missing"},
		{"undrain without host", Request{Operation: OpUndrain}, "host", "host is missing"},
		{"drain all", Request{Operation: OpDrain, Host: "all"}, "host", `"all" is reserved`},
		{"drain any", Request{Operation: OpUndrain, Host: "any"}, "host", `"any" is reserved`},
		{"drain space", Request{Operation: OpDrain, Host: "a b"}, "host", "white space"},
		{"drain newline", Request{Operation: OpDrain, Host: "a\nlevel=ERROR"}, "host", "not a valid host name"},
		{"drain wildcard", Request{Operation: OpDrain, Host: "h*"}, "host", `"*"`},
		{"drain long", Request{Operation: OpDrain, Host: strings.Repeat("h", 300)}, "host", "at most 200 bytes"},
		{"too many constraints", start(many), "constraints", "at most 32"},
		{"empty constraint key", start(map[string]string{"": "a"}), "constraints", "empty label name"},
		{"empty constraint value", start(map[string]string{"zone": ""}), "constraints", `"zone" has an empty value`},
		{"long constraint key", start(map[string]string{strings.Repeat("k", 257): "a"}), "constraints", "longer than 256 bytes"},
		{"long constraint value", start(map[string]string{"zone": strings.Repeat("v", 257)}), "constraints", "longer than 256 bytes"},
		{"control char in key", start(map[string]string{"zo\x1bne": "a"}), "constraints", "without control characters"},
		{"control char in value", start(map[string]string{"zone": "a\nb"}), "constraints", "without control characters"},
		{"invalid UTF-8 value", start(map[string]string{"zone": "\xff"}), "constraints", "without control characters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &clusterFakeHost{}
			d, _ := newTestDispatcher(h)
			reply := d.Do(context.Background(), &tt.req)
			if reply.OK || reply.Error.Code != CodeInvalidConfig {
				t.Fatalf("reply = %+v, want invalid_config", reply)
			}
			if len(reply.Error.Details) == 0 || reply.Error.Details[0].Attribute != tt.field || !strings.Contains(reply.Error.Message, tt.msg) {
				t.Errorf("error = %+v, want attribute %q and %q", reply.Error, tt.field, tt.msg)
			}
			if strings.Contains(reply.Error.Message, "\n") || strings.Contains(reply.Error.Message, "\x1b") {
				t.Errorf("message holds a control character: %q", reply.Error.Message)
			}
			if calls := h.Calls(); len(calls) != 0 {
				t.Errorf("host called: %q", calls)
			}
		})
	}
	// At the limits: accepted.
	ok := map[string]string{strings.Repeat("k", 256): strings.Repeat("v", 256), "zone": "é a"}
	for i := len(ok); i < MaxConstraints; i++ {
		ok[fmt.Sprintf("k%d", i)] = "v"
	}
	h := &clusterFakeHost{}
	d, _ := newTestDispatcher(h)
	if reply := d.Do(context.Background(), &Request{Operation: OpStartWorker, WorkerName: "w", WorkerClass: "c", Constraints: ok}); !reply.OK {
		t.Errorf("constraints at the limits: %+v", reply.Error)
	}
}

// Wrong JSON types of the new fields are malformed, naming the field, and
// never quote a value.
func TestDecodeClusterFields(t *testing.T) {
	good := []struct {
		body string
		want Request
	}{
		{`{"operation": "vumi_worker", "worker_name": "w", "worker_class": "c", "cluster": true, "constraints": {"zone": "a", "rack": "r1"}}`,
			Request{Operation: OpStartWorker, WorkerName: "w", WorkerClass: "c", Cluster: true, Constraints: map[string]string{"zone": "a", "rack": "r1"}}},
		{`{"operation": "vumi_worker", "cluster": false, "constraints": {}}`, Request{Operation: OpStartWorker}},
		{`{"operation": "vumi_worker", "cluster": null, "constraints": null}`, Request{Operation: OpStartWorker}},
		{`{"operation": "vumi_worker", "constraints": {"zone": null}}`, Request{Operation: OpStartWorker}},
		{`{"operation": "drain", "host": "h1"}`, Request{Operation: OpDrain, Host: "h1"}},
		{`{"operation": "undrain", "host": "h1"}`, Request{Operation: OpUndrain, Host: "h1"}},
		{envelope(`{"operation": "cluster_status"}`), Request{Operation: OpClusterStatus}},
	}
	for _, tt := range good {
		got, err := Decode([]byte(tt.body))
		if err != nil {
			t.Errorf("%s: %v", tt.body, err)
			continue
		}
		if fmt.Sprint(*got) != fmt.Sprint(tt.want) {
			t.Errorf("%s: %+v, want %+v", tt.body, *got, tt.want)
		}
	}
	bad := []struct {
		body, field, msg string
	}{
		{`{"operation": "vumi_worker", "cluster": "yes"}`, "cluster", `"cluster" must be true or false, not a string`},
		{`{"operation": "vumi_worker", "cluster": 1}`, "cluster", `"cluster" must be true or false, not a number`},
		{`{"operation": "vumi_worker", "constraints": []}`, "constraints", `"constraints" must be an object of labels, such as {"zone": "a"}, not an array`},
		{`{"operation": "vumi_worker", "constraints": "zone=a"}`, "constraints", `not a string`},
		{`{"operation": "vumi_worker", "constraints": {"zone": 1}}`, "constraints", `the value of "zone" is a number`},
		{`{"operation": "vumi_worker", "constraints": {"a": "ok", "zone": {"x": "s3cr3t"}}}`, "constraints", `the value of "zone" is an object`},
		{`{"operation": "vumi_worker", "constraints": {"zone": ["s3cr3t"]}}`, "constraints", `is an array`},
		{`{"operation": "drain", "host": 5}`, "host", `"host" must be a string, not a number`},
		{`{"operation": "drain", "host": ["h1"]}`, "host", `not an array`},
	}
	for _, tt := range bad {
		_, err := Decode([]byte(tt.body))
		if err == nil || err.Code != CodeMalformed || len(err.Details) == 0 || err.Details[0].Attribute != tt.field || !strings.Contains(err.Message, tt.msg) {
			t.Errorf("%s: %+v, want malformed naming %q saying %q", tt.body, err, tt.field, tt.msg)
			continue
		}
		if strings.Contains(err.Message, "s3cr3t") {
			t.Errorf("%s: the message quotes a value: %s", tt.body, err.Message)
		}
	}
	for body, want := range map[string]string{
		`{"operation": "drian"}`:          `did you mean "drain"?`,
		`{"operation": "undrian"}`:        `did you mean "undrain"?`,
		`{"operation": "cluster_stats"}`:  `did you mean "cluster_status"?`,
		`{"operation": "launch_missile"}`: `"drain", "undrain", "cluster_status", "logs" or "kill_worker"`,
	} {
		_, err := Decode([]byte(body))
		if err == nil || err.Code != CodeUnknownOperation || !strings.Contains(err.Message, want) {
			t.Errorf("%s: %+v, want %q", body, err, want)
		}
	}
}

// A start is a cluster start when it says so or when it came through a
// system-wide routing key; constraints are passed on.
func TestDispatcherClusterStart(t *testing.T) {
	tests := []struct {
		route   string
		cluster bool
		want    bool
	}{
		{"", false, false},
		{"", true, true},
		{"sys.h1", false, false},
		{"sys.h1", true, true},
		{"sys.any", false, true},
		{"sys.all", false, true},
		{"a.b.sys.any", false, true},
		{"sys.anything", false, false},
		{"sys.h-all", false, false},
	}
	for _, tt := range tests {
		h := &clusterFakeHost{}
		d, _ := newTestDispatcher(h)
		ctx := context.Background()
		if tt.route != "" {
			ctx = WithRoute(ctx, tt.route)
		}
		c := map[string]string{"zone": "a"}
		reply := d.Do(ctx, &Request{Operation: OpStartWorker, WorkerName: "w", WorkerClass: "c", Cluster: tt.cluster, Constraints: c})
		if !reply.OK {
			t.Fatalf("%q: %+v", tt.route, reply.Error)
		}
		if len(h.specs) != 1 || h.specs[0].Cluster != tt.want || h.specs[0].Constraints["zone"] != "a" || len(h.specs[0].Constraints) != 1 {
			t.Errorf("route %q cluster %v: specs %+v, want Cluster %v with the constraints", tt.route, tt.cluster, h.specs, tt.want)
		}
		c["zone"] = "changed"
		if h.specs[0].Constraints["zone"] != "a" {
			t.Errorf("the spec shares the request's constraints map")
		}
	}
	// Only starts: the route does not change other operations.
	h := &clusterFakeHost{}
	d, _ := newTestDispatcher(h)
	if reply := d.Do(WithRoute(context.Background(), "sys.any"), &Request{Operation: OpStopWorker, WorkerName: "w"}); !reply.OK {
		t.Errorf("stop via any: %+v", reply.Error)
	}
	if RouteOf(context.Background()) != "" || RouteOf(WithRoute(context.Background(), "k")) != "k" {
		t.Errorf("RouteOf")
	}
}

// A stopping host refuses drain and undrain like other changes, and still
// answers cluster_status like status.
func TestDispatcherClusterOperationsWhileRefusing(t *testing.T) {
	h := &clusterFakeHost{}
	d, _ := newTestDispatcher(h)
	d.Refuse(Errorf(CodeConflict, "the host is stopping"))
	for _, op := range []string{OpDrain, OpUndrain} {
		if reply := d.Do(context.Background(), &Request{Operation: op, Host: "h1"}); reply.OK || reply.Error.Message != "the host is stopping" {
			t.Errorf("%s while stopping: %+v", op, reply)
		}
	}
	if reply := d.Do(context.Background(), &Request{Operation: OpClusterStatus}); !reply.OK {
		t.Errorf("cluster_status while stopping: %+v", reply.Error)
	}
	if calls := h.Calls(); len(calls) != 1 || calls[0] != "cluster_status" {
		t.Errorf("host calls %q", calls)
	}
}

// The control policy: cluster_status is allowed wherever status is (a
// principal allowed status, a local read of the HTTP API); drain and
// undrain need to be listed.
func TestDispatcherAuthorizesClusterOperations(t *testing.T) {
	h := &clusterFakeHost{}
	d, _ := newTestDispatcher(h)
	p, s := testPolicy(t, true) // "camp": vumi_worker, stop_worker, status
	d.SetPolicy(p)
	for _, tc := range []struct {
		body string
		code Code
	}{
		{`{"operation": "cluster_status"}`, ""},
		{`{"operation": "drain", "host": "h1"}`, CodeForbidden},
		{`{"operation": "undrain", "host": "h1"}`, CodeForbidden},
	} {
		body, code := tc.body, tc.code
		rep := d.Handle(signedCtx(s, body), []byte(body))
		got := Code("")
		if rep.Error != nil {
			got = rep.Error.Code
		}
		if got != code {
			t.Errorf("%s: %+v, want code %q", body, rep.Error, code)
		}
	}
	if rep := d.Do(auth.WithLocalRead(context.Background()), &Request{Operation: OpClusterStatus}); !rep.OK {
		t.Errorf("local read of cluster_status: %+v", rep.Error)
	}
	if rep := d.Do(auth.WithLocalRead(context.Background()), &Request{Operation: OpDrain, Host: "h1"}); rep.OK || rep.Error.Code != CodeUnauthenticated {
		t.Errorf("a local read mark allows drain: %+v", rep)
	}

	// A principal that lists the cluster operations may use them.
	pol, err := auth.NewPolicy(auth.Options{Require: true, Principals: []auth.PrincipalConfig{
		{Name: "maint", BrokerUsers: []string{"maint"}, Operations: []string{"drain", "undrain"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	d.SetPolicy(pol)
	ctx := auth.WithCredentials(context.Background(), auth.Credentials{Transport: "amqp", BrokerUser: "maint", Scope: auth.AMQPScope("k")})
	for _, tc := range []struct {
		body string
		code Code
	}{
		{`{"operation": "drain", "host": "h1"}`, ""},
		{`{"operation": "undrain", "host": "h1"}`, ""},
		{`{"operation": "cluster_status"}`, CodeForbidden},
	} {
		body, code := tc.body, tc.code
		rep := d.Handle(ctx, []byte(body))
		got := Code("")
		if rep.Error != nil {
			got = rep.Error.Code
		}
		if got != code {
			t.Errorf("maint %s: %+v, want code %q", body, rep.Error, code)
		}
	}
	want := []string{"cluster_status", "cluster_status", "drain h1 true", "drain h1 false"}
	if calls := h.Calls(); fmt.Sprint(calls) != fmt.Sprint(want) {
		t.Errorf("host calls %q, want %q", calls, want)
	}
}
