package control_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/broker/brokertest"
	"github.com/dynworkers/dynworkers/host/internal/control"
)

// startRecorder is a control.Host that records the specs of the starts it
// gets, with the routing key the context carried.
type startRecorder struct {
	starts chan recordedStart
}

type recordedStart struct {
	spec  control.WorkerSpec
	route string
}

func (h *startRecorder) StartWorker(ctx context.Context, spec control.WorkerSpec) (api.StartResult, error) {
	h.starts <- recordedStart{spec: spec, route: control.RouteOf(ctx)}
	return api.StartResult{Worker: spec.Name, Action: "started", State: "running"}, nil
}
func (h *startRecorder) StopWorker(context.Context, string) error    { return nil }
func (h *startRecorder) RestartWorker(context.Context, string) error { return nil }
func (h *startRecorder) Status(context.Context) (api.Status, error)  { return api.Status{}, nil }
func (h *startRecorder) Classes(context.Context) (api.ClassList, error) {
	return api.ClassList{}, nil
}
func (h *startRecorder) Reload(context.Context) (api.ReloadResult, error) {
	return api.ReloadResult{}, nil
}
func (h *startRecorder) StartSupervisor(context.Context, control.SupervisorSpec) (api.SupervisorResult, error) {
	return api.SupervisorResult{}, nil
}
func (h *startRecorder) StopSupervisor(context.Context, string) (api.SupervisorResult, error) {
	return api.SupervisorResult{}, nil
}

// Through the real broker and the real dispatcher: a start published to
// <system>.any or <system>.all reaches the Host as a cluster start; one to
// the host's own key stays local unless it says "cluster": true; the
// constraints arrive as sent.
func TestAMQPSystemWideStartIsAClusterStart(t *testing.T) {
	admin := brokertest.NewAdmin(t)
	sid := brokertest.ID(t)
	amqpCleanup(t, admin, sid, "h1")
	host := &startRecorder{starts: make(chan recordedStart, 10)}
	startAMQPHostWith(t, sid, "h1", nil, control.NewDispatcher(host, amqpLogger(t, "dispatcher")))
	replyTo, replies := admin.TempQueue("")

	cases := []struct {
		key     string
		body    string
		cluster bool
	}{
		{control.AnyKey(sid), `{"operation": "vumi_worker", "worker_name": "w-any", "worker_class": "c", "constraints": {"zone": "a"}}`, true},
		{control.AllKey(sid), `{"operation": "vumi_worker", "worker_name": "w-all", "worker_class": "c", "constraints": {"zone": "a"}}`, true},
		{control.HostKey(sid, "h1"), `{"operation": "vumi_worker", "worker_name": "w-own", "worker_class": "c", "constraints": {"zone": "a"}}`, false},
		{control.HostKey(sid, "h1"), `{"operation": "vumi_worker", "worker_name": "w-flag", "worker_class": "c", "cluster": true, "constraints": {"zone": "a"}}`, true},
	}
	for _, tc := range cases {
		amqpRequest(admin, tc.key, replyTo, tc.key, tc.body)
		var got recordedStart
		select {
		case got = <-host.starts:
		case <-time.After(amqpWait):
			t.Fatalf("%s: no start within %v", tc.key, amqpWait)
		}
		var req control.Request
		if err := json.Unmarshal([]byte(tc.body), &req); err != nil {
			t.Fatal(err)
		}
		if got.spec.Name != req.WorkerName || got.spec.Cluster != tc.cluster || got.route != tc.key || got.spec.Constraints["zone"] != "a" {
			t.Errorf("published to %s: the host got %+v via %q; want %s with Cluster %v and zone=a", tc.key, got.spec, got.route, req.WorkerName, tc.cluster)
		}
		d := brokertest.Receive(t, replies, amqpWait)
		var r control.Reply
		if err := json.Unmarshal(d.Body, &r); err != nil || !r.OK || d.CorrelationId != tc.key {
			t.Errorf("reply %s to %q", d.Body, d.CorrelationId)
		}
	}
}
