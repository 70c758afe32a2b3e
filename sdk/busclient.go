package sdk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dynworkers/dynworkers/internal/wire"
	"github.com/dynworkers/dynworkers/internal/wire/proto"
)

// Timings of the SDK's consumers.
const (
	// consumeSetupTimeout bounds the setup of a consumer: dialing the
	// host, declaring and binding the queue.
	consumeSetupTimeout = 30 * time.Second
	// settleTimeout bounds an Ack or Nack.
	settleTimeout = 10 * time.Second
	// metricTimeout bounds a Metric call.
	metricTimeout = 5 * time.Second
)

// Backoffs (variables so that tests can shorten them).
var (
	// consumerDownGrace is how long a consumer may be without its stream
	// (resubscribing) before the worker's health checks fail, so that the
	// host restarts a worker that no longer gets its messages.
	consumerDownGrace = 15 * time.Second
	// resubscribeMin and resubscribeMax bound the pause between attempts
	// to resubscribe a consumer whose stream ended.
	resubscribeMin = 100 * time.Millisecond
	resubscribeMax = 5 * time.Second
	// requeueMin and requeueMax bound the pause before a failed message is
	// requeued; it doubles with every failure in a row.
	requeueMin = 50 * time.Millisecond
	requeueMax = 2 * time.Second
)

// bus is the messaging part of a worker's Env in a plugin process.
type bus struct {
	host   *hostConn // nil: the host offers no Host service
	logger *slog.Logger

	mu        sync.Mutex
	stopped   bool
	consumers map[*consumer]struct{}

	// The outbox (outbox.go): ob is the open one, if any.
	obMu      sync.Mutex
	ob        *outbox
	obOpening chan struct{} // non-nil while a caller opens one; closed when it is done
	noOutbox  bool          // the host does not serve one
	obClosed  bool          // closed at stop: no new one
	obRetryAt time.Time     // after a failed open, not before this
	// metricNames are the names of the metrics the host has taken a
	// value of: their later values may go on the outbox, whose errors
	// the worker does not see. The first value of a name is a round trip,
	// because that is when the host refuses a name (one that collides
	// with another once sanitised, one too many). At most
	// maxKnownMetrics names are kept; the values of the others are all
	// round trips.
	metricMu    sync.Mutex
	metricNames map[string]struct{}
}

// maxKnownMetrics bounds bus.metricNames; the host allows 1,000 names per
// worker.
const maxKnownMetrics = 1024

func newBus(host *hostConn, logger *slog.Logger) *bus {
	return &bus{host: host, logger: logger, consumers: map[*consumer]struct{}{}}
}

func (b *bus) publish(ctx context.Context, key string, body []byte, headers map[string]string) error {
	const call = "Publish"
	if err := CheckBusName("routing key", key); err != nil {
		return fmt.Errorf("%s: %w", call, err)
	}
	if b.host == nil {
		return &noHostError{call: call, name: key, also: ErrNoBus}
	}
	req := &proto.PublishRequest{RoutingKey: key, Body: body, Headers: headers}
	if h := handlingOf(ctx); h != nil {
		req.Deferred = true
		if ob := b.getOutbox(ctx); ob != nil {
			// Queued with the handler's call, sent with its delivery's
			// settlement (or sooner, when many are queued): the caller
			// may reuse body and headers.
			held := &proto.PublishRequest{RoutingKey: key, Body: slices.Clone(body), Headers: maps.Clone(headers), Deferred: true}
			flush, ok := h.hold(held)
			if ok {
				if flush == nil {
					return nil
				}
				if err := h.sendEarly(ob, flush); err != nil {
					return &HostError{Call: call, Name: key, code: codes.Unavailable, Message: err.Error()}
				}
				return nil
			}
			// The handler has just returned: publish on its own.
		}
	}
	client, err := b.host.get(ctx)
	if err != nil {
		return fmt.Errorf("%s: %w", callName(call, key), err)
	}
	if _, err := client.Publish(ctx, req); err != nil {
		return hostError(ctx, call, key, err)
	}
	return nil
}

// A Publish made with the context of a Handler, while the handler runs, is
// deferred: it is queued with the handler's call and goes on the outbox
// (outbox.go) with the delivery's ack or nack, in one message, when the
// handler returns (or sooner, once maxHeldCalls or maxHeldBytes are
// queued); when the host serves no outbox it is a Publish call with
// PublishRequest.deferred set. Either way the host sends it without
// waiting for the broker's confirmation, and acks the handler's delivery
// on the bus only once the message is confirmed (requeueing the delivery
// if it is not). The delivery protects its output, so a worker that
// publishes its output before its handler returns keeps at-least-once
// delivery, and the publishes of consecutive deliveries are in flight
// together. A publish without a handler's context (at Start, from a
// goroutine of the worker's own, from a handler's goroutine after the
// handler returned) waits for its confirmation, and a failed one is its
// error.

// Bounds of the deferred publishes a handler call holds before they are
// sent ahead of its settlement.
const (
	maxHeldCalls = 64
	maxHeldBytes = 256 << 10
)

// handlingKey is the context key of the *handling a Handler's context
// carries.
type handlingKey struct{}

// handling is one handler call.
type handling struct {
	c        *consumer // whose delivery it handles
	mu       sync.Mutex
	over     bool                // the handler has returned
	held     []*proto.OutboxCall // deferred publishes not sent yet
	heldSize int                 // the bytes of their bodies
	ob       *outbox             // the outbox earlier ones were sent on, if any
	lost     bool                // they went on an outbox that broke
}

// handlingOf returns the handler call whose context ctx is (or derives
// from), nil if none or if the handler has returned.
func handlingOf(ctx context.Context) *handling {
	h, _ := ctx.Value(handlingKey{}).(*handling)
	if h == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.over {
		return nil
	}
	return h
}

// hold queues a deferred publish of the handler; false if the handler has
// returned meanwhile. When enough are queued, it returns them to be sent
// at once (sendEarly).
func (h *handling) hold(req *proto.PublishRequest) (flush []*proto.OutboxCall, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.over {
		return nil, false
	}
	h.held = append(h.held, &proto.OutboxCall{Call: &proto.OutboxCall_Publish{Publish: req}})
	h.heldSize += len(req.Body)
	if len(h.held) < maxHeldCalls && h.heldSize < maxHeldBytes {
		return nil, true
	}
	flush = h.held
	h.held, h.heldSize = nil, 0
	return flush, true
}

// sendEarly sends held publishes ahead of the settlement, on ob; the
// settlement must then go on the same outbox: if an earlier batch went on
// one that has broken since, the delivery is requeued rather than acked.
func (h *handling) sendEarly(ob *outbox, calls []*proto.OutboxCall) error {
	h.mu.Lock()
	if h.ob != nil && h.ob != ob {
		h.lost = true
	}
	h.ob = ob
	lost := h.lost
	h.mu.Unlock()
	if lost {
		return errors.New("the host's outbox stream ended while the message was being handled; it is delivered again")
	}
	// After the settlements of the deliveries handled before.
	h.c.flushSettled()
	return ob.send(calls...)
}

// finish marks the handler as returned and returns what is to go with its
// delivery's settlement: the publishes still held, the outbox earlier ones
// went on (the settlement must follow them there), and whether the
// delivery is lost: earlier publishes went on an outbox that broke, so
// they may not have reached the host and the delivery must not be acked
// (the host requeues it when the consumer's stream ends).
func (h *handling) finish() (held []*proto.OutboxCall, ob *outbox, lost bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.over = true
	if h.ob != nil && h.ob.broken() {
		h.lost = true
	}
	held = h.held
	h.held = nil
	return held, h.ob, h.lost
}

func (b *bus) metric(name string, value float64, aggregators []string) error {
	const call = "Metric"
	aggs, err := wire.CheckMetric(name, value, aggregators)
	if err != nil {
		return fmt.Errorf("%s: %w", call, err)
	}
	if b.host == nil {
		return &noHostError{call: call, name: name, also: ErrNoMetrics}
	}
	ctx, cancel := context.WithTimeout(context.Background(), metricTimeout)
	defer cancel()
	req := &proto.MetricRequest{Name: name, Value: value, Aggregators: aggs}
	// Once the host has taken a value of this metric, it takes its other
	// values: they may go on the outbox, without a round trip.
	if b.knownMetric(name) {
		if ob := b.getOutbox(ctx); ob != nil && ob.send(&proto.OutboxCall{Call: &proto.OutboxCall_Metric{Metric: req}}) == nil {
			return nil
		}
	}
	client, err := b.host.get(ctx)
	if err != nil {
		return fmt.Errorf("%s: %w", callName(call, name), err)
	}
	if _, err := client.Metric(ctx, req); err != nil {
		return hostError(ctx, call, name, err)
	}
	b.metricMu.Lock()
	if b.metricNames == nil {
		b.metricNames = map[string]struct{}{}
	}
	if len(b.metricNames) < maxKnownMetrics {
		b.metricNames[name] = struct{}{}
	}
	b.metricMu.Unlock()
	return nil
}

// knownMetric reports whether the host has taken a value of the metric.
func (b *bus) knownMetric(name string) bool {
	b.metricMu.Lock()
	defer b.metricMu.Unlock()
	_, ok := b.metricNames[name]
	return ok
}

func (b *bus) consume(cfg consumeConfig, handler Handler) error {
	const call = "Consume"
	queue := cfg.Queue
	if handler == nil {
		return fmt.Errorf("%s: no handler given", callName(call, queue))
	}
	if b.host == nil {
		return &noHostError{call: call, name: queue, also: ErrNoBus}
	}
	c := &consumer{bus: b, cfg: cfg, handler: handler, done: make(chan struct{}),
		logger: b.logger.With("queue", queue)}
	c.hctx, c.hcancel = context.WithCancel(context.Background())
	b.mu.Lock()
	if b.stopped {
		b.mu.Unlock()
		return fmt.Errorf("%s: %w", callName(call, queue), ErrConsumerStopped)
	}
	b.consumers[c] = struct{}{}
	b.mu.Unlock()
	stream, id, err := c.open()
	if err != nil {
		b.remove(c)
		c.hcancel()
		close(c.done) // run never starts; stop must not wait for it
		return err
	}
	if cfg.Context != nil {
		stop := context.AfterFunc(cfg.Context, func() { c.stop(context.Background()) })
		go func() { <-c.done; stop() }()
	}
	go c.run(stream, id)
	return nil
}

func (b *bus) remove(c *consumer) {
	b.mu.Lock()
	delete(b.consumers, c)
	b.mu.Unlock()
}

// stopAll stops every consumer and refuses new ones: deliveries are no
// longer handed to handlers, handlers' contexts end, and once the
// handlers under way have returned (or ctx ends) the streams are closed,
// so the host requeues what was delivered ahead.
func (b *bus) stopAll(ctx context.Context) {
	b.mu.Lock()
	b.stopped = true
	all := make([]*consumer, 0, len(b.consumers))
	for c := range b.consumers {
		all = append(all, c)
	}
	b.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range all {
		wg.Go(func() { c.stop(ctx) })
	}
	wg.Wait()
	b.closeOutbox(ctx)
}

// health fails when a consumer has been without its stream for longer
// than consumerDownGrace.
func (b *bus) health() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for c := range b.consumers {
		if err := c.health(); err != nil {
			return err
		}
	}
	return nil
}

// consumer is one Env.Consume of a worker: it receives the deliveries of
// its stream one at a time, hands them to the handler and settles them.
type consumer struct {
	bus     *bus
	cfg     consumeConfig
	handler Handler
	logger  *slog.Logger

	// hctx is the handlers' context; it ends when the consumer stops.
	hctx    context.Context
	hcancel context.CancelFunc
	done    chan struct{} // closed when run returns

	mu           sync.Mutex
	stopping     bool
	inHandler    bool
	streamCancel context.CancelFunc // ends the current stream
	downSince    time.Time          // zero while the stream is up
	downErr      error
	// settleQ holds the settlements the settler has yet to send;
	// settlerUp is non-nil while a settler goroutine runs, and closed
	// when it returns.
	settleQ   []settlement
	settlerUp chan struct{}
	// lastOutbox is the outbox of the last settlement sent on one.
	lastOutbox *outbox

	// The settlements queued for the outbox (settleDelivery), sent
	// together by flushSettled: their calls, in order, all for pendOb.
	// pendMu is held while they are sent, so that what is sent after a
	// flush (a handler's early publishes) follows them.
	pendMu    sync.Mutex
	pendOb    *outbox
	pending   []pendingSettle
	pendCalls []*proto.OutboxCall
}

// settlement is the Ack or Nack of one delivery.
type settlement struct {
	id, tag uint64
	outcome Outcome
	// reason is the handler's error for a failure (OutcomeRequeue while
	// the consumer runs), which counts towards the consumer's
	// max_redeliveries on the host; empty otherwise.
	reason string
}

// open opens a Consume stream and waits for the host's ready message.
func (c *consumer) open() (proto.Host_ConsumeClient, uint64, error) {
	const call = "Consume"
	queue := c.cfg.Queue
	setup, cancelSetup := context.WithTimeout(c.hctx, consumeSetupTimeout)
	defer cancelSetup()
	client, err := c.bus.host.get(setup)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", callName(call, queue), c.setupErr(err))
	}
	sctx, scancel := context.WithCancel(context.Background())
	c.mu.Lock()
	if c.stopping {
		c.mu.Unlock()
		scancel()
		return nil, 0, fmt.Errorf("%s: %w", callName(call, queue), ErrConsumerStopped)
	}
	c.streamCancel = scancel
	c.mu.Unlock()
	// The stream outlives the setup: end it at the setup's deadline only
	// until the ready message has arrived.
	stopSetup := context.AfterFunc(setup, scancel)
	stream, err := client.Consume(sctx, &proto.ConsumeRequest{
		Queue:    queue,
		Bindings: c.cfg.Bindings,
		Prefetch: int32(c.cfg.Prefetch),
		// -1: never dead-letter; the host reads 0 as its default.
		MaxRedeliveries: int32(max(c.cfg.MaxRedeliveries, -1)),
		DeadLetterKey:   c.cfg.DeadLetter,
		MaxBatch:        int32(maxBatch(c.cfg.Prefetch)),
	})
	var first *proto.Delivery
	if err == nil {
		first, err = stream.Recv()
	}
	if !stopSetup() && setup.Err() != nil {
		scancel()
		return nil, 0, fmt.Errorf("%s: %w", callName(call, queue), c.setupErr(setup.Err()))
	}
	if err != nil {
		scancel()
		return nil, 0, hostError(context.Background(), call, queue, err)
	}
	if first.GetDeliveryTag() != 0 {
		scancel()
		return nil, 0, &HostError{Call: call, Name: queue, code: codes.Internal,
			Message: fmt.Sprintf("the host's first message is delivery %d, not the ready announcement", first.GetDeliveryTag())}
	}
	return stream, first.GetConsumerId(), nil
}

func (c *consumer) setupErr(err error) error {
	switch {
	case c.hctx.Err() != nil:
		return ErrConsumerStopped
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("the host did not set up the consumer within %s: %w", consumeSetupTimeout, err)
	}
	return err
}

// run handles the stream's deliveries until the consumer stops. When the
// stream ends otherwise (the host's consumer failed), it subscribes again,
// with backoff.
func (c *consumer) run(stream proto.Host_ConsumeClient, id uint64) {
	defer close(c.done)
	defer c.bus.remove(c)
	defer c.cancelStream()
	// Before the stream ends, since the host requeues then what is not
	// settled: the settlements are sent and the outbox flushed.
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
		defer cancel()
		c.drain(ctx)
	}()
	failures := 0
	for {
		d, err := stream.Recv()
		if err != nil {
			if c.isStopping() {
				return
			}
			c.setDown(err)
			c.cancelStream()
			c.logger.Warn("the host ended the consumer's stream; subscribing again", "error", err)
			if stream, id = c.resubscribe(); stream == nil {
				return
			}
			c.setDown(nil)
			c.logger.Info("consuming again")
			continue
		}
		// The deliveries of one stream message (a batch: Delivery.more)
		// are handled in order; their settlements go to the host
		// together, once the last is handled.
		if c.handle(d, id, &failures) {
			return
		}
		for _, m := range d.GetMore() {
			if c.handle(m, id, &failures) {
				return
			}
		}
		c.flushSettled()
	}
}

// handle hands one delivery to the handler and settles it; it reports
// whether the consumer is stopping (then the deliveries not handed over
// are requeued by the host when the stream closes, and the settlements
// of those handled are sent).
func (c *consumer) handle(d *proto.Delivery, id uint64, failures *int) (stop bool) {
	c.mu.Lock()
	if c.stopping {
		c.mu.Unlock()
		c.flushSettled()
		return true // not handed over: requeued when the stream closes
	}
	c.inHandler = true
	c.mu.Unlock()

	m := Message{
		Queue:       c.cfg.Queue,
		RoutingKey:  d.GetRoutingKey(),
		Body:        d.GetBody(),
		Headers:     d.GetHeaders(),
		Redelivered: d.GetRedelivered(),
		Failures:    int(d.GetFailures()),
	}
	h := &handling{c: c}
	herr := c.handler(context.WithValue(c.hctx, handlingKey{}, h), m)
	held, ob, lost := h.finish()
	outcome := OutcomeOf(herr)
	switch outcome {
	case OutcomeAck:
		*failures = 0
	case OutcomeDrop:
		*failures = 0
		c.logger.Warn("dropping a message its handler cannot handle", "routing_key", m.RoutingKey, "error", herr)
	case OutcomeRequeue:
		*failures++
		// What the handlers before it settled goes now, not after the
		// pause.
		c.flushSettled()
		if c.hctx.Err() == nil {
			c.logger.Warn("the handler failed; the message is requeued", "routing_key", m.RoutingKey, "failures_in_a_row", *failures, "error", herr)
			pause(c.hctx, backoff(requeueMin, requeueMax, *failures))
		}
	}
	st := settlement{id: id, tag: d.GetDeliveryTag(), outcome: outcome}
	if outcome == OutcomeRequeue && c.hctx.Err() == nil {
		// A failure, not a consumer that stops under its handler.
		st.reason = herr.Error()
	}
	c.settleDelivery(st, held, ob, lost)
	c.mu.Lock()
	c.inHandler = false
	stop = c.stopping
	c.mu.Unlock()
	if stop {
		c.flushSettled()
	}
	return stop
}

// maxBatch is the ConsumeRequest.max_batch of a consumer with the given
// prefetch: a quarter of it, 1 to 32. The host sends that many deliveries
// in one stream message when it has them ready, and the consumer sends
// their settlements in one outbox message once the last is handled; a
// quarter of the prefetch keeps the rest flowing meanwhile.
func maxBatch(prefetch int) int { return min(max(prefetch/4, 1), 32) }

// settleDelivery acks or nacks a handled delivery, with the publishes its
// handler still held: on the outbox, after the publishes (on the outbox
// its handler's earlier publishes went on, if they went early: ob), queued
// to go in one message with the settlements of the other deliveries of
// its batch (flushSettled, once the batch's last is handled), or, when the
// host serves no outbox, with an Ack or Nack call. Neither waits for the
// host, so the handler of the next delivery
// runs meanwhile. A delivery whose publishes may not have reached the host
// (lost, or the outbox is gone) is not settled: the host requeues it when
// the consumer's stream ends, which the outbox's end brings about.
func (c *consumer) settleDelivery(s settlement, held []*proto.OutboxCall, ob *outbox, lost bool) {
	notSettled := func(err error) {
		c.logger.Warn("not settling a delivery whose handler's publishes went on an outbox stream that ended; it is delivered again",
			"outcome", s.outcome.String(), "error", err)
	}
	if lost {
		notSettled(errOutboxGone)
		return
	}
	bound := ob != nil || len(held) > 0
	if ob == nil {
		ob = c.bus.getOutbox(context.Background())
	}
	if ob == nil {
		if bound {
			notSettled(errOutboxGone)
			return
		}
		c.flushSettled()
		c.mu.Lock()
		c.enqueueSettle(s)
		c.mu.Unlock()
		return
	}
	call := &proto.OutboxCall{Call: &proto.OutboxCall_Ack{Ack: &proto.AckRequest{ConsumerId: s.id, DeliveryTag: s.tag}}}
	if s.outcome != OutcomeAck {
		call.Call = &proto.OutboxCall_Nack{Nack: &proto.NackRequest{ConsumerId: s.id, DeliveryTag: s.tag, Requeue: s.outcome == OutcomeRequeue, Error: s.reason}}
	}
	c.pendMu.Lock()
	if c.pendOb != nil && c.pendOb != ob {
		c.pendMu.Unlock()
		c.flushSettled()
		c.pendMu.Lock()
	}
	c.pendOb = ob
	c.pending = append(c.pending, pendingSettle{s: s, bound: bound})
	c.pendCalls = append(append(c.pendCalls, held...), call)
	full := len(c.pendCalls) >= maxHeldCalls
	c.pendMu.Unlock()
	if full {
		c.flushSettled()
	}
}

// pendingSettle is a settlement queued on the outbox with the publishes
// its handler still held.
type pendingSettle struct {
	s     settlement
	bound bool // its handler's publishes went (or go) on the outbox
}

// flushSettled sends the queued settlements (with their handlers'
// publishes) in one outbox message. If that fails, the settlements bound
// to the outbox are not made (the host requeues their deliveries when the
// consumer's stream ends, which the outbox's end brings about), and the
// others are sent with Ack and Nack calls.
func (c *consumer) flushSettled() {
	c.pendMu.Lock()
	defer c.pendMu.Unlock()
	if len(c.pending) == 0 {
		return
	}
	ob, pending, calls := c.pendOb, c.pending, c.pendCalls
	c.pendOb, c.pending, c.pendCalls = nil, c.pending[:0], c.pendCalls[:0]
	err := ob.send(calls...)
	clear(calls)
	if err == nil {
		c.mu.Lock()
		c.lastOutbox = ob
		c.mu.Unlock()
		return
	}
	for _, p := range pending {
		if p.bound {
			c.logger.Warn("not settling a delivery whose handler's publishes went on an outbox stream that ended; it is delivered again",
				"outcome", p.s.outcome.String(), "error", err)
			continue
		}
		c.mu.Lock()
		c.enqueueSettle(p.s)
		c.mu.Unlock()
	}
}

// enqueueSettle queues a settlement for the settler, starting one if none
// runs; c.mu is held.
//
// Without an outbox, settlements are sent by a goroutine of their own, in
// order, so that the handler of the next delivery runs while the Ack of
// the previous one is on its way: the host acks on the bus only once the
// delivery's deferred publishes are confirmed, and answers at once. The
// queue holds at most prefetch settlements: the host sends a delivery
// only while fewer than prefetch are unsettled.
func (c *consumer) enqueueSettle(s settlement) {
	c.settleQ = append(c.settleQ, s)
	if c.settlerUp == nil {
		up := make(chan struct{})
		c.settlerUp = up
		go c.settler(up)
	}
}

// settler sends the queued settlements until none is left.
func (c *consumer) settler(up chan struct{}) {
	for {
		c.mu.Lock()
		batch := c.settleQ
		c.settleQ = nil
		if len(batch) == 0 {
			c.settlerUp = nil
			close(up)
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		for _, s := range batch {
			c.settle(s)
		}
	}
}

// drain waits until the settlements of the handled deliveries have
// reached the host: the settler has sent its queue, and the outbox they
// went on is flushed. Or until ctx ends.
func (c *consumer) drain(ctx context.Context) {
	c.flushSettled()
	c.mu.Lock()
	up, ob := c.settlerUp, c.lastOutbox
	c.mu.Unlock()
	if up != nil {
		select {
		case <-up:
		case <-ctx.Done():
			return
		}
	}
	if ob != nil {
		if err := ob.sync(ctx); err != nil {
			c.logger.Debug("flushing the outbox failed; the host redelivers what it did not see settled", "error", err)
		}
	}
}

// settle acks or nacks a delivery. A failure is logged: the host requeues
// what is not acked when the stream ends.
func (c *consumer) settle(s settlement) {
	id, tag, o := s.id, s.tag, s.outcome
	ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
	defer cancel()
	client, err := c.bus.host.get(ctx)
	if err == nil {
		if o == OutcomeAck {
			_, err = client.Ack(ctx, &proto.AckRequest{ConsumerId: id, DeliveryTag: tag})
		} else {
			_, err = client.Nack(ctx, &proto.NackRequest{ConsumerId: id, DeliveryTag: tag, Requeue: o == OutcomeRequeue, Error: s.reason})
		}
	}
	if err != nil {
		c.logger.Warn("settling a delivery failed; the host redelivers it", "outcome", o.String(), "error", status.Convert(err).Message())
	}
}

// resubscribe opens a new stream, with backoff, until it succeeds or the
// consumer stops (then it returns nil).
func (c *consumer) resubscribe() (proto.Host_ConsumeClient, uint64) {
	for n := 1; ; n++ {
		if !pause(c.hctx, backoff(resubscribeMin, resubscribeMax, n)) {
			return nil, 0
		}
		stream, id, err := c.open()
		if err == nil {
			return stream, id
		}
		if c.isStopping() {
			return nil, 0
		}
		c.setDown(err)
		c.logger.Warn("subscribing again failed", "attempt", n, "error", err)
	}
}

func (c *consumer) isStopping() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stopping
}

func (c *consumer) cancelStream() {
	c.mu.Lock()
	cancel := c.streamCancel
	c.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

func (c *consumer) setDown(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil {
		c.downSince, c.downErr = time.Time{}, nil
		return
	}
	if c.downSince.IsZero() {
		c.downSince = time.Now()
	}
	c.downErr = err
}

func (c *consumer) health() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.downSince.IsZero() || time.Since(c.downSince) < consumerDownGrace {
		return nil
	}
	return fmt.Errorf("the consumer of queue %q has had no stream from the host for %s: %v",
		c.cfg.Queue, time.Since(c.downSince).Round(time.Second), c.downErr)
}

// stop stops the consumer: no more deliveries are handed to the handler,
// whose context ends; once the handler under way has returned and the
// handled deliveries are settled, or when ctx ends, the stream is closed.
func (c *consumer) stop(ctx context.Context) {
	c.mu.Lock()
	first, idle := !c.stopping, !c.inHandler
	if first {
		c.stopping = true
		c.hcancel()
	}
	c.mu.Unlock()
	if first && idle {
		// No handler runs: end the stream once what was handled is
		// settled. (A handler under way ends it when it returns.)
		c.drain(ctx)
		c.cancelStream()
	}
	select {
	case <-c.done:
	case <-ctx.Done():
		c.cancelStream()
	}
}

// backoff is lo * 2^(n-1), at most hi.
func backoff(lo, hi time.Duration, n int) time.Duration {
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	return min(d, hi)
}

// pause waits for d or until ctx ends; it reports whether ctx is still
// alive.
func pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
