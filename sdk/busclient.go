package sdk

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dynworkers/dynworkers/sdk/proto"
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
	logger hclog.Logger

	mu        sync.Mutex
	stopped   bool
	consumers map[*consumer]struct{}
}

func newBus(host *hostConn, logger hclog.Logger) *bus {
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
	client, err := b.host.get(ctx)
	if err != nil {
		return fmt.Errorf("%s: %w", callName(call, key), err)
	}
	if _, err := client.Publish(ctx, &proto.PublishRequest{RoutingKey: key, Body: body, Headers: headers}); err != nil {
		return hostError(ctx, call, key, err)
	}
	return nil
}

func (b *bus) metric(name string, value float64, aggregators []string) error {
	const call = "Metric"
	aggs, err := CheckMetric(name, value, aggregators)
	if err != nil {
		return fmt.Errorf("%s: %w", call, err)
	}
	if b.host == nil {
		return &noHostError{call: call, name: name, also: ErrNoMetrics}
	}
	ctx, cancel := context.WithTimeout(context.Background(), metricTimeout)
	defer cancel()
	client, err := b.host.get(ctx)
	if err != nil {
		return fmt.Errorf("%s: %w", callName(call, name), err)
	}
	if _, err := client.Metric(ctx, &proto.MetricRequest{Name: name, Value: value, Aggregators: aggs}); err != nil {
		return hostError(ctx, call, name, err)
	}
	return nil
}

func (b *bus) consume(queue string, handler Handler, opts ...ConsumeOption) error {
	const call = "Consume"
	cfg, err := NewConsumeConfig(queue, opts...)
	if err != nil {
		return fmt.Errorf("%s: %w", callName(call, queue), err)
	}
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
	cfg     ConsumeConfig
	handler Handler
	logger  hclog.Logger

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
		return nil, 0, &HostError{Call: call, Name: queue, Code: codes.Internal,
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
		c.mu.Lock()
		if c.stopping {
			c.mu.Unlock()
			return // not handed over: requeued when the stream closes
		}
		c.inHandler = true
		c.mu.Unlock()

		m := Message{
			Queue:       c.cfg.Queue,
			RoutingKey:  d.GetRoutingKey(),
			Body:        d.GetBody(),
			Headers:     d.GetHeaders(),
			Redelivered: d.GetRedelivered(),
		}
		herr := c.handler(c.hctx, m)
		outcome := OutcomeOf(herr)
		switch outcome {
		case OutcomeAck:
			failures = 0
		case OutcomeDrop:
			failures = 0
			c.logger.Warn("dropping a message its handler cannot handle", "routing_key", m.RoutingKey, "error", herr)
		case OutcomeRequeue:
			failures++
			if c.hctx.Err() == nil {
				c.logger.Warn("the handler failed; the message is requeued", "routing_key", m.RoutingKey, "failures_in_a_row", failures, "error", herr)
				pause(c.hctx, backoff(requeueMin, requeueMax, failures))
			}
		}
		c.settle(id, d.GetDeliveryTag(), outcome)

		c.mu.Lock()
		c.inHandler = false
		stop := c.stopping
		c.mu.Unlock()
		if stop {
			return
		}
	}
}

// settle acks or nacks a delivery. A failure is logged: the host requeues
// what is not acked when the stream ends.
func (c *consumer) settle(id, tag uint64, o Outcome) {
	ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
	defer cancel()
	client, err := c.bus.host.get(ctx)
	if err == nil {
		if o == OutcomeAck {
			_, err = client.Ack(ctx, &proto.AckRequest{ConsumerId: id, DeliveryTag: tag})
		} else {
			_, err = client.Nack(ctx, &proto.NackRequest{ConsumerId: id, DeliveryTag: tag, Requeue: o == OutcomeRequeue})
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
// whose context ends; once the handler under way has returned and its
// delivery is settled, or when ctx ends, the stream is closed.
func (c *consumer) stop(ctx context.Context) {
	c.mu.Lock()
	if !c.stopping {
		c.stopping = true
		c.hcancel()
		if !c.inHandler && c.streamCancel != nil {
			c.streamCancel()
		}
	}
	c.mu.Unlock()
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
