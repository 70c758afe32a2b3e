package control_test

// Tests of the AMQP transport against the real RabbitMQ. Names of helpers
// carry "amqp" so that they do not collide with the dispatcher's tests in
// the same package.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dynworkers/dynworkers/host/internal/broker"
	"github.com/dynworkers/dynworkers/host/internal/broker/brokertest"
	"github.com/dynworkers/dynworkers/host/internal/control"
)

const amqpWait = 20 * time.Second

// amqpFakeHandler answers by the body: "not json" is malformed, "panic"
// panics, "block" waits for ctx and fails as internal; anything else
// succeeds with the host's name and the body.
type amqpFakeHandler struct {
	host   string
	mu     sync.Mutex
	bodies []string
	calls  chan string
}

func newAMQPFakeHandler(host string) *amqpFakeHandler {
	return &amqpFakeHandler{host: host, calls: make(chan string, 100)}
}

func (h *amqpFakeHandler) Handle(ctx context.Context, body []byte) control.Reply {
	h.mu.Lock()
	h.bodies = append(h.bodies, string(body))
	h.mu.Unlock()
	h.calls <- string(body)
	switch string(body) {
	case "not json":
		return control.Reply{Error: control.Errorf(control.CodeMalformed, "not JSON")}
	case "panic":
		panic("boom")
	case "block":
		<-ctx.Done()
		return control.Reply{Error: control.Errorf(control.CodeInternal, "interrupted")}
	}
	return control.Reply{OK: true, Result: map[string]string{"host": h.host, "body": string(body)}}
}

// count returns how many times body was handled.
func (h *amqpFakeHandler) count(body string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, b := range h.bodies {
		if b == body {
			n++
		}
	}
	return n
}

// amqpHost is one running transport with its own connection.
type amqpHost struct {
	name      string // connection name
	conn      *broker.Conn
	transport *control.AMQPTransport
	handler   *amqpFakeHandler
	stop      func() // cancels Run, waits for it and closes the connection; idempotent
}

// amqpCleanup deletes the system's queues at the end of the test (the
// shared exchanges stay: other tests use them) and removes the system's
// messages from the shared dead-letter queue.
func amqpCleanup(t *testing.T, admin *brokertest.Admin, systemID string, hosts ...string) {
	queues := []string{control.AnyQueue(systemID)}
	for _, h := range hosts {
		queues = append(queues, control.HostQueue(systemID, h))
	}
	admin.DeleteAtCleanup(queues, nil)
	t.Cleanup(func() {
		admin.RemoveMessages(control.DeadLetterQueue, func(d amqp.Delivery) bool {
			return strings.HasPrefix(d.RoutingKey, systemID+".")
		})
	})
}

func amqpLogger(t *testing.T, name string) hclog.Logger {
	var mu sync.Mutex
	done := false
	t.Cleanup(func() { mu.Lock(); done = true; mu.Unlock() })
	return hclog.New(&hclog.LoggerOptions{Name: name, Level: hclog.Debug, Output: amqpWriter(func(p []byte) {
		mu.Lock()
		defer mu.Unlock()
		if !done {
			t.Log(strings.TrimSuffix(string(p), "\n"))
		}
	})})
}

type amqpWriter func([]byte)

func (w amqpWriter) Write(p []byte) (int, error) { w(p); return len(p), nil }

// startAMQPHost dials a connection set up with the control topology (setup
// wraps it when not nil) and runs a transport on it until the test ends.
func startAMQPHost(t *testing.T, systemID, hostName string, setup func(func(*amqp.Channel) error) func(*amqp.Channel) error) *amqpHost {
	t.Helper()
	return startAMQPHostWith(t, systemID, hostName, setup, nil)
}

// startAMQPHostWith is startAMQPHost with handler instead of an
// amqpFakeHandler (when not nil; h.handler is nil then).
func startAMQPHostWith(t *testing.T, systemID, hostName string, setup func(func(*amqp.Channel) error) func(*amqp.Channel) error, handler control.Handler) *amqpHost {
	t.Helper()
	h := &amqpHost{name: "dynworkers " + systemID + "/" + hostName}
	if handler == nil {
		h.handler = newAMQPFakeHandler(hostName)
		handler = h.handler
	}
	topology := control.Topology(systemID, hostName)
	if setup != nil {
		topology = setup(topology)
	}
	log := amqpLogger(t, hostName)
	conn, err := broker.Dial(context.Background(), broker.Options{
		URL: brokertest.URL(t), ConnectionName: h.name, Logger: log.Named("broker"), Setup: topology,
	})
	if err != nil {
		t.Fatal(err)
	}
	h.conn = conn
	ctx, cancel := context.WithTimeout(context.Background(), amqpWait)
	defer cancel()
	if err := conn.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	h.transport = control.NewAMQPTransport(control.AMQPOptions{
		SystemID: systemID, HostName: hostName, Conn: conn, Handler: handler, Logger: log,
	})
	runCtx, stopRun := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- h.transport.Run(runCtx) }()
	var once sync.Once
	h.stop = func() {
		once.Do(func() {
			stopRun()
			if err := <-ran; err != nil {
				t.Errorf("Run: %v", err)
			}
			if err := conn.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	t.Cleanup(h.stop)
	return h
}

// amqpRequest publishes body to the control exchange with key, reply_to
// replyTo (if not empty) and correlation id corr.
func amqpRequest(admin *brokertest.Admin, key, replyTo, corr, body string) {
	admin.Publish(control.ControlExchange, key, amqp.Publishing{
		ContentType: "application/json", ReplyTo: replyTo, CorrelationId: corr, Body: []byte(body),
	})
}

// amqpReply receives the next reply and decodes it.
func amqpReply(t *testing.T, replies <-chan amqp.Delivery) (amqp.Delivery, control.Reply) {
	t.Helper()
	d := brokertest.Receive(t, replies, amqpWait)
	var r struct {
		control.Reply
		Result map[string]string `json:"result"`
	}
	if err := json.Unmarshal(d.Body, &r); err != nil {
		t.Fatalf("reply %q: %v", d.Body, err)
	}
	r.Reply.Result = r.Result
	return d, r.Reply
}

func TestAMQPTopology(t *testing.T) {
	admin := brokertest.NewAdmin(t)
	sid := brokertest.ID(t)
	amqpCleanup(t, admin, sid, "h1")
	if err := admin.Do(control.Topology(sid, "h1")); err != nil {
		t.Fatalf("Topology: %v", err)
	}
	// Declaring again is idempotent.
	if err := admin.Do(control.Topology(sid, "h1")); err != nil {
		t.Fatalf("Topology again: %v", err)
	}

	// A declaration that differs from the existing entity fails with
	// PRECONDITION_FAILED, one that matches succeeds: so these pin kind,
	// durability and arguments.
	dl := amqp.Table{"x-dead-letter-exchange": control.DeadLetterExchange}
	for _, c := range []struct {
		what string
		f    func(*amqp.Channel) error
		ok   bool
	}{
		{"vumi.control topic durable", exchange(control.ControlExchange, "topic", true), true},
		{"vumi.control not durable", exchange(control.ControlExchange, "topic", false), false},
		{"vumi.control direct", exchange(control.ControlExchange, "direct", true), false},
		{"vumi.events topic durable", exchange(control.EventsExchange, "topic", true), true},
		{"vumi.events not durable", exchange(control.EventsExchange, "topic", false), false},
		{"dlx fanout durable", exchange(control.DeadLetterExchange, "fanout", true), true},
		{"host queue durable with dlx", queue(control.HostQueue(sid, "h1"), true, dl), true},
		{"host queue without dlx", queue(control.HostQueue(sid, "h1"), true, nil), false},
		{"host queue not durable", queue(control.HostQueue(sid, "h1"), false, dl), false},
		{"any queue durable with dlx", queue(control.AnyQueue(sid), true, dl), true},
		{"any queue without dlx", queue(control.AnyQueue(sid), true, nil), false},
	} {
		err := admin.Do(c.f)
		var aerr *amqp.Error
		switch {
		case c.ok && err != nil:
			t.Errorf("%s: %v", c.what, err)
		case !c.ok && (!errors.As(err, &aerr) || aerr.Code != amqp.PreconditionFailed):
			t.Errorf("%s: %v, want PRECONDITION_FAILED", c.what, err)
		}
	}

	// Bindings: route one message with each key and count where they land.
	for _, key := range []string{control.HostKey(sid, "h1"), control.AllKey(sid), control.AnyKey(sid), sid + ".h2"} {
		amqpRequest(admin, key, "", "", "{}")
	}
	for q, want := range map[string]int{control.HostQueue(sid, "h1"): 2, control.AnyQueue(sid): 1} {
		if got, err := admin.InspectQueue(q); err != nil || got.Messages != want {
			t.Errorf("%s: %+v, %v; want %d messages", q, got, err, want)
		}
	}
}

func exchange(name, kind string, durable bool) func(*amqp.Channel) error {
	return func(ch *amqp.Channel) error { return ch.ExchangeDeclare(name, kind, durable, false, false, false, nil) }
}

func queue(name string, durable bool, args amqp.Table) func(*amqp.Channel) error {
	return func(ch *amqp.Channel) error {
		_, err := ch.QueueDeclare(name, durable, false, false, false, args)
		return err
	}
}

func TestAMQPCheckNames(t *testing.T) {
	for _, c := range []struct {
		sid, host string
		ok        bool
	}{
		{"global", "host-1", true},
		{"global", "host-1.example.com", true},
		{"", "h", false},
		{"global", "", false},
		{"global", "all", false},
		{"global", "any", false},
		{"glo*bal", "h", false},
		{"global", "h#", false},
		{"global", "my host", false},
		{"global", strings.Repeat("h", 250), false},
	} {
		if err := control.CheckNames(c.sid, c.host); (err == nil) != c.ok {
			t.Errorf("CheckNames(%q, %q) = %v, want ok=%v", c.sid, c.host, err, c.ok)
		}
	}
}

func TestAMQPRoundTrip(t *testing.T) {
	admin := brokertest.NewAdmin(t)
	sid := brokertest.ID(t)
	amqpCleanup(t, admin, sid, "h1")
	h := startAMQPHost(t, sid, "h1", nil)
	replyTo, replies := admin.TempQueue("")

	body := `{"operation": "status"}`
	amqpRequest(admin, control.HostKey(sid, "h1"), replyTo, "corr-1", body)
	d, r := amqpReply(t, replies)
	if d.CorrelationId != "corr-1" || d.ContentType != "application/json" || d.DeliveryMode != amqp.Persistent {
		t.Errorf("reply correlation_id %q content_type %q delivery_mode %d (want persistent)", d.CorrelationId, d.ContentType, d.DeliveryMode)
	}
	if !r.OK || r.Result.(map[string]string)["body"] != body {
		t.Errorf("reply %+v", r)
	}

	// Without reply_to the message is handled and acked all the same.
	amqpRequest(admin, control.HostKey(sid, "h1"), "", "", "quiet")
	for _, want := range []string{body, "quiet"} {
		if got := amqpNextCall(t, h); got != want {
			t.Fatalf("handled %q, want %q", got, want)
		}
	}
	h.stop()
	if n := h.handler.count("quiet"); n != 1 {
		t.Errorf("handled %d times, want 1", n)
	}
	if q, err := admin.InspectQueue(control.HostQueue(sid, "h1")); err != nil || q.Messages != 0 {
		t.Errorf("host queue after stop: %+v, %v; want empty (all acked)", q, err)
	}
}

// amqpNextCall returns the next body h's handler was called with.
func amqpNextCall(t *testing.T, h *amqpHost) string {
	t.Helper()
	select {
	case b := <-h.handler.calls:
		return b
	case <-time.After(amqpWait):
		t.Fatalf("%s: no call within %v", h.name, amqpWait)
		return ""
	}
}

func TestAMQPMalformedAndPanickingMessagesAreDeadLettered(t *testing.T) {
	admin := brokertest.NewAdmin(t)
	sid := brokertest.ID(t)
	amqpCleanup(t, admin, sid, "h1")
	h := startAMQPHost(t, sid, "h1", nil)
	replyTo, replies := admin.TempQueue("")
	// A private copy of everything dead-lettered: the DLX is a fanout.
	_, dead := admin.TempQueue(control.DeadLetterExchange, "")

	for _, c := range []struct {
		body string
		code control.Code
	}{{"not json", control.CodeMalformed}, {"panic", control.CodeInternal}} {
		amqpRequest(admin, control.HostKey(sid, "h1"), replyTo, "corr-"+c.body, c.body)
		d, r := amqpReply(t, replies)
		if d.CorrelationId != "corr-"+c.body || r.OK || r.Error == nil || r.Error.Code != c.code {
			t.Errorf("%q: reply %s (correlation_id %q), want code %s", c.body, d.Body, d.CorrelationId, c.code)
		}
		dl := brokertest.Receive(t, dead, amqpWait)
		if string(dl.Body) != c.body || dl.RoutingKey != control.HostKey(sid, "h1") || dl.Headers["x-death"] == nil {
			t.Errorf("%q: dead-lettered %q key %q headers %v", c.body, dl.Body, dl.RoutingKey, dl.Headers)
		}
	}
	// The consumer survived the panic.
	amqpRequest(admin, control.HostKey(sid, "h1"), replyTo, "corr-ok", "fine")
	if d, r := amqpReply(t, replies); d.CorrelationId != "corr-ok" || !r.OK {
		t.Errorf("after the panic: %s", d.Body)
	}

	h.stop()
	for _, body := range []string{"not json", "panic"} {
		if n := h.handler.count(body); n != 1 {
			t.Errorf("%q handled %d times, want 1 (never requeued)", body, n)
		}
	}
	if q, err := admin.InspectQueue(control.HostQueue(sid, "h1")); err != nil || q.Messages != 0 {
		t.Errorf("host queue after stop: %+v, %v; want empty", q, err)
	}
	// Both landed in the dead-letter queue itself.
	if n := admin.RemoveMessages(control.DeadLetterQueue, func(d amqp.Delivery) bool {
		return d.RoutingKey == control.HostKey(sid, "h1")
	}); n != 2 {
		t.Errorf("%d messages of this test in %s, want 2", n, control.DeadLetterQueue)
	}
}

func TestAMQPShutdownDuringHandleLeavesTheMessageQueued(t *testing.T) {
	admin := brokertest.NewAdmin(t)
	sid := brokertest.ID(t)
	amqpCleanup(t, admin, sid, "h1")
	h := startAMQPHost(t, sid, "h1", nil)
	amqpRequest(admin, control.HostKey(sid, "h1"), "", "", "block")
	if got := amqpNextCall(t, h); got != "block" {
		t.Fatalf("handled %q", got)
	}
	h.stop() // Handle answers internal because its ctx ended
	if q, err := admin.InspectQueue(control.HostQueue(sid, "h1")); err != nil || q.Messages != 1 {
		t.Errorf("host queue after stop: %+v, %v; want the message back", q, err)
	}
}

func TestAMQPMessagesSentWhileDisconnectedAreHandledAfterReconnection(t *testing.T) {
	admin := brokertest.NewAdmin(t)
	sid := brokertest.ID(t)
	amqpCleanup(t, admin, sid, "h1")
	// The second setup (the reconnection) waits for gate, so the test
	// knows the host is disconnected while it publishes.
	entered, gate := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	setups := 0
	h := startAMQPHost(t, sid, "h1", func(topology func(*amqp.Channel) error) func(*amqp.Channel) error {
		return func(ch *amqp.Channel) error {
			mu.Lock()
			setups++
			n := setups
			mu.Unlock()
			if n == 2 {
				close(entered)
				<-gate
			}
			return topology(ch)
		}
	})
	replyTo, replies := admin.TempQueue("")

	brokertest.CloseConnections(t, h.name)
	<-entered
	amqpRequest(admin, control.HostKey(sid, "h1"), replyTo, "while-away", "hello")
	amqpRequest(admin, control.AnyKey(sid), replyTo, "while-away-any", "hello any")
	close(gate)
	got := map[string]bool{}
	for range 2 {
		d, r := amqpReply(t, replies)
		if !r.OK {
			t.Errorf("reply %s", d.Body)
		}
		got[d.CorrelationId] = true
	}
	if !got["while-away"] || !got["while-away-any"] {
		t.Errorf("replies to %v", got)
	}
}

func TestAMQPStartSentWhileNoHostRunsWaitsForOne(t *testing.T) {
	admin := brokertest.NewAdmin(t)
	sid := brokertest.ID(t)
	amqpCleanup(t, admin, sid, "h1")
	if err := admin.Do(control.Topology(sid, "h1")); err != nil { // a host ran here before
		t.Fatal(err)
	}
	replyTo, replies := admin.TempQueue("")
	amqpRequest(admin, control.AnyKey(sid), replyTo, "early", `{"operation": "vumi_worker"}`)
	startAMQPHost(t, sid, "h1", nil)
	if d, r := amqpReply(t, replies); d.CorrelationId != "early" || !r.OK {
		t.Errorf("reply %s to %q", d.Body, d.CorrelationId)
	}
}

func TestAMQPAllReachesEveryHostAndAnyExactlyOne(t *testing.T) {
	admin := brokertest.NewAdmin(t)
	sid := brokertest.ID(t)
	amqpCleanup(t, admin, sid, "h1", "h2")
	h1 := startAMQPHost(t, sid, "h1", nil)
	h2 := startAMQPHost(t, sid, "h2", nil)
	replyTo, replies := admin.TempQueue("")

	amqpRequest(admin, control.AllKey(sid), replyTo, "all", "status")
	from := map[string]bool{}
	for range 2 {
		d, r := amqpReply(t, replies)
		if d.CorrelationId != "all" || !r.OK {
			t.Fatalf("reply %s to %q", d.Body, d.CorrelationId)
		}
		from[r.Result.(map[string]string)["host"]] = true
	}
	if !from["h1"] || !from["h2"] {
		t.Errorf("replies to all from %v, want h1 and h2", from)
	}

	const n = 10
	for range n {
		amqpRequest(admin, control.AnyKey(sid), replyTo, "any", "start")
	}
	for range n {
		if d, r := amqpReply(t, replies); d.CorrelationId != "any" || !r.OK {
			t.Fatalf("reply %s to %q", d.Body, d.CorrelationId)
		}
	}
	h1.stop()
	h2.stop()
	if got := h1.handler.count("start") + h2.handler.count("start"); got != n {
		t.Errorf("%d messages to any handled %d times in all (h1 %d, h2 %d)", n, got, h1.handler.count("start"), h2.handler.count("start"))
	}
	select {
	case d := <-replies:
		t.Errorf("extra reply %s", d.Body)
	default:
	}
}

func TestAMQPPublishEvent(t *testing.T) {
	admin := brokertest.NewAdmin(t)
	sid := brokertest.ID(t)
	amqpCleanup(t, admin, sid, "h1")
	h := startAMQPHost(t, sid, "h1", nil)
	_, events := admin.TempQueue(control.EventsExchange, sid+".h1.#")

	ctx, cancel := context.WithTimeout(context.Background(), amqpWait)
	defer cancel()
	if err := h.transport.PublishEvent(ctx, "worker_started", map[string]any{"worker": "w1", "pid": 42}); err != nil {
		t.Fatalf("PublishEvent: %v", err)
	}
	d := brokertest.Receive(t, events, amqpWait)
	var body map[string]any
	if err := json.Unmarshal(d.Body, &body); err != nil {
		t.Fatalf("event body %q: %v", d.Body, err)
	}
	if d.RoutingKey != sid+".h1.worker_started" || d.ContentType != "application/json" ||
		d.DeliveryMode != amqp.Persistent || body["worker"] != "w1" || body["pid"] != 42.0 {
		t.Errorf("event key %q content_type %q mode %d body %v", d.RoutingKey, d.ContentType, d.DeliveryMode, body)
	}
	if err := h.transport.PublishEvent(ctx, "x", func() {}); err == nil {
		t.Error("PublishEvent of a value JSON cannot encode succeeded")
	}
}

func TestAMQPRunChecksItsOptions(t *testing.T) {
	ctx := context.Background()
	if err := control.NewAMQPTransport(control.AMQPOptions{SystemID: "s", HostName: "h", Handler: newAMQPFakeHandler("h")}).Run(ctx); err == nil {
		t.Error("Run without a connection succeeded")
	}
	conn, err := broker.Dial(ctx, broker.Options{URL: "amqp://127.0.0.1:1/"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	if err := control.NewAMQPTransport(control.AMQPOptions{SystemID: "s", HostName: "any", Conn: conn, Handler: newAMQPFakeHandler("h")}).Run(ctx); err == nil {
		t.Error("Run with host name any succeeded")
	}
	if err := control.NewAMQPTransport(control.AMQPOptions{SystemID: "s", HostName: "h", Conn: conn}).Run(ctx); err == nil {
		t.Error("Run without a handler succeeded")
	}
	// Closing the connection ends Run.
	_ = conn.Close()
	if err := control.NewAMQPTransport(control.AMQPOptions{SystemID: "s", HostName: "h", Conn: conn, Handler: newAMQPFakeHandler("h")}).Run(ctx); !errors.Is(err, broker.ErrClosed) {
		t.Errorf("Run on a closed connection: %v, want ErrClosed", err)
	}
}

// The dead-letter queue keeps at most its bound: beyond it the oldest
// messages go (drop-head). Tested on a queue of the test's own with a
// bound of 5, declared as Topology declares vumi.control.dlx.
func TestAMQPDeadLetterQueueIsBounded(t *testing.T) {
	admin := brokertest.NewAdmin(t)
	name := brokertest.ID(t) + ".dlx"
	admin.DeleteAtCleanup([]string{name}, nil)
	args := control.DeadLetterQueueArgs()
	if args["x-max-length"] != int32(control.DeadLetterMaxLength) || args["x-overflow"] != "drop-head" {
		t.Fatalf("DeadLetterQueueArgs = %v", args)
	}
	args["x-max-length"] = int32(5)
	if err := admin.Do(func(ch *amqp.Channel) error {
		if err := ch.ExchangeDeclare(control.DeadLetterExchange, amqp.ExchangeFanout, true, false, false, false, nil); err != nil {
			return err
		}
		return control.DeclareDeadLetterQueue(ch, name, args, nil)
	}); err != nil {
		t.Fatal(err)
	}
	for i := range 12 {
		admin.Publish("", name, amqp.Publishing{Body: []byte{byte('a' + i)}})
	}
	if q, err := admin.InspectQueue(name); err != nil || q.Messages != 5 {
		t.Fatalf("%s after 12 messages: %+v, %v; want 5", name, q, err)
	}
	var kept []byte
	admin.RemoveMessages(name, func(d amqp.Delivery) bool { kept = append(kept, d.Body...); return true })
	if string(kept) != "hijkl" {
		t.Errorf("kept %q, want the newest five %q", kept, "hijkl")
	}
	// It is bound to the dead-letter exchange.
	admin.Publish(control.DeadLetterExchange, "any-key", amqp.Publishing{Body: []byte("routed")})
	if q, err := admin.InspectQueue(name); err != nil || q.Messages != 1 {
		t.Errorf("%s after a publish to %s: %+v, %v; want 1", name, control.DeadLetterExchange, q, err)
	}
	admin.RemoveMessages(control.DeadLetterQueue, func(d amqp.Delivery) bool { return string(d.Body) == "routed" })
}

// A dead-letter queue declared by an older version, without the bound, is
// left as it is: the topology is still declared, and the warning names
// the command that bounds it.
func TestAMQPUnboundedDeadLetterQueueIsKeptWithAWarning(t *testing.T) {
	admin := brokertest.NewAdmin(t)
	name := brokertest.ID(t) + ".dlx"
	admin.DeleteAtCleanup([]string{name}, nil)
	if err := admin.Do(queue(name, true, nil)); err != nil {
		t.Fatal(err)
	}
	var logged strings.Builder
	log := hclog.New(&hclog.LoggerOptions{Output: &logged, Level: hclog.Warn})
	if err := admin.Do(func(ch *amqp.Channel) error {
		return control.DeclareDeadLetterQueue(ch, name, control.DeadLetterQueueArgs(), log)
	}); err != nil {
		t.Fatalf("declaring over an unbounded queue: %v", err)
	}
	for _, want := range []string{"the dead-letter queue exists without its length limit", "queue=" + name,
		`rabbitmqctl set_policy --apply-to queues dynworkers-dlx '^` + strings.ReplaceAll(name, ".", `\.`) + `$'`, "inequivalent arg"} {
		if !strings.Contains(logged.String(), want) {
			t.Errorf("warning lacks %q:\n%s", want, logged.String())
		}
	}
	// The whole topology does not fail on the shared broker's queue,
	// whichever arguments it was declared with.
	sid := brokertest.ID(t)
	amqpCleanup(t, admin, sid, "h1")
	if err := admin.Do(control.Topology(sid, "h1")); err != nil {
		t.Fatalf("Topology: %v", err)
	}
}

// A body over MaxMessageBytes is refused before anything decodes it: the
// handler never sees it, the client gets "malformed" naming the limit, the
// message is dead-lettered once, and the host allocates no more for it
// than the AMQP client needs to receive it at all.
func TestAMQPOversizedMessageIsRefusedBeforeDecoding(t *testing.T) {
	admin := brokertest.NewAdmin(t)
	sid := brokertest.ID(t)
	amqpCleanup(t, admin, sid, "h1")
	h := startAMQPHost(t, sid, "h1", nil)
	replyTo, replies := admin.TempQueue("")
	plainQ, plain := admin.TempQueue("")

	// 32 MiB (the daemon's tests send 100 MiB to a real host): a
	// worker_config of one huge string, which a decoder would copy several
	// times over.
	const size = 32 << 20
	prefix := `{"operation":"vumi_worker","worker_name":"big","worker_class":"echo","request_id":"r1","worker_config":{"x":"`
	body := make([]byte, size)
	copy(body, prefix)
	for i := len(prefix); i < size-3; i++ {
		body[i] = 'a'
	}
	copy(body[size-3:], `"}}`)

	// What the AMQP client allocates to receive such a body at all: the
	// same body through a plain consumer.
	allocs := func() uint64 {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.TotalAlloc
	}
	runtime.GC()
	a0 := allocs()
	admin.PublishWithin(2*time.Minute, "", plainQ, amqp.Publishing{Body: body})
	if d := brokertest.Receive(t, plain, amqpWait); len(d.Body) != size {
		t.Fatalf("plain consumer got %d bytes", len(d.Body))
	}
	receive := allocs() - a0

	runtime.GC()
	rssBefore := rssBytes(t)
	a0 = allocs()
	admin.PublishWithin(2*time.Minute, control.ControlExchange, control.HostKey(sid, "h1"), amqp.Publishing{
		ContentType: "application/json", ReplyTo: replyTo, CorrelationId: "corr-big", Body: body,
	})
	d, r := amqpReply(t, replies)
	refuse := allocs() - a0
	rssAfter := rssBytes(t)
	body = nil
	if d.CorrelationId != "corr-big" || r.OK || r.Error == nil || r.Error.Code != control.CodeMalformed ||
		!strings.Contains(r.Error.Message, "32 MiB") || !strings.Contains(r.Error.Message, "at most 2 MiB (input_limits.control_message_size)") {
		t.Errorf("reply %s, want malformed naming the size and the limit", d.Body)
	}
	if r.RequestID != "" {
		t.Errorf("the reply echoes request_id %q of a body that was not read", r.RequestID)
	}
	t.Logf("a plain consumer allocates %d MiB to receive a %d MiB body; the control transport %d MiB to receive and refuse it; test process RSS %d MiB before, %d MiB after",
		receive>>20, size>>20, refuse>>20, rssBefore>>20, rssAfter>>20)
	if refuse > receive+16<<20 {
		t.Errorf("the transport allocated %d MiB more than receiving the body costs: it was copied or decoded", (refuse-receive)>>20)
	}
	h.stop()
	if len(h.handler.calls) != 0 {
		t.Errorf("the handler was called for an oversized body")
	}
	if q, err := admin.InspectQueue(control.HostQueue(sid, "h1")); err != nil || q.Messages != 0 {
		t.Errorf("host queue after stop: %+v, %v; want empty", q, err)
	}
	if n := admin.RemoveMessages(control.DeadLetterQueue, func(d amqp.Delivery) bool {
		return d.RoutingKey == control.HostKey(sid, "h1") && len(d.Body) == size
	}); n != 1 {
		t.Errorf("%d oversized messages of this test dead-lettered, want 1", n)
	}
}

// rssBytes is the test process's resident set size.
func rssBytes(t *testing.T) uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		t.Fatal(err)
	}
	var size, rss uint64
	if _, err := fmt.Sscan(string(b), &size, &rss); err != nil {
		t.Fatal(err)
	}
	return rss * uint64(os.Getpagesize())
}
