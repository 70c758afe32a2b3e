package broker_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dynworkers/dynworkers/host/internal/broker"
	"github.com/dynworkers/dynworkers/host/internal/broker/brokertest"
)

// busFixture is a bus under test and a source of queue names (and routing
// keys) unique to the test; the AMQP fixture deletes the queues at cleanup,
// after the consumers and the bus are closed.
type busFixture struct {
	bus  broker.Bus
	name func(suffix string) string
}

func embeddedFixture(t *testing.T) busFixture {
	b := broker.NewEmbeddedBus()
	t.Cleanup(func() { _ = b.Close() })
	id := brokertest.ID(t)
	return busFixture{bus: b, name: func(s string) string { return id + "." + s }}
}

func amqpFixture(t *testing.T) busFixture {
	id := brokertest.ID(t)
	name := testQueueNames(t, brokertest.NewAdmin(t), id)
	c := dial(t, broker.Options{ConnectionName: "dynworkers " + id})
	b := broker.NewAMQPBus(c, broker.AMQPBusOptions{})
	t.Cleanup(func() { _ = b.Close() })
	return busFixture{bus: b, name: name}
}

// testQueueNames returns the name function of a fixture on RabbitMQ: the
// test's id, a dot and s, each name deleted from the broker at cleanup.
// Call it before the bus is made: its cleanup then runs after the bus is
// closed, so that no consumer declares a deleted queue again.
func testQueueNames(t *testing.T, admin *brokertest.Admin, id string) func(string) string {
	var mu sync.Mutex
	var names []string
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, q := range names {
			_ = admin.Do(func(ch *amqp.Channel) error { _, err := ch.QueueDelete(q, false, false, false); return err })
		}
	})
	return func(s string) string {
		n := id + "." + s
		mu.Lock()
		names = append(names, n)
		mu.Unlock()
		return n
	}
}

func TestEmbeddedBusConformance(t *testing.T) { runBusConformance(t, embeddedFixture) }

func TestAMQPBusConformance(t *testing.T) {
	brokertest.URL(t) // skip (or fail under CI) without a broker
	runBusConformance(t, amqpFixture)
}

// busCase is a case run on each bus.
type busCase struct {
	name string
	test func(*testing.T, busFixture)
}

// runBusCases runs each case on a fresh fixture.
func runBusCases(t *testing.T, fixture func(*testing.T) busFixture, cases []busCase) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			checkNoLeaks(t)
			tc.test(t, fixture(t))
		})
	}
}

// runBusConformance checks the guarantees documented on broker.Bus.
func runBusConformance(t *testing.T, fixture func(*testing.T) busFixture) {
	runBusCases(t, fixture, []busCase{
		{"PublishOrder", testBusOrder},
		{"PublishAsync", testBusPublishAsync},
		{"QueueKeepsMessagesWithoutConsumer", testBusDurableQueue},
		{"UnroutableIsDropped", testBusUnroutable},
		{"Bindings", testBusBindings},
		{"PrefetchBound", testBusPrefetch},
		{"Nack", testBusNack},
		{"CloseRequeuesUnacked", testBusCloseRequeues},
		{"ConsumersShareAQueue", testBusShare},
		{"HeadersAndBody", testBusHeaders},
		{"AckErrors", testBusAckErrors},
		{"ConcurrentPublishers", testBusConcurrentPublishers},
		{"Close", testBusClose},
		{"InvalidArguments", testBusInvalid},
	})
}

// consume starts a consumer and closes it at cleanup.
func consume(t *testing.T, b broker.Bus, queue string, bindings []string, prefetch int) broker.Consumer {
	t.Helper()
	c, err := b.Consume(timeout(t, wait), queue, bindings, prefetch)
	if err != nil {
		t.Fatalf("Consume %q: %v", queue, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func publish(t *testing.T, b broker.Bus, key, body string, headers map[string]string) {
	t.Helper()
	if err := b.Publish(timeout(t, wait), key, []byte(body), headers); err != nil {
		t.Fatalf("Publish %q to %q: %v", body, key, err)
	}
}

// recv returns c's next delivery, failing the test after wait.
func recv(t *testing.T, c broker.Consumer) broker.Delivery {
	t.Helper()
	select {
	case d, ok := <-c.Deliveries():
		if !ok {
			t.Fatalf("deliveries closed (Err %v)", c.Err())
		}
		return d
	case <-time.After(wait):
		t.Fatalf("no delivery within %v", wait)
	}
	return broker.Delivery{}
}

func ack(t *testing.T, c broker.Consumer, d broker.Delivery) {
	t.Helper()
	if err := c.Ack(d.Tag); err != nil {
		t.Fatalf("Ack %q: %v", d.Body, err)
	}
}

// expect receives a delivery, checks its body, acks it and returns it.
func expect(t *testing.T, c broker.Consumer, body string) broker.Delivery {
	t.Helper()
	d := recv(t, c)
	if string(d.Body) != body {
		t.Fatalf("got %q, want %q", d.Body, body)
	}
	ack(t, c, d)
	return d
}

// waitClosed waits until c's Deliveries is closed, discarding what comes.
func waitClosed(t *testing.T, c broker.Consumer) {
	t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case _, ok := <-c.Deliveries():
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("deliveries not closed")
		}
	}
}

func testBusOrder(t *testing.T, f busFixture) {
	q := f.name("order")
	c := consume(t, f.bus, q, nil, 10)
	for i := range 100 {
		publish(t, f.bus, q, fmt.Sprintf("m%d", i), nil)
	}
	for i := range 100 {
		d := expect(t, c, fmt.Sprintf("m%d", i))
		if d.RoutingKey != q || d.Redelivered {
			t.Fatalf("delivery %d: routing key %q, redelivered %v", i, d.RoutingKey, d.Redelivered)
		}
	}
}

func testBusPublishAsync(t *testing.T, f busFixture) {
	q := f.name("async")
	c := consume(t, f.bus, q, nil, 50)
	const n = 300
	confs := make([]*broker.Confirmation, n)
	for i := range n {
		conf, err := f.bus.PublishAsync(timeout(t, wait), q, fmt.Appendf(nil, "m%d", i), nil)
		if err != nil {
			t.Fatalf("PublishAsync %d: %v", i, err)
		}
		confs[i] = conf
	}
	for i, conf := range confs {
		if err := conf.Wait(timeout(t, wait)); err != nil {
			t.Fatalf("confirmation %d: %v", i, err)
		}
		select {
		case <-conf.Done():
		default:
			t.Fatalf("confirmation %d: Done not closed after Wait", i)
		}
		if err := conf.Err(); err != nil {
			t.Fatalf("confirmation %d: Err %v", i, err)
		}
	}
	for i := range n {
		expect(t, c, fmt.Sprintf("m%d", i))
	}
	if err := f.bus.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.bus.PublishAsync(context.Background(), q, nil, nil); !errors.Is(err, broker.ErrClosed) {
		t.Fatalf("PublishAsync after Close: %v, want ErrClosed", err)
	}
}

func testBusDurableQueue(t *testing.T, f busFixture) {
	q := f.name("durable")
	c := consume(t, f.bus, q, nil, 1)
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	waitClosed(t, c)
	if err := c.Err(); err != nil {
		t.Fatalf("Err after Close: %v", err)
	}
	for i := range 3 {
		publish(t, f.bus, q, fmt.Sprintf("m%d", i), nil)
	}
	c = consume(t, f.bus, q, nil, 1)
	for i := range 3 {
		expect(t, c, fmt.Sprintf("m%d", i))
	}
}

func testBusUnroutable(t *testing.T, f busFixture) {
	q := f.name("late")
	// No queue is bound with q yet: the message is dropped, and that is no
	// error.
	publish(t, f.bus, q, "early", nil)
	c := consume(t, f.bus, q, nil, 1)
	publish(t, f.bus, q, "late", nil)
	expect(t, c, "late")
}

func testBusBindings(t *testing.T, f busFixture) {
	q, q2 := f.name("multi"), f.name("second")
	k1, k2 := f.name("k1"), f.name("k2")
	c := consume(t, f.bus, q, []string{k1, k2, k1}, 10)
	c2 := consume(t, f.bus, q2, []string{k1, q2}, 10)
	// Given bindings replace the default one: q's own name routes nowhere.
	publish(t, f.bus, q, "own name", nil)
	publish(t, f.bus, k1, "one", nil)
	publish(t, f.bus, k2, "two", nil)
	publish(t, f.bus, q2, "marker", nil)
	for _, want := range []struct{ body, key string }{{"one", k1}, {"two", k2}} {
		if d := expect(t, c, want.body); d.RoutingKey != want.key {
			t.Fatalf("%q came with routing key %q, want %q", d.Body, d.RoutingKey, want.key)
		}
	}
	// k1 reached q2 too, once, before the marker.
	expect(t, c2, "one")
	expect(t, c2, "marker")

	// Consuming again adds bindings; the old ones stay.
	k3 := f.name("k3")
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c = consume(t, f.bus, q, []string{k3}, 10)
	publish(t, f.bus, k1, "old binding", nil)
	publish(t, f.bus, k3, "new binding", nil)
	expect(t, c, "old binding")
	expect(t, c, "new binding")
	expect(t, c2, "old binding")
}

func testBusPrefetch(t *testing.T, f busFixture) {
	q := f.name("prefetch")
	a := consume(t, f.bus, q, nil, 3)
	for i := range 10 {
		publish(t, f.bus, q, fmt.Sprintf("m%d", i), nil)
	}
	var held []broker.Delivery
	for i := range 3 {
		d := recv(t, a)
		if want := fmt.Sprintf("m%d", i); string(d.Body) != want {
			t.Fatalf("first consumer got %q, want %q", d.Body, want)
		}
		held = append(held, d)
	}
	// The rest can only go to a second consumer while the first holds
	// three unacked.
	b := consume(t, f.bus, q, nil, 100)
	for i := 3; i < 10; i++ {
		expect(t, b, fmt.Sprintf("m%d", i))
	}
	if n := len(a.Deliveries()); n != 0 {
		t.Fatalf("the first consumer has %d more deliveries waiting beyond its prefetch of 3", n)
	}
	for _, d := range held {
		ack(t, a, d)
	}
	publish(t, f.bus, q, "after", nil)
	select {
	case d := <-a.Deliveries():
		ack(t, a, d)
	case d := <-b.Deliveries():
		ack(t, b, d)
	case <-time.After(wait):
		t.Fatal("no delivery of the last message")
	}
}

func testBusNack(t *testing.T, f busFixture) {
	q := f.name("nack")
	c := consume(t, f.bus, q, nil, 1)
	publish(t, f.bus, q, "m0", nil)
	publish(t, f.bus, q, "m1", nil)
	d := recv(t, c)
	if string(d.Body) != "m0" || d.Redelivered {
		t.Fatalf("got %q redelivered=%v, want m0 not redelivered", d.Body, d.Redelivered)
	}
	if err := c.Nack(d.Tag, true); err != nil {
		t.Fatalf("Nack with requeue: %v", err)
	}
	// Back in its place, ahead of m1.
	if d = expect(t, c, "m0"); !d.Redelivered {
		t.Fatal("a requeued message is not marked redelivered")
	}
	d = recv(t, c)
	if string(d.Body) != "m1" || d.Redelivered {
		t.Fatalf("got %q redelivered=%v, want m1 not redelivered", d.Body, d.Redelivered)
	}
	if err := c.Nack(d.Tag, false); err != nil {
		t.Fatalf("Nack without requeue: %v", err)
	}
	publish(t, f.bus, q, "m2", nil)
	expect(t, c, "m2") // m1 was dropped
}

func testBusCloseRequeues(t *testing.T, f busFixture) {
	q := f.name("requeue")
	a := consume(t, f.bus, q, nil, 5)
	for i := range 5 {
		publish(t, f.bus, q, fmt.Sprintf("m%d", i), nil)
	}
	expect(t, a, "m0")
	m1 := recv(t, a)
	if string(m1.Body) != "m1" {
		t.Fatalf("got %q, want m1", m1.Body)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	waitClosed(t, a)
	if err := a.Ack(m1.Tag); !errors.Is(err, broker.ErrConsumerClosed) {
		t.Fatalf("Ack after Close: %v, want ErrConsumerClosed", err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	b := consume(t, f.bus, q, nil, 10)
	for i := 1; i < 5; i++ {
		d := expect(t, b, fmt.Sprintf("m%d", i))
		if i == 1 && !d.Redelivered {
			t.Fatal("the unacked message is not marked redelivered")
		}
	}
}

func testBusShare(t *testing.T, f busFixture) {
	q := f.name("shared")
	a := consume(t, f.bus, q, nil, 100)
	b := consume(t, f.bus, q, nil, 100)
	const n = 20
	for i := range n {
		publish(t, f.bus, q, fmt.Sprintf("m%d", i), nil)
	}
	seen := map[string]bool{}
	count := map[broker.Consumer]int{}
	for len(seen) < n {
		var d broker.Delivery
		var from broker.Consumer
		select {
		case d = <-a.Deliveries():
			from = a
		case d = <-b.Deliveries():
			from = b
		case <-time.After(wait):
			t.Fatalf("only %d of %d messages delivered", len(seen), n)
		}
		if seen[string(d.Body)] {
			t.Fatalf("%q delivered twice", d.Body)
		}
		seen[string(d.Body)] = true
		count[from]++
		ack(t, from, d)
	}
	if count[a] == 0 || count[b] == 0 {
		t.Fatalf("one consumer got everything: %d and %d", count[a], count[b])
	}
}

func testBusHeaders(t *testing.T, f busFixture) {
	q := f.name("headers")
	c := consume(t, f.bus, q, nil, 10)
	h := map[string]string{"a": "1", "empty": "", "unicode": "ünï"}
	body := []byte("body")
	if err := f.bus.Publish(timeout(t, wait), q, body, h); err != nil {
		t.Fatal(err)
	}
	// Neither is retained by the bus.
	body[0] = 'X'
	h["a"] = "changed"
	publish(t, f.bus, q, "", nil)
	publish(t, f.bus, q, "x", map[string]string{})

	d := expect(t, c, "body")
	if want := map[string]string{"a": "1", "empty": "", "unicode": "ünï"}; !maps.Equal(d.Headers, want) {
		t.Fatalf("headers %v, want %v", d.Headers, want)
	}
	if d = expect(t, c, ""); d.Headers != nil {
		t.Fatalf("nil headers delivered as %v", d.Headers)
	}
	if d = expect(t, c, "x"); d.Headers != nil {
		t.Fatalf("empty headers delivered as %v, want nil", d.Headers)
	}
}

func testBusAckErrors(t *testing.T, f busFixture) {
	q := f.name("acks")
	c := consume(t, f.bus, q, nil, 10)
	publish(t, f.bus, q, "m0", nil)
	d := expect(t, c, "m0")
	for name, err := range map[string]error{
		"second Ack":                   c.Ack(d.Tag),
		"Nack after Ack":               c.Nack(d.Tag, true),
		"Ack of 0":                     c.Ack(0),
		"Ack of a tag never delivered": c.Ack(d.Tag + 1000),
	} {
		if !errors.Is(err, broker.ErrUnknownTag) {
			t.Errorf("%s: %v, want ErrUnknownTag", name, err)
		}
	}
	// Refused by the bus alone: the consumer goes on (RabbitMQ would have
	// closed the channel for an unknown tag).
	publish(t, f.bus, q, "m1", nil)
	if d := expect(t, c, "m1"); d.Redelivered {
		t.Fatal("m1 redelivered: the consumer's channel was closed")
	}
}

func testBusConcurrentPublishers(t *testing.T, f busFixture) {
	q := f.name("concurrent")
	c := consume(t, f.bus, q, nil, 50)
	const publishers, each = 8, 50
	var wg sync.WaitGroup
	errs := make(chan error, publishers)
	for p := range publishers {
		wg.Go(func() {
			for i := range each {
				if err := f.bus.Publish(timeout(t, wait), q, fmt.Appendf(nil, "%d/%d", p, i), map[string]string{"p": fmt.Sprint(p)}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	// Acked by two goroutines, to exercise Ack against deliveries.
	acks := make(chan broker.Delivery, publishers*each)
	var ackers sync.WaitGroup
	for range 2 {
		ackers.Go(func() {
			for d := range acks {
				if err := c.Ack(d.Tag); err != nil {
					t.Errorf("Ack: %v", err)
				}
			}
		})
	}
	next := make([]int, publishers)
	for range publishers * each {
		d := recv(t, c)
		var p, i int
		if _, err := fmt.Sscanf(string(d.Body), "%d/%d", &p, &i); err != nil || p < 0 || p >= publishers {
			t.Fatalf("unexpected body %q", d.Body)
		}
		if i != next[p] {
			t.Fatalf("publisher %d: got message %d, want %d (order of one publisher lost)", p, i, next[p])
		}
		if d.Headers["p"] != fmt.Sprint(p) {
			t.Fatalf("%q has headers %v", d.Body, d.Headers)
		}
		next[p]++
		acks <- d
	}
	close(acks)
	ackers.Wait()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Publish: %v", err)
	}
}

func testBusClose(t *testing.T, f busFixture) {
	q := f.name("close")
	c := consume(t, f.bus, q, nil, 1)
	publish(t, f.bus, q, "m0", nil)
	d := recv(t, c)
	if err := f.bus.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	waitClosed(t, c)
	if err := c.Err(); !errors.Is(err, broker.ErrClosed) {
		t.Fatalf("consumer Err after the bus's Close: %v, want ErrClosed", err)
	}
	if err := c.Ack(d.Tag); !errors.Is(err, broker.ErrConsumerClosed) {
		t.Fatalf("Ack after the bus's Close: %v, want ErrConsumerClosed", err)
	}
	if err := f.bus.Publish(context.Background(), q, nil, nil); !errors.Is(err, broker.ErrClosed) {
		t.Fatalf("Publish after Close: %v, want ErrClosed", err)
	}
	if _, err := f.bus.Consume(context.Background(), q, nil, 1); !errors.Is(err, broker.ErrClosed) {
		t.Fatalf("Consume after Close: %v, want ErrClosed", err)
	}
	if err := f.bus.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func testBusInvalid(t *testing.T, f busFixture) {
	ctx := timeout(t, wait)
	long := strings.Repeat("x", 256)
	for name, try := range map[string]func() error{
		"empty queue name":    func() error { _, err := f.bus.Consume(ctx, "", nil, 1); return err },
		"reserved queue name": func() error { _, err := f.bus.Consume(ctx, "amq.mine", nil, 1); return err },
		"long queue name":     func() error { _, err := f.bus.Consume(ctx, long, nil, 1); return err },
		"long binding":        func() error { _, err := f.bus.Consume(ctx, f.name("ok"), []string{long}, 1); return err },
		"prefetch too large":  func() error { _, err := f.bus.Consume(ctx, f.name("ok"), nil, broker.MaxPrefetch+1); return err },
		"long routing key":    func() error { return f.bus.Publish(ctx, long, nil, nil) },
	} {
		if err := try(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// Prefetch below 1 means 1.
	q := f.name("zero")
	c := consume(t, f.bus, q, nil, 0)
	publish(t, f.bus, q, "m0", nil)
	publish(t, f.bus, q, "m1", nil)
	d := recv(t, c)
	if n := len(c.Deliveries()); n != 0 {
		t.Fatalf("prefetch 0: %d more deliveries waiting beyond one", n)
	}
	ack(t, c, d)
	expect(t, c, "m1")
}
