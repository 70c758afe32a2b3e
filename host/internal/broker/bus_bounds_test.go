package broker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/broker"
	"github.com/dynworkers/dynworkers/host/internal/broker/brokertest"
	"github.com/dynworkers/dynworkers/sdk/sdktest"
)

// The bounds of a queue, with RabbitMQ's semantics, checked against both
// buses as bus_conformance_test.go does: the embedded bus takes them as
// EmbeddedBusOptions; on RabbitMQ they are what an operator sets, a policy
// (max-length, max-length-bytes, overflow, expires) on the test's queues,
// which the test sets with rabbitmqctl.

// bounds are a fixture's queue bounds; zero fields set none (the embedded
// bus: its defaults, but the tests stay far below them).
type bounds struct {
	maxLength      int
	maxLengthBytes int64
	maxTotalBytes  int64 // the embedded bus only: RabbitMQ has no such bound
	overflow       broker.Overflow
	expires        time.Duration
}

// boundedFixture is a bus whose queues (those named by name) have bounds.
type boundedFixture struct {
	busFixture
	// exists reports whether the queue exists now.
	exists func(t *testing.T, queue string) bool
	// ready returns the number of ready messages of the queue.
	ready func(t *testing.T, queue string) int
	// embedded is the bus when it is an EmbeddedBus.
	embedded *broker.EmbeddedBus
	// stalled is how many messages the stalled-consumer case publishes.
	stalled int
}

func embeddedBounded(t *testing.T, bd bounds) boundedFixture {
	b := broker.NewEmbeddedBus(broker.EmbeddedBusOptions{
		MaxLength: bd.maxLength, MaxLengthBytes: bd.maxLengthBytes, MaxTotalBytes: bd.maxTotalBytes,
		Overflow: bd.overflow, Expires: bd.expires,
	})
	t.Cleanup(func() { _ = b.Close() })
	id := brokertest.ID(t)
	stat := func(q string) (broker.EmbeddedQueueStats, bool) {
		for _, s := range b.Stats().Queues {
			if s.Name == q {
				return s, true
			}
		}
		return broker.EmbeddedQueueStats{}, false
	}
	return boundedFixture{
		busFixture: busFixture{bus: b, name: func(s string) string { return id + "." + s }},
		exists:     func(_ *testing.T, q string) bool { _, ok := stat(q); return ok },
		ready:      func(_ *testing.T, q string) int { s, _ := stat(q); return s.Ready },
		embedded:   b,
		stalled:    stalledMessages,
	}
}

func amqpBounded(t *testing.T, bd bounds) boundedFixture {
	admin := brokertest.NewAdmin(t)
	id := brokertest.ID(t)
	def := map[string]any{}
	if bd.maxLength > 0 {
		def["max-length"] = bd.maxLength
	}
	if bd.maxLengthBytes > 0 {
		def["max-length-bytes"] = bd.maxLengthBytes
	}
	if bd.overflow != "" {
		def["overflow"] = string(bd.overflow)
	}
	if bd.expires > 0 {
		def["expires"] = bd.expires.Milliseconds()
	}
	if len(def) > 0 {
		setPolicy(t, id, "^"+id+`\.`, def)
	}
	name := testQueueNames(t, admin, id)
	c := dial(t, broker.Options{ConnectionName: "dynworkers " + id})
	// Transient: a million persistent messages take RabbitMQ minutes on a
	// small machine; the bounds do not depend on the delivery mode.
	b := broker.NewAMQPBus(c, broker.AMQPBusOptions{Transient: true})
	t.Cleanup(func() { _ = b.Close() })
	return boundedFixture{
		busFixture: busFixture{bus: b, name: name},
		// Not a passive declaration, which counts as a use and would
		// keep the queue from expiring.
		exists: func(t *testing.T, q string) bool {
			out, err := exec.Command("rabbitmqctl", "-q", "--no-table-headers", "list_queues", "name").Output()
			if err != nil {
				t.Fatalf("rabbitmqctl list_queues: %v", err)
			}
			return slices.Contains(strings.Fields(string(out)), q)
		},
		ready: func(t *testing.T, q string) int {
			st, err := admin.InspectQueue(q)
			if err != nil {
				t.Fatalf("inspecting %s: %v", q, err)
			}
			return st.Messages
		},
		stalled: amqpStalledMessages(),
	}
}

// amqpStalledMessages is how many messages the stalled-consumer case
// publishes to RabbitMQ: a million with DYNWORKERS_BENCH=1 set (run
// DYNWORKERS_BENCH=1 go test -run 'TestAMQPBusBounds/StalledConsumer'
// ./host/internal/broker), else 100,000. RabbitMQ takes a million transient messages in about four
// minutes on a small machine, and over ten under the race detector while
// other tests share the machine; and the host holds none of them, so
// their number does not change what the case measures.
func amqpStalledMessages() int {
	if os.Getenv("DYNWORKERS_BENCH") == "1" {
		return stalledMessages
	}
	return stalledMessages / 10
}

// setPolicy applies a RabbitMQ policy to the queues matching pattern, as
// an operator would, and clears it at cleanup.
func setPolicy(t *testing.T, name, pattern string, def map[string]any) {
	t.Helper()
	if _, err := exec.LookPath("rabbitmqctl"); err != nil {
		t.Skip("rabbitmqctl not found: cannot set a queue policy")
	}
	js, err := json.Marshal(def)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("rabbitmqctl", "-q", "set_policy", "--apply-to", "queues", "--priority", "100", name, pattern, string(js)).CombinedOutput()
	if err != nil {
		t.Fatalf("rabbitmqctl set_policy: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("rabbitmqctl", "-q", "clear_policy", name).CombinedOutput(); err != nil {
			t.Errorf("rabbitmqctl clear_policy: %v\n%s", err, out)
		}
	})
}

func TestEmbeddedBusBounds(t *testing.T) { runBusBounds(t, embeddedBounded) }

func TestAMQPBusBounds(t *testing.T) {
	brokertest.URL(t) // skip (or fail under CI) without a broker
	runBusBounds(t, amqpBounded)
}

func runBusBounds(t *testing.T, fixture func(*testing.T, bounds) boundedFixture) {
	for _, tc := range []struct {
		name string
		test func(*testing.T, func(bounds) boundedFixture)
	}{
		{"DropHeadByLength", testBoundDropHeadLength},
		{"DropHeadByBytes", testBoundDropHeadBytes},
		{"UnackedDoNotCount", testBoundUnacked},
		{"RequeueDropsHead", testBoundRequeue},
		{"RejectPublish", testBoundRejectPublish},
		{"Expires", testBoundExpires},
		{"DeadLetterQueueExpires", testBoundDeadLetterExpires},
		{"StalledConsumer", testBoundStalledConsumer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkNoLeaks(t)
			tc.test(t, func(bd bounds) boundedFixture { return fixture(t, bd) })
		})
	}
}

// declare makes queue exist, with its bindings, and leaves it without a
// consumer.
func declare(t *testing.T, b broker.Bus, queue string, bindings ...string) {
	t.Helper()
	c := consume(t, b, queue, bindings, 1)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, c)
}

// expectNothingBut publishes a marker to queue and expects it to be the
// next delivery: nothing else was left.
func expectNothingBut(t *testing.T, f boundedFixture, c broker.Consumer, queue string) {
	t.Helper()
	publish(t, f.bus, queue, "marker", nil)
	expect(t, c, "marker")
}

// A queue of max-length 3 keeps the 3 youngest messages; the publisher
// sees no error.
func testBoundDropHeadLength(t *testing.T, fixture func(bounds) boundedFixture) {
	f := fixture(bounds{maxLength: 3})
	q := f.name("length")
	declare(t, f.bus, q)
	for i := range 6 {
		publish(t, f.bus, q, fmt.Sprintf("m%d", i), nil)
	}
	if n := f.ready(t, q); n != 3 {
		t.Fatalf("%d ready messages, want 3", n)
	}
	c := consume(t, f.bus, q, nil, 10)
	for i := 3; i < 6; i++ {
		expect(t, c, fmt.Sprintf("m%d", i))
	}
	expectNothingBut(t, f, c, q)
	if f.embedded != nil {
		s := f.embedded.Stats()
		if s.DroppedHead != 3 || s.Rejected != 0 || s.Queues[0].DroppedHead != 3 {
			t.Fatalf("stats %+v: want 3 dropped from the head", s)
		}
	}
}

// max-length-bytes counts the bodies of the ready messages.
func testBoundDropHeadBytes(t *testing.T, fixture func(bounds) boundedFixture) {
	f := fixture(bounds{maxLengthBytes: 10})
	q := f.name("bytes")
	declare(t, f.bus, q)
	// Headers do not count: only bodies.
	h := map[string]string{"big": strings.Repeat("h", 100)}
	for i := range 5 {
		if err := f.bus.Publish(timeout(t, wait), q, fmt.Appendf(nil, "b%03d", i), h); err != nil {
			t.Fatal(err)
		}
	}
	c := consume(t, f.bus, q, nil, 10)
	expect(t, c, "b003") // 8 bytes; one more would make 12
	expect(t, c, "b004")
	expectNothingBut(t, f, c, q)
}

// Only ready messages count: those delivered and unacked do not.
func testBoundUnacked(t *testing.T, fixture func(bounds) boundedFixture) {
	f := fixture(bounds{maxLength: 2})
	q := f.name("unacked")
	c := consume(t, f.bus, q, nil, 2)
	for i := range 6 {
		publish(t, f.bus, q, fmt.Sprintf("m%d", i), nil)
	}
	d0, d1 := recv(t, c), recv(t, c)
	if string(d0.Body) != "m0" || string(d1.Body) != "m1" {
		t.Fatalf("got %q and %q, want m0 and m1", d0.Body, d1.Body)
	}
	// m2 and m3 were dropped to keep two ready besides the two unacked.
	ack(t, c, d0)
	ack(t, c, d1)
	expect(t, c, "m4")
	expect(t, c, "m5")
	expectNothingBut(t, f, c, q)
}

// Messages returned to a full queue count again, and drop-head then
// drops from the head: the returned messages, the oldest (RabbitMQ does
// this when a channel closes with unacked messages).
func testBoundRequeue(t *testing.T, fixture func(bounds) boundedFixture) {
	f := fixture(bounds{maxLength: 2})
	q := f.name("requeue")
	c := consume(t, f.bus, q, nil, 2)
	for i := range 4 {
		publish(t, f.bus, q, fmt.Sprintf("m%d", i), nil)
	}
	recv(t, c)
	recv(t, c)
	if err := c.Close(); err != nil { // returns m0 and m1
		t.Fatal(err)
	}
	waitClosed(t, c)
	c = consume(t, f.bus, q, nil, 10)
	for _, want := range []string{"m2", "m3"} {
		if d := expect(t, c, want); d.Redelivered {
			t.Fatalf("%s redelivered", want)
		}
	}
	expectNothingBut(t, f, c, q)
}

// reject-publish refuses a message to a full queue, with an error that
// matches ErrNacked, and still routes it to the other queues.
func testBoundRejectPublish(t *testing.T, fixture func(bounds) boundedFixture) {
	f := fixture(bounds{maxLength: 2, overflow: broker.RejectPublish})
	full, other, key := f.name("full"), f.name("other"), f.name("key")
	declare(t, f.bus, full, full, key)
	declare(t, f.bus, other, key)
	publish(t, f.bus, full, "f0", nil)
	publish(t, f.bus, full, "f1", nil)

	err := f.bus.Publish(timeout(t, wait), key, []byte("k0"), nil)
	if !errors.Is(err, broker.ErrNacked) {
		t.Fatalf("Publish to a full reject-publish queue: %v, want ErrNacked", err)
	}
	if f.embedded != nil && (!errors.Is(err, broker.ErrQueueFull) || !strings.Contains(err.Error(), fmt.Sprintf("queue %q is full", full))) {
		t.Fatalf("Publish: %v, want ErrQueueFull naming %q", err, full)
	}
	conf, err := f.bus.PublishAsync(timeout(t, wait), key, []byte("k1"), nil)
	if err != nil {
		t.Fatalf("PublishAsync: %v (the refusal comes with the confirmation)", err)
	}
	if err := conf.Wait(timeout(t, wait)); !errors.Is(err, broker.ErrNacked) {
		t.Fatalf("confirmation of a refused message: %v, want ErrNacked", err)
	}
	if n := f.ready(t, full); n != 2 {
		t.Fatalf("the full queue holds %d, want 2", n)
	}

	// The other queue got both; the full one only what it had.
	c := consume(t, f.bus, other, nil, 10)
	expect(t, c, "k0")
	expect(t, c, "k1")
	c = consume(t, f.bus, full, nil, 1)
	expect(t, c, "f0")
	expect(t, c, "f1")
	// Room again: accepted.
	publish(t, f.bus, key, "k2", nil)
	expect(t, c, "k2")
	if f.embedded != nil {
		if s := f.embedded.Stats(); s.Rejected != 2 || s.DroppedHead != 0 {
			t.Fatalf("stats %+v: want 2 rejected", s)
		}
	}
}

// A queue without consumers expires with its messages and bindings; one
// with a consumer, or consumed again in time, does not.
func testBoundExpires(t *testing.T, fixture func(bounds) boundedFixture) {
	const expires = 1500 * time.Millisecond
	f := fixture(bounds{expires: expires})
	gone, kept, again, key := f.name("gone"), f.name("kept"), f.name("again"), f.name("key")
	k := consume(t, f.bus, kept, nil, 10)
	declare(t, f.bus, again)
	declare(t, f.bus, gone, gone, key)
	// Consumed again before it expired: its expiry starts over, after
	// gone's began.
	c := consume(t, f.bus, again, nil, 10)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	publish(t, f.bus, gone, "lost", nil)
	sdktest.Eventually(t, 10*expires+wait, func() bool { return !f.exists(t, gone) }, "queue %s did not expire", gone)
	if !f.exists(t, kept) {
		t.Fatalf("%s expired with a consumer", kept)
	}
	// again's timer started over when it was consumed again, so it may
	// still exist or not by now; what matters is that the expiry of gone
	// took its messages and bindings: declared anew, it is empty and
	// bound with its own name only.
	c = consume(t, f.bus, gone, nil, 10)
	publish(t, f.bus, key, "to the old binding", nil)
	publish(t, f.bus, gone, "new", nil)
	expect(t, c, "new")
	publish(t, f.bus, kept, "still here", nil)
	expect(t, k, "still here")
	if f.embedded != nil {
		if s := f.embedded.Stats(); s.ExpiredQueues < 1 || s.Expired != 1 {
			t.Fatalf("stats %+v: want gone's message expired", s)
		}
	}
}

// A dead-letter queue that nobody consumes expires like any other; the
// host declares it again before each dead letter, so that the dead letter
// is not dropped as unroutable.
func testBoundDeadLetterExpires(t *testing.T, fixture func(bounds) boundedFixture) {
	const expires = 1500 * time.Millisecond
	f := fixture(bounds{expires: expires})
	in, dlq := f.name("in"), f.name("in.dlq")
	dead := make(chan string, 1)
	c := bridgeConsume(t, broker.NewBridges(f.bus), broker.BridgeOptions{OnDeadLetter: func(q string) { dead <- q }}, in, dlq, 1)
	sdktest.Eventually(t, 10*expires+wait, func() bool { return !f.exists(t, dlq) }, "the dead-letter queue %s did not expire", dlq)
	publish(t, f.bus, in, "poison", nil)
	fail(t, c, "poison", 0)
	// Dead-lettered (asynchronously) before anything declares the queue.
	select {
	case <-dead:
	case <-time.After(wait):
		t.Fatal("not dead-lettered")
	}
	dl := consume(t, f.bus, dlq, nil, 1)
	if d := expect(t, dl, "poison"); d.Headers[broker.HeaderFailures] != "1" {
		t.Fatalf("dead letter headers %v", d.Headers)
	}
}

// stalledMessages is how many messages the stalled-consumer case publishes
// to the embedded bus.
const stalledMessages = 1000000

// A consumer that never acks (its prefetch reached) while a million
// messages are published (on RabbitMQ, 100,000 unless DYNWORKERS_BENCH=1):
// the host's heap stays under the configured bound. The embedded bus holds
// the backlog itself, within MaxTotalBytes; RabbitMQ holds it (bounded by
// the policy's max-length, as an operator would bound a queue) and the
// host holds nothing of it.
func testBoundStalledConsumer(t *testing.T, fixture func(bounds) boundedFixture) {
	const (
		maxTotal  = 4 << 20
		maxLength = 100000
		prefetch  = 10
		body      = 100
		window    = 10000 // confirmations in flight
	)
	f := fixture(bounds{maxLength: maxLength, maxTotalBytes: maxTotal})
	q := f.name("stalled")
	c := consume(t, f.bus, q, nil, prefetch)
	for range prefetch {
		publish(t, f.bus, q, "held", nil)
	}
	for range prefetch {
		recv(t, c) // and never acked
	}
	msg := make([]byte, body)
	base := heapAlloc()
	var peak uint64
	sample := func() {
		if h := heapAlloc(); h > peak {
			peak = h
		}
	}
	ctx := timeout(t, 10*time.Minute)
	// A sliding window of confirmations: the oldest is waited for once
	// window are in flight.
	inFlight := make([]*broker.Confirmation, window)
	settle := func(i int) {
		if conf := inFlight[i%window]; conf != nil {
			if err := conf.Wait(ctx); err != nil {
				t.Fatalf("confirmation: %v", err)
			}
			inFlight[i%window] = nil
		}
	}
	start := time.Now()
	for i := range f.stalled {
		settle(i)
		msg[0] = byte(i)
		conf, err := f.bus.PublishAsync(ctx, q, msg, nil)
		if err != nil {
			t.Fatalf("PublishAsync %d: %v", i, err)
		}
		inFlight[i%window] = conf
		if i%100000 == 0 {
			sample()
		}
	}
	for i := range window {
		settle(i)
	}
	sample()
	elapsed := time.Since(start)
	growth := int64(peak) - int64(base)
	t.Logf("%d messages in %v (%.0f/s); heap %d MiB at the start, peak +%.1f MiB", f.stalled, elapsed.Round(time.Millisecond),
		float64(f.stalled)/elapsed.Seconds(), base>>20, float64(growth)/(1<<20))

	if n := len(c.Deliveries()); n != 0 {
		t.Fatalf("the stalled consumer got %d deliveries beyond its prefetch", n)
	}
	ready := f.ready(t, q)
	if ready > maxLength {
		t.Fatalf("the queue holds %d ready messages, past its max-length of %d", ready, maxLength)
	}
	var bound int64
	if f.embedded != nil {
		// The bus is within its bound, and counted what it dropped.
		s := f.embedded.Stats()
		if s.Bytes > maxTotal {
			t.Fatalf("the bus holds %d bytes, past max_total_bytes %d", s.Bytes, maxTotal)
		}
		if want := uint64(f.stalled - ready); s.DroppedHead != want {
			t.Fatalf("%d dropped, want %d (%d ready)", s.DroppedHead, want, ready)
		}
		// The messages it holds, and a generous margin for the rest.
		bound = maxTotal + 8<<20
	} else {
		// The host holds none of the backlog: its heap stays flat (a
		// margin for the library's buffers and the window of
		// confirmations).
		bound = 8 << 20
	}
	if growth > bound {
		t.Fatalf("the heap grew by %d bytes, past the bound of %d", growth, bound)
	}
	runtime.KeepAlive(f.bus)
}

// Drop-head on the bus's bound drops from the queue that holds the most,
// so that one stalled queue does not starve the others.
func TestEmbeddedBusTotalBoundDropsFromTheLargestQueue(t *testing.T) {
	// Each message costs its body (128 bytes) and the 64-byte record.
	const cost = 128 + 64
	b := broker.NewEmbeddedBus(broker.EmbeddedBusOptions{MaxTotalBytes: 10 * cost})
	defer b.Close()
	declare(t, b, "big")
	declare(t, b, "small")
	body := make([]byte, 128)
	for range 10 {
		if err := b.Publish(context.Background(), "big", body, nil); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		if err := b.Publish(context.Background(), "small", body, nil); err != nil {
			t.Fatal(err)
		}
	}
	s := b.Stats()
	got := map[string]int{}
	for _, q := range s.Queues {
		got[q.Name] = q.Ready
	}
	if got["big"] != 7 || got["small"] != 3 || s.Bytes != 10*cost || s.DroppedHead != 3 {
		t.Fatalf("stats %+v: want big 7, small 3, %d bytes, 3 dropped", s, 10*cost)
	}

	// reject-publish refuses once the bus is full, naming the bound.
	r := broker.NewEmbeddedBus(broker.EmbeddedBusOptions{MaxTotalBytes: 2 * cost, Overflow: broker.RejectPublish})
	defer r.Close()
	declare(t, r, "q")
	for i := range 3 {
		err := r.Publish(context.Background(), "q", body, nil)
		if (err != nil) != (i == 2) {
			t.Fatalf("publish %d: %v", i, err)
		}
		if err != nil && (!errors.Is(err, broker.ErrQueueFull) || !strings.Contains(err.Error(), "max_total_bytes")) {
			t.Fatalf("publish %d: %v, want ErrQueueFull naming max_total_bytes", i, err)
		}
	}
}

func TestEmbeddedBusStats(t *testing.T) {
	b := broker.NewEmbeddedBus()
	defer b.Close()
	c := consume(t, b, "a", []string{"k"}, 1)
	consume(t, b, "b", []string{"k"}, 1)
	publish(t, b, "k", "12345", nil)
	publish(t, b, "k", "678", nil)
	recv(t, c)
	s := b.Stats()
	if len(s.Queues) != 2 {
		t.Fatalf("queues %+v", s.Queues)
	}
	want := []broker.EmbeddedQueueStats{
		{Name: "a", Consumers: 1, Ready: 1, ReadyBytes: 3, Unacked: 1},
		{Name: "b", Consumers: 1, Ready: 1, ReadyBytes: 3, Unacked: 1},
	}
	if !slices.Equal(s.Queues, want) {
		t.Fatalf("queues %+v, want %+v", s.Queues, want)
	}
	if s.MaxTotalBytes != broker.DefaultMaxTotalBytes || s.Bytes <= 6 {
		t.Fatalf("stats %+v", s)
	}
}

func TestEmbeddedBusOptionsChecked(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), `"drop-tail"`) {
			t.Fatalf("recovered %v, want a panic naming the policy", r)
		}
	}()
	broker.NewEmbeddedBus(broker.EmbeddedBusOptions{Overflow: "drop-tail"})
}
