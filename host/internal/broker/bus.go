package broker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
)

// DefaultExchange is the exchange of the workers' messages, as in Vumi:
// direct and durable.
const DefaultExchange = "vumi"

// MaxPrefetch is the largest prefetch a consumer may ask for: AMQP 0-9-1
// carries it in 16 bits.
const MaxPrefetch = 65535

// maxNameLen is the longest queue name or routing key AMQP 0-9-1 carries (a
// short string).
const maxNameLen = 255

// Errors of the buses' consumers, besides ErrClosed, ErrDisconnected and
// ErrNacked of the Conn; test them with errors.Is.
var (
	// ErrConsumerClosed means the consumer was closed (by Close, by the
	// bus's Close or by the Conn's) before an Ack or Nack.
	ErrConsumerClosed = errors.New("consumer closed")
	// ErrDeliveryLost means the delivery came on a broker channel that is
	// gone (the connection was lost): the broker returns it to the queue
	// and delivers it again, marked Redelivered, so it must not be acked
	// now. It is never acked in place of another message.
	ErrDeliveryLost = errors.New("delivery lost with its broker channel; it will be redelivered")
	// ErrUnknownTag means the tag was never delivered to this consumer or
	// was already acked or nacked. The bus refuses it without telling the
	// broker, which would close the channel for it.
	ErrUnknownTag = errors.New("unknown delivery tag")
	// ErrQueueFull means a queue of the embedded bus with the
	// reject-publish overflow policy was full, or the embedded bus as a
	// whole was (EmbeddedBusOptions): the message was not queued there.
	// The error also matches ErrNacked, which is what a publisher to a
	// full reject-publish queue of RabbitMQ gets.
	ErrQueueFull = errors.New("queue full")
)

// Bus carries the workers' messages (DESIGN §7) the way Vumi did: every
// message is published to one direct, durable exchange ("vumi") with a
// routing key such as "<transport_name>.inbound", and a worker consumes a
// durable queue named after the routing key it wants, bound to the exchange
// with that key (or with the keys it names).
//
// Two implementations share these semantics: AMQPBus on RabbitMQ and
// EmbeddedBus in process. The guarantees, which both keep and the
// conformance tests check:
//
//   - Routing: a message goes to every queue bound with its routing key,
//     once per queue. A message whose key no queue is bound with is
//     dropped, and Publish still succeeds (as in AMQP without the
//     mandatory flag): a queue keeps messages only from its first
//     declaration on, which is Consume's job, so messages published before
//     the first consumer of a queue ever declared it are lost.
//   - Queues are durable: they outlive their consumers and keep their
//     messages meanwhile (AMQPBus: also across host restarts, and broker
//     restarts for persistent messages, the default; EmbeddedBus: only
//     while the bus lives). How much a queue keeps, and how long it lives
//     unused, is RabbitMQ's max-length, overflow and expires: on
//     RabbitMQ, the operator's policies (none: unbounded); on the
//     embedded bus, EmbeddedBusOptions (bounded by default). Bindings
//     are only ever added, while the queue lives.
//   - Order: a queue delivers its messages in the order they were
//     published (messages of one caller of Publish or PublishAsync keep
//     their order, as do callers ordered by the returns of Publish). A
//     message returned to the queue (Nack with requeue, consumer closed,
//     connection lost) goes back to its original place, ahead of younger
//     messages (RabbitMQ's classic queues do this; the embedded bus
//     always), and comes again with Redelivered set. Consumers that handle
//     deliveries concurrently, or several consumers of one queue, see them
//     out of order, of course.
//   - Delivery is at least once: a message leaves a queue only when it is
//     acked (or nacked without requeue). Whatever a consumer has not
//     acked when it ends, or when its broker connection is lost, is
//     delivered again, to it or to another consumer of the queue. Handle
//     it as such: a consumer may see a message twice.
//   - Fairness: consumers of one queue share its messages round robin
//     among those below their prefetch.
//   - A queue declared by Declare or Consume keeps what is routed to it
//     from then on, with or without consumers (within its bounds, and
//     until it expires unused, if the bus's policy says so).
//
// Failed attempts and dead letters (poison messages) are not the Bus's:
// the host bridge counts them above it (poison.go), with Publish, Consume,
// Declare, Ack and Nack, so they behave the same on both buses.
//
// A Bus is safe for concurrent use. Its Close ends its consumers; AMQPBus
// does not own its Conn, so close the Conn after the bus.
type Bus interface {
	// Publish sends body with the routing key to every queue bound with
	// the key, and returns once the message is safely routed (AMQPBus: the
	// broker confirmed it; EmbeddedBus: it is in the queues). body and
	// headers are not retained: the caller may reuse them at once. A nil
	// or empty headers map is delivered as nil. It returns ErrClosed after
	// Close and ctx's error when ctx ends first; see AMQPBus.Publish for
	// the broker's errors. A full queue with the reject-publish policy
	// refuses the message with an error matching ErrNacked (the other
	// queues bound with the key still get it). Publish is PublishAsync
	// and Confirmation.Wait.
	Publish(ctx context.Context, routingKey string, body []byte, headers map[string]string) error
	// PublishAsync sends like Publish but returns as soon as the message
	// is sent, with its Confirmation, which tells later what Publish would
	// have returned. Messages sent by PublishAsync calls that follow one
	// another are routed in that order (of those confirmed: a connection
	// lost in between fails the confirmations of what it carried). It
	// lets one goroutine keep many messages in flight without losing
	// their order: send the output of a delivery, and ack the delivery
	// once the output's confirmation came (in order, from a second
	// goroutine). The error returned at once is one that Publish would
	// return before sending (ErrClosed, ctx's error, a bad routing key, a
	// broker channel that cannot be opened).
	PublishAsync(ctx context.Context, routingKey string, body []byte, headers map[string]string) (*Confirmation, error)
	// Consume declares queue (durable) and binds it with each key of
	// bindings (none given: with its own name), then starts delivering its
	// messages. At most prefetch deliveries are unacked at a time
	// (prefetch below 1 means 1, above MaxPrefetch is an error), so a
	// consumer that stops acking stops receiving. ctx bounds the
	// declaration only (AMQPBus: including the wait for a connection); the
	// consumer lives until it is closed.
	Consume(ctx context.Context, queue string, bindings []string, prefetch int) (Consumer, error)
	// Declare declares queue (durable) and binds it with each key of
	// bindings (none given: with its own name), as Consume does, without
	// consuming it: from then on the queue keeps the messages routed to
	// it (the host's dead-letter queues). Declaring again, as consuming,
	// starts the queue's expiry over. ctx bounds it as it does Consume's
	// declaration.
	Declare(ctx context.Context, queue string, bindings []string) error
	// Close ends every consumer of the bus, as their Close would, with
	// Err ErrClosed, and makes Publish and Consume fail with ErrClosed.
	// Publishes in flight return ErrClosed. Idempotent.
	Close() error
}

// Consumer is one consumer of one queue, from Bus.Consume. Its methods are
// safe for concurrent use, so deliveries may be handled by several
// goroutines (at the price of their order).
type Consumer interface {
	// Deliveries returns the channel of the deliveries; it is the same
	// channel for the consumer's whole life, across reconnections, and is
	// closed when the consumer ends.
	Deliveries() <-chan Delivery
	// Ack removes the delivery with this tag from the queue. It fails with
	// ErrUnknownTag for a tag that is not unacked on this consumer,
	// ErrDeliveryLost for a tag of a broker channel that is gone (the
	// message will come again), ErrConsumerClosed once the consumer is
	// closed. AMQPBus: the ack is sent, not confirmed: if the connection
	// is lost right after, the broker may deliver the message again.
	Ack(tag uint64) error
	// Nack refuses the delivery with this tag: requeue puts it back in its
	// place in the queue, to be delivered again with Redelivered set;
	// without requeue it is dropped (or dead-lettered, if an operator gave
	// the queue a dead-letter exchange in RabbitMQ). Errors as for Ack.
	Nack(tag uint64, requeue bool) error
	// Close ends the consumer: unacked deliveries, including any still
	// waiting in the Deliveries channel, which Close empties, go back to
	// the queue for redelivery; Deliveries is closed; later Acks and Nacks
	// fail with ErrConsumerClosed. It returns once the consumer has ended.
	// Idempotent.
	Close() error
	// Err says why the consumer ended, once Deliveries is closed: nil
	// after its own Close, ErrClosed after the bus's (or AMQPBus's Conn's)
	// Close. A broker that goes away does not end a consumer: it resumes
	// on the next connection.
	Err() error
}

// Delivery is one message delivered to a consumer. Treat Body and Headers
// as read-only: the embedded bus shares them between the queues a message
// was routed to and between its deliveries.
type Delivery struct {
	// Tag identifies the delivery for Ack and Nack on its consumer. It is
	// opaque: unique within the consumer, never reused, not ordered.
	Tag uint64
	// RoutingKey is the key the message was published with.
	RoutingKey string
	Body       []byte
	// Headers are the message's headers; nil when it had none. Header
	// values that are not strings in AMQP (set by another publisher) are
	// formatted with fmt.Sprint.
	Headers map[string]string
	// Redelivered is set on a message that was delivered before and
	// returned to the queue unacked: it may have been handled already.
	Redelivered bool
}

// Confirmation is the outcome of one PublishAsync, known once Done is
// closed.
type Confirmation struct {
	done    <-chan struct{}
	closed  <-chan struct{} // the bus's Close; nil for an outcome known at once
	resolve func() error    // the outcome, once done is closed; nil: success
	once    sync.Once
	err     error
}

// confirmed is the Confirmation of a message routed at once (EmbeddedBus).
var confirmed = &Confirmation{done: closedChan}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// Done is closed once the outcome is known.
func (c *Confirmation) Done() <-chan struct{} { return c.done }

// Err waits for Done and returns the outcome: nil once the broker
// confirmed the message, else the error Publish would have returned.
func (c *Confirmation) Err() error {
	<-c.done
	c.once.Do(func() {
		if c.resolve != nil {
			c.err = c.resolve()
		}
	})
	return c.err
}

// Wait waits for the outcome until ctx ends (returning ctx's error) or the
// bus is closed (ErrClosed), and returns Err.
func (c *Confirmation) Wait(ctx context.Context) error {
	select {
	case <-c.done:
	case <-ctx.Done():
		return ctx.Err()
	case <-c.closed:
		select {
		case <-c.done:
		default:
			return ErrClosed
		}
	}
	return c.Err()
}

// checkConsume validates Consume's arguments and returns the bindings to
// declare and the prefetch to use.
func checkConsume(queue string, bindings []string, prefetch int) ([]string, int, error) {
	if err := checkQueueName(queue); err != nil {
		return nil, 0, err
	}
	if len(bindings) == 0 {
		bindings = []string{queue}
	}
	for _, k := range bindings {
		if err := checkRoutingKey(k); err != nil {
			return nil, 0, fmt.Errorf("binding queue %q: %w", queue, err)
		}
	}
	if prefetch < 1 {
		prefetch = 1
	}
	if prefetch > MaxPrefetch {
		return nil, 0, fmt.Errorf("consuming %q: prefetch %d is above the maximum, %d", queue, prefetch, MaxPrefetch)
	}
	return bindings, prefetch, nil
}

// checkQueueName refuses what RabbitMQ would refuse or misread as a queue
// name: an empty one (it would make a server-named queue), a long one,
// and the reserved "amq." prefix.
func checkQueueName(q string) error {
	switch {
	case q == "":
		return errors.New("empty queue name")
	case len(q) > maxNameLen:
		return fmt.Errorf("queue name %.40q... is longer than %d bytes", q, maxNameLen)
	case strings.HasPrefix(q, "amq."):
		return fmt.Errorf("queue name %q: the prefix \"amq.\" is reserved by the broker", q)
	}
	return nil
}

func checkRoutingKey(k string) error {
	if len(k) > maxNameLen {
		return fmt.Errorf("routing key %.40q... is longer than %d bytes", k, maxNameLen)
	}
	return nil
}
