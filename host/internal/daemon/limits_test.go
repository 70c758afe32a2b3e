package daemon

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/broker/brokertest"
	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/host/internal/state"
	"github.com/dynworkers/dynworkers/host/internal/supervise"
	"github.com/dynworkers/dynworkers/host/internal/testplugins"
	"github.com/dynworkers/dynworkers/sdk/sdktest"
)

// handle sends a control message body through the host's dispatcher, as
// the AMQP and HTTP transports do.
func (h *harness) handle(body []byte) control.Reply {
	h.t.Helper()
	return h.d.tr.dispatcher.Handle(context.Background(), body)
}

// steady checks that the root supervisor runs and that each worker still
// runs in the process it had.
func (h *harness) steady(pids map[string]int) {
	h.t.Helper()
	if s := h.supervisor("root"); s.State != "running" {
		h.t.Errorf("root supervisor is %s", s.State)
	}
	for w, pid := range pids {
		if got := h.pid(w); got != pid || !testplugins.Alive(pid) {
			h.t.Errorf("%s: pid %d, was %d (alive %v)", w, got, pid, testplugins.Alive(pid))
		}
	}
}

func wantReply(t *testing.T, r control.Reply, code control.Code, parts ...string) {
	t.Helper()
	if r.OK || r.Error == nil || r.Error.Code != code {
		t.Fatalf("reply ok=%v error=%+v, want %s", r.OK, r.Error, code)
	}
	for _, p := range parts {
		if !strings.Contains(r.Error.Message, p) {
			t.Errorf("error %q does not say %q", r.Error.Message, p)
		}
	}
}

// The "one input never takes the host down": a 5 MiB worker_config,
// a 100 MiB control message and a 1,000,000-size pool each get a clear
// error naming the limit; the root supervisor and its workers run on in
// the same processes, nothing is persisted, and the pool start forks no
// child (the host's process count is what it was).
func TestOneInputNeverTakesTheHostDown(t *testing.T) {
	dir := t.TempDir()
	plugins := filepath.Join(dir, "plugins")
	linkPlugin(t, plugins, "chaos")
	linkPlugin(t, plugins, "pool")
	h := startHostIn(t, dir, `
worker "steady-1" {
  class = "chaos"
}
worker "steady-2" {
  class = "chaos"
}
`)
	pids := map[string]int{"steady-1": h.waitStarted("steady-1"), "steady-2": h.waitStarted("steady-2")}
	procs := len(testplugins.Children(os.Getpid()))

	// A 5 MiB worker_config: the message is over the message limit; a
	// 1.5 MiB one fits in a message but is over the config limit. Both are
	// refused by the dispatcher before the host decodes them, and by the
	// host itself when a caller skips the dispatcher.
	big := strings.Repeat("x", 5<<20)
	cfg, _ := json.Marshal(map[string]string{"message": big})
	body, _ := json.Marshal(map[string]any{"operation": "vumi_worker", "worker_name": "big", "worker_class": "chaos",
		"worker_config": json.RawMessage(cfg)})
	wantReply(t, h.handle(body), control.CodeMalformed, "the message is 5.0 MiB", "at most 2 MiB")
	mid, _ := json.Marshal(map[string]string{"message": big[:200<<10], "mode": "run", "delay": "1s", "code": "1",
		"x1": big[:250<<10], "x2": big[:250<<10], "x3": big[:250<<10], "x4": big[:250<<10], "x5": big[:250<<10]})
	body, _ = json.Marshal(map[string]any{"operation": "vumi_worker", "worker_name": "big", "worker_class": "chaos",
		"worker_config": json.RawMessage(mid)})
	wantReply(t, h.handle(body), control.CodeInvalidConfig, "worker_config is 1.", "a worker's config may be at most 1 MiB")
	ce := wantCode(t, errOnly(h.d.StartWorker(context.Background(), control.WorkerSpec{Name: "big", Class: "chaos", Config: cfg})),
		control.CodeInvalidConfig)
	if b, _ := json.Marshal(ce); !strings.Contains(string(b), "Config value too large") || !strings.Contains(string(b), "at most 256 KiB") {
		t.Errorf("direct start: %s", b)
	}

	// A 100 MiB message: refused before it is decoded.
	huge := make([]byte, 100<<20)
	copy(huge, `{"operation":"status","request_id":"`)
	wantReply(t, h.handle(huge), control.CodeMalformed, "100 MiB", "at most 2 MiB (input_limits.control_message_size)")
	huge = nil

	// A 1 MiB request_id (in a message under the size limit) is refused,
	// not echoed.
	r := h.handle([]byte(`{"operation":"status","request_id":"` + strings.Repeat("r", 1<<20) + `"}`))
	wantReply(t, r, control.CodeMalformed, "request_id is 1 MiB", "at most 256 bytes")
	if r.RequestID != "" {
		t.Errorf("request_id echoed (%d bytes)", len(r.RequestID))
	}

	// A pool of 1,000,000: the pool refuses the size in its Start, before
	// any child; the control start is then taken back.
	body = []byte(`{"operation":"vumi_worker","worker_name":"pool-big","worker_class":"dynworkers.pool",
		"worker_config":{"class":"chaos","size":1000000}}`)
	wantReply(t, h.handle(body), control.CodeInvalidConfig, `worker "pool-big" failed to start`,
		"size must be at most 1000 (the pool's limit), got 1000000", "nothing was persisted")

	h.steady(pids)
	sdktest.Eventually(t, 10*time.Second, func() bool { return len(testplugins.Children(os.Getpid())) == procs },
		"the host's processes back to %d (%v)", procs, lazy(func() any { return testplugins.Children(os.Getpid()) }))
	for _, w := range h.d.Workers() {
		if w.Name != "steady-1" && w.Name != "steady-2" {
			t.Errorf("worker %q is in the tree (%s)", w.Name, w.State)
		}
	}
	if st := h.loadState(); len(st.Workers) != 0 || len(st.Supervisors) != 0 {
		t.Errorf("persisted: %+v", st)
	}
	// No child of the pool was ever started.
	for {
		select {
		case ev := <-h.events:
			if e, ok := ev.(supervise.ChildStarting); ok && strings.HasPrefix(e.Child, "pool-big.") {
				t.Fatalf("the pool started child %q", e.Child)
			}
			continue
		default:
		}
		break
	}
}

// A hybrid may not have more children than input_limits allow; the
// refusal fails its start for good (no retries, no restart budget spent),
// and the children it had are stopped.
func TestHybridChildLimits(t *testing.T) {
	dir := t.TempDir()
	plugins := filepath.Join(dir, "plugins")
	linkPlugin(t, plugins, "chaos")
	linkPlugin(t, plugins, "pool")
	h := startHostIn(t, dir, `
input_limits {
  children_per_worker = 2
  children            = 5
}
worker "steady" {
  class = "chaos"
}
worker "pool-a" {
  class   = "dynworkers.pool"
  restart = "transient"
  config {
    class = "chaos"
    size  = 2
  }
}
`)
	pids := map[string]int{"steady": h.waitStarted("steady")}
	h.waitStarted("pool-a")
	pids["pool-a.1"], pids["pool-a.2"] = h.pid("pool-a.1"), h.pid("pool-a.2")

	// Three children for one worker: over children_per_worker.
	body := []byte(`{"operation":"vumi_worker","worker_name":"pool-b","worker_class":"dynworkers.pool",
		"worker_config":{"class":"chaos","size":3}}`)
	wantReply(t, h.handle(body), control.CodeInvalidConfig, "input_limits.children_per_worker = 2")
	// Two pools of two: within children_per_worker, but the second is
	// over the host's children.
	body = []byte(`{"operation":"vumi_worker","worker_name":"pool-c","worker_class":"dynworkers.pool",
		"worker_config":{"class":"chaos","size":2}}`)
	if r := h.handle(body); !r.OK {
		t.Fatalf("pool-c: %+v", r.Error)
	}
	body = []byte(`{"operation":"vumi_worker","worker_name":"pool-d","worker_class":"dynworkers.pool",
		"worker_config":{"class":"chaos","size":2}}`)
	wantReply(t, h.handle(body), control.CodeInvalidConfig, "the host runs 5 children of hybrid workers", "input_limits.children = 5")

	h.steady(pids)
	sdktest.Eventually(t, 10*time.Second, func() bool {
		for _, w := range h.d.Workers() {
			if strings.HasPrefix(w.Name, "pool-b") || strings.HasPrefix(w.Name, "pool-d") {
				return false
			}
		}
		return true
	}, "the refused pools and their children gone")
	if st := h.loadState(); len(st.Workers) != 1 || st.Workers[0].Name != "pool-c" {
		t.Errorf("persisted: %+v", st.Workers)
	}
}

// The documented mv upgrade with no warm spare ready: a different binary
// is moved over a running worker's, and the worker is restarted before the
// catalog saw the change. Its start fails on the checksum, as permanent:
// that worker is failed, clearly, with one start attempt and no restart
// budget spent; the root supervisor and the other workers run on in the
// same processes. After a host restart (the control-started worker's
// record is persisted, its class is gone) the root is up again and the
// other workers run.
func TestBinaryReplacedWithoutSpareFailsOnlyThatWorker(t *testing.T) {
	dir := t.TempDir()
	plugins := filepath.Join(dir, "plugins")
	linkPlugin(t, plugins, "chaos")
	linkPlugin(t, plugins, "echo")
	src := `system_id = "test"
host {
  name        = "test-host"
  plugin_dir  = "plugins"
  state_dir   = "var"
  http_addr   = "127.0.0.1:0"
  warm_spares = 0
}
supervisor "root" {
  intensity = 2
  period    = "1m"
  worker "steady-1" {
    class = "chaos"
  }
  worker "steady-2" {
    class = "chaos"
  }
}
`
	noWatch := func(o *Options) { o.PluginWatchInterval = -1 }
	h := startConfigOpts(t, dir, src, noWatch)
	pids := map[string]int{"steady-1": h.waitStarted("steady-1"), "steady-2": h.waitStarted("steady-2")}
	ctx := context.Background()
	if _, err := h.d.StartWorker(ctx, control.WorkerSpec{Name: "victim", Class: "echo",
		Config: json.RawMessage(`{"transport_name":"t"}`)}); err != nil {
		t.Fatal(err)
	}
	victim := h.waitStarted("victim")

	// mv of another binary (telnet) over the victim's.
	tmp := filepath.Join(dir, "telnet.new")
	testplugins.Copy(t, pluginBins["telnet"], tmp)
	if err := os.Rename(tmp, filepath.Join(plugins, "echo")); err != nil {
		t.Fatal(err)
	}
	err := h.d.RestartWorker(ctx, "victim")
	if err == nil || !strings.Contains(err.Error(), "changed since it was described") {
		t.Errorf("RestartWorker = %v, want the checksum error", err)
	}
	failed := h.waitEvent("victim failed", func(ev supervise.Event) bool {
		e, ok := ev.(supervise.ChildFailed)
		return ok && e.Child == "victim"
	}).(supervise.ChildFailed)
	if failed.Reason != supervise.ReasonPermanentError || !strings.Contains(failed.Err.Error(), "sha256 no longer matches") {
		t.Errorf("victim failed with %s: %v", failed.Reason, failed.Err)
	}
	ws, _ := h.d.Worker("victim")
	if ws.State != "failed" || ws.Restarts != 0 || !strings.Contains(ws.LastExit, "rescan the plugin directory") {
		t.Errorf("victim status %+v", ws)
	}
	waitGone(t, 5*time.Second, victim)
	h.steady(pids)
	// No further start of the victim was attempted.
	attempts := 0
	for done := false; !done; {
		select {
		case ev := <-h.events:
			if e, ok := ev.(supervise.ChildStarting); ok && e.Child == "victim" {
				attempts++
			}
			if e, ok := ev.(supervise.SupervisorEscalated); ok {
				t.Errorf("supervisor %s escalated", e.Supervisor)
			}
		default:
			done = true
		}
	}
	if attempts != 0 {
		t.Errorf("%d more starts of the victim after its failure", attempts)
	}

	// A host restart: the victim's record is persisted but its class is
	// gone; the root comes up with the other workers.
	h.stop()
	h2 := startConfigOpts(t, dir, src, noWatch)
	h2.waitStarted("steady-1")
	h2.waitStarted("steady-2")
	if s := h2.supervisor("root"); s.State != "running" {
		t.Errorf("after the host restart the root is %s", s.State)
	}
	if _, ok := h2.d.Worker("victim"); ok {
		if ws, _ := h2.d.Worker("victim"); ws.State == "running" {
			t.Errorf("victim runs with a binary that does not offer its class")
		}
	}
	if st := h2.loadState(); !slices.ContainsFunc(st.Workers, func(w state.Worker) bool { return w.Name == "victim" }) {
		t.Errorf("the victim's record was dropped: %+v", st.Workers)
	}
}

// Names: worker and supervisor names are one name space; "root" is
// reserved; a worker named like a control-started supervisor is a
// conflict (409), and the other way round.
func TestNamesOneNameSpace(t *testing.T) {
	h := startHost(t, `
worker "w" {
  class = "chaos"
}
`)
	h.waitStarted("w")
	ctx := context.Background()
	wantReply(t, h.handle([]byte(`{"operation":"vumi_worker","worker_name":"root","worker_class":"chaos"}`)),
		control.CodeInvalidConfig, `"root" is reserved`)
	wantCode(t, errOnly(h.d.StartWorker(ctx, control.WorkerSpec{Name: "root", Class: "chaos"})), control.CodeInvalidConfig)

	if r := h.handle([]byte(`{"operation":"start_supervisor","supervisor_name":"campaign"}`)); !r.OK {
		t.Fatalf("start_supervisor: %+v", r.Error)
	}
	r := h.handle([]byte(`{"operation":"vumi_worker","worker_name":"campaign","worker_class":"chaos"}`))
	wantReply(t, r, control.CodeConflict, `"campaign" is taken by supervisor "root/campaign"`)
	if got := r.Error.Code.HTTPStatus(); got != 409 {
		t.Errorf("HTTP status %d, want 409", got)
	}
	r = h.handle([]byte(`{"operation":"vumi_worker","worker_name":"campaign","worker_class":"chaos","supervisor":"root/campaign"}`))
	wantReply(t, r, control.CodeConflict, "taken by supervisor")
	r = h.handle([]byte(`{"operation":"start_supervisor","supervisor_name":"w"}`))
	wantReply(t, r, control.CodeConflict, `"w" is taken by a worker`)
	if st := h.loadState(); len(st.Workers) != 0 || len(st.Supervisors) != 1 {
		t.Errorf("persisted: %+v", st)
	}
}

// A stop of a worker that ignores Stop kills it at its shutdown_timeout:
// a success that says so.
func TestStopOfAWorkerThatIgnoresStopSaysKilled(t *testing.T) {
	h := startHost(t, "")
	ctx := context.Background()
	if _, err := h.d.StartWorker(ctx, control.WorkerSpec{Name: "stubborn", Class: "chaos",
		Config: json.RawMessage(`{"mode":"ignore_stop"}`)}); err != nil {
		t.Fatal(err)
	}
	pid := h.waitStarted("stubborn")
	r := h.handle([]byte(`{"operation":"stop_worker","worker_name":"stubborn"}`))
	if !r.OK {
		t.Fatalf("stop_worker: %+v", r.Error)
	}
	res, ok := r.Result.(api.WorkerResult)
	if !ok || !res.Killed || res.Action != "stopped" || !strings.Contains(res.Detail, "did not stop within shutdown_timeout") {
		t.Errorf("result %+v", r.Result)
	}
	if testplugins.Alive(pid) {
		t.Errorf("process %d alive", pid)
	}
	if _, ok := h.d.Worker("stubborn"); ok {
		t.Errorf("stubborn still in the tree")
	}
	if st := h.loadState(); len(st.Workers) != 0 {
		t.Errorf("persisted: %+v", st.Workers)
	}
}

// A 100 MiB control message over the real broker to a real host: refused
// with an error naming the limit, dead-lettered, and nothing changes: the
// root supervisor and its worker run on in the same process, nothing is
// persisted, and the host answers the next message.
func TestHundredMiBMessageOverAMQP(t *testing.T) {
	sys := brokertest.ID(t)
	h := amqpHost(t, sys, "h1", `
worker "steady" {
  class = "chaos"
}
`)
	pids := map[string]int{"steady": h.waitStarted("steady")}
	admin := brokertest.NewAdmin(t)
	t.Cleanup(func() {
		admin.RemoveMessages(control.DeadLetterQueue, func(d amqp.Delivery) bool { return strings.HasPrefix(d.RoutingKey, sys+".") })
	})
	body := make([]byte, 100<<20)
	prefix := `{"operation":"vumi_worker","worker_name":"big","worker_class":"chaos","worker_config":{"message":"`
	copy(body, prefix)
	for i := len(prefix); i < len(body)-3; i++ {
		body[i] = 'a'
	}
	copy(body[len(body)-3:], `"}}`)
	replyQ, replies := admin.TempQueue("")
	admin.PublishWithin(2*time.Minute, control.ControlExchange, sys+".h1", amqp.Publishing{Body: body, ReplyTo: replyQ, CorrelationId: "big"})
	body = nil
	var r control.Reply
	if d := brokertest.Receive(t, replies, waitTimeout); d.CorrelationId != "big" || json.Unmarshal(d.Body, &r) != nil {
		t.Fatalf("reply %.200s (correlation_id %q)", d.Body, d.CorrelationId)
	}
	wantReply(t, r, control.CodeMalformed, "the message is 100 MiB", "at most 2 MiB (input_limits.control_message_size)")
	if r := request(t, admin, sys+".h1", `{"operation":"status","request_id":"after"}`); !r.OK || r.RequestID != "after" {
		t.Errorf("status after the big message: %+v", r)
	}
	h.steady(pids)
	if _, ok := h.d.Worker("big"); ok {
		t.Errorf("worker big exists")
	}
	if st := h.loadState(); len(st.Workers) != 0 {
		t.Errorf("persisted: %+v", st.Workers)
	}
	// The host rejected it without requeue: it is not left in the control
	// queue, and the host logged that it went to the dead-letter exchange.
	if q, err := admin.InspectQueue(control.HostQueue(sys, "h1")); err != nil || q.Messages != 0 {
		t.Errorf("the control queue after the big message: %+v, %v", q, err)
	}
	rejected := false
	for _, line := range strings.Split(h.logs.String(), "\n") {
		rejected = rejected || strings.Contains(line, "rejected to the dead-letter exchange") && strings.Contains(line, "correlation_id=big")
	}
	if !rejected {
		t.Errorf("the host did not log the big message's rejection to the dead-letter exchange")
	}
	// The dead-letter queue keeps a copy only if it fits the queue's bound
	// (DeadLetterMaxBytes, 64 MiB, drop-head): the broker drops 100 MiB as
	// it arrives there. One declared unbounded by an older host keeps it.
	if n := admin.RemoveMessages(control.DeadLetterQueue, func(d amqp.Delivery) bool {
		return d.RoutingKey == sys+".h1" && len(d.Body) == 100<<20
	}); n > 1 {
		t.Errorf("%d copies of the big message dead-lettered, want at most 1", n)
	}
}
