package broker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/dynworkers/dynworkers/host/internal/pluginproc"
	"github.com/dynworkers/dynworkers/sdk/sdktest"
)

// Tests of deferred publishes and delayed acks (bridge.go): hostBridge and
// bridgeConsumer on a fake bus whose confirmations the test resolves, on the
// embedded bus (RabbitMQ's case is in bridge_test.go).

// fakeConf is a confirmation the test resolves.
type fakeConf struct {
	done chan struct{}
	err  error
}

func newFakeConf() *fakeConf { return &fakeConf{done: make(chan struct{})} }

func (c *fakeConf) Done() <-chan struct{} { return c.done }
func (c *fakeConf) Err() error            { <-c.done; return c.err }

func (c *fakeConf) resolve(err error) {
	c.err = err
	close(c.done)
}

// failedConf is a confirmation that failed at once.
func failedConf(err error) *fakeConf {
	c := newFakeConf()
	c.resolve(err)
	return c
}

// fakeBrokerBus is a Bus whose one consumer the test drives; its
// publishes go through hostBridge.publishAsync, which the tests replace.
type fakeBrokerBus struct {
	cons *fakeBrokerConsumer
}

func (b *fakeBrokerBus) Publish(context.Context, string, []byte, map[string]string) error {
	return errors.New("not used")
}

func (b *fakeBrokerBus) PublishAsync(context.Context, string, []byte, map[string]string) (*Confirmation, error) {
	return nil, errors.New("not used")
}

func (b *fakeBrokerBus) Consume(context.Context, string, []string, int) (Consumer, error) {
	return b.cons, nil
}

func (b *fakeBrokerBus) Declare(context.Context, string, []string) error { return nil }

func (b *fakeBrokerBus) Close() error { return nil }

// fakeBrokerConsumer records the settlements on the bus, in order.
type fakeBrokerConsumer struct {
	ch chan Delivery
	// asked gets a token (if it has room) whenever Deliveries is called.
	asked chan struct{}

	mu      sync.Mutex
	settled []string // "1 ack", "2 requeue", "3 drop", "close"
	changed chan struct{}
}

func newFakeBrokerConsumer() *fakeBrokerConsumer {
	return &fakeBrokerConsumer{ch: make(chan Delivery), asked: make(chan struct{}, 1), changed: make(chan struct{}, 100)}
}

func (c *fakeBrokerConsumer) Deliveries() <-chan Delivery {
	select {
	case c.asked <- struct{}{}:
	default:
	}
	return c.ch
}

func (c *fakeBrokerConsumer) note(s string) {
	c.mu.Lock()
	c.settled = append(c.settled, s)
	c.mu.Unlock()
	c.changed <- struct{}{}
}

func (c *fakeBrokerConsumer) Ack(tag uint64) error { c.note(fmt.Sprintf("%d ack", tag)); return nil }
func (c *fakeBrokerConsumer) Nack(tag uint64, requeue bool) error {
	how := "drop"
	if requeue {
		how = "requeue"
	}
	c.note(fmt.Sprintf("%d %s", tag, how))
	return nil
}
func (c *fakeBrokerConsumer) Close() error { c.note("close"); return nil }
func (c *fakeBrokerConsumer) Err() error   { return nil }

func (c *fakeBrokerConsumer) list() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.settled)
}

// waitList waits until the consumer has recorded n settlements.
func (c *fakeBrokerConsumer) waitList(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		if l := c.list(); len(l) >= n {
			return l
		}
		select {
		case <-c.changed:
		case <-deadline:
			t.Fatalf("settled %v, want %d settlements", c.list(), n)
		}
	}
}

// quiet checks that nothing more is settled for a little while.
func (c *fakeBrokerConsumer) quiet(t *testing.T, n int) {
	t.Helper()
	time.Sleep(50 * time.Millisecond)
	if l := c.list(); len(l) != n {
		t.Fatalf("settled %v, want only %d settlements so far", l, n)
	}
}

// fakeHost is a hostBridge on a fake bus whose deferred publishes take their
// confirmations from confs, in order.
type fakeHost struct {
	*hostBridge
	cons  *fakeBrokerConsumer
	c     pluginproc.Consumer
	confs chan *fakeConf
}

func newFakeHost(t *testing.T) *fakeHost {
	t.Helper()
	cons := newFakeBrokerConsumer()
	h := &fakeHost{hostBridge: newHostBridge(&fakeBrokerBus{cons: cons}, hclog.NewNullLogger()), cons: cons, confs: make(chan *fakeConf, 100)}
	h.publishAsync = func(context.Context, string, []byte, map[string]string) (confirmation, error) {
		select {
		case c := <-h.confs:
			return c, nil
		default:
			return nil, errors.New("the test gave no confirmation")
		}
	}
	c, err := h.Consume(context.Background(), pluginproc.ConsumeSpec{Queue: "in", Bindings: []string{"in"}, Prefetch: 10})
	if err != nil {
		t.Fatal(err)
	}
	h.c = c
	t.Cleanup(func() { _ = c.Close() })
	return h
}

// deliver hands delivery tag to the bridgeConsumer and returns it as
// pluginproc sees it, taken with Receive as pluginproc does.
func (h *fakeHost) deliver(t *testing.T, tag uint64) pluginproc.Delivery {
	t.Helper()
	go func() { h.cons.ch <- Delivery{Tag: tag, Body: fmt.Appendf(nil, "m%d", tag)} }()
	timeout := make(chan struct{})
	timer := time.AfterFunc(10*time.Second, func() { close(timeout) })
	defer timer.Stop()
	d, ok := h.c.(pluginproc.Receiver).Receive(timeout)
	if !ok || d.Tag != tag {
		t.Fatalf("Receive = %+v, %v; want delivery %d", d, ok, tag)
	}
	return d
}

// publish makes a deferred publish whose confirmation is c.
func (h *fakeHost) publish(t *testing.T, c *fakeConf) {
	t.Helper()
	h.confs <- c
	if err := h.Publish(context.Background(), "out", []byte("x"), nil, true); err != nil {
		t.Fatal(err)
	}
}

// An ack waits for the confirmations of the deferred publishes made while
// its delivery was with the worker; acks are made in the order they came;
// a failed confirmation turns the ack of its delivery into a requeue, and
// only that delivery's (and those it was in flight with).
func TestDelayedAcksWaitForConfirmations(t *testing.T) {
	h := newFakeHost(t)
	c1, c2, c4 := newFakeConf(), newFakeConf(), newFakeConf()

	d1 := h.deliver(t, 1)
	h.publish(t, c1)
	if err := h.c.Ack(d1.Tag); err != nil {
		t.Fatal(err)
	}
	d2 := h.deliver(t, 2)
	h.publish(t, c2)
	if err := h.c.Ack(d2.Tag); err != nil {
		t.Fatal(err)
	}
	d3 := h.deliver(t, 3) // publishes nothing
	if err := h.c.Ack(d3.Tag); err != nil {
		t.Fatal(err)
	}
	h.cons.quiet(t, 0) // nothing confirmed yet: nothing acked
	c2.resolve(nil)
	h.cons.quiet(t, 0) // 2 is confirmed, but 1 comes first
	c1.resolve(ErrNacked)
	if got, want := h.cons.waitList(t, 3), []string{"1 requeue", "2 ack", "3 ack"}; !slices.Equal(got, want) {
		t.Fatalf("settled %v, want %v", got, want)
	}

	// A nack waits too, and keeps what the worker asked.
	d4 := h.deliver(t, 4)
	h.publish(t, c4)
	if err := h.c.Nack(d4.Tag, false, ""); err != nil {
		t.Fatal(err)
	}
	h.cons.quiet(t, 3)
	c4.resolve(nil)
	if got := h.cons.waitList(t, 4); got[3] != "4 drop" {
		t.Fatalf("settled %v, want 4 dropped last", got)
	}
	// Settled twice, or never delivered: refused at once.
	if err := h.c.Ack(d4.Tag); !errors.Is(err, ErrUnknownTag) {
		t.Errorf("second settlement: %v", err)
	}
}

// Deliveries handed over before a failed publish was made may have made
// it: they are requeued too (the tracker cannot tell whose output it
// was), never acked.
func TestDelayedAcksFailureRequeuesDeliveriesInFlight(t *testing.T) {
	h := newFakeHost(t)
	d1 := h.deliver(t, 1)
	d2 := h.deliver(t, 2) // handed over before 1's publish
	h.publish(t, failedConf(ErrDisconnected))
	for _, d := range []pluginproc.Delivery{d1, d2} {
		if err := h.c.Ack(d.Tag); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := h.cons.waitList(t, 2), []string{"1 requeue", "2 requeue"}; !slices.Equal(got, want) {
		t.Fatalf("settled %v, want %v", got, want)
	}
	// A later delivery with a good publish is acked.
	d3 := h.deliver(t, 3)
	h.publish(t, failedConf(nil))
	if err := h.c.Ack(d3.Tag); err != nil {
		t.Fatal(err)
	}
	if got := h.cons.waitList(t, 3); got[2] != "3 ack" {
		t.Fatalf("settled %v", got)
	}
}

// Close finishes the acks queued before it, once their confirmations come,
// and then closes the bus's consumer; if they do not come within
// closeAckTimeout it gives up, and the bus requeues the deliveries.
func TestDelayedAcksFinishedAtClose(t *testing.T) {
	h := newFakeHost(t)
	conf := newFakeConf()
	d1 := h.deliver(t, 1)
	h.publish(t, conf)
	if err := h.c.Ack(d1.Tag); err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	go func() { _ = h.c.Close(); close(closed) }()
	// Once Close has begun, a settlement is refused (before, tag 1 is
	// unknown: it was settled).
	sdktest.Eventually(t, 10*time.Second, func() bool { return errors.Is(h.c.Ack(1), ErrConsumerClosed) },
		"Ack while closing did not fail with ErrConsumerClosed")
	select {
	case <-closed:
		t.Fatal("Close returned before the queued ack was made")
	default:
	}
	conf.resolve(nil)
	<-closed
	if got, want := h.cons.list(), []string{"1 ack", "close"}; !slices.Equal(got, want) {
		t.Fatalf("settled %v, want %v", got, want)
	}

	old := closeAckTimeout
	closeAckTimeout = 100 * time.Millisecond
	defer func() { closeAckTimeout = old }()
	h2 := newFakeHost(t)
	d := h2.deliver(t, 7)
	h2.publish(t, newFakeConf()) // never confirmed
	if err := h2.c.Ack(d.Tag); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	_ = h2.c.Close()
	if el := time.Since(begin); el < 100*time.Millisecond || el > 5*time.Second {
		t.Errorf("Close took %v with a confirmation that never came", el)
	}
	if got, want := h2.cons.list(), []string{"close"}; !slices.Equal(got, want) {
		t.Fatalf("settled %v, want %v (the delivery is left to the bus to requeue)", got, want)
	}
}

// On the embedded bus, a deferred publish whose confirmation fails (the
// embedded bus never fails one: a test hook does) makes its input come
// again, redelivered, instead of being acked; a good one acks it.
func TestDeferredPublishFailureRequeuesEmbedded(t *testing.T) {
	bus := NewEmbeddedBus()
	defer bus.Close()
	ctx := context.Background()
	h := newHostBridge(bus, hclog.NewNullLogger())
	h.publishAsync = func(ctx context.Context, key string, body []byte, headers map[string]string) (confirmation, error) {
		c, err := bus.PublishAsync(ctx, key, body, headers)
		if err != nil {
			return nil, err
		}
		if string(body) == "bad" {
			return failedConf(ErrNacked), nil
		}
		return c, nil
	}
	sink, err := bus.Consume(ctx, "out", nil, 100)
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	c, err := h.Consume(ctx, pluginproc.ConsumeSpec{Queue: "in", Bindings: []string{"in"}, Prefetch: 5})
	if err != nil {
		t.Fatal(err)
	}
	if err := bus.Publish(ctx, "in", []byte("m1"), nil); err != nil {
		t.Fatal(err)
	}
	next := func() pluginproc.Delivery {
		t.Helper()
		select {
		case d := <-c.Deliveries():
			return d
		case <-time.After(10 * time.Second):
			t.Fatal("no delivery")
		}
		return pluginproc.Delivery{}
	}
	d := next()
	if d.Redelivered {
		t.Fatal("first delivery marked redelivered")
	}
	if err := h.Publish(ctx, "out", []byte("bad"), nil, true); err != nil {
		t.Fatal(err)
	}
	if err := c.Ack(d.Tag); err != nil {
		t.Fatal(err)
	}
	d = next()
	if !d.Redelivered || string(d.Body) != "m1" {
		t.Fatalf("after a failed confirmation got %+v, want m1 redelivered", d)
	}
	if err := h.Publish(ctx, "out", []byte("good"), nil, true); err != nil {
		t.Fatal(err)
	}
	if err := c.Ack(d.Tag); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	// Acked: nothing is left in the input queue.
	again, err := bus.Consume(ctx, "in", nil, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	select {
	case d := <-again.Deliveries():
		t.Fatalf("the input is still queued: %+v", d)
	case <-time.After(50 * time.Millisecond):
	}
}

// Close ends a Receive under way; so does its done channel.
func TestReceiveEndsWithCloseOrDone(t *testing.T) {
	h := newFakeHost(t)
	r := h.c.(pluginproc.Receiver)
	done := make(chan struct{})
	got := make(chan bool, 2)
	go func() { _, ok := r.Receive(done); got <- ok }()
	close(done)
	if <-got {
		t.Fatal("Receive returned a delivery after done was closed")
	}
	select {
	case <-h.cons.asked: // the first Receive's
	default:
	}
	go func() { _, ok := r.Receive(make(chan struct{})); got <- ok }()
	select {
	case <-h.cons.asked: // Receive is under way
	case <-time.After(10 * time.Second):
		t.Fatal("Receive did not ask the bus's consumer for its deliveries")
	}
	_ = h.c.Close()
	select {
	case ok := <-got:
		if ok {
			t.Fatal("Receive returned a delivery after Close")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Receive did not return after Close")
	}
}

// A deferred publish that cannot be sent at all (the bus refused it
// before sending) is recorded by the same tracker as a broker's nack: the
// deliveries the worker had are requeued, not acked; a later one is acked.
func TestDeferredPublishSendFailureRequeues(t *testing.T) {
	h := newFakeHost(t)
	d1 := h.deliver(t, 1)
	// No confirmation given: publishAsync fails before sending.
	if err := h.Publish(context.Background(), "out", []byte("x"), nil, true); err == nil {
		t.Fatal("the publish that could not be sent succeeded")
	}
	if err := h.c.Ack(d1.Tag); err != nil {
		t.Fatal(err)
	}
	d2 := h.deliver(t, 2)
	c2 := newFakeConf()
	h.publish(t, c2)
	if err := h.c.Ack(d2.Tag); err != nil {
		t.Fatal(err)
	}
	c2.resolve(nil)
	if got, want := h.cons.waitList(t, 2), []string{"1 requeue", "2 ack"}; !slices.Equal(got, want) {
		t.Fatalf("settled %v, want %v", got, want)
	}
}

// At most MaxDeferred deferred publishes are outstanding: the next one
// waits until the oldest is confirmed, and confirmed publishes are not
// kept, acked or not.
func TestDeferredPublishesBounded(t *testing.T) {
	h := newFakeHost(t)
	h.pubs.limit = 3
	d1 := h.deliver(t, 1)
	for range 5 {
		h.publish(t, failedConf(nil)) // confirmed at once
	}
	h.pubs.mu.Lock()
	kept := len(h.pubs.pending)
	h.pubs.mu.Unlock()
	if kept != 0 {
		t.Errorf("%d confirmed publishes kept", kept)
	}
	confs := []*fakeConf{newFakeConf(), newFakeConf(), newFakeConf()}
	for _, c := range confs {
		h.publish(t, c)
	}
	h.confs <- failedConf(nil)
	published := make(chan error, 1)
	go func() { published <- h.Publish(context.Background(), "out", []byte("x"), nil, true) }()
	select {
	case err := <-published:
		t.Fatalf("the publish beyond the bound returned at once (%v)", err)
	case <-time.After(50 * time.Millisecond):
	}
	confs[1].resolve(nil) // not the oldest: still 3 outstanding
	select {
	case err := <-published:
		t.Fatalf("the publish beyond the bound returned before the oldest was confirmed (%v)", err)
	case <-time.After(50 * time.Millisecond):
	}
	confs[0].resolve(nil)
	select {
	case err := <-published:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the publish beyond the bound still waits after the oldest was confirmed")
	}
	confs[2].resolve(nil)
	if err := h.c.Ack(d1.Tag); err != nil {
		t.Fatal(err)
	}
	if got := h.cons.waitList(t, 1); got[0] != "1 ack" {
		t.Fatalf("settled %v", got)
	}
}
