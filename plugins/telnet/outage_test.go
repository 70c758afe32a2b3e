package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/sdk/sdktest"
	"github.com/dynworkers/dynworkers/sdk/vumi"
)

// shortRetries makes a publish attempt time out after d and retries
// quick, for the test's duration.
func shortRetries(t *testing.T, d time.Duration) {
	pt, rmin, rmax := publishTimeout, retryMin, retryMax
	publishTimeout, retryMin, retryMax = d, 10*time.Millisecond, 50*time.Millisecond
	t.Cleanup(func() { publishTimeout, retryMin, retryMax = pt, rmin, rmax })
}

// A line received while the bus is away (each publish waits for the
// broker until its attempt times out, as the host's AMQP bus does) is
// retried until it is published, never dropped; meanwhile the session
// reads no further line (one in flight, the client held back by TCP), and
// every line arrives, in order, once the bus is back.
func TestTelnetLineOutlastsAnOutage(t *testing.T) {
	shortRetries(t, 200*time.Millisecond)
	var (
		down     atomic.Bool
		mu       sync.Mutex
		attempts []string // the content of each inbound publish tried while down
	)
	w, addr := run(t, sdktest.OnPublish(func(ctx context.Context, p sdktest.Published) error {
		if !down.Load() {
			return nil
		}
		content := "(none)"
		if m, err := vumi.ParseUserMessage(p.Body); err == nil && m.Content.Valid {
			content = m.Content.String
		}
		mu.Lock()
		attempts = append(attempts, content)
		mu.Unlock()
		<-ctx.Done() // the broker does not come back within the attempt
		return fmt.Errorf("publish %s: waiting for the broker: %w", p.RoutingKey, ctx.Err())
	}))
	c := dial(t, addr)
	w.Env.WaitPublished("tel.inbound", 1) // the session's start

	down.Store(true)
	c.send("during the outage\r\n")
	const more = 200
	for i := range more {
		c.send(fmt.Sprintf("line-%d\r\n", i))
	}
	// Several attempts, each timed out: longer than one publishTimeout.
	sdktest.Eventually(t, 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(attempts) >= 4
	}, "the line was not retried")
	mu.Lock()
	for _, a := range attempts {
		if a != "during the outage" {
			t.Errorf("while the bus was away the session read further lines: attempts %q", attempts)
			break
		}
	}
	mu.Unlock()
	w.Env.WaitLog("publishing an inbound message failed; trying again")
	if got := len(w.Env.PublishedTo("tel.inbound")); got != 1 {
		t.Errorf("%d inbound messages published while the bus was away, want only the session's start", got)
	}

	down.Store(false)
	got := w.Env.WaitPublished("tel.inbound", 2+more)
	want := []string{"during the outage"}
	for i := range more {
		want = append(want, fmt.Sprintf("line-%d", i))
	}
	var contents []string
	for _, p := range got[1:] {
		if m := p.UserMessage(t); m.Content.Valid {
			contents = append(contents, m.Content.String)
		}
	}
	if strings.Join(contents, ",") != strings.Join(want, ",") {
		t.Errorf("published after the outage:\n%q\nwant\n%q", contents, want)
	}
	w.Env.WaitLog("published an inbound message after a retry")
	for _, l := range w.Env.Logs() {
		if strings.Contains(l.Message, "lost") {
			t.Errorf("log: %s %v", l.Message, l.Args)
		}
	}
}

// A line still being retried when the worker stops is given up at Stop's
// deadline, with an error log that says it is lost; Stop does not hang.
func TestTelnetStopGivesUpRetryingAtItsDeadline(t *testing.T) {
	shortRetries(t, 100*time.Millisecond)
	w, addr := run(t, sdktest.OnPublish(func(ctx context.Context, p sdktest.Published) error {
		<-ctx.Done()
		return ctx.Err()
	}))
	c := dial(t, addr)
	c.send("never published\r\n")
	w.Env.WaitLog("publishing an inbound message failed; trying again")
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := w.Impl.(*Transport).Stop(ctx); err == nil {
		t.Error("Stop = nil while a publication was still being retried, want its deadline's error")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Stop took %s", d)
	}
	w.Env.WaitLog("publishing an inbound message failed and the worker stopped; it is lost")
}
