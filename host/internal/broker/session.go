package broker

import (
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

	mu  sync.Mutex
	pub *pubChannel // the confirm-mode channel for publishing; reopened when closed
}

// pubChannel is a confirm-mode channel and why it was closed.
type pubChannel struct {
	ch     *amqp.Channel
	closed chan struct{} // closed once the channel is closed; err is then set
	err    *amqp.Error   // nil for a graceful close
}

// publisher returns the session's confirm-mode channel, opening a new one if
// the last one was closed by a channel error (such as a publish to an
// exchange that does not exist) while the connection stayed up.
func (s *session) publisher() (*pubChannel, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pub != nil && !s.pub.ch.IsClosed() {
		return s.pub, nil
	}
	ch, err := s.conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("opening the publishing channel: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		_ = ch.Close()
		return nil, fmt.Errorf("putting the publishing channel in confirm mode: %w", err)
	}
	p := &pubChannel{ch: ch, closed: make(chan struct{})}
	notify := ch.NotifyClose(make(chan *amqp.Error, 1))
	// The library closes notify when the channel closes, before it fails
	// the pending confirmations, so this goroutine ends with the channel.
	go func() {
		p.err = <-notify
		close(p.closed)
	}()
	s.pub = p
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
