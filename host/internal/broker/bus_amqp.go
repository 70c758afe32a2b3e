package broker

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/hashicorp/go-hclog"
	amqp "github.com/rabbitmq/amqp091-go"
)

// AMQPBusOptions configure an AMQPBus. Zero values mean the documented
// defaults.
type AMQPBusOptions struct {
	// Exchange is the direct, durable exchange the bus publishes to and
	// binds its queues on. Default DefaultExchange ("vumi").
	Exchange string
	// Transient publishes messages with delivery mode 1, kept in memory
	// only by the broker. The default is persistent (delivery mode 2), as
	// Vumi publishes: with durable queues, messages survive a broker
	// restart, and the broker confirms a message only once it is written
	// to disk (or already consumed and acked).
	Transient bool
	// Logger receives the consumers' resumptions. Default: the Conn's.
	Logger hclog.Logger
}

// AMQPBus is the Bus on RabbitMQ, over a Conn, which it shares with the
// host's other users (the control channel): it opens channels of its own
// on the Conn's connection and follows it across reconnections. Vumi's
// own workers on the same broker and exchange see the same queues.
//
// # Publishing
//
// Publish sends the message through the Conn's one publishing pipeline,
// on its confirm-mode channel (shared with the host's other publishers,
// the bus's exchange declared on it), and returns once the broker
// confirmed it: for a persistent message
// routed to a durable queue, once the broker has written it to disk.
// Publishes do not wait for each other: any number of callers may have
// messages in flight on the channel at once, and the broker confirms them
// in batches (one fsync for many). Throughput therefore comes from
// concurrency: a worker that handles several deliveries at once (up to its
// prefetch), publishing each result before acking its input, moves
// messages at nearly the rate of a hand-written amqp091-go loop, while a
// worker that handles one delivery at a time is bound by the confirm
// latency. Acking an input only after the Publish of its output returned
// is what makes the pair durable: if the host or broker dies in between,
// the input is delivered again rather than the output lost.
//
// A message whose connection is lost before its confirmation arrives is
// reported as ErrDisconnected and not resent: it may or may not have been
// routed (resend it if a duplicate is better than a loss). A message the
// channel closed before sending is sent again on the next channel. While
// disconnected, Publish waits for the next connection until ctx ends.
//
// # Consuming
//
// Each consumer is the Conn's resumable consumer (consume.go) and has a
// channel of its own, with basic.qos prefetch, manual
// acks, and the queue, exchange and bindings declared on it. When the
// connection is lost, the consumer resumes on the next one: it declares
// again and consumes on a new channel, delivering on the same Deliveries
// channel. The broker returns the unacked messages of the lost channel to
// the queue and delivers them again with Redelivered set. Deliveries of the
// lost channel still buffered in Deliveries are dropped; those already
// taken fail Ack and Nack with ErrDeliveryLost, which the bus answers
// itself: a tag carries the generation of its channel, so an old tag can
// never ack a message of the new channel. If the broker cancels the
// consumer or closes its channel while the connection stays up (the queue
// was deleted, for example), the consumer declares again and resumes after
// a backoff.
type AMQPBus struct {
	conn      *Conn
	exchange  string
	mode      uint8
	log       hclog.Logger
	done      chan struct{} // closed by Close
	ctx       context.Context
	cancelCtx context.CancelFunc // cancels ctx, for the consumers' waits

	mu        sync.Mutex
	closed    bool
	consumers map[*amqpConsumer]struct{}
}

var _ Bus = (*AMQPBus)(nil)

// NewAMQPBus returns a bus on conn. It declares nothing until it is used:
// the exchange is declared on the Conn's publishing channel before the
// next publish (and on each new one) and with each consumer's queue.
func NewAMQPBus(conn *Conn, o AMQPBusOptions) *AMQPBus {
	if o.Exchange == "" {
		o.Exchange = DefaultExchange
	}
	if o.Logger == nil {
		o.Logger = conn.log
	}
	mode := amqp.Persistent
	if o.Transient {
		mode = amqp.Transient
	}
	b := &AMQPBus{
		conn:      conn,
		exchange:  o.Exchange,
		mode:      mode,
		log:       o.Logger,
		done:      make(chan struct{}),
		consumers: map[*amqpConsumer]struct{}{},
	}
	b.ctx, b.cancelCtx = context.WithCancel(context.Background())
	conn.declareForPublishing(o.Exchange)
	return b
}

// declareExchange declares the bus's exchange: direct, durable.
func (b *AMQPBus) declareExchange(ch *amqp.Channel) error {
	if err := ch.ExchangeDeclare(b.exchange, amqp.ExchangeDirect, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declaring exchange %q: %w", b.exchange, err)
	}
	return nil
}

func (b *AMQPBus) isClosed() bool { return isClosedChan(b.done) }

// Publish implements Bus; see the type's documentation. Besides ErrClosed
// and ctx's error it returns ErrNacked if the broker refused the message,
// ErrDisconnected if the connection was lost before the confirmation
// arrived (the message may or may not have been routed), or the channel's
// error if the broker closed the publishing channel.
func (b *AMQPBus) Publish(ctx context.Context, routingKey string, body []byte, headers map[string]string) error {
	conf, err := b.PublishAsync(ctx, routingKey, body, headers)
	if err != nil {
		return err
	}
	return conf.Wait(ctx)
}

// PublishAsync implements Bus: it returns once the message is written to
// the connection, before the broker confirmed it. While disconnected it
// waits for the next connection until ctx ends. It goes through the Conn's
// one publishing pipeline (Conn.Publish's), on the Conn's confirm-mode
// channel, where the bus's exchange is declared.
func (b *AMQPBus) PublishAsync(ctx context.Context, routingKey string, body []byte, headers map[string]string) (*Confirmation, error) {
	if err := checkRoutingKey(routingKey); err != nil {
		return nil, err
	}
	msg := amqp.Publishing{Headers: toTable(headers), DeliveryMode: b.mode, Body: body}
	return b.conn.publishAsync(ctx, b.exchange, routingKey, msg, true, b.done)
}

// Consume implements Bus. It waits for a connection until ctx ends, and
// returns the broker's error if the declarations fail (for example
// PRECONDITION_FAILED for a queue that exists with other arguments, or an
// exchange "vumi" of another type).
func (b *AMQPBus) Consume(ctx context.Context, queue string, bindings []string, prefetch int) (Consumer, error) {
	bindings, prefetch, err := checkConsume(queue, bindings, prefetch)
	if err != nil {
		return nil, err
	}
	c := &amqpConsumer{
		b:        b,
		queue:    queue,
		bindings: bindings,
		prefetch: prefetch,
		out:      make(chan Delivery, prefetch),
		done:     make(chan struct{}),
	}
	c.ctx, c.cancel = context.WithCancel(b.ctx)
	c.r = &resumer{c: b.conn, ctx: c.ctx, stop: b.done, queue: queue,
		declare: c.declare, opened: c.opened, serve: c.forward, ended: c.channelEnded}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		c.cancel()
		return nil, ErrClosed
	}
	b.consumers[c] = struct{}{}
	b.mu.Unlock()

	// The first declaration is the caller's: its errors are returned.
	octx, stop := context.WithCancel(ctx)
	defer stop()
	context.AfterFunc(c.ctx, stop)
	var first *consumeChan
	for {
		first, err = c.r.open(octx)
		if err == nil {
			break
		}
		if errors.Is(err, errLost) {
			continue // open waited for the lost session to be retired
		}
		c.end(err)
		if b.isClosed() {
			err = ErrClosed
		}
		return nil, err
	}
	go func() { c.end(c.r.run(first)) }()
	return c, nil
}

// Close implements Bus. It closes the bus's consumers, not the Conn (nor
// its publishing channel, which the host's other publishers share).
func (b *AMQPBus) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	close(b.done)
	consumers := make([]*amqpConsumer, 0, len(b.consumers))
	for c := range b.consumers {
		consumers = append(consumers, c)
	}
	b.mu.Unlock()
	for _, c := range consumers {
		c.closeWith(ErrClosed)
	}
	b.cancelCtx()
	return nil
}

// Delivery tags of an AMQPBus consumer are the broker's tag on the
// consumer's channel (the low genShift bits) and the generation of that
// channel (the high bits): after 2^genShift deliveries on one channel, or
// 2^(64-genShift) channels, a consumer would reuse tags; neither happens.
const (
	genShift = 40
	tagMask  = 1<<genShift - 1
)

// amqpConsumer is a consumer of an AMQPBus.
type amqpConsumer struct {
	b        *AMQPBus
	queue    string
	bindings []string
	prefetch int
	r        *resumer // consumes across channels and connections
	out      chan Delivery
	ctx      context.Context // canceled by Close
	cancel   context.CancelFunc
	done     chan struct{} // closed when the consumer has ended

	mu      sync.Mutex
	gen     uint64        // generation of the current (or last) channel
	ch      *amqp.Channel // the current channel; nil between channels
	unacked map[uint64]struct{}
	closing bool
	closed  bool  // set once Deliveries is closed
	err     error // why it ended; see Err
}

// opened takes a new channel of the consumer, with the next generation;
// ErrConsumerClosed once it is closing.
func (c *amqpConsumer) opened(cc *consumeChan) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return ErrConsumerClosed
	}
	c.gen++
	cc.gen = c.gen
	c.ch = cc.ch
	c.unacked = map[uint64]struct{}{}
	return nil
}

// channelEnded forgets the consumer's channel, which has ended: the
// deliveries of it still buffered come again.
func (c *amqpConsumer) channelEnded(*consumeChan) {
	c.mu.Lock()
	c.ch, c.unacked = nil, nil
	c.mu.Unlock()
	drain(c.out)
}

// declareQueue declares the exchange and queue, durable, and binds the
// queue with each of bindings.
func (b *AMQPBus) declareQueue(ch *amqp.Channel, queue string, bindings []string) error {
	if err := b.declareExchange(ch); err != nil {
		return err
	}
	if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declaring queue %q: %w", queue, err)
	}
	for _, k := range bindings {
		if err := ch.QueueBind(queue, k, b.exchange, false, nil); err != nil {
			return fmt.Errorf("binding queue %q with %q: %w", queue, k, err)
		}
	}
	return nil
}

// Declare implements Bus. It waits for a connection until ctx ends, and
// returns the broker's error if a declaration fails.
func (b *AMQPBus) Declare(ctx context.Context, queue string, bindings []string) error {
	bindings, _, err := checkConsume(queue, bindings, 1)
	if err != nil {
		return err
	}
	for {
		s, err := b.conn.sessionUntil(ctx, true, b.done)
		if err != nil {
			return err
		}
		ch, err := s.conn.Channel()
		if err == nil {
			err = b.declareQueue(ch, queue, bindings)
			_ = ch.Close()
		}
		if err == nil || !s.conn.IsClosed() {
			return err
		}
		if err := b.conn.awaitLoss(ctx, s, true, b.done); err != nil {
			return err
		}
	}
}

func (c *amqpConsumer) declare(ch *amqp.Channel) (<-chan amqp.Delivery, error) {
	if err := c.b.declareQueue(ch, c.queue, c.bindings); err != nil {
		return nil, err
	}
	return consumeQueue(ch, c.queue, c.prefetch)
}

// forward hands cc's deliveries over until its channel ends or the
// consumer is closed.
func (c *amqpConsumer) forward(cc *consumeChan) {
	for {
		select {
		case d, ok := <-cc.deliveries:
			if !ok {
				return
			}
			c.mu.Lock()
			if c.unacked != nil {
				c.unacked[d.DeliveryTag] = struct{}{}
			}
			c.mu.Unlock()
			out := Delivery{
				Tag:         cc.gen<<genShift | d.DeliveryTag&tagMask,
				RoutingKey:  d.RoutingKey,
				Body:        d.Body,
				Headers:     fromTable(d.Headers),
				Redelivered: d.Redelivered,
			}
			select {
			case c.out <- out:
			case <-c.ctx.Done():
				return
			}
		case <-c.ctx.Done():
			return
		}
	}
}

// end closes Deliveries with err (unless Close chose the error first) and
// removes the consumer from its bus.
func (c *amqpConsumer) end(err error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	if !c.closing {
		c.closing = true
		c.err = err
	}
	c.closed = true
	c.ch, c.unacked = nil, nil
	c.mu.Unlock()
	drain(c.out)
	close(c.out)
	c.cancel()
	c.b.mu.Lock()
	delete(c.b.consumers, c)
	c.b.mu.Unlock()
	close(c.done)
}

func (c *amqpConsumer) Deliveries() <-chan Delivery { return c.out }

func (c *amqpConsumer) Ack(tag uint64) error {
	return c.settle(tag, func(ch *amqp.Channel, t uint64) error { return ch.Ack(t, false) })
}

func (c *amqpConsumer) Nack(tag uint64, requeue bool) error {
	return c.settle(tag, func(ch *amqp.Channel, t uint64) error { return ch.Nack(t, false, requeue) })
}

// settle checks tag against the consumer's current channel and unacked
// deliveries, and acks or nacks it with f on that channel.
func (c *amqpConsumer) settle(tag uint64, f func(ch *amqp.Channel, t uint64) error) error {
	gen, t := tag>>genShift, tag&tagMask
	c.mu.Lock()
	switch {
	case c.closing:
		c.mu.Unlock()
		return ErrConsumerClosed
	case gen == 0 || gen > c.gen:
		c.mu.Unlock()
		return ErrUnknownTag
	case gen < c.gen || c.ch == nil:
		c.mu.Unlock()
		return ErrDeliveryLost
	}
	if _, ok := c.unacked[t]; !ok {
		c.mu.Unlock()
		return ErrUnknownTag
	}
	delete(c.unacked, t)
	ch := c.ch
	c.mu.Unlock()
	if err := f(ch, t); err != nil {
		if ch.IsClosed() {
			if c.ctx.Err() != nil {
				return ErrConsumerClosed
			}
			return ErrDeliveryLost
		}
		return fmt.Errorf("settling a delivery of %q: %w", c.queue, err)
	}
	return nil
}

func (c *amqpConsumer) Close() error {
	c.closeWith(nil)
	return nil
}

// closeWith closes the consumer, which ends with err, and waits for it.
func (c *amqpConsumer) closeWith(err error) {
	c.mu.Lock()
	if !c.closing {
		c.closing = true
		c.err = err
	}
	c.mu.Unlock()
	c.cancel()
	<-c.done
}

func (c *amqpConsumer) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		return nil
	}
	return c.err
}

// toTable converts headers for AMQP; nil for none.
func toTable(h map[string]string) amqp.Table {
	if len(h) == 0 {
		return nil
	}
	t := make(amqp.Table, len(h))
	for k, v := range h {
		t[k] = v
	}
	return t
}

// fromTable converts AMQP headers to strings; nil for none.
func fromTable(t amqp.Table) map[string]string {
	if len(t) == 0 {
		return nil
	}
	h := make(map[string]string, len(t))
	for k, v := range t {
		switch v := v.(type) {
		case string:
			h[k] = v
		case []byte:
			h[k] = string(v)
		default:
			h[k] = fmt.Sprint(v)
		}
	}
	return h
}
