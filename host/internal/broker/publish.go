package broker

import (
	"context"
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"
)

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

func (c *Conn) publish(ctx context.Context, exchange, key string, msg amqp.Publishing, wait bool) error {
	for {
		s, err := c.session(ctx, wait)
		if err != nil {
			return err
		}
		p, err := s.publisher()
		if err != nil {
			if !s.conn.IsClosed() {
				return err
			}
			if err := c.awaitLoss(ctx, s, wait); err != nil {
				return err
			}
			continue
		}
		dc, err := p.ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, false, false, msg)
		if err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return ctxErr
			}
			if !p.ch.IsClosed() {
				return fmt.Errorf("publishing: %w", err)
			}
			// The channel was closed before the message was sent, so it
			// is safe to send it again on the next channel or connection.
			if s.conn.IsClosed() {
				if err := c.awaitLoss(ctx, s, wait); err != nil {
					return err
				}
			}
			continue
		}
		select {
		case <-dc.Done():
		case <-ctx.Done():
			return ctx.Err()
		}
		if dc.Acked() {
			return nil
		}
		if !p.ch.IsClosed() {
			return ErrNacked
		}
		// The pending confirmation was failed by the channel's closing.
		<-p.closed
		if s.conn.IsClosed() {
			return ErrDisconnected
		}
		if p.err != nil {
			return fmt.Errorf("publishing to exchange %q: %w", exchange, p.err)
		}
		return ErrDisconnected
	}
}

// awaitLoss waits until the manager has retired the lost session s, so
// that the next call to session does not return s again. Without wait it
// returns ErrDisconnected at once.
func (c *Conn) awaitLoss(ctx context.Context, s *session, wait bool) error {
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
	}
}
