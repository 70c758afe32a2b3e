package broker

import (
	"context"
	"fmt"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dynworkers/dynworkers/host/internal/supervise"
)

// session is one connection to the broker, from its setup to its loss.
type session struct {
	conn   *amqp.Connection
	notify chan *amqp.Error // the connection's NotifyClose
	lost   chan struct{}    // closed by the manager once the session is retired

	mu      sync.Mutex
	pub     *confirmChannel // the confirm-mode channel for publishing; reopened when closed
	opening chan struct{}   // while one caller opens or declares on pub; closed when it is done
}

// confirmChannel is the session's confirm-mode channel, the one every
// publish of the host goes through (the control channel's replies,
// events, monitoring and the workers' bus), and why it was closed.
type confirmChannel struct {
	ch       *amqp.Channel
	closed   chan struct{} // closed once the channel is closed; err is then set
	err      *amqp.Error   // nil for a graceful close
	declared int           // how many of the Conn's publishing exchanges are declared on it
}

// publisher returns the session's confirm-mode channel with the Conn's
// publishing exchanges declared on it, opening a new one if there is none
// or the last one was closed by a channel error (such as a publish to an
// exchange that does not exist) while the connection stayed up. It is
// single-flight: one caller opens and declares, with no mutex held across
// the network, and concurrent callers wait for it until ctx ends.
func (c *Conn) publisher(ctx context.Context, s *session) (*confirmChannel, error) {
	for {
		exchanges := c.pubExchanges()
		s.mu.Lock()
		p := s.pub
		if p != nil && !p.ch.IsClosed() && p.declared == len(exchanges) {
			s.mu.Unlock()
			return p, nil
		}
		if wait := s.opening; wait != nil {
			s.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		opening := make(chan struct{})
		s.opening = opening
		declared := 0
		if p != nil && !p.ch.IsClosed() {
			declared = p.declared
		} else {
			p = nil
		}
		s.mu.Unlock()

		var err error
		if p == nil {
			p, err = openConfirm(s.conn)
		}
		if err == nil {
			for _, ex := range exchanges[declared:] {
				if err = p.ch.ExchangeDeclare(ex, amqp.ExchangeDirect, true, false, false, false, nil); err != nil {
					err = fmt.Errorf("declaring exchange %q: %w", ex, err)
					break
				}
			}
		}
		s.mu.Lock()
		s.opening = nil
		if err == nil {
			p.declared = len(exchanges)
			s.pub = p
		}
		s.mu.Unlock()
		close(opening)
		if err != nil {
			return nil, err
		}
		return p, nil
	}
}

// openConfirm opens a channel in confirm mode on conn.
func openConfirm(conn *amqp.Connection) (*confirmChannel, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("opening the publishing channel: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		_ = ch.Close()
		return nil, fmt.Errorf("putting the publishing channel in confirm mode: %w", err)
	}
	p := &confirmChannel{ch: ch, closed: make(chan struct{})}
	notify := ch.NotifyClose(make(chan *amqp.Error, 1))
	// The library closes notify when the channel closes, before it fails
	// the pending confirmations, so this goroutine ends with the channel.
	go func() {
		p.err = <-notify
		close(p.closed)
	}()
	return p, nil
}

// reconnectBackoff is the schedule of the broker's retries (reconnections,
// consumers resuming) in supervise's terms. Options promise a delay that
// doubles from lo up to hi and is drawn uniformly from [d/2, d], so that
// hosts that lost the broker together do not come back in lockstep and hi
// stays the longest wait. supervise.Backoff varies a delay by ±Jitter
// around its nominal value instead: centred on 3/4·d with a jitter of 1/3
// that is exactly [d/2, d]. Both bounds stay at least 1ns, because a zero
// one would mean supervise's default.
func reconnectBackoff(lo, hi time.Duration) supervise.Backoff {
	return supervise.Backoff{Initial: max(lo*3/4, 1), Max: max(hi*3/4, 1), Jitter: 1.0 / 3}
}
