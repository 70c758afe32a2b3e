package broker_test

import (
	"errors"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dynworkers/dynworkers/host/internal/broker"
	"github.com/dynworkers/dynworkers/host/internal/broker/brokertest"
	"github.com/dynworkers/dynworkers/host/internal/pluginproc"
)

// The host bridge on RabbitMQ (its other tests, on a fake bus and on the
// embedded bus, are in bridge_internal_test.go).

// On RabbitMQ: the output queue holds at most one message and refuses
// more (x-overflow reject-publish), so the broker nacks the second output:
// its input comes again instead of being acked, and once there is room its
// new output is confirmed and the input acked.
func TestDeferredPublishNackedRequeuesAMQP(t *testing.T) {
	checkNoLeaks(t)
	url := brokertest.URL(t)
	id := brokertest.ID(t)
	in, out := id+".in", id+".out"
	admin := brokertest.NewAdmin(t)
	admin.DeleteAtCleanup([]string{in, out}, nil)
	if err := admin.Do(func(ch *amqp.Channel) error {
		if err := ch.ExchangeDeclare(broker.DefaultExchange, amqp.ExchangeDirect, true, false, false, false, nil); err != nil {
			return err
		}
		if _, err := ch.QueueDeclare(out, true, false, false, false, amqp.Table{"x-max-length": int32(1), "x-overflow": "reject-publish"}); err != nil {
			return err
		}
		return ch.QueueBind(out, out, broker.DefaultExchange, false, nil)
	}); err != nil {
		t.Fatal(err)
	}
	ctx := timeout(t, time.Minute)
	bus := broker.NewAMQPBus(dial(t, broker.Options{URL: url}), broker.AMQPBusOptions{})
	defer bus.Close()
	h := broker.NewHostBridge(bus, testLogger(t))
	c, err := h.Consume(ctx, pluginproc.ConsumeSpec{Queue: in, Bindings: []string{in}, Prefetch: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, m := range []string{"m1", "m2"} {
		admin.Publish(broker.DefaultExchange, in, amqp.Publishing{Body: []byte(m), DeliveryMode: amqp.Persistent})
	}
	next := func(want string, redelivered bool) pluginproc.Delivery {
		t.Helper()
		select {
		case d := <-c.Deliveries():
			if string(d.Body) != want || d.Redelivered != redelivered {
				t.Fatalf("got %q (redelivered %v), want %q (redelivered %v)", d.Body, d.Redelivered, want, redelivered)
			}
			return d
		case <-ctx.Done():
			t.Fatalf("no delivery of %q", want)
		}
		return pluginproc.Delivery{}
	}
	d1 := next("m1", false)
	if err := h.Publish(ctx, out, []byte("o1"), nil, true); err != nil {
		t.Fatal(err)
	}
	if err := c.Ack(d1.Tag); err != nil {
		t.Fatal(err)
	}
	d2 := next("m2", false)
	if err := h.Publish(ctx, out, []byte("o2"), nil, true); err != nil { // the queue is full: nacked
		t.Fatal(err)
	}
	if err := c.Ack(d2.Tag); err != nil {
		t.Fatal(err)
	}
	d2 = next("m2", true) // requeued, not acked
	// Make room, and handle it again.
	if err := admin.Do(func(ch *amqp.Channel) error { _, err := ch.QueuePurge(out, false); return err }); err != nil {
		t.Fatal(err)
	}
	if err := h.Publish(ctx, out, []byte("o2"), nil, true); err != nil {
		t.Fatal(err)
	}
	if err := c.Ack(d2.Tag); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil { // finishes the queued ack
		t.Fatal(err)
	}
	qi, err1 := admin.InspectQueue(in)
	qo, err2 := admin.InspectQueue(out)
	if err := errors.Join(err1, err2); err != nil {
		t.Fatal(err)
	}
	if qi.Messages != 0 || qo.Messages != 1 {
		t.Fatalf("input queue holds %d, output %d; want 0 and 1", qi.Messages, qo.Messages)
	}
}
