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
	failures := 0
	for {
		s, err := c.session(ctx, true)
		if err != nil {
			return
		}
		began := time.Now()
		err = c.consumeOn(ctx, s, queue, prefetch, handle)
		if ctx.Err() != nil || c.isClosed() {
			return
		}
		if errors.Is(err, errLost) {
			// Not a failure of this consumer: wait for the manager to notice
			// and reconnect (session waits), then resume at once.
			select {
			case <-s.lost:
			case <-ctx.Done():
				return
			case <-c.done:
				return
			}
			continue
		}
		if time.Since(began) >= stableAfter {
			failures = 0
		}
		failures++
		c.log.Warn("consuming failed; retrying", "queue", queue, "attempt", failures, "error", err)
		t := time.NewTimer(c.backoff.Delay(failures, nil))
		select {
		case <-t.C:
		case <-s.lost:
			t.Stop()
		case <-ctx.Done():
			t.Stop()
			return
		case <-c.done:
			t.Stop()
			return
		}
	}
}

// consumeOn consumes queue on a new channel of session s until ctx is
// done, the Conn is closed or the channel is closed.
func (c *Conn) consumeOn(ctx context.Context, s *session, queue string, prefetch int, handle func(amqp.Delivery)) error {
	ch, err := s.conn.Channel()
	if err != nil {
		if s.conn.IsClosed() {
			return errLost
		}
		return fmt.Errorf("opening a channel: %w", err)
	}
	// Closing the channel returns unacked deliveries to the queue.
	defer func() { _ = ch.Close() }()
	notify := ch.NotifyClose(make(chan *amqp.Error, 1))
	if err := ch.Qos(prefetch, 0, false); err != nil {
		return c.channelErr(s, fmt.Errorf("setting prefetch: %w", err))
	}
	deliveries, err := ch.Consume(queue, "", false, false, false, false, nil)
	if err != nil {
		return c.channelErr(s, fmt.Errorf("consuming %q: %w", queue, err))
	}
	c.log.Debug("consuming", "queue", queue, "prefetch", prefetch)
	for {
		select {
		case d, ok := <-deliveries:
			if !ok {
				if s.conn.IsClosed() {
					return errLost
				}
				select {
				case e := <-notify:
					if e != nil {
						return fmt.Errorf("consumer channel closed: %w", e)
					}
				default:
				}
				return fmt.Errorf("consumer of %q canceled by the broker", queue)
			}
			handle(d)
		case <-ctx.Done():
			return ctx.Err()
		case <-c.done:
			return ErrClosed
		}
	}
}

// channelErr turns an error on a consumer channel into errLost when it came
// from the loss of the connection.
func (c *Conn) channelErr(s *session, err error) error {
	if s.conn.IsClosed() {
		return errLost
	}
	return err
}
