package control_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dynworkers/dynworkers/host/internal/broker"
	"github.com/dynworkers/dynworkers/host/internal/broker/brokertest"
	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/sdk/sdktest"
)

// Replies to a durable reply_to queue survive a restart of the broker:
// 100 requests are handled and acked (each once its reply was confirmed),
// the broker restarts, and the 100 replies are still there. On a broker
// node of the test's own (brokertest.StartTLSNode), so that restarting it
// disturbs no other test; it also runs the transport over amqps.
func TestAMQPRepliesSurviveABrokerRestart(t *testing.T) {
	began := time.Now()
	node := brokertest.StartTLSNode(t)
	t.Logf("broker started in %s", time.Since(began))
	const sid, host, replyQueue, n = "restart", "h1", "replies", 100

	conn, err := broker.Dial(context.Background(), broker.Options{
		URL: node.URL, TLS: node.ClientTLS(t), Setup: control.Topology(sid, host),
		Logger: amqpLogger(t, host),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), amqpWait)
	defer cancel()
	if err := conn.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	handler := newAMQPFakeHandler(host)
	tr := control.NewAMQPTransport(control.AMQPOptions{SystemID: sid, HostName: host, Conn: conn, Handler: handler, Logger: amqpLogger(t, host)})
	runCtx, stopRun := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- tr.Run(runCtx) }()

	client := func() (*amqp.Connection, *amqp.Channel) {
		t.Helper()
		c, err := amqp.DialConfig(node.URL, amqp.Config{TLSClientConfig: node.ClientTLS(t)})
		if err != nil {
			t.Fatal(err)
		}
		ch, err := c.Channel()
		if err != nil {
			t.Fatal(err)
		}
		return c, ch
	}
	c, ch := client()
	if _, err := ch.QueueDeclare(replyQueue, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := ch.PublishWithContext(ctx, control.ControlExchange, control.HostKey(sid, host), false, false, amqp.Publishing{
			DeliveryMode: amqp.Persistent, ReplyTo: replyQueue, CorrelationId: fmt.Sprint(i), Body: []byte(fmt.Sprint(i)),
		}); err != nil {
			t.Fatal(err)
		}
	}
	// Every message handled, replied to and acked.
	sdktest.Eventually(t, amqpWait, func() bool {
		q, err := ch.QueueDeclarePassive(replyQueue, true, false, false, false, nil)
		return err == nil && q.Messages == n
	}, "the replies did not all arrive")
	sdktest.Eventually(t, amqpWait, func() bool {
		q, err := ch.QueueDeclarePassive(control.HostQueue(sid, host), true, false, false, false, nil)
		return err == nil && q.Messages == 0 && q.Consumers == 1
	}, "the host queue still holds messages")
	t.Logf("%d requests handled in %s", n, time.Since(began))
	stopRun()
	if err := <-ran; err != nil {
		t.Errorf("Run: %v", err)
	}
	_ = conn.Close()
	_ = c.Close()

	start := time.Now()
	node.Restart(t)
	t.Logf("broker restarted in %s", time.Since(start))
	c, ch = client()
	defer c.Close()
	q, err := ch.QueueDeclarePassive(replyQueue, true, false, false, false, nil)
	if err != nil || q.Messages != n {
		t.Fatalf("after the restart %s holds %+v, %v; want %d replies", replyQueue, q, err, n)
	}
	seen := map[string]bool{}
	for range n {
		d, ok, err := ch.Get(replyQueue, true)
		if err != nil || !ok {
			t.Fatalf("get: %v, %v", ok, err)
		}
		if d.DeliveryMode != amqp.Persistent {
			t.Errorf("reply %s: delivery mode %d", d.CorrelationId, d.DeliveryMode)
		}
		seen[d.CorrelationId] = true
	}
	if len(seen) != n {
		t.Errorf("%d distinct replies, want %d", len(seen), n)
	}
	if got := handler.count("0"); got != 1 {
		t.Errorf("message 0 handled %d times, want 1", got)
	}
}
