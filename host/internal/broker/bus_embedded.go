package broker

import (
	"context"
	"maps"
	"slices"
	"sync"
)

// EmbeddedBus is the Bus in process, for a host without an amqp block
// (`make run`) and for tests of plugins: the semantics of the Bus
// documentation, as RabbitMQ has them, without a broker. Nothing survives
// the bus: queues and their messages live in memory until Close.
//
// Publish copies the body once; the queues it is routed to and every
// delivery of it share that copy. A queued message costs its body (rounded
// up to Go's allocation size class) plus a 64-byte record (measured by the
// bus benchmarks, TestBenchBusEmbedded); a backlog has no bound
// other than memory, as a RabbitMQ queue has none by default.
//
// Deliveries are handed over synchronously by Publish, Ack, Nack, Consume
// and Close, under the queue's lock: there is no goroutine per queue or
// consumer. A consumer's Deliveries channel has room for prefetch
// deliveries, and a consumer never holds more than that unacked, so
// handing over never blocks.
type EmbeddedBus struct {
	mu     sync.RWMutex // guards queues, routes and closed; Publish holds it shared
	queues map[string]*embQueue
	routes map[string][]*embQueue // routing key → queues bound with it, each once
	closed bool
}

var _ Bus = (*EmbeddedBus)(nil)

// NewEmbeddedBus returns an empty bus.
func NewEmbeddedBus() *EmbeddedBus {
	return &EmbeddedBus{queues: map[string]*embQueue{}, routes: map[string][]*embQueue{}}
}

// embMsg is one message in a queue.
type embMsg struct {
	seq         uint64 // position in the queue's publication order
	key         string
	body        []byte
	headers     map[string]string
	redelivered bool
}

// embQueue is one queue: ready messages in publication order, and its
// consumers.
type embQueue struct {
	mu   sync.Mutex
	name string
	seq  uint64
	// requeued holds messages returned to the queue, sorted by seq; every
	// one of them is older than every message in fresh (it was delivered
	// before the messages now in fresh reached the head), so the queue's
	// order is requeued, then fresh.
	requeued  []embMsg
	fresh     fifo
	consumers []*embConsumer
	next      int // the consumer to try first: round robin
}

// PublishAsync implements Bus: it is Publish, with a Confirmation that is
// done at once.
func (b *EmbeddedBus) PublishAsync(ctx context.Context, routingKey string, body []byte, headers map[string]string) (*Confirmation, error) {
	if err := b.Publish(ctx, routingKey, body, headers); err != nil {
		return nil, err
	}
	return confirmed, nil
}

// Publish implements Bus: the message is in every queue bound with
// routingKey when it returns. It fails only with ErrClosed, ctx's error or
// a routing key longer than 255 bytes.
func (b *EmbeddedBus) Publish(ctx context.Context, routingKey string, body []byte, headers map[string]string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkRoutingKey(routingKey); err != nil {
		return err
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return ErrClosed
	}
	qs := b.routes[routingKey]
	if len(qs) == 0 {
		return nil // unroutable: dropped, as by the broker
	}
	m := embMsg{key: routingKey, body: slices.Clone(body)}
	if m.body == nil {
		m.body = []byte{}
	}
	if len(headers) > 0 {
		m.headers = maps.Clone(headers)
	}
	for _, q := range qs {
		q.mu.Lock()
		q.seq++
		m.seq = q.seq
		q.fresh.push(m)
		q.dispatch()
		q.mu.Unlock()
	}
	return nil
}

// Consume implements Bus; the queue exists from the first Consume on, and
// the deliveries of what it holds begin at once.
func (b *EmbeddedBus) Consume(ctx context.Context, queue string, bindings []string, prefetch int) (Consumer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	bindings, prefetch, err := checkConsume(queue, bindings, prefetch)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	q, err := b.declare(queue, bindings)
	if err != nil {
		return nil, err
	}
	c := &embConsumer{
		q:        q,
		prefetch: prefetch,
		out:      make(chan Delivery, prefetch),
		unacked:  map[uint64]embMsg{},
	}
	q.mu.Lock()
	q.consumers = append(q.consumers, c)
	q.dispatch()
	q.mu.Unlock()
	return c, nil
}

// Declare implements Bus.
func (b *EmbeddedBus) Declare(ctx context.Context, queue string, bindings []string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	bindings, _, err := checkConsume(queue, bindings, 1)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	_, err = b.declare(queue, bindings)
	return err
}

// declare makes queue if it does not exist and binds it; b.mu is held.
func (b *EmbeddedBus) declare(queue string, bindings []string) (*embQueue, error) {
	if b.closed {
		return nil, ErrClosed
	}
	q := b.queues[queue]
	if q == nil {
		q = &embQueue{name: queue}
		b.queues[queue] = q
	}
	for _, k := range bindings {
		if !slices.Contains(b.routes[k], q) {
			b.routes[k] = append(b.routes[k], q)
		}
	}
	return q, nil
}

// Close implements Bus: consumers end with ErrClosed, and the queues and
// their messages are dropped.
func (b *EmbeddedBus) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	for _, q := range b.queues {
		q.mu.Lock()
		for _, c := range q.consumers {
			c.end(ErrClosed)
		}
		q.consumers, q.requeued, q.fresh = nil, nil, fifo{}
		q.mu.Unlock()
	}
	b.queues, b.routes = nil, nil
	return nil
}

// dispatch hands ready messages to consumers below their prefetch, round
// robin, until either runs out. q.mu is held.
func (q *embQueue) dispatch() {
	for len(q.requeued) > 0 || q.fresh.n > 0 {
		c := q.pick()
		if c == nil {
			return
		}
		var m embMsg
		if len(q.requeued) > 0 {
			m = q.requeued[0]
			q.requeued[0] = embMsg{}
			q.requeued = q.requeued[1:]
			if len(q.requeued) == 0 {
				q.requeued = nil // let the array go
			}
		} else {
			m = q.fresh.pop()
		}
		c.tag++
		c.unacked[c.tag] = m
		// Never blocks: the channel holds at most the unacked deliveries,
		// and there are fewer than prefetch (its capacity) of those.
		c.out <- Delivery{Tag: c.tag, RoutingKey: m.key, Body: m.body, Headers: m.headers, Redelivered: m.redelivered}
	}
}

// pick returns the next consumer, round robin, that is below its prefetch,
// or nil. q.mu is held.
func (q *embQueue) pick() *embConsumer {
	n := len(q.consumers)
	for i := range n {
		j := (q.next + i) % n
		if c := q.consumers[j]; len(c.unacked) < c.prefetch {
			q.next = (j + 1) % n
			return c
		}
	}
	return nil
}

// requeue returns m to its place in the queue, marked redelivered. q.mu
// is held.
func (q *embQueue) requeue(m embMsg) {
	m.redelivered = true
	i, _ := slices.BinarySearchFunc(q.requeued, m.seq, func(e embMsg, seq uint64) int {
		switch {
		case e.seq < seq:
			return -1
		case e.seq > seq:
			return 1
		}
		return 0
	})
	q.requeued = slices.Insert(q.requeued, i, m)
}

// embConsumer is a consumer of an EmbeddedBus queue. Its fields are guarded
// by its queue's mutex.
type embConsumer struct {
	q        *embQueue
	prefetch int
	out      chan Delivery
	tag      uint64
	unacked  map[uint64]embMsg
	closed   bool
	err      error
}

func (c *embConsumer) Deliveries() <-chan Delivery { return c.out }

func (c *embConsumer) Ack(tag uint64) error {
	c.q.mu.Lock()
	defer c.q.mu.Unlock()
	if _, err := c.take(tag); err != nil {
		return err
	}
	c.q.dispatch()
	return nil
}

func (c *embConsumer) Nack(tag uint64, requeue bool) error {
	c.q.mu.Lock()
	defer c.q.mu.Unlock()
	m, err := c.take(tag)
	if err != nil {
		return err
	}
	if requeue {
		c.q.requeue(m)
	}
	c.q.dispatch()
	return nil
}

// take removes the unacked delivery tag. q.mu is held.
func (c *embConsumer) take(tag uint64) (embMsg, error) {
	if c.closed {
		return embMsg{}, ErrConsumerClosed
	}
	m, ok := c.unacked[tag]
	if !ok {
		return embMsg{}, ErrUnknownTag
	}
	delete(c.unacked, tag)
	return m, nil
}

func (c *embConsumer) Close() error {
	q := c.q
	q.mu.Lock()
	defer q.mu.Unlock()
	if c.closed {
		return nil
	}
	if i := slices.Index(q.consumers, c); i >= 0 {
		q.consumers = slices.Delete(q.consumers, i, i+1)
		if q.next > i {
			q.next--
		}
		if q.next >= len(q.consumers) {
			q.next = 0
		}
	}
	for _, m := range c.unacked {
		q.requeue(m)
	}
	c.end(nil)
	q.dispatch()
	return nil
}

// end closes the consumer with err. q.mu is held.
func (c *embConsumer) end(err error) {
	c.closed = true
	c.err = err
	c.unacked = nil
	drain(c.out)
	close(c.out)
}

func (c *embConsumer) Err() error {
	c.q.mu.Lock()
	defer c.q.mu.Unlock()
	return c.err
}

// drain empties ch of what is buffered in it, without waiting. The caller
// is its only sender.
func drain(ch chan Delivery) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

// fifoChunk is the number of messages per block of a fifo: 127 messages of
// 64 bytes and the link, 8136 bytes, fill Go's 8 KiB size class.
const fifoChunk = 127

// fifo is a queue of messages in blocks of fifoChunk, so that a long
// backlog costs one embMsg per message (no doubling slice) and its memory
// is returned as it is consumed.
type fifo struct {
	head, tail *chunk
	hi, ti     int // next to pop in head, next free slot in tail
	n          int
}

type chunk struct {
	msgs [fifoChunk]embMsg
	next *chunk
}

func (f *fifo) push(m embMsg) {
	if f.tail == nil || f.ti == fifoChunk {
		c := &chunk{}
		if f.tail == nil {
			f.head, f.hi = c, 0
		} else {
			f.tail.next = c
		}
		f.tail, f.ti = c, 0
	}
	f.tail.msgs[f.ti] = m
	f.ti++
	f.n++
}

// pop removes and returns the oldest message; f must not be empty.
func (f *fifo) pop() embMsg {
	m := f.head.msgs[f.hi]
	f.head.msgs[f.hi] = embMsg{}
	f.hi++
	f.n--
	switch {
	case f.n == 0:
		// Keep the block for the next push, from its beginning.
		f.head.next = nil
		f.tail, f.hi, f.ti = f.head, 0, 0
	case f.hi == fifoChunk:
		f.head, f.hi = f.head.next, 0
	}
	return m
}
