package broker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/dynworkers/dynworkers/host/internal/pluginproc"
)

// NewHostBridge returns the Host service's bus side (pluginproc.BusHost) of
// one worker process on bus: its publishes and consumers go to bus, with
// deferred publishes and delayed acks as described below. The daemon makes
// one per process, so that an ack waits only for the publishes of the
// process that made it.
func NewHostBridge(bus Bus, logger hclog.Logger) pluginproc.BusHost {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	return newHostBridge(bus, logger)
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
// but the next delivery comes only once the bus has room for it.

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
	bus    Bus
	pubs   *pubTracker
	logger hclog.Logger
	// publishAsync sends a deferred publish; bus.PublishAsync unless a
	// test replaces it.
	publishAsync func(ctx context.Context, key string, body []byte, headers map[string]string) (confirmation, error)
}

var _ pluginproc.BusHost = (*hostBridge)(nil)

// newHostBridge returns the BusHost of one worker process on bus.
func newHostBridge(bus Bus, logger hclog.Logger) *hostBridge {
	b := &hostBridge{bus: bus, pubs: newPubTracker(), logger: logger}
	b.publishAsync = func(ctx context.Context, key string, body []byte, headers map[string]string) (confirmation, error) {
		c, err := bus.PublishAsync(ctx, key, body, headers)
		if err != nil {
			return nil, err
		}
		return c, nil
	}
	return b
}

func (b *hostBridge) Publish(ctx context.Context, key string, body []byte, headers map[string]string, deferred bool) error {
	if !deferred {
		return bridgeErr(b.bus.Publish(ctx, key, body, headers))
	}
	conf, err := b.publishAsync(ctx, key, body, headers)
	if err != nil {
		return bridgeErr(err)
	}
	b.pubs.add(conf)
	return nil
}

func (b *hostBridge) Consume(ctx context.Context, queue string, bindings []string, prefetch int) (pluginproc.Consumer, error) {
	c, err := b.bus.Consume(ctx, queue, bindings, prefetch)
	if err != nil {
		return nil, bridgeErr(err)
	}
	return newBridgeConsumer(c, b.pubs, b.logger.With("queue", queue)), nil
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

// maxFailures is how many failed publishes a pubTracker remembers; a
// range reaching below the oldest one it forgot counts as failed.
const maxFailures = 1024

// pubTracker follows the confirmations of a worker process's deferred
// publishes, numbered 1, 2, ... in the order they were sent. Their
// outcomes are taken in that order by the ackers that wait for them (one
// at a time, the others waiting for its progress): wait tells an acker
// when every publish up to a number has its outcome and whether one in a
// range failed.
type pubTracker struct {
	mu        sync.Mutex
	issued    uint64       // the number of the last publish recorded
	resolved  uint64       // every publish up to this one has its outcome
	pending   []pendingPub // recorded, outcome not taken yet, in order
	resolving bool         // a waiter waits for the first pending outcome
	failed    []uint64     // numbers of the failed publishes, ascending
	forgotten uint64       // failures up to this number were dropped from failed
	advanced  chan struct{}
}

type pendingPub struct {
	seq  uint64
	conf confirmation
}

func newPubTracker() *pubTracker { return &pubTracker{} }

// add records the confirmation of a deferred publish just sent.
func (t *pubTracker) add(c confirmation) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.issued++
	if len(t.pending) == 0 && isDone(c) {
		// The embedded bus's case: known at once, nothing to wait for.
		t.settle(t.issued, c.Err())
		t.broadcast()
		return
	}
	t.pending = append(t.pending, pendingPub{seq: t.issued, conf: c})
}

// mark returns the number of the last publish recorded: later ones have
// higher numbers.
func (t *pubTracker) mark() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.issued
}

func isDone(c confirmation) bool {
	select {
	case <-c.Done():
		return true
	default:
		return false
	}
}

// takeDone takes the outcomes of the pending publishes that have one, in
// order, up to the first that has none; t.mu is held.
func (t *pubTracker) takeDone() {
	n := 0
	for _, p := range t.pending {
		if !isDone(p.conf) {
			break
		}
		t.settle(p.seq, p.conf.Err())
		n++
	}
	if n > 0 {
		clear(t.pending[:n])
		t.pending = t.pending[n:]
		t.broadcast()
	}
}

// settle records the outcome of publish seq; t.mu is held.
func (t *pubTracker) settle(seq uint64, err error) {
	t.resolved = seq
	if err == nil {
		return
	}
	t.failed = append(t.failed, seq)
	if len(t.failed) > maxFailures {
		drop := len(t.failed) - maxFailures/2
		t.forgotten = t.failed[drop-1]
		t.failed = append(t.failed[:0], t.failed[drop:]...)
	}
}

// broadcast wakes the waiters; t.mu is held.
func (t *pubTracker) broadcast() {
	if t.advanced != nil {
		close(t.advanced)
		t.advanced = nil
	}
}

// wait waits until every publish up to upTo has its outcome and reports
// whether one numbered above since and up to upTo failed. It returns
// ok false if abandon is closed first. The waiter that finds no other
// waiting for the first pending outcome waits for it itself (on the
// bus's confirmation, with no goroutine in between) and takes it and the
// ones that follow; the others wait for its progress.
func (t *pubTracker) wait(since, upTo uint64, abandon <-chan struct{}) (failed, ok bool) {
	t.mu.Lock()
	for {
		t.takeDone()
		if t.resolved >= upTo {
			failed = t.failedIn(since, upTo)
			t.mu.Unlock()
			return failed, true
		}
		if !t.resolving {
			// resolved < upTo <= issued: something is pending.
			t.resolving = true
			head := t.pending[0].conf
			t.mu.Unlock()
			select {
			case <-head.Done():
			case <-abandon:
				t.mu.Lock()
				t.resolving = false
				t.broadcast() // another waiter takes over
				t.mu.Unlock()
				return false, false
			}
			t.mu.Lock()
			t.resolving = false
			continue
		}
		if t.advanced == nil {
			t.advanced = make(chan struct{})
		}
		ch := t.advanced
		t.mu.Unlock()
		select {
		case <-ch:
		case <-abandon:
			return false, false
		}
		t.mu.Lock()
	}
}

// failedIn reports whether a publish numbered in (since, upTo] failed;
// t.mu is held.
func (t *pubTracker) failedIn(since, upTo uint64) bool {
	if upTo <= since {
		return false
	}
	if since < t.forgotten {
		return true
	}
	i, _ := slices.BinarySearch(t.failed, since+1)
	return i < len(t.failed) && t.failed[i] <= upTo
}

// settlement is an Ack or Nack of the worker, queued for the acker.
type settlement struct {
	tag   uint64
	since uint64 // the tracker's mark when the delivery was handed over
	upTo  uint64 // the tracker's mark when the worker settled it
	ack   bool
	// requeue: for a Nack, whether the worker asked to requeue.
	requeue bool
}

// bridgeConsumer hands a bus consumer's deliveries to pluginproc, one at a
// time, as pluginproc asks for them (Receive), so it holds none beyond
// what the worker has. Its acker goroutine settles the deliveries on the
// bus in the order the worker settled them, each once the deferred
// publishes before it are confirmed.
type bridgeConsumer struct {
	c      Consumer
	pubs   *pubTracker
	logger hclog.Logger
	out    chan pluginproc.Delivery
	done   chan struct{} // closed by Close: forward stops

	stopOnce    sync.Once
	closeErr    error
	forwardOnce sync.Once // Deliveries starts forward

	mu      sync.Mutex
	since   map[uint64]uint64 // bus tag → the tracker's mark when handed over
	queue   []settlement
	closing bool
	wake    chan struct{} // one token: the queue grew or closing was set
	abandon chan struct{} // closed when Close stops waiting for confirmations
	ackerUp chan struct{} // closed when the acker has returned
}

func newBridgeConsumer(c Consumer, pubs *pubTracker, logger hclog.Logger) *bridgeConsumer {
	bc := &bridgeConsumer{
		c: c, pubs: pubs, logger: logger,
		out:     make(chan pluginproc.Delivery),
		done:    make(chan struct{}),
		since:   map[uint64]uint64{},
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
	// The mark is taken before the worker can see the delivery, so every
	// publish of its handler comes after it (and maybe some of the
	// deliveries before it: a failure of theirs requeues this one too).
	bc.mu.Lock()
	bc.since[d.Tag] = bc.pubs.mark()
	bc.mu.Unlock()
	return pluginproc.Delivery{Tag: d.Tag, RoutingKey: d.RoutingKey, Body: d.Body, Headers: d.Headers, Redelivered: d.Redelivered}
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
func (bc *bridgeConsumer) Ack(tag uint64) error { return bc.enqueue(settlement{tag: tag, ack: true}) }

// Nack queues the nack of the delivery for the acker and returns.
func (bc *bridgeConsumer) Nack(tag uint64, requeue bool) error {
	return bc.enqueue(settlement{tag: tag, requeue: requeue})
}

func (bc *bridgeConsumer) enqueue(s settlement) error {
	bc.mu.Lock()
	defer bc.mu.Unlock()
	if bc.closing {
		return ErrConsumerClosed
	}
	since, ok := bc.since[s.tag]
	if !ok {
		return ErrUnknownTag
	}
	delete(bc.since, s.tag)
	s.since, s.upTo = since, bc.pubs.mark()
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

// settle acks or nacks one delivery on the bus. A failure is logged: the
// bus delivers again what is not acked.
func (bc *bridgeConsumer) settle(s settlement, failed bool) {
	var err error
	switch {
	case s.ack && !failed:
		err = bc.c.Ack(s.tag)
	case s.ack:
		bc.logger.Warn("a message the worker published while handling a delivery was not confirmed; the delivery is requeued, to be handled again")
		err = bc.c.Nack(s.tag, true)
	default:
		err = bc.c.Nack(s.tag, s.requeue)
	}
	switch {
	case err == nil:
	case errors.Is(err, ErrConsumerClosed), errors.Is(err, ErrDeliveryLost):
		bc.logger.Debug("settling a delivery failed; the bus delivers it again", "error", err)
	default:
		bc.logger.Warn("settling a delivery failed; the bus delivers it again", "error", err)
	}
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
