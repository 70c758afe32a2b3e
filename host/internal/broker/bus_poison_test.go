package broker_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/broker"
	"github.com/dynworkers/dynworkers/host/internal/broker/brokertest"
	"github.com/dynworkers/dynworkers/host/internal/pluginproc"
)

// Poison messages (poison.go), on both buses: the failure counting sits
// above the Bus, in the host bridge, so the same cases run on each.

func TestEmbeddedBusPoison(t *testing.T) { runBusPoison(t, embeddedFixture) }

func TestAMQPBusPoison(t *testing.T) {
	brokertest.URL(t) // skip (or fail under CI) without a broker
	runBusPoison(t, amqpFixture)
}

func runBusPoison(t *testing.T, fixture func(*testing.T) busFixture) {
	runBusCases(t, fixture, []busCase{
		{"DeadLetteredAfterMaxRedeliveries", testPoisonDeadLettered},
		{"NackWithoutErrorDoesNotCount", testPoisonPlainNack},
		{"NegativeMaxNeverDeadLetters", testPoisonNever},
		{"CountedAcrossProcesses", testPoisonAcrossProcesses},
	})
}

// bridgeConsume consumes queue through a worker process's bridge made by
// bridges, dead-lettering to dlq after max failures.
func bridgeConsume(t *testing.T, bridges *broker.Bridges, o broker.BridgeOptions, queue, dlq string, max int) pluginproc.Consumer {
	t.Helper()
	if o.Logger == nil {
		o.Logger = testLogger(t)
	}
	h := bridges.Process(o)
	c, err := h.Consume(timeout(t, wait), pluginproc.ConsumeSpec{Queue: queue, Bindings: []string{queue}, Prefetch: 5,
		MaxRedeliveries: max, DeadLetter: dlq})
	if err != nil {
		t.Fatalf("Consume %q: %v", queue, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// next returns c's next delivery, failing the test after wait.
func next(t *testing.T, c pluginproc.Consumer) pluginproc.Delivery {
	t.Helper()
	select {
	case d, ok := <-c.Deliveries():
		if !ok {
			t.Fatal("deliveries closed")
		}
		return d
	case <-time.After(wait):
		t.Fatalf("no delivery within %v", wait)
	}
	return pluginproc.Delivery{}
}

// fail receives the next delivery, checks it is body with failures
// failures so far, and nacks it as a failed handler does.
func fail(t *testing.T, c pluginproc.Consumer, body string, failures int) {
	t.Helper()
	d := next(t, c)
	if string(d.Body) != body || d.Failures != failures {
		t.Fatalf("got %q with %d failures, want %q with %d", d.Body, d.Failures, body, failures)
	}
	if err := c.Nack(d.Tag, true, "boom "+strconv.Itoa(failures+1)); err != nil {
		t.Fatal(err)
	}
}

// A message whose handler fails max_redeliveries times is handed to the
// worker exactly that many times, then it is in the dead-letter queue with
// the error, the count, its queue and routing key, and its own headers,
// and no longer in its queue.
func testPoisonDeadLettered(t *testing.T, f busFixture) {
	in, dlq := f.name("in"), f.name("in.dlq")
	dead := make(chan string, 10)
	c := bridgeConsume(t, broker.NewBridges(f.bus), broker.BridgeOptions{OnDeadLetter: func(q string) { dead <- q }}, in, dlq, 3)
	publish(t, f.bus, in, "poison", map[string]string{"h": "v"})
	for i := range 3 {
		fail(t, c, "poison", i)
	}
	// The dead letter is in its queue, declared with the consumer.
	dl := consume(t, f.bus, dlq, nil, 1)
	d := recv(t, dl)
	want := map[string]string{"h": "v", broker.HeaderError: "boom 3", broker.HeaderFailures: "3",
		broker.HeaderQueue: in, broker.HeaderRoutingKey: in}
	if string(d.Body) != "poison" || len(d.Headers) != len(want) {
		t.Fatalf("dead letter %q %v, want %q %v", d.Body, d.Headers, "poison", want)
	}
	for k, v := range want {
		if d.Headers[k] != v {
			t.Errorf("dead letter header %s = %q, want %q", k, d.Headers[k], v)
		}
	}
	ack(t, dl, d)
	// Not handed over a fourth time: the next delivery is a message
	// published after it (a requeued one would come first).
	publish(t, f.bus, in, "after", nil)
	if d := next(t, c); string(d.Body) != "after" || d.Failures != 0 {
		t.Fatalf("after the dead letter got %q (failures %d), want the next message", d.Body, d.Failures)
	}
	// Counted once.
	select {
	case q := <-dead:
		if q != in {
			t.Errorf("OnDeadLetter(%q), want %q", q, in)
		}
	case <-time.After(wait):
		t.Fatal("OnDeadLetter not called")
	}
	if len(dead) != 0 {
		t.Errorf("OnDeadLetter called %d more times", len(dead))
	}
}

// A Nack with requeue and no error (a consumer stopping) is no failure: the
// message comes again with its count unchanged.
func testPoisonPlainNack(t *testing.T, f busFixture) {
	in, dlq := f.name("in"), f.name("in.dlq")
	c := bridgeConsume(t, broker.NewBridges(f.bus), broker.BridgeOptions{}, in, dlq, 2)
	publish(t, f.bus, in, "m", nil)
	for range 3 {
		d := next(t, c)
		if d.Failures != 0 {
			t.Fatalf("failures %d after plain nacks", d.Failures)
		}
		if err := c.Nack(d.Tag, true, ""); err != nil {
			t.Fatal(err)
		}
	}
	fail(t, c, "m", 0)
	fail(t, c, "m", 1)
	publish(t, f.bus, in, "after", nil)
	if d := next(t, c); string(d.Body) != "after" {
		t.Fatalf("got %q, want the message dead-lettered at its second failure", d.Body)
	}
	dl := consume(t, f.bus, dlq, nil, 1)
	if d := recv(t, dl); d.Headers[broker.HeaderFailures] != "2" {
		t.Fatalf("dead letter headers %v", d.Headers)
	}
}

// A negative max_redeliveries never dead-letters: the message keeps
// coming, with its failures counted.
func testPoisonNever(t *testing.T, f busFixture) {
	in := f.name("in")
	c := bridgeConsume(t, broker.NewBridges(f.bus), broker.BridgeOptions{}, in, in+".dlq", -1)
	publish(t, f.bus, in, "m", nil)
	for range 6 {
		d := next(t, c)
		if d.Failures != 0 { // not counted at all
			t.Fatalf("failures %d with counting off", d.Failures)
		}
		if err := c.Nack(d.Tag, true, "boom"); err != nil {
			t.Fatal(err)
		}
	}
	d := next(t, c)
	if string(d.Body) != "m" {
		t.Fatalf("got %q", d.Body)
	}
	if err := c.Ack(d.Tag); err != nil {
		t.Fatal(err)
	}
}

// The failures of a message count whichever worker process of the
// queue's consumers it failed in (the bridges of one host share them).
func testPoisonAcrossProcesses(t *testing.T, f busFixture) {
	in, dlq := f.name("in"), f.name("in.dlq")
	bridges := broker.NewBridges(f.bus)
	a := bridgeConsume(t, bridges, broker.BridgeOptions{}, in, dlq, 2)
	publish(t, f.bus, in, "m", nil)
	fail(t, a, "m", 0)
	_ = a.Close()
	b := bridgeConsume(t, bridges, broker.BridgeOptions{}, in, dlq, 2)
	fail(t, b, "m", 1)
	dl := consume(t, f.bus, dlq, nil, 1)
	if d := recv(t, dl); string(d.Body) != "m" || d.Headers[broker.HeaderFailures] != "2" {
		t.Fatalf("dead letter %q %v", d.Body, d.Headers)
	}
}
