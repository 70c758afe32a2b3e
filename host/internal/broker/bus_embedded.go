package broker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Overflow is what a full queue of the embedded bus does with a message
// published to it: RabbitMQ's x-overflow.
type Overflow string

// The overflow policies.
const (
	// DropHead makes room by dropping the oldest ready messages of the
	// queue (RabbitMQ's default). The publisher sees no error.
	DropHead Overflow = "drop-head"
	// RejectPublish refuses the new message: the queue keeps what it
	// holds, and the publisher gets an error matching ErrQueueFull and
	// ErrNacked (RabbitMQ nacks it). A message routed to several queues
	// still goes to those that have room.
	RejectPublish Overflow = "reject-publish"
)

// Overflows lists the valid overflow policies.
var Overflows = []Overflow{DropHead, RejectPublish}

// Defaults of EmbeddedBusOptions. With them, the ready messages of the
// whole bus cost at most DefaultMaxTotalBytes of host memory however many
// queues there are (docs/operator-guide.md, "The embedded bus", adds up
// the rest).
const (
	// DefaultMaxLength is the most ready messages a queue holds.
	DefaultMaxLength = 100000
	// DefaultMaxLengthBytes is the most body bytes of ready messages a
	// queue holds.
	DefaultMaxLengthBytes = 32 << 20
	// DefaultMaxTotalBytes bounds the memory of the ready messages of all
	// queues together (see EmbeddedBusOptions.MaxTotalBytes).
	DefaultMaxTotalBytes = 128 << 20
	// DefaultExpires is how long a queue without consumers lives: long
	// enough for a worker that restarts (backoff, a host reload, an
	// operator's stop and start) to find its backlog, short enough that
	// the queues of workers that are gone do not pile up.
	DefaultExpires = 30 * time.Minute
)

// EmbeddedBusOptions bound an EmbeddedBus's queues, with RabbitMQ's
// semantics (x-max-length, x-max-length-bytes, x-overflow, x-expires); the
// host block's bus block sets them. A zero field means its default; a
// negative bound means none (for tests and benchmarks: the host always
// bounds its bus).
type EmbeddedBusOptions struct {
	// MaxLength is the most ready messages one queue holds (x-max-length).
	// As in RabbitMQ, only ready messages count: those delivered and not
	// yet acked do not (a consumer's prefetch bounds them).
	MaxLength int
	// MaxLengthBytes is the most body bytes of ready messages one queue
	// holds (x-max-length-bytes): bodies only, without headers or
	// overhead, as RabbitMQ counts them.
	MaxLengthBytes int64
	// MaxTotalBytes bounds the host memory of the ready messages of all
	// queues together, which the per-queue bounds alone do not, there
	// being no bound on the number of queues. Unlike MaxLengthBytes it
	// counts what a message costs: its body's allocation, its headers and
	// the bus's record of it (an estimate within a few percent; the bus
	// benchmark measures it), once per queue it is in. When a publish
	// takes the bus past it, the overflow policy applies: drop-head drops
	// the oldest ready messages of the queue that holds the most, so one
	// stalled consumer cannot starve the others; reject-publish refuses
	// the message. RabbitMQ has no such bound per queue set; its memory
	// alarm plays that part.
	MaxTotalBytes int64
	// Overflow is the policy of a full queue; "" means DropHead.
	Overflow Overflow
	// Expires deletes a queue that has had no consumer for that long
	// (x-expires: a queue is used while it has consumers, and Consume
	// declares it again), with its messages and bindings.
	Expires time.Duration
}

// EmbeddedBus is the Bus in process, for a host without an amqp block
// (`make run`) and for tests of plugins: the semantics of the Bus
// documentation, as RabbitMQ has them, without a broker. Nothing survives
// the bus: queues and their messages live in memory until Close.
//
// Queues are bounded (EmbeddedBusOptions: RabbitMQ's max length, max
// length in bytes and overflow policy, and a bound on the whole bus) and
// deleted once unused for a while (RabbitMQ's queue expiry), so that a
// stalled consumer or a worker that is gone costs the host a bounded
// amount of memory. Stats counts what the bounds dropped.
//
// Publish copies the body once; the queues it is routed to and every
// delivery of it share that copy. A queued message costs its body (rounded
// up to Go's allocation size class) plus a 64-byte record (measured by the
// bus benchmarks, TestBenchBusEmbedded).
//
// Deliveries are handed over synchronously by Publish, Ack, Nack, Consume
// and Close, under the queue's lock: there is no goroutine per queue or
// consumer (an expiry is a timer). A consumer's Deliveries channel has
// room for prefetch deliveries, and a consumer never holds more than that
// unacked, so handing over never blocks.
type EmbeddedBus struct {
	mu     sync.RWMutex // guards queues, routes and closed; Publish holds it shared
	queues map[string]*embQueue
	routes map[string][]*embQueue // routing key → queues bound with it, each once
	closed bool

	maxLen      int   // < 0: none
	maxBytes    int64 // < 0: none
	maxTotal    int64 // < 0: none
	reject      bool  // overflow reject-publish
	expires     time.Duration
	total       atomic.Int64 // cost of the ready messages of all queues
	droppedHead atomic.Uint64
	rejected    atomic.Uint64
	expiredMsgs atomic.Uint64
	expiredQs   atomic.Uint64
}

var _ Bus = (*EmbeddedBus)(nil)

// NewEmbeddedBus returns an empty bus with the given options, or the
// defaults without any (at most one EmbeddedBusOptions may be given). It
// panics on an unknown Overflow: the host's configuration checks it.
func NewEmbeddedBus(opts ...EmbeddedBusOptions) *EmbeddedBus {
	var o EmbeddedBusOptions
	switch len(opts) {
	case 0:
	case 1:
		o = opts[0]
	default:
		panic("broker: NewEmbeddedBus takes at most one EmbeddedBusOptions")
	}
	if o.Overflow == "" {
		o.Overflow = DropHead
	}
	if !slices.Contains(Overflows, o.Overflow) {
		panic(fmt.Sprintf("broker: unknown overflow policy %q", o.Overflow))
	}
	b := &EmbeddedBus{
		queues:   map[string]*embQueue{},
		routes:   map[string][]*embQueue{},
		maxLen:   orDefault(o.MaxLength, DefaultMaxLength),
		maxBytes: orDefault(o.MaxLengthBytes, DefaultMaxLengthBytes),
		maxTotal: orDefault(o.MaxTotalBytes, DefaultMaxTotalBytes),
		reject:   o.Overflow == RejectPublish,
		expires:  orDefault(o.Expires, DefaultExpires),
	}
	return b
}

// orDefault returns def for 0, -1 for a negative v (no bound), else v.
func orDefault[T int | int64 | time.Duration](v, def T) T {
	switch {
	case v == 0:
		return def
	case v < 0:
		return -1
	}
	return v
}

// embMsg is one message in a queue.
type embMsg struct {
	seq         uint64 // position in the queue's publication order
	key         string
	body        []byte
	headers     map[string]string
	redelivered bool
}

// Estimates of what a message costs beyond its body's allocation, for
// MaxTotalBytes: its record (an embMsg in a fifo block; the benchmark
// measures 65 bytes per message with the blocks' slack), and for headers
// a map's own allocation and each entry's.
const (
	msgRecordCost   = 64
	headersMapCost  = 208
	headerEntryCost = 48
)

// cost estimates the memory m takes in a queue (see MaxTotalBytes).
func (m *embMsg) cost() int64 {
	n := int64(cap(m.body)) + msgRecordCost
	if m.headers != nil {
		n += headersMapCost
		for k, v := range m.headers {
			n += int64(len(k)+len(v)) + headerEntryCost
		}
	}
	return n
}

// embQueue is one queue: ready messages in publication order, and its
// consumers.
type embQueue struct {
	bus  *EmbeddedBus
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

	bindings   []string     // the keys it is bound with, each once
	readyBytes int64        // body bytes of the ready messages
	cost       atomic.Int64 // cost of the ready messages; written under mu
	// expiry deletes the queue once it has had no consumer for the bus's
	// expires; idle counts the times it became unused or used again, so
	// that a timer that fires late knows it is stale.
	expiry      *time.Timer
	idle        uint64
	droppedHead uint64
	rejected    uint64
}

// ready is the number of ready messages. q.mu is held.
func (q *embQueue) ready() int { return len(q.requeued) + q.fresh.n }

// full reports whether one more message of n body bytes would take the
// queue past its bounds (RabbitMQ's check for reject-publish). q.mu is
// held.
func (q *embQueue) full(n int) bool {
	b := q.bus
	return (b.maxLen >= 0 && q.ready()+1 > b.maxLen) || (b.maxBytes >= 0 && q.readyBytes+int64(n) > b.maxBytes)
}

// over reports whether the queue is past its bounds. q.mu is held.
func (q *embQueue) over() bool {
	b := q.bus
	return (b.maxLen >= 0 && q.ready() > b.maxLen) || (b.maxBytes >= 0 && q.readyBytes > b.maxBytes)
}

// account adds (sign 1) or removes (sign -1) m from the ready messages'
// sums. q.mu is held.
func (q *embQueue) account(m *embMsg, sign int64) {
	c := sign * m.cost()
	q.readyBytes += sign * int64(len(m.body))
	q.cost.Add(c)
	q.bus.total.Add(c)
}

// PublishAsync implements Bus: it is Publish, with a Confirmation that is
// done at once. A message that a reject-publish queue refused has a
// Confirmation that fails with Publish's error, as RabbitMQ's nack does.
func (b *EmbeddedBus) PublishAsync(ctx context.Context, routingKey string, body []byte, headers map[string]string) (*Confirmation, error) {
	err := b.Publish(ctx, routingKey, body, headers)
	switch {
	case err == nil:
		return confirmed, nil
	case errors.Is(err, ErrQueueFull):
		return &Confirmation{done: closedChan, err: err}, nil
	}
	return nil, err
}

// Publish implements Bus: the message is in every queue bound with
// routingKey when it returns. It fails with ErrClosed, ctx's error, a
// routing key longer than 255 bytes, or, with the reject-publish policy,
// an error matching ErrQueueFull and ErrNacked that names the full queue
// (the message still went to the other queues).
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
	var full []string // the queues that refused it
	busFull := false
	cost := m.cost()
	for _, q := range qs {
		q.mu.Lock()
		switch {
		case b.reject && q.full(len(m.body)):
			q.rejected++
			full = append(full, q.name)
		case b.reject && b.maxTotal >= 0 && b.total.Add(cost) > b.maxTotal:
			// Added and taken back: concurrent publishers cannot take
			// the bus past the bound together.
			b.total.Add(-cost)
			q.rejected++
			full = append(full, q.name)
			busFull = true
		default:
			q.seq++
			m.seq = q.seq
			q.fresh.push(m)
			q.readyBytes += int64(len(m.body))
			q.cost.Add(cost)
			if !b.reject || b.maxTotal < 0 {
				b.total.Add(cost) // else added by the check above
			}
			q.dispatch()
			if !b.reject {
				q.trim()
			}
		}
		q.mu.Unlock()
	}
	if !b.reject && b.maxTotal >= 0 && b.total.Load() > b.maxTotal {
		b.shed()
	}
	if len(full) == 0 {
		return nil
	}
	b.rejected.Add(uint64(len(full)))
	what := fmt.Sprintf("queue %q is full", full[0])
	if busFull {
		what = fmt.Sprintf("the embedded bus is full (its queues hold %d bytes, max_total_bytes is %d)", b.total.Load(), b.maxTotal)
	}
	if len(full) > 1 {
		what += fmt.Sprintf(" (as are %d more of the %d queues bound with the key)", len(full)-1, len(qs))
	}
	return fmt.Errorf("publishing to %q: %s, overflow reject-publish: %w (%w)", routingKey, what, ErrQueueFull, ErrNacked)
}

// trim drops the oldest ready messages while the queue is past its
// bounds (the drop-head policy). q.mu is held.
func (q *embQueue) trim() {
	for q.over() {
		q.dropHead()
	}
}

// dropHead drops the oldest ready message, which there must be. q.mu is
// held.
func (q *embQueue) dropHead() {
	q.popReady()
	q.droppedHead++
	q.bus.droppedHead.Add(1)
}

// shed drops the oldest ready messages of the queue that holds the most,
// again and again, until the bus is within MaxTotalBytes (drop-head). b.mu
// is held, shared.
func (b *EmbeddedBus) shed() {
	for b.total.Load() > b.maxTotal {
		var big *embQueue
		var most int64
		for _, q := range b.queues {
			if c := q.cost.Load(); c > most {
				big, most = q, c
			}
		}
		if big == nil {
			return
		}
		big.mu.Lock()
		for b.total.Load() > b.maxTotal && big.ready() > 0 {
			big.dropHead()
		}
		big.mu.Unlock()
	}
}

// Consume implements Bus; the queue exists from the first Consume on, and
// the deliveries of what it holds begin at once. Consuming a queue counts
// as declaring it again: its expiry starts over once it is unused.
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
	q.used()
	q.consumers = append(q.consumers, c)
	q.dispatch()
	q.mu.Unlock()
	return c, nil
}

// Declare implements Bus. Declaring a queue that has no consumer starts
// its expiry over, as RabbitMQ's queue.declare does.
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
	q, err := b.declare(queue, bindings)
	if err != nil {
		return err
	}
	q.mu.Lock()
	if len(q.consumers) == 0 {
		q.unused()
	}
	q.mu.Unlock()
	return nil
}

// declare makes queue if it does not exist and binds it; b.mu is held.
func (b *EmbeddedBus) declare(queue string, bindings []string) (*embQueue, error) {
	if b.closed {
		return nil, ErrClosed
	}
	q := b.queues[queue]
	if q == nil {
		q = &embQueue{bus: b, name: queue}
		b.queues[queue] = q
	}
	for _, k := range bindings {
		if !slices.Contains(b.routes[k], q) {
			b.routes[k] = append(b.routes[k], q)
			q.bindings = append(q.bindings, k)
		}
	}
	return q, nil
}

// used stops the queue's expiry. q.mu is held.
func (q *embQueue) used() {
	q.idle++
	if q.expiry != nil {
		q.expiry.Stop()
		q.expiry = nil
	}
}

// unused starts the queue's expiry, now that its last consumer is gone.
// q.mu is held.
func (q *embQueue) unused() {
	q.used()
	if q.bus.expires < 0 {
		return
	}
	idle := q.idle
	q.expiry = time.AfterFunc(q.bus.expires, func() { q.bus.expire(q, idle) })
}

// expire deletes q, with its messages and bindings, if it is still
// unused since its expiry started.
func (b *EmbeddedBus) expire(q *embQueue, idle uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || b.queues[q.name] != q {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.idle != idle || len(q.consumers) > 0 {
		return // used again meanwhile
	}
	delete(b.queues, q.name)
	for _, k := range q.bindings {
		rs := slices.DeleteFunc(b.routes[k], func(e *embQueue) bool { return e == q })
		if len(rs) == 0 {
			delete(b.routes, k)
		} else {
			b.routes[k] = rs
		}
	}
	b.expiredMsgs.Add(uint64(q.ready()))
	b.expiredQs.Add(1)
	b.total.Add(-q.cost.Load())
	q.cost.Store(0)
	q.readyBytes, q.requeued, q.fresh, q.expiry = 0, nil, fifo{}, nil
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
		q.used() // stops the expiry
		q.consumers, q.requeued, q.fresh = nil, nil, fifo{}
		q.mu.Unlock()
	}
	b.queues, b.routes = nil, nil
	b.total.Store(0)
	return nil
}

// EmbeddedBusStats are an EmbeddedBus's figures, for the host's metrics.
type EmbeddedBusStats struct {
	// Queues are the queues that exist now, by name.
	Queues []EmbeddedQueueStats
	// Bytes is the memory of the ready messages of all queues, as
	// MaxTotalBytes counts it; MaxTotalBytes is the bound (-1: none).
	Bytes, MaxTotalBytes int64
	// Messages lost to the bounds since the bus was made: dropped from a
	// queue's head (drop-head), refused by a queue (reject-publish; a
	// message counts once per queue that refused it), deleted with an
	// expired queue; and the queues that expired.
	DroppedHead, Rejected, Expired, ExpiredQueues uint64
}

// EmbeddedQueueStats are the figures of one queue.
type EmbeddedQueueStats struct {
	Name      string
	Consumers int
	// Ready messages and their body bytes (what MaxLength and
	// MaxLengthBytes bound; RabbitMQ's messages_ready and
	// message_bytes_ready), and the deliveries not yet acked.
	Ready      int
	ReadyBytes int64
	Unacked    int
	// Messages this queue dropped or refused since it was created.
	DroppedHead, Rejected uint64
}

// Stats returns the bus's figures; after Close, only its counters.
func (b *EmbeddedBus) Stats() EmbeddedBusStats {
	b.mu.RLock()
	defer b.mu.RUnlock()
	s := EmbeddedBusStats{
		Bytes: b.total.Load(), MaxTotalBytes: b.maxTotal,
		DroppedHead: b.droppedHead.Load(), Rejected: b.rejected.Load(),
		Expired: b.expiredMsgs.Load(), ExpiredQueues: b.expiredQs.Load(),
	}
	for _, q := range b.queues {
		q.mu.Lock()
		qs := EmbeddedQueueStats{Name: q.name, Consumers: len(q.consumers), Ready: q.ready(), ReadyBytes: q.readyBytes,
			DroppedHead: q.droppedHead, Rejected: q.rejected}
		for _, c := range q.consumers {
			qs.Unacked += len(c.unacked)
		}
		q.mu.Unlock()
		s.Queues = append(s.Queues, qs)
	}
	sort.Slice(s.Queues, func(i, j int) bool { return s.Queues[i].Name < s.Queues[j].Name })
	return s
}

// popReady takes the oldest ready message, which there must be, out of
// the queue's accounts: requeued ones come before fresh ones. q.mu is held.
func (q *embQueue) popReady() embMsg {
	var m embMsg
	if len(q.requeued) > 0 {
		m = q.popRequeued()
	} else {
		m = q.fresh.pop()
	}
	q.account(&m, -1)
	return m
}

// dispatch hands ready messages to consumers below their prefetch, round
// robin, until either runs out. q.mu is held.
func (q *embQueue) dispatch() {
	for len(q.requeued) > 0 || q.fresh.n > 0 {
		c := q.pick()
		if c == nil {
			return
		}
		m := q.popReady()
		c.tag++
		c.unacked[c.tag] = m
		// Never blocks: the channel holds at most the unacked deliveries,
		// and there are fewer than prefetch (its capacity) of those.
		c.out <- Delivery{Tag: c.tag, RoutingKey: m.key, Body: m.body, Headers: m.headers, Redelivered: m.redelivered}
	}
}

// popRequeued removes and returns the oldest requeued message, which there
// must be. q.mu is held.
func (q *embQueue) popRequeued() embMsg {
	m := q.requeued[0]
	q.requeued[0] = embMsg{}
	q.requeued = q.requeued[1:]
	if len(q.requeued) == 0 {
		q.requeued = nil // let the array go
	}
	return m
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

// requeue returns m to its place in the queue, marked redelivered. A
// requeued message counts against the bounds again; drop-head then drops
// from the head, as RabbitMQ does, and reject-publish lets the queue go
// past them (only publishes are refused). q.mu is held.
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
	q.account(&m, 1)
}

// trimRequeued applies drop-head after messages were returned to the
// queue, before they are delivered again, as RabbitMQ does: they are the
// oldest, so they go first. q.mu is held.
func (q *embQueue) trimRequeued() {
	if !q.bus.reject {
		q.trim()
	}
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
		c.q.trimRequeued()
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
	q.trimRequeued()
	q.dispatch()
	if len(q.consumers) == 0 {
		q.unused()
	}
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
