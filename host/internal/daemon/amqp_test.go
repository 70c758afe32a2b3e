package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dynworkers/dynworkers/host/internal/broker/brokertest"
	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/host/internal/supervise"
	"github.com/dynworkers/dynworkers/host/internal/testplugins"
)

// amqpHost runs a host on the test broker with a fresh system id.
func amqpHost(t *testing.T, sys, hostName, body string) *harness {
	t.Helper()
	url := brokertest.URL(t)
	dir := t.TempDir()
	linkPlugin(t, filepath.Join(dir, "plugins"), "chaos")
	linkPlugin(t, filepath.Join(dir, "plugins"), "smpp")
	admin := brokertest.NewAdmin(t)
	admin.DeleteAtCleanup([]string{control.HostQueue(sys, hostName), control.AnyQueue(sys)}, nil)
	h := startAMQPHost(t, dir, sys, hostName, url, body)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := h.d.WaitBroker(ctx); err != nil {
		t.Fatalf("host did not connect to the broker: %v", err)
	}
	return h
}

// request publishes body to key with a reply queue and returns the reply.
func request(t *testing.T, admin *brokertest.Admin, key string, body string) control.Reply {
	t.Helper()
	replyQ, deliveries := admin.TempQueue("")
	corr := fmt.Sprintf("corr-%d", time.Now().UnixNano())
	admin.Publish(control.ControlExchange, key, amqp.Publishing{
		ContentType: "application/json", Body: []byte(body), ReplyTo: replyQ, CorrelationId: corr,
	})
	d := brokertest.Receive(t, deliveries, waitTimeout)
	if d.CorrelationId != corr {
		t.Fatalf("reply correlation_id %q, want %q", d.CorrelationId, corr)
	}
	var rep control.Reply
	if err := json.Unmarshal(d.Body, &rep); err != nil {
		t.Fatalf("reply %s: %v", d.Body, err)
	}
	return rep
}

// The design note's example, sent by a plain client as a bare JSON body with
// no reply_to and no headers, starts the worker; so does an envelope. The
// sensitive password shows up nowhere.
func TestDesignNoteExampleOverAMQP(t *testing.T) {
	sys := brokertest.ID(t)
	h := amqpHost(t, sys, "h1", "")
	admin := brokertest.NewAdmin(t)
	events, evq := admin.TempQueue(control.EventsExchange, sys+".h1.#")
	_ = events

	bare := `{"operation": "vumi_worker", "worker_name": "SMPP Transport for account1",
 "worker_class": "vumi.workers.smpp.transport.SMPPTransport",
 "worker_config": {"host": "smpp.host.com", "port": "2773", "username": "account1",
                   "password": "password", "system_id": "abc"}}`
	admin.Publish(control.ControlExchange, sys+".h1", amqp.Publishing{Body: []byte(bare)})
	h.waitStarted("SMPP Transport for account1")

	envelope := `{"message_version": "20110707", "message_type": "control", "source_name": "test",
 "source_id": "t1", "timestamp": [2026, 11, 26, 12, 0, 0],
 "payload": {"operation": "vumi_worker", "worker_name": "SMPP Transport for account2",
   "worker_class": "vumi.workers.smpp.transport.SMPPTransport",
   "worker_config": {"host": "smpp.host.com", "port": "2773", "password": "Zx9-envelope-secret"}}}`
	admin.Publish(control.ControlExchange, sys+".h1", amqp.Publishing{Body: []byte(envelope)})
	pid := h.waitStarted("SMPP Transport for account2")
	st, err := h.processOf("SMPP Transport for account2").Status(context.Background())
	if err != nil || !strings.Contains(string(st), `"port":2773`) {
		t.Errorf("plugin status %s, %v: want the port converted to 2773", st, err)
	}

	// The started event of account2 arrives on vumi.events with its pid.
	for {
		d := brokertest.Receive(t, evq, waitTimeout)
		if strings.Contains(d.RoutingKey, "worker_started") && strings.Contains(string(d.Body), "account2") {
			if !strings.Contains(string(d.Body), fmt.Sprintf(`"pid":%d`, pid)) {
				t.Errorf("started event %s lacks pid %d", d.Body, pid)
			}
			break
		}
	}
	status := request(t, admin, sys+".h1", `{"operation": "status"}`)
	b, _ := json.Marshal(status)
	if !status.OK || !strings.Contains(string(b), "SMPP Transport for account2") {
		t.Fatalf("status reply %s", b)
	}
	for _, secret := range []string{"Zx9-envelope-secret", `"password":"password"`} {
		if strings.Contains(string(b), secret) || strings.Contains(h.logs.String(), secret) {
			t.Errorf("secret %q shows in the status reply or the host log", secret)
		}
	}
}

// status, list_classes, stop and restart round trips with reply_to and
// correlation_id, and the error codes.
func TestControlRoundTripsOverAMQP(t *testing.T) {
	sys := brokertest.ID(t)
	h := amqpHost(t, sys, "h1", `
worker "steady" {
  class = "chaos"
}
`)
	h.waitStarted("steady")
	admin := brokertest.NewAdmin(t)
	key := sys + ".h1"

	if rep := request(t, admin, key, `{"operation": "list_classes", "request_id": "r1"}`); !rep.OK || rep.RequestID != "r1" {
		t.Errorf("list_classes: %+v", rep)
	}
	if rep := request(t, admin, key, `{"operation": "start_worker", "worker_name": "dyn", "worker_class": "chaos"}`); !rep.OK {
		t.Fatalf("start: %+v", rep)
	}
	old := h.pid("dyn")
	if rep := request(t, admin, key, `{"operation": "restart_worker", "worker_name": "dyn"}`); !rep.OK {
		t.Fatalf("restart: %+v", rep)
	}
	if h.pid("dyn") == old {
		t.Errorf("restart kept pid %d", old)
	}
	if rep := request(t, admin, key, `{"operation": "stop_worker", "worker_name": "dyn"}`); !rep.OK {
		t.Fatalf("stop: %+v", rep)
	}
	for body, code := range map[string]control.Code{
		`{"operation": "frobnicate"}`: control.CodeUnknownOperation,
		`{"operation": "vumi_worker", "worker_name": "x", "worker_class": "nope"}`:                               control.CodeUnknownClass,
		`{"operation": "vumi_worker", "worker_name": "x", "worker_class": "smpp", "worker_config": {"prot": 1}}`: control.CodeInvalidConfig,
		`{"operation": "vumi_worker", "worker_name": "steady", "worker_class": "chaos"}`:                         control.CodeConflict,
		`{"operation": "stop_worker", "worker_name": "dyn"}`:                                                     control.CodeNotFound,
	} {
		rep := request(t, admin, key, body)
		if rep.OK || rep.Error == nil || rep.Error.Code != code {
			t.Errorf("%s: reply %+v, want %s", body, rep, code)
		}
		if code == control.CodeInvalidConfig && !strings.Contains(fmt.Sprint(rep.Error.Details), "prot") {
			t.Errorf("invalid_config details %+v do not name the attribute", rep.Error.Details)
		}
	}
	// Malformed JSON: answered, dead-lettered (not requeued), host unaffected.
	rep := request(t, admin, key, `{"operation": "status"`)
	if rep.OK || rep.Error.Code != control.CodeMalformed {
		t.Errorf("malformed: %+v", rep)
	}
	if rep := request(t, admin, key, `{"operation": "status"}`); !rep.OK {
		t.Errorf("status after a malformed message: %+v", rep)
	}
	q, err := admin.InspectQueue(control.HostQueue(sys, "h1"))
	if err != nil || q.Messages != 0 {
		t.Errorf("host queue %+v, %v: want it empty (nothing requeued)", q, err)
	}
	if n := admin.RemoveMessages(control.DeadLetterQueue, func(d amqp.Delivery) bool { return string(d.Body) == `{"operation": "status"` }); n != 1 {
		t.Errorf("%d copies of the malformed message in %s, want 1", n, control.DeadLetterQueue)
	}
}

// Connections closed by the broker: the host keeps its workers running,
// reconnects, and handles the control messages published while it was
// disconnected.
func TestBrokerOutageOverAMQP(t *testing.T) {
	sys := brokertest.ID(t)
	h := amqpHost(t, sys, "h1", `
worker "steady" {
  class = "chaos"
}
`)
	pid := h.waitStarted("steady")
	admin := brokertest.NewAdmin(t)
	if rep := request(t, admin, sys+".h1", `{"operation": "status"}`); !rep.OK {
		t.Fatalf("status: %+v", rep)
	}
	name := fmt.Sprintf("dynworkers %s/h1", sys)
	if n := brokertest.CloseConnections(t, name); n == 0 {
		t.Fatalf("no connection named %q to close", name)
	}
	// Published at once, most likely while the host is reconnecting.
	admin.Publish(control.ControlExchange, sys+".h1", amqp.Publishing{
		Body: []byte(`{"operation": "vumi_worker", "worker_name": "during-outage", "worker_class": "chaos"}`)})
	h.waitStarted("during-outage")
	if h.pid("steady") != pid || !testplugins.Alive(pid) {
		t.Errorf("the steady worker was disturbed by the outage")
	}
}

// Two hosts on one broker: a status to <sys>.all gets two replies; a start
// on <sys>.any runs on exactly one of them.
func TestTwoHostsAllAndAny(t *testing.T) {
	sys := brokertest.ID(t)
	h1 := amqpHost(t, sys, "h1", "")
	h2 := amqpHost(t, sys, "h2", "")
	admin := brokertest.NewAdmin(t)
	replyQ, deliveries := admin.TempQueue("")
	admin.Publish(control.ControlExchange, sys+".all", amqp.Publishing{Body: []byte(`{"operation": "status"}`), ReplyTo: replyQ, CorrelationId: "all-1"})
	hosts := map[string]bool{}
	for range 2 {
		d := brokertest.Receive(t, deliveries, waitTimeout)
		var rep struct {
			OK     bool `json:"ok"`
			Result struct {
				Host string `json:"host"`
			} `json:"result"`
		}
		if err := json.Unmarshal(d.Body, &rep); err != nil || !rep.OK {
			t.Fatalf("reply %s: %v", d.Body, err)
		}
		hosts[rep.Result.Host] = true
	}
	if !hosts["h1"] || !hosts["h2"] {
		t.Errorf("replies from %v, want h1 and h2", hosts)
	}
	rep := request(t, admin, sys+".any", `{"operation": "vumi_worker", "worker_name": "anywhere", "worker_class": "chaos"}`)
	if !rep.OK {
		t.Fatalf("start on any: %+v", rep)
	}
	_, on1 := h1.d.Worker("anywhere")
	_, on2 := h2.d.Worker("anywhere")
	if on1 == on2 {
		t.Errorf("worker on h1: %v, on h2: %v; want exactly one", on1, on2)
	}
	_ = supervise.StateRunning
}
