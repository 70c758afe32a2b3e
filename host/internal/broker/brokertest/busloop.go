package brokertest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dynworkers/dynworkers/bench"
	"github.com/dynworkers/dynworkers/host/internal/broker"
)

// This file holds the worker loops and the embedded-bus measure of the bus
// benchmarks that cannot run from outside the host (the broker package's
// and the daemon's bench_test.go): they drive the bus library directly,
// which only the host's own packages reach. The results are bench's types,
// so that the harness (bench/) puts them in the same report.

// BusLoopOptions configure StartBusLoop.
type BusLoopOptions struct {
	// In is the queue consumed (bound with its own name); Out the routing
	// key published to.
	In, Out  string
	Prefetch int
	// Concurrency is how many deliveries are handled at once, each by a
	// goroutine of its own: handler, Publish (which waits for the
	// broker's confirm), Ack. Above 1 the outputs' order may differ from
	// the inputs'. Default 1. Ignored with Pipeline.
	Concurrency int
	// Pipeline handles the deliveries in one goroutine, in order:
	// handler, PublishAsync, and hands the confirmation to a second
	// goroutine, which waits for the confirmations in order and acks each
	// input once its output is confirmed (up to Prefetch in flight). It is
	// the shape of bench.PlainAMQPWorker, on the bus.
	Pipeline bool
	// Handle makes the output of a delivery; nil: the delivery's body and
	// headers, unchanged (an echo).
	Handle func(broker.Delivery) ([]byte, map[string]string)
}

// BusLoop is a worker on a broker.Bus: consume → handler → publish → ack.
type BusLoop struct {
	c       broker.Consumer
	quit    chan struct{}
	wg      sync.WaitGroup
	handled atomic.Int64
	errMu   sync.Mutex
	err     error
}

// StartBusLoop starts the loop of o on bus; Stop ends it. This is what a
// worker does, without the plugin process and its gRPC hop.
func StartBusLoop(ctx context.Context, bus broker.Bus, o BusLoopOptions) (*BusLoop, error) {
	c, err := bus.Consume(ctx, o.In, nil, o.Prefetch)
	if err != nil {
		return nil, err
	}
	handle := o.Handle
	if handle == nil {
		handle = func(d broker.Delivery) ([]byte, map[string]string) { return d.Body, d.Headers }
	}
	l := &BusLoop{c: c, quit: make(chan struct{})}
	if o.Pipeline {
		l.pipeline(ctx, bus, o.Out, handle, max(o.Prefetch, 1))
		return l, nil
	}
	for range max(o.Concurrency, 1) {
		l.wg.Go(func() {
			for {
				var d broker.Delivery
				select {
				case m, ok := <-c.Deliveries():
					if !ok {
						return
					}
					d = m
				case <-l.quit:
					return
				}
				body, headers := handle(d)
				if err := bus.Publish(ctx, o.Out, body, headers); err != nil {
					l.fail(fmt.Errorf("publishing: %w", err))
					_ = c.Nack(d.Tag, true)
					continue
				}
				if err := c.Ack(d.Tag); err != nil {
					l.fail(fmt.Errorf("acking: %w", err))
					continue
				}
				l.handled.Add(1)
			}
		})
	}
	return l, nil
}

// pipeline starts the two goroutines of BusLoopOptions.Pipeline.
func (l *BusLoop) pipeline(ctx context.Context, bus broker.Bus, out string, handle func(broker.Delivery) ([]byte, map[string]string), inFlight int) {
	type pending struct {
		conf *broker.Confirmation
		tag  uint64
	}
	confs := make(chan pending, inFlight)
	l.wg.Go(func() {
		defer close(confs)
		for {
			var d broker.Delivery
			select {
			case m, ok := <-l.c.Deliveries():
				if !ok {
					return
				}
				d = m
			case <-l.quit:
				return
			}
			body, headers := handle(d)
			conf, err := bus.PublishAsync(ctx, out, body, headers)
			if err != nil {
				l.fail(fmt.Errorf("publishing: %w", err))
				_ = l.c.Nack(d.Tag, true)
				continue
			}
			confs <- pending{conf, d.Tag}
		}
	})
	l.wg.Go(func() {
		for p := range confs {
			if err := p.conf.Err(); err != nil {
				l.fail(fmt.Errorf("publishing: %w", err))
				_ = l.c.Nack(p.tag, true)
				continue
			}
			if err := l.c.Ack(p.tag); err != nil {
				l.fail(fmt.Errorf("acking: %w", err))
				continue
			}
			l.handled.Add(1)
		}
	})
}

func (l *BusLoop) fail(err error) {
	l.errMu.Lock()
	defer l.errMu.Unlock()
	if l.err == nil {
		l.err = err
	}
}

// Handled counts the deliveries published and acked so far.
func (l *BusLoop) Handled() int64 { return l.handled.Load() }

// Stop lets the deliveries being handled finish (published and acked),
// then closes the consumer, which returns the deliveries not taken yet to
// the queue, and returns the first error the handlers met.
func (l *BusLoop) Stop() error {
	close(l.quit)
	l.wg.Wait()
	err := l.c.Close()
	l.errMu.Lock()
	defer l.errMu.Unlock()
	return errors.Join(err, l.err)
}

// BusLoopWorker is a BusWorker running StartBusLoop on bus with o (its In
// and Out are set by the harness).
func BusLoopWorker(bus broker.Bus, o BusLoopOptions) bench.BusWorker {
	return func(ctx context.Context, in, out string) (func() error, error) {
		o.In, o.Out = in, out
		l, err := StartBusLoop(ctx, bus, o)
		if err != nil {
			return nil, err
		}
		return l.Stop, nil
	}
}

// MeasureEmbeddedThroughput measures w on an embedded bus: it declares in
// and out (bound with their own names), publishes n copies of body to in,
// starts w and a sink that consumes out (prefetch 1000, acking each), and
// times until the sink has received n messages.
func MeasureEmbeddedThroughput(ctx context.Context, bus *broker.EmbeddedBus, in, out string, n int, body []byte, name string, w bench.BusWorker) (bench.ThroughputRun, error) {
	return MeasureEmbeddedRate(ctx, bus, in, out, 0, n, body, name, w)
}

// MeasureEmbeddedRate is MeasureEmbeddedThroughput with a warm-up: it
// publishes warm+n messages and starts the clock once the sink has
// received warm of them.
func MeasureEmbeddedRate(ctx context.Context, bus *broker.EmbeddedBus, in, out string, warm, n int, body []byte, name string, w bench.BusWorker) (bench.ThroughputRun, error) {
	run := bench.ThroughputRun{Worker: name, Messages: n, Warmup: warm}
	c, err := bus.Consume(ctx, in, nil, 1)
	if err != nil {
		return run, err
	}
	if err := c.Close(); err != nil {
		return run, err
	}
	for range warm + n {
		if err := bus.Publish(ctx, in, body, nil); err != nil {
			return run, err
		}
	}
	sink, err := bus.Consume(ctx, out, nil, 1000)
	if err != nil {
		return run, err
	}
	defer sink.Close()
	t0 := time.Now()
	stop, err := w(ctx, in, out)
	if err != nil {
		return run, err
	}
	for got := 0; got < warm+n; got++ {
		if got == warm {
			t0 = time.Now()
		}
		select {
		case d := <-sink.Deliveries():
			if err := sink.Ack(d.Tag); err != nil {
				_ = stop()
				return run, err
			}
		case <-ctx.Done():
			_ = stop()
			return run, fmt.Errorf("%d of %d messages moved: %w", got, warm+n, ctx.Err())
		}
	}
	run.Elapsed = time.Since(t0)
	run.ElapsedUS = run.Elapsed.Microseconds()
	return run, stop()
}
