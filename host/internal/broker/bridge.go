package broker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/dynworkers/dynworkers/host/internal/pluginproc"
)

// DefaultMaxDeferred is how many deferred publishes of one worker process
// may be outstanding (sent, their confirmation not in yet) when
// BridgeOptions.MaxDeferred is 0. Beyond it the process's next deferred
// publish waits for the oldest confirmation, and with it the process's
// Outbox stream, which the host stops reading: the worker's Publish
// blocks (backpressure). Confirmed publishes are not kept (only the
// numbers of failed ones, at most 1024), so a worker that publishes and
// never acks costs the host at most this many confirmations.
const DefaultMaxDeferred = 8192

// Bridges makes the host bridges of the worker processes on one bus. They
// share what the host knows of the failures of messages (poison.go), so
// that a message is dead-lettered at its consumer's max_redeliveries-th
// failure whichever processes it failed in.
type Bridges struct {
	bus    Bus
	counts *failureCounts
}

// NewBridges returns the bridges of the worker processes on bus.
func NewBridges(bus Bus) *Bridges { return &Bridges{bus: bus, counts: newFailureCounts()} }

// BridgeOptions configure the bridge of one worker process.
type BridgeOptions struct {
	// Logger receives the bridge's warnings (a dead letter, a requeue);
	// the daemon names the worker in it. Default: none.
	Logger hclog.Logger
	// MaxDeferred bounds the process's outstanding deferred publishes;
	// 0 means DefaultMaxDeferred.
	MaxDeferred int
	// OnDeadLetter is called once for each message the process's consumers
	// dead-lettered (the daemon counts them in the worker's metrics).
	OnDeadLetter func(queue string)
}

// Process returns the Host service's bus side (pluginproc.BusHost) of one
// worker process: its publishes and consumers go to the bus, with
// deferred publishes, delayed acks and dead letters as described below.
// The daemon makes one per process, so that an ack waits only for the
// publishes of the process that made it, and a process is held back only
// for its own publishes.
func (b *Bridges) Process(o BridgeOptions) pluginproc.BusHost { return b.process(o) }

func (b *Bridges) process(o BridgeOptions) *hostBridge {
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	if o.MaxDeferred <= 0 {
		o.MaxDeferred = DefaultMaxDeferred
	}
	h := &hostBridge{bus: b.bus, counts: b.counts, pubs: newPubTracker(o.MaxDeferred), logger: o.Logger, onDeadLetter: o.OnDeadLetter}
	h.publishAsync = func(ctx context.Context, key string, body []byte, headers map[string]string) (confirmation, error) {
		c, err := b.bus.PublishAsync(ctx, key, body, headers)
		if err != nil {
			return nil, err
		}
		return c, nil
	}
	return h
}

// NewHostBridge returns the bridge of one worker process on bus, with
// failure counts of its own: NewBridges(bus).Process with logger.
func NewHostBridge(bus Bus, logger hclog.Logger) pluginproc.BusHost {
	return NewBridges(bus).Process(BridgeOptions{Logger: logger})
}

// Deferred publishes and delayed acks.
//
// A worker's handler publishes the output of a delivery before it returns,
// and the delivery is acked after it returned. The SDK marks such a
// publish deferred (it comes on the process's Outbox stream, or with
// PublishRequest.deferred): the output needs no confirmation before the
// handler returns, as long as the input is not acked on the bus before
// the output is confirmed. So hostBridge sends a deferred publish with
// PublishAsync and returns at once, recording its confirmation in the
// worker process's pubTracker; bridgeConsumer.Ack does not ack on the bus
// but queues the ack, and the consumer's acker goroutine acks once the
// deferred publishes of the process issued before the Ack are confirmed,
// in the order the acks came. If one of the publishes made while the
// delivery was with the worker failed (nacked, lost with its connection),
// the acker nacks the delivery with requeue instead: it comes again and
// its output is published again (at least once). The publishes of
// consecutive deliveries are thus in flight together, as in a
// hand-written amqp091-go loop, and their order is kept.
//
// "While the delivery was with the worker" is the range of publishes
// recorded after the consumer took the delivery from the bus (before
// pluginproc, hence the worker, could see it) and up to the Ack. It may
// hold the publishes of other deliveries in flight at the same time, or of
// other consumers of the process: a failure of theirs requeues this
// delivery too. That costs a duplicate, never a loss.
//
// Memory stays bounded by the consumer's prefetch: the broker (and the
// embedded bus) does not deliver more than prefetch messages that are not
// acked on the bus, so a consumer has at most prefetch acks waiting for
// confirmations, and pluginproc at most prefetch deliveries unsettled by
// the worker: an Ack gives pluginproc's stream its credit back at once,
// but the next delivery comes only once the bus has room for it. The
// deferred publishes themselves are bounded by the tracker's limit
// (BridgeOptions.MaxDeferred): a process waits while that many are not
// confirmed, and confirmed ones are not kept, so a process that publishes
// and never acks costs the host no more than the limit. (The limit counts
// confirmations, not acks: a worker's acks come on its Outbox stream
// behind the publish that would wait for them, so such a wait could
// never end.)

// closeAckTimeout bounds how long closing a consumer waits for its queued
// acks' confirmations; the deliveries still not acked then are requeued
// by the bus, as on any close.
var closeAckTimeout = 5 * time.Second

// confirmation is the outcome of a publish: *Confirmation, or a test's
// own.
type confirmation interface {
	// Done is closed once the outcome is known.
	Done() <-chan struct{}
	// Err is the outcome, once Done is closed: nil when confirmed.
	Err() error
}

// hostBridge adapts the host's bus to the Host service of one worker
// process: its deferred publishes are tracked by pubs, which its consumers
// consult before they ack.
type hostBridge struct {
	bus          Bus
	pubs         *pubTracker
	counts       *failureCounts
	logger       hclog.Logger
	onDeadLetter func(queue string)
	// publishAsync sends a deferred publish; bus.PublishAsync unless a
	// test replaces it.
	publishAsync func(ctx context.Context, key string, body []byte, headers map[string]string) (confirmation, error)
}

var _ pluginproc.BusHost = (*hostBridge)(nil)

// newHostBridge returns the bridge of one worker process on bus.
func newHostBridge(bus Bus, logger hclog.Logger) *hostBridge {
	return NewBridges(bus).process(BridgeOptions{Logger: logger})
}

// deferredSendTimeout bounds the sending of a deferred publish (waiting
// for a broker connection included); the wait for room does not count.
var deferredSendTimeout = pluginproc.DefaultHostCallTimeout

func (b *hostBridge) Publish(ctx context.Context, key string, body []byte, headers map[string]string, deferred bool) error {
	if !deferred {
		return bridgeErr(b.bus.Publish(ctx, key, body, headers))
	}
	if err := b.pubs.reserve(ctx); err != nil {
		b.pubs.addFailed(err) // not sent: the deliveries it protects are requeued
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, deferredSendTimeout)
	conf, err := b.publishAsync(sctx, key, body, headers)
	cancel()
	if err != nil {
		// The deliveries it protects are requeued, not acked.
		b.pubs.addFailed(err)
		return bridgeErr(err)
	}
	b.pubs.add(conf)
	return nil
}

func (b *hostBridge) Consume(ctx context.Context, spec pluginproc.ConsumeSpec) (pluginproc.Consumer, error) {
	if spec.MaxRedeliveries > 0 {
		// Before the first delivery: its dead letter must not be dropped.
		if err := b.bus.Declare(ctx, spec.DeadLetter, nil); err != nil {
			return nil, bridgeErr(fmt.Errorf("declaring the dead-letter queue %q: %w", spec.DeadLetter, err))
		}
	}
	c, err := b.bus.Consume(ctx, spec.Queue, spec.Bindings, spec.Prefetch)
	if err != nil {
		return nil, bridgeErr(err)
	}
	return newBridgeConsumer(c, b, spec), nil
}

func bridgeErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrDisconnected), errors.Is(err, ErrClosed):
		return fmt.Errorf("%w: %w", pluginproc.ErrBusUnavailable, err)
	}
	return err
}

// settlement is an Ack or Nack of the worker, queued for the acker.
type settlement struct {
	d     Delivery
	since uint64 // the tracker's mark when the delivery was handed over
	upTo  uint64 // the tracker's mark when the worker settled it
	ack   bool
	// requeue: for a Nack, whether the worker asked to requeue.
	requeue bool
	// reason: for a Nack, the handler's error; a failed attempt when
	// requeue is set.
	reason string
}

// handed is a delivery handed to the worker and not settled yet.
type handed struct {
	d     Delivery
	since uint64
}

// bridgeConsumer hands a bus consumer's deliveries to pluginproc, one at a
// time, as pluginproc asks for them (Receive), so it holds none beyond
// what the worker has. Its acker goroutine settles the deliveries on the
// bus in the order the worker settled them, each once the deferred
// publishes before it are confirmed, and dead-letters those that failed
// too often.
type bridgeConsumer struct {
	c      Consumer
	h      *hostBridge
	pubs   *pubTracker
	spec   pluginproc.ConsumeSpec
	logger hclog.Logger
	out    chan pluginproc.Delivery
	done   chan struct{} // closed by Close: forward stops

	stopOnce    sync.Once
	closeErr    error
	forwardOnce sync.Once // Deliveries starts forward

	mu      sync.Mutex
	handed  map[uint64]handed // by bus tag
	queue   []settlement
	closing bool
	wake    chan struct{} // one token: the queue grew or closing was set
	abandon chan struct{} // closed when Close stops waiting for confirmations
	ackerUp chan struct{} // closed when the acker has returned
}

func newBridgeConsumer(c Consumer, h *hostBridge, spec pluginproc.ConsumeSpec) *bridgeConsumer {
	bc := &bridgeConsumer{
		c: c, h: h, pubs: h.pubs, spec: spec, logger: h.logger.With("queue", spec.Queue),
		out:     make(chan pluginproc.Delivery),
		done:    make(chan struct{}),
		handed:  map[uint64]handed{},
		wake:    make(chan struct{}, 1),
		abandon: make(chan struct{}),
		ackerUp: make(chan struct{}),
	}
	go bc.acker()
	return bc
}

var (
	_ pluginproc.Receiver    = (*bridgeConsumer)(nil)
	_ pluginproc.TryReceiver = (*bridgeConsumer)(nil)
)

// failKey is the identity of d in the failure counts.
func (bc *bridgeConsumer) failKey(d Delivery) failKey {
	return failKey{queue: bc.spec.Queue, id: messageID(d)}
}

// Receive implements pluginproc.Receiver: pluginproc takes each delivery
// in the goroutine that sends it to the worker, straight from the bus's
// consumer.
func (bc *bridgeConsumer) Receive(done <-chan struct{}) (pluginproc.Delivery, bool) {
	select {
	case d, ok := <-bc.c.Deliveries():
		if !ok {
			return pluginproc.Delivery{}, false
		}
		return bc.handOver(d), true
	case <-done:
	case <-bc.done:
	}
	return pluginproc.Delivery{}, false
}

// TryReceive implements pluginproc.TryReceiver: a delivery the bus's
// consumer has ready, without waiting, to go to the worker in one stream
// message with others.
func (bc *bridgeConsumer) TryReceive() (pluginproc.Delivery, bool) {
	select {
	case <-bc.done:
		return pluginproc.Delivery{}, false
	default:
	}
	select {
	case d, ok := <-bc.c.Deliveries():
		if ok {
			return bc.handOver(d), true
		}
	default:
	}
	return pluginproc.Delivery{}, false
}

// handOver records a delivery about to be handed to the worker.
func (bc *bridgeConsumer) handOver(d Delivery) pluginproc.Delivery {
	// Only a message that came back can have failed before.
	failures := 0
	if d.Redelivered && bc.spec.MaxRedeliveries > 0 {
		failures = bc.h.counts.get(bc.failKey(d))
	}
	// The mark is taken before the worker can see the delivery, so every
	// publish of its handler comes after it (and maybe some of the
	// deliveries before it: a failure of theirs requeues this one too).
	bc.mu.Lock()
	bc.handed[d.Tag] = handed{d: d, since: bc.pubs.mark()}
	bc.mu.Unlock()
	return pluginproc.Delivery{Tag: d.Tag, RoutingKey: d.RoutingKey, Body: d.Body, Headers: d.Headers, Redelivered: d.Redelivered, Failures: failures}
}

// Deliveries implements pluginproc.Consumer for a user that does not use
// Receive: a goroutine hands the deliveries over, one at a time, taking
// the next only once the previous one was taken, so it holds at most one
// message beyond what the worker has.
func (bc *bridgeConsumer) Deliveries() <-chan pluginproc.Delivery {
	bc.forwardOnce.Do(func() { go bc.forward() })
	return bc.out
}

func (bc *bridgeConsumer) forward() {
	defer close(bc.out)
	for {
		select {
		case d, ok := <-bc.c.Deliveries():
			if !ok {
				return
			}
			select {
			case bc.out <- bc.handOver(d):
			case <-bc.done:
				return // Close requeues it with the rest
			}
		case <-bc.done:
			return
		}
	}
}

// Ack queues the ack of the delivery for the acker and returns.
func (bc *bridgeConsumer) Ack(tag uint64) error { return bc.enqueue(tag, settlement{ack: true}) }

// Nack queues the nack of the delivery for the acker and returns.
func (bc *bridgeConsumer) Nack(tag uint64, requeue bool, reason string) error {
	return bc.enqueue(tag, settlement{requeue: requeue, reason: reason})
}

func (bc *bridgeConsumer) enqueue(tag uint64, s settlement) error {
	bc.mu.Lock()
	defer bc.mu.Unlock()
	if bc.closing {
		return ErrConsumerClosed
	}
	hd, ok := bc.handed[tag]
	if !ok {
		return ErrUnknownTag
	}
	delete(bc.handed, tag)
	s.d, s.since, s.upTo = hd.d, hd.since, bc.pubs.mark()
	bc.queue = append(bc.queue, s)
	select {
	case bc.wake <- struct{}{}:
	default:
	}
	return nil
}

// acker settles the queued deliveries on the bus, in order, until the
// consumer is closing and the queue is empty, or Close gives up waiting.
func (bc *bridgeConsumer) acker() {
	defer close(bc.ackerUp)
	for {
		bc.mu.Lock()
		batch := bc.queue
		bc.queue = nil
		closing := bc.closing
		bc.mu.Unlock()
		if len(batch) == 0 {
			if closing {
				return
			}
			<-bc.wake
			continue
		}
		for i, s := range batch {
			failed, ok := bc.pubs.wait(s.since, s.upTo, bc.abandon)
			if !ok {
				bc.logger.Warn("consumer closed before the outputs of its last deliveries were confirmed; the bus requeues them",
					"deliveries", len(batch)-i)
				return
			}
			bc.settle(s, failed)
		}
	}
}

// settle acks or nacks one delivery on the bus, or dead-letters it. A
// failure is logged: the bus delivers again what is not acked.
func (bc *bridgeConsumer) settle(s settlement, failed bool) {
	counted := bc.spec.MaxRedeliveries > 0
	var err error
	switch {
	case s.ack && !failed:
		err = bc.c.Ack(s.d.Tag)
		if counted && s.d.Redelivered {
			bc.h.counts.forget(bc.failKey(s.d))
		}
	case s.ack:
		bc.logger.Warn("a message the worker published while handling a delivery was not confirmed; the delivery is requeued, to be handled again")
		err = bc.c.Nack(s.d.Tag, true)
	case s.requeue && s.reason != "" && counted:
		k := bc.failKey(s.d)
		n := bc.h.counts.fail(k)
		if n >= bc.spec.MaxRedeliveries && !failed && bc.deadLetter(s, n) {
			bc.h.counts.forget(k)
			return
		}
		err = bc.c.Nack(s.d.Tag, true)
	default:
		err = bc.c.Nack(s.d.Tag, s.requeue)
		if !s.requeue && counted && s.d.Redelivered {
			bc.h.counts.forget(bc.failKey(s.d))
		}
	}
	bc.settled(err)
}

func (bc *bridgeConsumer) settled(err error) {
	switch {
	case err == nil:
	case errors.Is(err, ErrConsumerClosed), errors.Is(err, ErrDeliveryLost):
		bc.logger.Debug("settling a delivery failed; the bus delivers it again", "error", err)
	default:
		bc.logger.Warn("settling a delivery failed; the bus delivers it again", "error", err)
	}
}

// deadLetter publishes the delivery of s, which failed for the n-th time,
// to the dead-letter key and acks it once the dead letter is confirmed;
// false if the dead letter failed (the delivery is then requeued, and
// dead-lettered at its next failure).
func (bc *bridgeConsumer) deadLetter(s settlement, n int) bool {
	ctx, cancel := context.WithTimeout(context.Background(), deferredSendTimeout)
	defer cancel()
	// Declared again first: a dead-letter queue nobody consumes expires
	// (the embedded bus's host.bus.expires, or an operator's policy on
	// RabbitMQ), and the dead letter would then be dropped as unroutable.
	err := bc.h.bus.Declare(ctx, bc.spec.DeadLetter, nil)
	if err == nil {
		err = bc.h.bus.Publish(ctx, bc.spec.DeadLetter, s.d.Body, deadLetterHeaders(s.d, bc.spec.Queue, s.reason, n))
	}
	if err != nil {
		bc.logger.Warn("a message failed too often but could not be dead-lettered; it is requeued",
			"dead_letter", bc.spec.DeadLetter, "failures", n, "error", err)
		return false
	}
	bc.logger.Warn("dead-lettered a message that failed too often",
		"dead_letter", bc.spec.DeadLetter, "failures", n, "error", s.reason)
	if bc.h.onDeadLetter != nil {
		bc.h.onDeadLetter(bc.spec.Queue)
	}
	bc.settled(bc.c.Ack(s.d.Tag))
	return true
}

// Close stops the deliveries, lets the acker settle what the worker
// settled (waiting at most closeAckTimeout for the confirmations), and
// closes the bus's consumer, which requeues the rest.
func (bc *bridgeConsumer) Close() error {
	bc.stopOnce.Do(func() {
		close(bc.done)
		bc.mu.Lock()
		bc.closing = true
		bc.mu.Unlock()
		select {
		case bc.wake <- struct{}{}:
		default:
		}
		t := time.NewTimer(closeAckTimeout)
		select {
		case <-bc.ackerUp:
		case <-t.C:
			close(bc.abandon)
			<-bc.ackerUp
		}
		t.Stop()
		bc.closeErr = bc.c.Close()
	})
	return bc.closeErr
}
