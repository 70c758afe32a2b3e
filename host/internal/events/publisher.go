package events

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/dynworkers/dynworkers/host/internal/api"
)

// Defaults of PublisherOptions.
const (
	// DefaultQueueSize bounds the events waiting to be published.
	DefaultQueueSize = 1024
	// DefaultMaxAttempts is how many times one event is tried before it
	// is given up.
	DefaultMaxAttempts = 10
	// DefaultRetryMin and DefaultRetryMax bound the pause between two
	// attempts, which doubles from the first to the second.
	DefaultRetryMin = 100 * time.Millisecond
	DefaultRetryMax = 5 * time.Second
)

// PublishFunc publishes one event and returns once the broker has it (for
// AMQP: once the broker confirmed it). While the broker is away it should
// wait for it until ctx ends rather than fail, so that events are delayed,
// not lost. It is called from one goroutine at a time, in the order the
// events were emitted; an error is retried (see PublisherOptions).
type PublishFunc func(ctx context.Context, ev api.Event) error

// PublisherOptions configure a Publisher. Zero values mean the defaults.
type PublisherOptions struct {
	// Publish sends one event; required.
	Publish PublishFunc
	// QueueSize bounds the events waiting to be published
	// (DefaultQueueSize); beyond it new events are dropped.
	QueueSize int
	// MaxAttempts is how many times Publish is called for one event that
	// keeps failing before that event is given up, so that one event the
	// broker refuses cannot hold back the others (DefaultMaxAttempts).
	MaxAttempts int
	// RetryMin and RetryMax bound the pause between attempts
	// (DefaultRetryMin, DefaultRetryMax).
	RetryMin, RetryMax time.Duration
	// Logger receives the drops, retries and give-ups; nil means none.
	Logger hclog.Logger
}

// Stats counts what a Publisher did with the events it was given.
type Stats struct {
	// Published counts the events Publish accepted (confirmed).
	Published uint64
	// Dropped counts the events not queued: the queue was full, or the
	// publisher was closed.
	Dropped uint64
	// Failed counts the events given up after MaxAttempts errors.
	Failed uint64
	// Pending is how many events are queued or being published: after a
	// Close that met its deadline, those that were never published.
	Pending int
}

// Publisher sends events to the broker from a goroutine of its own, in the
// order they were given to it. Publish never blocks: the queue is bounded
// and what does not fit is dropped, counted and logged, because a
// supervisor must not wait for the broker. Close stops taking events and
// drains the queue, bounded by its context. A Publisher is safe for
// concurrent use.
type Publisher struct {
	o   PublisherOptions
	log hclog.Logger
	// ctx ends when Close gives up: the publish in flight is abandoned
	// and nothing more is sent.
	ctx    context.Context
	cancel context.CancelFunc
	wake   chan struct{} // a token when there may be work (or Close)
	done   chan struct{} // closed when the goroutine ends

	mu        sync.Mutex
	queue     []api.Event
	inFlight  bool
	closed    bool
	published uint64
	dropped   uint64
	failed    uint64
	burst     uint64 // events dropped since the queue last took one
}

// NewPublisher returns a Publisher and starts its goroutine; Close ends it.
// It panics if o.Publish is nil, a programming error.
func NewPublisher(o PublisherOptions) *Publisher {
	if o.Publish == nil {
		panic("events.NewPublisher: PublisherOptions.Publish is nil")
	}
	if o.QueueSize < 1 {
		o.QueueSize = DefaultQueueSize
	}
	if o.MaxAttempts < 1 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.RetryMin <= 0 {
		o.RetryMin = DefaultRetryMin
	}
	if o.RetryMax <= 0 {
		o.RetryMax = DefaultRetryMax
	}
	o.RetryMax = max(o.RetryMax, o.RetryMin)
	log := o.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	p := &Publisher{o: o, log: log, wake: make(chan struct{}, 1), done: make(chan struct{})}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	go p.run()
	return p
}

// Publish queues ev to be published and returns at once. It reports
// whether ev was queued: false when the queue is full or the Publisher is
// closed, in which case ev is dropped and counted (Stats.Dropped), and the
// first drop of a run is logged.
func (p *Publisher) Publish(ev api.Event) bool {
	p.mu.Lock()
	if p.closed || len(p.queue) >= p.o.QueueSize {
		p.dropped++
		p.burst++
		first, closed := p.burst == 1, p.closed
		p.mu.Unlock()
		if first {
			if closed {
				p.log.Warn("event publisher closed: event not published", "event", ev.Event, "worker", subject(ev))
			} else {
				p.log.Warn("event queue full: dropping events until it has room", "queue", p.o.QueueSize,
					"event", ev.Event, "worker", subject(ev))
			}
		}
		return false
	}
	p.queue = append(p.queue, ev)
	dropped := p.burst
	p.burst = 0
	p.mu.Unlock()
	if dropped > 0 {
		p.log.Warn("event queue has room again", "dropped", dropped)
	}
	p.signal()
	return true
}

// Close stops taking events (Publish drops them from now on) and publishes
// those queued, in order. It returns nil once all of them are published
// (or given up after MaxAttempts), or, when ctx ends first, abandons the
// publish in flight and returns an error that says how many events were
// not published (Stats.Pending has the number). Close may be called more
// than once.
func (p *Publisher) Close(ctx context.Context) error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.signal()
	select {
	case <-p.done:
	case <-ctx.Done():
		// Not waiting for the goroutine: a PublishFunc that ignores its
		// context must not hold the host's shutdown beyond the deadline.
		p.cancel()
	case <-p.ctx.Done():
		// An earlier Close gave up; the goroutine may still be stuck in
		// the publish it abandoned.
	}
	if n := p.Stats().Pending; n > 0 {
		cause := ctx.Err()
		if cause == nil {
			cause = p.ctx.Err() // an earlier Close gave up
		}
		return fmt.Errorf("closing the event publisher: %d event(s) not published: %w", n, cause)
	}
	return nil
}

// Stats returns the publisher's counts so far.
func (p *Publisher) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	pending := len(p.queue)
	if p.inFlight {
		pending++
	}
	return Stats{Published: p.published, Dropped: p.dropped, Failed: p.failed, Pending: pending}
}

func (p *Publisher) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// run publishes the queued events one at a time until the Publisher is
// closed and its queue empty, or Close gives up.
func (p *Publisher) run() {
	defer close(p.done)
	for {
		ev, ok := p.next()
		if !ok {
			return
		}
		outcome := p.send(ev)
		p.mu.Lock()
		p.inFlight = false
		switch outcome {
		case sent:
			p.published++
		case givenUp:
			p.failed++
		case abandoned:
			// Back at the head of the queue, so that Pending counts it.
			p.queue = append([]api.Event{ev}, p.queue...)
		}
		p.mu.Unlock()
		if outcome == abandoned {
			return
		}
	}
}

// next takes the oldest queued event, waiting for one; it returns false
// when the Publisher is closed and the queue is empty, or Close gave up.
func (p *Publisher) next() (api.Event, bool) {
	for {
		p.mu.Lock()
		switch {
		case p.ctx.Err() != nil:
			p.mu.Unlock()
			return api.Event{}, false
		case len(p.queue) > 0:
			ev := p.queue[0]
			p.queue[0] = api.Event{} // let the event go once sent
			p.queue = p.queue[1:]
			if len(p.queue) == 0 {
				p.queue = nil // start the next burst on a fresh array
			}
			p.inFlight = true
			p.mu.Unlock()
			return ev, true
		case p.closed:
			p.mu.Unlock()
			return api.Event{}, false
		}
		p.mu.Unlock()
		select {
		case <-p.wake:
		case <-p.ctx.Done():
		}
	}
}

type outcome int

const (
	sent outcome = iota
	givenUp
	abandoned
)

// send publishes one event, retrying errors with a doubling pause, until it
// is sent, has failed MaxAttempts times, or Close gave up.
func (p *Publisher) send(ev api.Event) outcome {
	pause := p.o.RetryMin
	for attempt := 1; ; attempt++ {
		err := p.o.Publish(p.ctx, ev)
		switch {
		case err == nil:
			return sent
		case p.ctx.Err() != nil:
			return abandoned
		case attempt >= p.o.MaxAttempts:
			p.log.Error("event not published: giving up", "event", ev.Event, "worker", subject(ev),
				"attempts", attempt, "error", err)
			return givenUp
		}
		p.log.Warn("publishing an event failed; retrying", "event", ev.Event, "worker", subject(ev),
			"attempt", attempt, "retry_in", pause.String(), "error", err)
		t := time.NewTimer(pause)
		select {
		case <-t.C:
		case <-p.ctx.Done():
			t.Stop()
			return abandoned
		}
		pause = min(2*pause, p.o.RetryMax)
	}
}

// subject is the worker or child supervisor an event is about, for logs.
func subject(ev api.Event) string {
	if ev.Child != "" {
		return ev.Child
	}
	return ev.Worker
}
