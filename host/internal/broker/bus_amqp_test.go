package broker_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dynworkers/dynworkers/host/internal/broker"
	"github.com/dynworkers/dynworkers/host/internal/broker/brokertest"
	"github.com/dynworkers/dynworkers/sdk/sdktest"
)

// amqpBus dials a Conn named "dynworkers <queue>" and returns a bus on it;
// queue is deleted at cleanup, after the bus and the Conn are closed.
func amqpBus(t *testing.T, queue string, o broker.Options) (*broker.AMQPBus, *broker.Conn, *brokertest.Admin) {
	t.Helper()
	admin := brokertest.NewAdmin(t)
	admin.DeleteAtCleanup([]string{queue}, nil)
	if o.ConnectionName == "" {
		o.ConnectionName = "dynworkers " + queue
	}
	c := dial(t, o)
	b := broker.NewAMQPBus(c, broker.AMQPBusOptions{})
	t.Cleanup(func() { _ = b.Close() })
	return b, c, admin
}

func TestAMQPBusConsumerResumesAfterConnectionLoss(t *testing.T) {
	checkNoLeaks(t)
	q := brokertest.ID(t)
	b, _, admin := amqpBus(t, q, broker.Options{})
	c := consume(t, b, q, nil, 10)
	for i := range 3 {
		publish(t, b, q, fmt.Sprintf("m%d", i), nil)
	}
	// m0 is acked; m1 and m2 are received but not acked when the
	// connection goes.
	expect(t, c, "m0")
	old := map[string]broker.Delivery{}
	for range 2 {
		d := recv(t, c)
		old[string(d.Body)] = d
	}

	brokertest.CloseConnections(t, "dynworkers "+q)

	// The same Deliveries channel goes on; m1 and m2 come again, marked
	// redelivered. A delivery of the old channel may still be received
	// once (it was on its way); its Ack fails cleanly.
	acked := map[string]bool{}
	for len(acked) < 2 {
		d := recv(t, c)
		err := c.Ack(d.Tag)
		switch {
		case errors.Is(err, broker.ErrDeliveryLost):
			continue
		case err != nil:
			t.Fatalf("Ack of %q after the reconnection: %v", d.Body, err)
		}
		if body := string(d.Body); body != "m1" && body != "m2" || !d.Redelivered || acked[body] {
			t.Fatalf("after the reconnection got %q redelivered=%v (acked already: %v)", d.Body, d.Redelivered, acked)
		}
		acked[string(d.Body)] = true
	}
	for body, d := range old {
		if err := c.Ack(d.Tag); !errors.Is(err, broker.ErrDeliveryLost) {
			t.Fatalf("Ack of %s with its tag of the lost channel: %v, want ErrDeliveryLost", body, err)
		}
	}
	if err := c.Err(); err != nil {
		t.Fatalf("Err of a running consumer: %v", err)
	}
	// Publishing resumes too, and nothing is left in the queue.
	publish(t, b, q, "m3", nil)
	if d := expect(t, c, "m3"); d.Redelivered {
		t.Fatal("m3 marked redelivered")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if qi, err := admin.InspectQueue(q); err != nil || qi.Messages != 0 {
		t.Fatalf("queue after the test: %+v, %v", qi, err)
	}
}

func TestAMQPBusConsumerResumesWhenTheBrokerCancelsIt(t *testing.T) {
	checkNoLeaks(t)
	q := brokertest.ID(t)
	b, _, admin := amqpBus(t, q, broker.Options{MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond})
	c := consume(t, b, q, nil, 1)
	publish(t, b, q, "before", nil)
	expect(t, c, "before")

	// Deleting the queue cancels its consumer; the bus declares it again.
	if err := admin.Do(func(ch *amqp.Channel) error { _, err := ch.QueueDelete(q, false, false, false); return err }); err != nil {
		t.Fatal(err)
	}
	// The broker tells nobody: poll it.
	sdktest.Eventually(t, wait, func() bool {
		qi, err := admin.InspectQueue(q)
		return err == nil && qi.Consumers == 1
	}, "the queue was not declared and consumed again")
	publish(t, b, q, "after", nil)
	expect(t, c, "after")
}

func TestAMQPBusInteroperatesWithPlainAMQP(t *testing.T) {
	checkNoLeaks(t)
	q := brokertest.ID(t)
	b, _, admin := amqpBus(t, q, broker.Options{})
	c := consume(t, b, q, nil, 1)

	// A message from another publisher (a Vumi worker) on exchange vumi,
	// with headers that are not strings.
	admin.Publish(broker.DefaultExchange, q, amqp.Publishing{
		Body:    []byte(`{"message_version": "20110921"}`),
		Headers: amqp.Table{"n": int32(5), "s": "x", "b": []byte("bytes")},
	})
	d := expect(t, c, `{"message_version": "20110921"}`)
	if d.Headers["n"] != "5" || d.Headers["s"] != "x" || d.Headers["b"] != "bytes" {
		t.Fatalf("headers %v", d.Headers)
	}

	// What the bus publishes is persistent, on exchange vumi.
	key := q + ".out"
	_, plain := admin.TempQueue(broker.DefaultExchange, key)
	publish(t, b, key, "out", map[string]string{"h": "v"})
	m := brokertest.Receive(t, plain, wait)
	if string(m.Body) != "out" || m.Exchange != broker.DefaultExchange || m.RoutingKey != key ||
		m.DeliveryMode != amqp.Persistent || m.Headers["h"] != "v" {
		t.Fatalf("plain consumer got %+v", m)
	}
}

func TestAMQPBusConsumerEndsWithTheConn(t *testing.T) {
	checkNoLeaks(t)
	q := brokertest.ID(t)
	b, conn, _ := amqpBus(t, q, broker.Options{})
	c := consume(t, b, q, nil, 1)
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, c)
	if err := c.Err(); !errors.Is(err, broker.ErrClosed) {
		t.Fatalf("Err after the Conn's Close: %v, want ErrClosed", err)
	}
	if err := b.Publish(timeout(t, wait), q, nil, nil); !errors.Is(err, broker.ErrClosed) {
		t.Fatalf("Publish after the Conn's Close: %v, want ErrClosed", err)
	}
}

func TestAMQPBusConsumeReportsADeclarationError(t *testing.T) {
	checkNoLeaks(t)
	q := brokertest.ID(t)
	b, _, admin := amqpBus(t, q, broker.Options{})
	// The queue exists with other arguments: PRECONDITION_FAILED.
	if err := admin.Do(func(ch *amqp.Channel) error {
		_, err := ch.QueueDeclare(q, true, false, false, false, amqp.Table{"x-max-length": int32(10)})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	_, err := b.Consume(timeout(t, wait), q, nil, 1)
	var aerr *amqp.Error
	if !errors.As(err, &aerr) || aerr.Code != amqp.PreconditionFailed {
		t.Fatalf("Consume of a queue declared otherwise: %v, want PRECONDITION_FAILED", err)
	}
}
