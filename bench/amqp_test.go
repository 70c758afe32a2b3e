package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// The harness talks to the host over AMQP as any client would, with
// amqp091-go alone: control requests to vumi.control with reply_to, and
// the lifecycle events of vumi.events (docs/control-protocol.md).

const (
	// defaultBrokerURL is the broker of `make test` and `make bench`.
	defaultBrokerURL = "amqp://guest:guest@127.0.0.1:5672/"
	controlExchange  = "vumi.control"
	eventsExchange   = "vumi.events"
)

// brokerURL is AMQP_URL, else the broker the tests use.
func brokerURL() string {
	if u := os.Getenv("AMQP_URL"); u != "" {
		return u
	}
	return defaultBrokerURL
}

// redactURL hides the password of an AMQP URL, for the report.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// probeBroker connects to the broker at u and closes the connection,
// within a few seconds; it tells whether a broker answers.
func probeBroker(u string) error {
	conn, err := amqp.DialConfig(u, amqp.Config{
		Dial: func(network, addr string) (net.Conn, error) {
			c, err := net.DialTimeout(network, addr, 3*time.Second)
			if err != nil {
				return nil, err
			}
			return c, c.SetDeadline(time.Now().Add(5 * time.Second))
		},
	})
	if err != nil {
		return err
	}
	return conn.Close()
}

// needBroker skips the test unless a broker answers, after notRun has
// recorded why.
func needBroker(t *testing.T, notRun func(reason string)) string {
	t.Helper()
	u := brokerURL()
	if err := probeBroker(u); err != nil {
		reason := fmt.Sprintf("no RabbitMQ broker answered at %s (%v)", redactURL(u), err)
		notRun(reason)
		t.Skip(reason)
	}
	return u
}

// benchID is a system_id unique to this run: "bench-" and 12 hex digits.
func benchID(t *testing.T) string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "bench-" + hex.EncodeToString(b)
}

// amqpAdmin is the harness's own connection to the broker, closed at the
// test's end.
type amqpAdmin struct {
	t    *testing.T
	conn *amqp.Connection
}

func newAMQPAdmin(t *testing.T, u string) *amqpAdmin {
	t.Helper()
	conn, err := amqp.DialConfig(u, amqp.Config{Properties: amqp.Table{"connection_name": "dynworkers bench harness"}})
	if err != nil {
		t.Fatalf("connecting to the broker: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &amqpAdmin{t: t, conn: conn}
}

func (a *amqpAdmin) channel() *amqp.Channel {
	a.t.Helper()
	ch, err := a.conn.Channel()
	if err != nil {
		a.t.Fatalf("opening a channel: %v", err)
	}
	return ch
}

// tempQueue declares a server-named, exclusive, auto-delete queue bound
// to the topic exchange with each key, and consumes it with auto-ack. The
// exchange is declared as the host declares it (topic, durable), so that
// the queue can be bound before the host has run on this broker.
func (a *amqpAdmin) tempQueue(exchange string, keys ...string) (string, <-chan amqp.Delivery) {
	a.t.Helper()
	ch := a.channel()
	if exchange != "" {
		if err := ch.ExchangeDeclare(exchange, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
			a.t.Fatalf("declaring exchange %s: %v", exchange, err)
		}
	}
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		a.t.Fatalf("declaring a temporary queue: %v", err)
	}
	for _, k := range keys {
		if err := ch.QueueBind(q.Name, k, exchange, false, nil); err != nil {
			a.t.Fatalf("binding %s to %s with %q: %v", q.Name, exchange, k, err)
		}
	}
	d, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		a.t.Fatalf("consuming %s: %v", q.Name, err)
	}
	return q.Name, d
}

// deleteAtCleanup deletes the queues at the end of the test, after the
// host has stopped (cleanups run in reverse order: call it before
// starting the host).
func (a *amqpAdmin) deleteAtCleanup(queues ...string) {
	a.t.Cleanup(func() {
		ch, err := a.conn.Channel()
		if err != nil {
			return
		}
		defer ch.Close()
		for _, q := range queues {
			_, _ = ch.QueueDelete(q, false, false, false)
		}
	})
}

// controlQueues are the durable queues a host declares for its control
// messages (docs/control-protocol.md), deleted after a benchmark.
func controlQueues(sys, host string) []string {
	return []string{controlExchange + "." + sys + "." + host, controlExchange + "." + sys + ".any"}
}

// hostEvent is a lifecycle event from vumi.events, with the moment the
// harness received it.
type hostEvent struct {
	Event        string    `json:"event"`
	Time         time.Time `json:"time"` // the host's clock, the same as the harness's on one machine
	Worker       string    `json:"worker"`
	Pid          int       `json:"pid"`
	Error        string    `json:"error"`
	DelaySeconds float64   `json:"delay_seconds"`
	received     time.Time
}

// eventStream delivers the events of one host, in order.
type eventStream struct {
	t  *testing.T
	ch chan hostEvent
}

// watchEvents binds a queue of the harness to the events of host sys.host;
// call it before the host starts, so that none is missed.
func watchEvents(a *amqpAdmin, sys, host string) *eventStream {
	a.t.Helper()
	_, deliveries := a.tempQueue(eventsExchange, sys+"."+host+".#")
	s := &eventStream{t: a.t, ch: make(chan hostEvent, 4096)}
	go func() {
		for d := range deliveries {
			at := time.Now()
			var ev hostEvent
			if err := json.Unmarshal(d.Body, &ev); err != nil {
				ev = hostEvent{Event: "undecodable", Error: fmt.Sprintf("%v: %s", err, d.Body)}
			}
			ev.received = at
			s.ch <- ev // the benchmarks consume as the events come; 4096 is slack
		}
	}()
	return s
}

// next returns the next event of worker, skipping other workers', within
// eventTimeout.
func (s *eventStream) next(worker, what string) hostEvent {
	s.t.Helper()
	timeout := time.After(eventTimeout)
	for {
		select {
		case ev := <-s.ch:
			if ev.Event == "undecodable" {
				s.t.Fatalf("waiting for %s: undecodable event %s", what, ev.Error)
			}
			if ev.Worker != worker {
				continue
			}
			return ev
		case <-timeout:
			s.t.Fatalf("no %s of %s within %v", what, worker, eventTimeout)
		}
	}
}

// reply is a control reply (docs/control-protocol.md).
type reply struct {
	OK     bool            `json:"ok"`
	Result json.RawMessage `json:"result"`
	Error  json.RawMessage `json:"error"`
}

// amqpClient sends control requests to one host's routing key and matches
// the replies, which come to one reply queue, by correlation_id. It is
// safe for concurrent use.
type amqpClient struct {
	ch     *amqp.Channel
	key    string
	replyQ string
	seq    atomic.Int64

	mu      sync.Mutex
	waiting map[string]chan amqp.Delivery
	stray   int
}

func newAMQPClient(t *testing.T, a *amqpAdmin, key string) *amqpClient {
	t.Helper()
	replyQ, deliveries := a.tempQueue("")
	c := &amqpClient{ch: a.channel(), key: key, replyQ: replyQ, waiting: map[string]chan amqp.Delivery{}}
	t.Cleanup(func() { _ = c.ch.Close() })
	go func() {
		for d := range deliveries {
			c.mu.Lock()
			w, ok := c.waiting[d.CorrelationId]
			delete(c.waiting, d.CorrelationId)
			if !ok {
				c.stray++
			}
			c.mu.Unlock()
			if ok {
				w <- d
			}
		}
	}()
	return c
}

// send publishes body with reply_to and a fresh correlation_id, and returns
// the channel its reply will come on. The publish is not confirmed: the
// reply is the confirmation (the host acks only after its reply was).
func (c *amqpClient) send(body []byte) (<-chan amqp.Delivery, error) {
	corr := fmt.Sprintf("bench-%d", c.seq.Add(1))
	w := make(chan amqp.Delivery, 1)
	c.mu.Lock()
	c.waiting[corr] = w
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), controlRPCTimeout)
	defer cancel()
	err := c.ch.PublishWithContext(ctx, controlExchange, c.key, false, false, amqp.Publishing{
		ContentType: "application/json", Body: body, ReplyTo: c.replyQ, CorrelationId: corr,
	})
	if err != nil {
		c.mu.Lock()
		delete(c.waiting, corr)
		c.mu.Unlock()
		return nil, fmt.Errorf("publishing a control request: %w", err)
	}
	return w, nil
}

// wait returns the reply that arrives on w, decoded, and fails unless it
// is OK.
func (c *amqpClient) wait(w <-chan amqp.Delivery) (reply, error) {
	select {
	case d := <-w:
		return okReply(d.Body)
	case <-time.After(controlRPCTimeout):
		return reply{}, fmt.Errorf("no reply within %v", controlRPCTimeout)
	}
}

// call sends body and waits for its reply.
func (c *amqpClient) call(body []byte) (reply, error) {
	w, err := c.send(body)
	if err != nil {
		return reply{}, err
	}
	return c.wait(w)
}

func okReply(body []byte) (reply, error) {
	var rep reply
	if err := json.Unmarshal(body, &rep); err != nil {
		return rep, fmt.Errorf("reply %q: %w", body, err)
	}
	if !rep.OK {
		return rep, fmt.Errorf("reply not ok: %s", body)
	}
	return rep, nil
}
