package broker_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dynworkers/dynworkers/host/internal/amqpurl"
	"github.com/dynworkers/dynworkers/host/internal/broker"
	"github.com/dynworkers/dynworkers/host/internal/broker/brokertest"
)

const wait = 20 * time.Second

func declareQueue(name string) func(*amqp.Channel) error {
	return func(ch *amqp.Channel) error {
		_, err := ch.QueueDeclare(name, true, false, false, false, nil)
		return err
	}
}

func TestPublishIsConfirmed(t *testing.T) {
	checkNoLeaks(t)
	admin := brokertest.NewAdmin(t)
	queue := brokertest.ID(t)
	admin.DeleteAtCleanup([]string{queue}, nil)
	c := dial(t, broker.Options{Setup: declareQueue(queue)})
	ctx := timeout(t, wait)

	if err := c.Publish(ctx, "", queue, amqp.Publishing{Body: []byte("one")}); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	// A confirmed message is in the queue.
	if q, err := admin.InspectQueue(queue); err != nil || q.Messages != 1 {
		t.Fatalf("queue after one publish: %+v, %v", q, err)
	}

	// The broker closes the channel of a publish to a missing exchange; the
	// error says why and the next publish gets a new channel.
	err := c.Publish(ctx, queue+".missing", "k", amqp.Publishing{Body: []byte("lost")})
	var aerr *amqp.Error
	if !errors.As(err, &aerr) || aerr.Code != amqp.NotFound {
		t.Fatalf("publish to a missing exchange: %v, want a NOT_FOUND *amqp.Error", err)
	}

	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := range 50 {
		wg.Go(func() {
			errs <- c.Publish(ctx, "", queue, amqp.Publishing{Body: fmt.Appendf(nil, "m%d", i)})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent Publish: %v", err)
		}
	}
	if q, err := admin.InspectQueue(queue); err != nil || q.Messages != 51 {
		t.Fatalf("queue after 51 publishes: %+v, %v", q, err)
	}
}

// TryPublishAll sends every message, in order, and returns once all are
// confirmed; a publish the broker refuses (a missing exchange) is an
// error that says why, and the next batch gets a new channel.
func TestTryPublishAllIsConfirmedInOrder(t *testing.T) {
	checkNoLeaks(t)
	admin := brokertest.NewAdmin(t)
	queue := brokertest.ID(t)
	admin.DeleteAtCleanup([]string{queue}, nil)
	c := dial(t, broker.Options{Setup: declareQueue(queue)})
	ctx := timeout(t, wait)

	msgs := make([]amqp.Publishing, 300)
	for i := range msgs {
		msgs[i] = amqp.Publishing{Body: fmt.Appendf(nil, "m%d", i)}
	}
	if err := c.TryPublishAll(ctx, "", queue, msgs); err != nil {
		t.Fatalf("TryPublishAll: %v", err)
	}
	// Confirmed: all in the queue when it returns, in order.
	if q, err := admin.InspectQueue(queue); err != nil || q.Messages != len(msgs) {
		t.Fatalf("queue after TryPublishAll of %d: %+v, %v", len(msgs), q, err)
	}
	got := consumer(t, c, queue, func(amqp.Delivery) bool { return true })
	for i := range msgs {
		if d := brokertest.Receive(t, got, wait); string(d.Body) != fmt.Sprintf("m%d", i) {
			t.Fatalf("message %d is %q, want m%d", i, d.Body, i)
		}
	}

	err := c.TryPublishAll(ctx, queue+".missing", "k", msgs[:5])
	var aerr *amqp.Error
	if !errors.As(err, &aerr) || aerr.Code != amqp.NotFound {
		t.Fatalf("TryPublishAll to a missing exchange: %v, want a NOT_FOUND *amqp.Error", err)
	}
	if err := c.TryPublishAll(ctx, "", queue, msgs[:2]); err != nil {
		t.Fatalf("TryPublishAll after a refused batch: %v", err)
	}
}

func TestConnectionNameIsVisible(t *testing.T) {
	checkNoLeaks(t)
	name := "dynworkers " + brokertest.ID(t) + "/host-1"
	dial(t, broker.Options{ConnectionName: name})
	if names := brokertest.ConnectionNames(t); !slices.Contains(names, name) {
		t.Fatalf("connection %q not among %q", name, names)
	}
}

// consumer runs Consume in a goroutine, sends every delivery to got, and
// waits for Consume to return at cleanup.
func consumer(t *testing.T, c *broker.Conn, queue string, ack func(amqp.Delivery) bool) <-chan amqp.Delivery {
	t.Helper()
	got := make(chan amqp.Delivery, 100)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Consume(ctx, queue, 4, func(d amqp.Delivery) {
			if ack == nil || ack(d) {
				if err := d.Ack(false); err != nil {
					t.Errorf("Ack: %v", err)
				}
			}
			got <- d
		})
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return got
}

func TestConsumeResumesAfterTheConnectionIsClosed(t *testing.T) {
	checkNoLeaks(t)
	admin := brokertest.NewAdmin(t)
	queue := brokertest.ID(t)
	name := "dynworkers " + queue
	admin.DeleteAtCleanup([]string{queue}, nil)
	setups := make(chan struct{}, 10)
	c := dial(t, broker.Options{ConnectionName: name, Setup: func(ch *amqp.Channel) error {
		setups <- struct{}{}
		return declareQueue(queue)(ch)
	}})
	<-setups
	got := consumer(t, c, queue, nil)

	admin.Publish("", queue, amqp.Publishing{Body: []byte("before")})
	if d := brokertest.Receive(t, got, wait); string(d.Body) != "before" {
		t.Fatalf("got %q", d.Body)
	}

	brokertest.CloseConnections(t, name)
	select {
	case <-setups: // reconnected and set up again
	case <-time.After(wait):
		t.Fatal("no reconnection")
	}
	admin.Publish("", queue, amqp.Publishing{Body: []byte("after")})
	if d := brokertest.Receive(t, got, wait); string(d.Body) != "after" {
		t.Fatalf("got %q", d.Body)
	}
	if err := c.Publish(timeout(t, wait), "", queue, amqp.Publishing{Body: []byte("own")}); err != nil {
		t.Fatalf("Publish after reconnection: %v", err)
	}
	if d := brokertest.Receive(t, got, wait); string(d.Body) != "own" {
		t.Fatalf("got %q", d.Body)
	}
}

func TestUnackedDeliveryIsRedeliveredAfterReconnection(t *testing.T) {
	checkNoLeaks(t)
	admin := brokertest.NewAdmin(t)
	queue := brokertest.ID(t)
	name := "dynworkers " + queue
	admin.DeleteAtCleanup([]string{queue}, nil)
	c := dial(t, broker.Options{ConnectionName: name, Setup: declareQueue(queue)})
	// Ack only redeliveries: the first delivery stays unacked.
	got := consumer(t, c, queue, func(d amqp.Delivery) bool { return d.Redelivered })

	admin.Publish("", queue, amqp.Publishing{Body: []byte("m")})
	if d := brokertest.Receive(t, got, wait); d.Redelivered {
		t.Fatal("first delivery marked redelivered")
	}
	brokertest.CloseConnections(t, name)
	d := brokertest.Receive(t, got, wait)
	if string(d.Body) != "m" || !d.Redelivered {
		t.Fatalf("after reconnection got %q redelivered=%v, want m redelivered", d.Body, d.Redelivered)
	}
}

func TestPublishWaitsForReconnection(t *testing.T) {
	checkNoLeaks(t)
	admin := brokertest.NewAdmin(t)
	queue := brokertest.ID(t)
	name := "dynworkers " + queue
	admin.DeleteAtCleanup([]string{queue}, nil)
	// The second Setup blocks until gate is closed: the Conn stays
	// disconnected exactly as long as the test wants.
	var setupsMu sync.Mutex
	setups := 0
	entered, gate := make(chan struct{}), make(chan struct{})
	c := dial(t, broker.Options{ConnectionName: name, Setup: func(ch *amqp.Channel) error {
		setupsMu.Lock()
		setups++
		n := setups
		setupsMu.Unlock()
		if n == 2 {
			close(entered)
			<-gate
		}
		return declareQueue(queue)(ch)
	}})

	brokertest.CloseConnections(t, name)
	<-entered
	if c.Connected() {
		t.Fatal("Connected while the reconnection is being set up")
	}
	if err := c.TryPublish(timeout(t, wait), "", queue, amqp.Publishing{Body: []byte("x")}); !errors.Is(err, broker.ErrDisconnected) {
		t.Fatalf("TryPublish while disconnected: %v, want ErrDisconnected", err)
	}
	if err := c.TryPublishAll(timeout(t, wait), "", queue, []amqp.Publishing{{Body: []byte("x")}, {Body: []byte("y")}}); !errors.Is(err, broker.ErrDisconnected) {
		t.Fatalf("TryPublishAll while disconnected: %v, want ErrDisconnected", err)
	}
	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := c.Publish(short, "", queue, amqp.Publishing{Body: []byte("x")}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Publish while disconnected with a short ctx: %v, want DeadlineExceeded", err)
	}

	published := make(chan error, 1)
	go func() { published <- c.Publish(timeout(t, wait), "", queue, amqp.Publishing{Body: []byte("waited")}) }()
	close(gate)
	if err := <-published; err != nil {
		t.Fatalf("Publish across the reconnection: %v", err)
	}
	if q, err := admin.InspectQueue(queue); err != nil || q.Messages != 1 {
		t.Fatalf("queue: %+v, %v", q, err)
	}
}

func TestSetupFailureIsRetried(t *testing.T) {
	checkNoLeaks(t)
	calls := 0
	c := dial(t, broker.Options{MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, Setup: func(*amqp.Channel) error {
		calls++ // only the manager goroutine calls Setup
		if calls < 3 {
			return errors.New("not yet")
		}
		return nil
	}})
	if !c.Connected() {
		t.Fatal("not connected after WaitConnected")
	}
	if calls != 3 {
		t.Fatalf("Setup called %d times, want 3", calls)
	}
}

func TestConsumeRetriesAMissingQueue(t *testing.T) {
	checkNoLeaks(t)
	admin := brokertest.NewAdmin(t)
	queue := brokertest.ID(t)
	admin.DeleteAtCleanup([]string{queue}, nil)
	c := dial(t, broker.Options{MinBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond})
	got := consumer(t, c, queue, nil)
	if err := admin.Do(declareQueue(queue)); err != nil {
		t.Fatal(err)
	}
	admin.Publish("", queue, amqp.Publishing{Body: []byte("late")})
	if d := brokertest.Receive(t, got, wait); string(d.Body) != "late" {
		t.Fatalf("got %q", d.Body)
	}
}

func TestWithoutBroker(t *testing.T) {
	checkNoLeaks(t)
	c, err := broker.Dial(context.Background(), broker.Options{
		URL:        "amqp://guest:secret@127.0.0.1:1/",
		Logger:     testLogger(t),
		MinBackoff: time.Millisecond,
		MaxBackoff: 10 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	short := func() context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		t.Cleanup(cancel)
		return ctx
	}
	if err := c.WaitConnected(short()); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitConnected: %v", err)
	}
	if c.Connected() {
		t.Fatal("Connected without a broker")
	}
	if err := c.Publish(short(), "", "q", amqp.Publishing{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Publish: %v", err)
	}
	if err := c.TryPublish(short(), "", "q", amqp.Publishing{}); !errors.Is(err, broker.ErrDisconnected) {
		t.Fatalf("TryPublish: %v", err)
	}
	consumed := make(chan struct{})
	go func() {
		defer close(consumed)
		c.Consume(context.Background(), "q", 1, func(amqp.Delivery) { t.Error("delivery without a broker") })
	}()

	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	<-consumed // Close ends Consume
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := c.Publish(context.Background(), "", "q", amqp.Publishing{}); !errors.Is(err, broker.ErrClosed) {
		t.Fatalf("Publish after Close: %v", err)
	}
	if err := c.WaitConnected(context.Background()); !errors.Is(err, broker.ErrClosed) {
		t.Fatalf("WaitConnected after Close: %v", err)
	}
	select {
	case <-c.Done():
	default:
		t.Fatal("Done not closed after Close")
	}
}

func TestDialRejectsABadURLWithoutShowingThePassword(t *testing.T) {
	for _, tc := range []struct{ url, secret string }{
		{"amqp://user:s3cret@host:port/", "s3cret"},
		{"amqp://user:s3cret%zz@host/", "s3cret"},
		{"http://user:s3cret@host/", "s3cret"},
		// An unescaped '/' ends the host early: the password's head is
		// taken for a port too large to parse, which the parser quotes.
		{"amqp://user:98765432109876543210/s3cret@host/", "98765432109876543210"},
	} {
		_, err := broker.Dial(context.Background(), broker.Options{URL: tc.url})
		if err == nil {
			t.Errorf("Dial accepted %q", tc.url)
			continue
		}
		if strings.Contains(err.Error(), tc.secret) {
			t.Errorf("Dial(%q): error shows the password: %v", tc.url, err)
		}
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"amqp://user:s3cret@host:5672/vh": "amqp://user:xxxxx@host:5672/vh",
		"amqp://user:s3cret@host:port/":   amqpurl.Invalid,
		"amqp://host/":                    "amqp://host/",
	} {
		if got := broker.RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}
