package broker

import (
	"context"
	"errors"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// errLost means a consumer's channel went away with its connection.
var errLost = errors.New("connection lost")

// The one resumable consumer of the host: the control channel's consumers
// (Conn.Consume) and the workers' bus (AMQPBus's consumers) are a resumer
// each, which differ only in what they declare and how they hand the
// deliveries over.

// consumeChan is one channel of a consumer.
type consumeChan struct {
	s          *session
	ch         *amqp.Channel
	gen        uint64 // the channel's generation (AMQPBus's consumers number them)
	deliveries <-chan amqp.Delivery
}

// resumer consumes one queue across channels and connections: open
// consumes on a new channel of the current session, serve hands its
// deliveries over until the channel ends or ctx does, and then the
// resumer consumes again: at once on the next connection after a loss
// (the broker redelivers what was not acked), after a backoff when the
// broker ended the consumer or refused it while connected (the queue was
// deleted, for example).
type resumer struct {
	c     *Conn
	ctx   context.Context // ends the consumer
	stop  <-chan struct{} // a user's close besides the Conn's (the bus's); nil for none
	queue string
	// declare declares what the consumer needs on ch and consumes.
	declare func(ch *amqp.Channel) (<-chan amqp.Delivery, error)
	// opened, if set, accepts a new channel before it is served (or
	// refuses it with an error that ends the resumer).
	opened func(cc *consumeChan) error
	// serve hands cc's deliveries over until its channel ends or ctx does.
	serve func(cc *consumeChan)
	// ended, if set, is called once serve has returned and the channel is
	// closed.
	ended func(cc *consumeChan)
}

// open consumes on a new channel of the current session, waiting for one
// until ctx ends. It returns errLost, once the session was retired, if the
// connection was lost meanwhile.
func (r *resumer) open(ctx context.Context) (*consumeChan, error) {
	s, err := r.c.sessionUntil(ctx, true, r.stop)
	if err != nil {
		return nil, err
	}
	ch, err := s.conn.Channel()
	if err != nil {
		err = fmt.Errorf("opening a channel: %w", err)
	} else {
		var deliveries <-chan amqp.Delivery
		if deliveries, err = r.declare(ch); err == nil {
			cc := &consumeChan{s: s, ch: ch, deliveries: deliveries}
			if r.opened != nil {
				if err := r.opened(cc); err != nil {
					_ = ch.Close()
					return nil, err
				}
			}
			return cc, nil
		}
		_ = ch.Close()
	}
	if !s.conn.IsClosed() {
		return nil, err
	}
	if err := r.c.awaitLoss(ctx, s, true, r.stop); err != nil {
		return nil, err
	}
	return nil, errLost
}

// run serves first (nil: opens one) and every channel after it until ctx
// ends (nil) or the Conn or stop is closed (ErrClosed), or opened refuses a
// channel (its error).
func (r *resumer) run(first *consumeChan) error {
	cc := first
	failures := 0
	for {
		if cc == nil {
			var err error
			cc, err = r.open(r.ctx)
			switch {
			case err == nil:
			case r.ctx.Err() != nil:
				return nil
			case errors.Is(err, ErrClosed):
				return ErrClosed
			case errors.Is(err, errLost):
				continue // not a failure of this consumer: resume at once
			default:
				if r.opened != nil && errors.Is(err, ErrConsumerClosed) {
					return nil
				}
				failures++
				r.c.log.Warn("consuming failed; retrying", "queue", r.queue, "attempt", failures, "error", err)
				if !r.sleep(failures) {
					return r.why()
				}
				continue
			}
		}
		began := time.Now()
		r.serve(cc)
		_ = cc.ch.Close() // returns the unacked deliveries to the queue, if the connection is up
		if r.ended != nil {
			r.ended(cc)
		}
		if r.ctx.Err() != nil || r.c.isClosed() || isClosedChan(r.stop) {
			return r.why()
		}
		if !cc.s.conn.IsClosed() {
			// The broker canceled the consumer or closed its channel.
			if time.Since(began) >= stableAfter {
				failures = 0
			}
			failures++
			r.c.log.Warn("a consumer was ended by the broker; resuming", "queue", r.queue, "attempt", failures)
			if !r.sleep(failures) {
				return r.why()
			}
		} else {
			r.c.log.Debug("resuming a consumer after a reconnection", "queue", r.queue)
		}
		cc = nil
	}
}

// why is run's result once it stops.
func (r *resumer) why() error {
	if r.ctx.Err() == nil && (r.c.isClosed() || isClosedChan(r.stop)) {
		return ErrClosed
	}
	return nil
}

// sleep waits the backoff of the failures-th failure in a row (the
// Conn's reconnection schedule); false if the consumer ended meanwhile.
func (r *resumer) sleep(failures int) bool {
	t := time.NewTimer(r.c.backoff.Delay(failures, nil))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.ctx.Done():
	case <-r.c.done:
	case <-r.stop:
	}
	return false
}

// consumeQueue sets the prefetch on ch and consumes queue with manual
// acknowledgements.
func consumeQueue(ch *amqp.Channel, queue string, prefetch int) (<-chan amqp.Delivery, error) {
	if err := ch.Qos(prefetch, 0, false); err != nil {
		return nil, fmt.Errorf("setting prefetch: %w", err)
	}
	d, err := ch.Consume(queue, "", false, false, false, false, nil)
	if err != nil {
		return nil, fmt.Errorf("consuming %q: %w", queue, err)
	}
	return d, nil
}

// Consume consumes queue with manual acknowledgements, at most prefetch
// unacknowledged deliveries at a time (values below 1 mean 1), and calls
// handle for each delivery, one at a time and in order; handle acks or
// nacks the delivery itself. When the connection is lost, Consume waits for
// the next one and consumes again; the broker redelivers what was not
// acked. If consuming fails while connected (the queue does not exist, the
// broker canceled the consumer), Consume logs it and retries with backoff.
// Consume returns when ctx is done or the Conn is closed, after handle has
// returned; deliveries prefetched but not handled then go back to the
// queue when the channel closes.
func (c *Conn) Consume(ctx context.Context, queue string, prefetch int, handle func(amqp.Delivery)) {
	if prefetch < 1 {
		prefetch = 1
	}
	r := &resumer{c: c, ctx: ctx, queue: queue,
		declare: func(ch *amqp.Channel) (<-chan amqp.Delivery, error) {
			c.log.Debug("consuming", "queue", queue, "prefetch", prefetch)
			return consumeQueue(ch, queue, prefetch)
		},
		serve: func(cc *consumeChan) {
			for {
				select {
				case d, ok := <-cc.deliveries:
					if !ok {
						return
					}
					handle(d)
				case <-ctx.Done():
					return
				case <-c.done:
					return
				}
			}
		},
	}
	_ = r.run(nil)
}
