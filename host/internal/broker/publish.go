package broker

import (
	"context"
	"fmt"
	"slices"

	amqp "github.com/rabbitmq/amqp091-go"
)

// The one publishing pipeline of the host: every publish (the control
// channel's replies and events, Vumi metrics and heartbeats, the workers'
// bus) goes through publishAsync, on the session's confirm-mode channel.

// Publish publishes msg to exchange with routing key key on a confirm-mode
// channel and returns once the broker confirmed it. It returns ErrNacked if
// the broker refused it, the channel error if the broker closed the channel
// (for example, NOT_FOUND for an exchange that does not exist),
// ErrDisconnected if the connection was lost before the confirmation
// arrived (the message may or may not have been routed), ErrClosed after
// Close, or ctx's error. While disconnected, Publish waits for the next
// connection until ctx ends. Safe for concurrent use.
func (c *Conn) Publish(ctx context.Context, exchange, key string, msg amqp.Publishing) error {
	return c.publish(ctx, exchange, key, msg, true)
}

// TryPublish is Publish without waiting for a connection: while
// disconnected it returns ErrDisconnected at once. Replies to deliveries use
// it, since a delivery cannot be acked on any other connection than its own.
func (c *Conn) TryPublish(ctx context.Context, exchange, key string, msg amqp.Publishing) error {
	return c.publish(ctx, exchange, key, msg, false)
}

// TryPublishAll is TryPublish for several messages to one exchange and
// key, in order: all are sent before any confirmation is awaited, so that
// the broker can confirm many with one ack and the caller wakes once (the
// host's heartbeats, one per worker). It returns the first error; the
// messages after one that could not be sent are not sent.
func (c *Conn) TryPublishAll(ctx context.Context, exchange, key string, msgs []amqp.Publishing) error {
	confs := make([]*Confirmation, 0, len(msgs))
	var err error
	for _, msg := range msgs {
		conf, e := c.publishAsync(ctx, exchange, key, msg, false, nil)
		if e != nil {
			err = e
			break
		}
		confs = append(confs, conf)
	}
	for _, conf := range confs {
		if e := conf.Wait(ctx); e != nil && err == nil {
			err = e
		}
	}
	return err
}

func (c *Conn) publish(ctx context.Context, exchange, key string, msg amqp.Publishing, wait bool) error {
	conf, err := c.publishAsync(ctx, exchange, key, msg, wait, nil)
	if err != nil {
		return err
	}
	return conf.Wait(ctx)
}

// declareForPublishing has exchange (direct, durable) declared on the
// publishing channel before the next publish, and on every new one.
func (c *Conn) declareForPublishing(exchange string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.pubExchanges()
	if !slices.Contains(old, exchange) {
		ex := append(slices.Clip(old), exchange)
		c.exchanges.Store(&ex)
	}
}

// pubExchanges returns the exchanges to declare on the publishing channel
// (without a lock: it is read at every publish).
func (c *Conn) pubExchanges() []string {
	if p := c.exchanges.Load(); p != nil {
		return *p
	}
	return nil
}

// publishAsync sends msg on the session's confirm-mode channel and returns
// once it is written, with its Confirmation. While disconnected it waits
// for the next connection if wait is set (until ctx ends or stop is
// closed), else it returns ErrDisconnected. A message whose channel was
// closed before it was sent is sent again on the next channel or
// connection. stop, if not nil, is a user's close (the bus's): it fails
// the waits with ErrClosed.
func (c *Conn) publishAsync(ctx context.Context, exchange, key string, msg amqp.Publishing, wait bool, stop <-chan struct{}) (*Confirmation, error) {
	closed := func() bool { return c.isClosed() || isClosedChan(stop) }
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if closed() {
			return nil, ErrClosed
		}
		s, err := c.sessionUntil(ctx, wait, stop)
		if err != nil {
			return nil, err
		}
		p, err := c.publisher(ctx, s)
		if err != nil {
			if !s.conn.IsClosed() {
				return nil, err
			}
			if err := c.awaitLoss(ctx, s, wait, stop); err != nil {
				return nil, err
			}
			continue
		}
		dc, err := p.ch.PublishWithDeferredConfirm(exchange, key, false, false, msg)
		if err != nil {
			if !p.ch.IsClosed() {
				return nil, fmt.Errorf("publishing to exchange %q with key %q: %w", exchange, key, err)
			}
			// Closed before the message was sent: it is safe to send it
			// again on the next channel or connection.
			if s.conn.IsClosed() {
				if err := c.awaitLoss(ctx, s, wait, stop); err != nil {
					return nil, err
				}
			}
			continue
		}
		// A Wait ends with ErrClosed when the user closes (the Conn's
		// Close fails the confirmation itself).
		done := stop
		if done == nil {
			done = c.done
		}
		return &Confirmation{done: dc.Done(), closed: done, resolve: func() error {
			return c.outcome(dc, p, s, exchange, key, closed)
		}}, nil
	}
}

// outcome is the outcome of a publication whose confirmation dc is done.
func (c *Conn) outcome(dc *amqp.DeferredConfirmation, p *confirmChannel, s *session, exchange, key string, closed func() bool) error {
	if dc.Acked() {
		return nil
	}
	if !p.ch.IsClosed() {
		return ErrNacked
	}
	// The pending confirmation was failed by the channel's closing.
	<-p.closed
	switch {
	case closed():
		return ErrClosed
	case s.conn.IsClosed():
		return ErrDisconnected
	case p.err != nil:
		return fmt.Errorf("publishing to exchange %q with key %q: %w", exchange, key, p.err)
	}
	return ErrDisconnected
}

// awaitLoss waits until the manager has retired the lost session s, so
// that the next call to session does not return s again. Without wait it
// returns ErrDisconnected at once.
func (c *Conn) awaitLoss(ctx context.Context, s *session, wait bool, stop <-chan struct{}) error {
	if !wait {
		return ErrDisconnected
	}
	select {
	case <-s.lost:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.done:
		return ErrClosed
	case <-stop:
		return ErrClosed
	}
}

func isClosedChan(ch <-chan struct{}) bool {
	if ch == nil {
		return false
	}
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
