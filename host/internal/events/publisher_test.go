package events

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/dynworkers/dynworkers/host/internal/api"
)

// waitTimeout bounds every wait of these tests; it is never reached when
// the publisher works.
const waitTimeout = 30 * time.Second

func ev(worker string) api.Event { return api.Event{Event: "worker_stopped", Worker: worker} }

func names(prefix string, from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("%s%d", prefix, i))
	}
	return out
}

// recorder is a PublishFunc that records what it published, in order.
type recorder struct {
	mu  sync.Mutex
	got []string
}

func (r *recorder) publish(_ context.Context, e api.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, e.Worker)
	return nil
}

func (r *recorder) published() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// syncBuffer is a log output safe for concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func testLogger() (hclog.Logger, *syncBuffer) {
	out := &syncBuffer{}
	return hclog.New(&hclog.LoggerOptions{Output: out, Level: hclog.Debug}), out
}

func closeWithin(t *testing.T, p *Publisher) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// receive returns the next value of c, failing the test after waitTimeout.
func receive[T any](t *testing.T, c <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(waitTimeout):
		t.Fatalf("no %s within %s", what, waitTimeout)
	}
	var zero T
	return zero
}

// Events go out in the order they were given, every one of them.
func TestPublisherKeepsOrder(t *testing.T) {
	var r recorder
	p := NewPublisher(PublisherOptions{Publish: r.publish})
	want := names("e", 0, 500)
	for _, w := range want {
		if !p.Publish(ev(w)) {
			t.Fatalf("Publish(%s) refused with room in the queue", w)
		}
	}
	closeWithin(t, p)
	if got := r.published(); !slices.Equal(got, want) {
		t.Fatalf("published %v,\nwant %v", got, want)
	}
	if s := p.Stats(); s != (Stats{Published: 500}) {
		t.Fatalf("stats %+v", s)
	}
}

// While the broker holds a publish, Publish keeps returning at once: the
// queue fills, what does not fit is dropped, counted and logged once per
// run of drops; the events queued still go out in order.
func TestPublisherOverflowIsDroppedAndCounted(t *testing.T) {
	inFlight := make(chan string, 100)
	release := make(chan struct{})
	log, logs := testLogger()
	p := NewPublisher(PublisherOptions{QueueSize: 4, Logger: log, Publish: func(ctx context.Context, e api.Event) error {
		inFlight <- e.Worker
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}})
	p.Publish(ev("e0"))
	if got := receive(t, inFlight, "publish of e0"); got != "e0" {
		t.Fatalf("first publish of %s", got)
	}
	for _, w := range names("e", 1, 5) {
		if !p.Publish(ev(w)) {
			t.Fatalf("Publish(%s) refused with room in the queue", w)
		}
	}
	for _, w := range names("e", 5, 8) {
		if p.Publish(ev(w)) {
			t.Fatalf("Publish(%s) queued beyond the queue's size", w)
		}
	}
	if s := p.Stats(); s.Dropped != 3 || s.Pending != 5 || s.Published != 0 {
		t.Fatalf("stats with a full queue: %+v", s)
	}
	if n := strings.Count(logs.String(), "event queue full"); n != 1 {
		t.Fatalf("%d \"event queue full\" lines for one run of drops:\n%s", n, logs)
	}

	close(release)
	for _, w := range names("e", 1, 5) {
		if got := receive(t, inFlight, "publish of "+w); got != w {
			t.Fatalf("published %s, want %s", got, w)
		}
	}
	if !p.Publish(ev("e8")) {
		t.Fatal("Publish refused after the queue drained")
	}
	if got := receive(t, inFlight, "publish of e8"); got != "e8" {
		t.Fatalf("published %s, want e8", got)
	}
	closeWithin(t, p)
	if s := p.Stats(); s != (Stats{Published: 6, Dropped: 3}) {
		t.Fatalf("stats after Close: %+v", s)
	}
	if !strings.Contains(logs.String(), "event queue has room again: dropped=3") {
		t.Fatalf("the end of the run of drops is not logged with its count:\n%s", logs)
	}
}

// Events emitted while the broker is away wait for it; Close publishes all
// of them, in order, before it returns, and drops what comes after it.
func TestPublisherCloseDrainsTheQueue(t *testing.T) {
	var r recorder
	back := make(chan struct{})
	p := NewPublisher(PublisherOptions{Publish: func(ctx context.Context, e api.Event) error {
		select {
		case <-back: // the broker is back
		case <-ctx.Done():
			return ctx.Err()
		}
		return r.publish(ctx, e)
	}})
	want := names("e", 0, 20)
	for _, w := range want {
		p.Publish(ev(w))
	}
	closed := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		closed <- p.Close(ctx)
	}()
	// The broker is still away, so Close has not returned. Nothing could
	// show that a Close that did not wait would have returned by now: this
	// look catches only one that returns at once, and waits for nothing.
	// What proves the drain comes after: Close returns nil only once no
	// event is pending, and then every one was published, in order.
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) with %d events unpublished", err, p.Stats().Pending)
	default:
	}
	close(back)
	if err := receive(t, closed, "return of Close"); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := r.published(); !slices.Equal(got, want) {
		t.Fatalf("published %v,\nwant %v", got, want)
	}
	if p.Publish(ev("late")) {
		t.Fatal("Publish after Close queued the event")
	}
	if s := p.Stats(); s != (Stats{Published: 20, Dropped: 1}) {
		t.Fatalf("stats %+v", s)
	}
}

// Close returns by its context's deadline even when the broker never
// confirms, whether the publish function honours its context or ignores
// it, and says how many events were not published.
func TestPublisherCloseIsBoundedByItsDeadline(t *testing.T) {
	for name, publish := range map[string]func(block chan struct{}) PublishFunc{
		"honours ctx": func(chan struct{}) PublishFunc {
			return func(ctx context.Context, _ api.Event) error { <-ctx.Done(); return ctx.Err() }
		},
		"ignores ctx": func(block chan struct{}) PublishFunc {
			return func(context.Context, api.Event) error { <-block; return nil }
		},
	} {
		t.Run(name, func(t *testing.T) {
			block := make(chan struct{})
			defer close(block)
			p := NewPublisher(PublisherOptions{Publish: publish(block)})
			for _, w := range names("e", 0, 3) {
				p.Publish(ev(w))
			}
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			closed := make(chan error, 1)
			go func() { closed <- p.Close(ctx) }()
			err := receive(t, closed, "return of Close after its deadline")
			if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "3 event(s) not published") {
				t.Fatalf("Close = %v, want 3 events not published and the deadline", err)
			}
			if s := p.Stats(); s.Pending != 3 || s.Published != 0 {
				t.Fatalf("stats %+v", s)
			}
			// A second Close does not wait for the abandoned publish.
			go func() { closed <- p.Close(context.Background()) }()
			if err := receive(t, closed, "return of a second Close"); err == nil {
				t.Fatal("a second Close reports everything published")
			}
		})
	}
}

// A failed publish is tried again, after a pause, before the next event; an
// event that keeps failing is given up after MaxAttempts, counted and
// logged, and the next one goes out.
func TestPublisherRetriesThenGivesUp(t *testing.T) {
	var mu sync.Mutex
	var calls []string
	log, logs := testLogger()
	p := NewPublisher(PublisherOptions{MaxAttempts: 3, RetryMin: time.Millisecond, RetryMax: 2 * time.Millisecond, Logger: log,
		Publish: func(_ context.Context, e api.Event) error {
			mu.Lock()
			defer mu.Unlock()
			calls = append(calls, e.Worker)
			n := 0
			for _, c := range calls {
				if c == e.Worker {
					n++
				}
			}
			switch {
			case e.Worker == "flaky" && n < 3:
				return errors.New("connection lost before the confirmation")
			case e.Worker == "refused":
				return errors.New("nacked by the broker")
			}
			return nil
		}})
	for _, w := range []string{"flaky", "refused", "after"} {
		p.Publish(ev(w))
	}
	closeWithin(t, p)
	mu.Lock()
	defer mu.Unlock()
	want := []string{"flaky", "flaky", "flaky", "refused", "refused", "refused", "after"}
	if !slices.Equal(calls, want) {
		t.Fatalf("publish calls %v, want %v", calls, want)
	}
	if s := p.Stats(); s != (Stats{Published: 2, Failed: 1}) {
		t.Fatalf("stats %+v", s)
	}
	if !strings.Contains(logs.String(), "event not published: giving up: event=worker_stopped worker=refused attempts=3") {
		t.Fatalf("the give-up is not logged:\n%s", logs)
	}
}
