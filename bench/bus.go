package bench

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// This file is the harness of the bus benchmarks on RabbitMQ, shared with
// the benchmarks that live beside what they measure (the host's bus
// library, in host/internal/broker/brokertest): a worker under test is a
// BusWorker; the Measure functions preload its input queue, start it, and
// time how long it takes to move every message to its output queue.

// errNacked is a publish the broker refused (a negative confirm).
var errNacked = errors.New("the broker nacked the publish")

// BusWorker starts a worker under test: it consumes queue in and publishes
// every message it takes with the routing key out (the queue out is bound
// with it on the bus's exchange), and acks each input once its output is
// published. It returns a function that stops the worker and reports what
// went wrong while it ran, if anything.
type BusWorker func(ctx context.Context, in, out string) (stop func() error, err error)

// ThroughputRun is one measured run: Messages moved from the input queue
// to the output queue in Elapsed.
type ThroughputRun struct {
	Worker string `json:"worker"`
	// Mode is ModePersistent, ModeTransient or ModeEmbedded.
	Mode string `json:"mode,omitempty"`
	// Prefetch is the worker's prefetch, where runs of one worker differ
	// in it.
	Prefetch int `json:"prefetch,omitempty"`
	Messages int `json:"messages"`
	// Warmup is how many messages moved before the clock started (they
	// are not in Messages): the worker's start and first messages.
	Warmup    int           `json:"warmup,omitempty"`
	Elapsed   time.Duration `json:"-"`
	ElapsedUS int64         `json:"elapsed_us"`
	// CPU is the CPU time the run took per message, where measured.
	CPU *RunCPU `json:"cpu_per_message,omitempty"`
}

// PerSecond is the run's throughput.
func (r ThroughputRun) PerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Messages) / r.Elapsed.Seconds()
}

// pollInterval is how often MeasureAMQPThroughput asks the broker how many
// messages the output queue holds: the end of a run is known within it.
const pollInterval = 5 * time.Millisecond

// BenchBody returns a message body of size bytes: a Vumi user message in
// JSON, its content padded, as the messages the bus carries look. It is a
// valid one (sdk/vumi parses it), so the echo worker answers it.
func BenchBody(size int) []byte {
	const head = `{"message_version": "20110921", "message_type": "user_message", "message_id": "b6a5d2f8c1e44f0b9d3e7a1c2b4f6e8d", ` +
		`"timestamp": "2024-01-01 12:00:00.000000", "transport_name": "bench_transport", "transport_type": "sms", ` +
		`"from_addr": "+27831234567", "to_addr": "12345", "in_reply_to": null, "session_event": null, "helper_metadata": {}, "transport_metadata": {}, "content": "`
	const tail = `"}`
	pad := max(size-len(head)-len(tail), 0)
	return []byte(head + strings.Repeat("x", pad) + tail)
}

// MeasureAMQPThroughput measures w on the broker at url: it declares the
// durable queues in and out, bound on exchange (direct, durable) with their
// own names, and empties them; publishes n persistent copies of body to in
// (confirmed); starts w and times until out holds n messages (asking the
// broker every pollInterval); stops w; checks that in is empty (every input
// acked) and out holds exactly n; and deletes both queues. The harness
// uses a connection of its own.
func MeasureAMQPThroughput(ctx context.Context, url, exchange, in, out string, n int, body []byte, name string, w BusWorker) (ThroughputRun, error) {
	return MeasureAMQPRate(ctx, url, exchange, in, out, 0, n, body, name, w)
}

// MeasureAMQPRate is MeasureAMQPThroughput with a warm-up: it preloads
// warm+n messages and starts the clock only once the output queue holds
// warm of them, so that the worker's start and its first messages are not
// measured.
func MeasureAMQPRate(ctx context.Context, url, exchange, in, out string, warm, n int, body []byte, name string, w BusWorker) (ThroughputRun, error) {
	run := ThroughputRun{Worker: name, Messages: n, Warmup: warm}
	total := warm + n
	conn, err := amqp.DialConfig(url, amqp.Config{Properties: amqp.Table{"connection_name": "dynworkers bench harness"}})
	if err != nil {
		return run, err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return run, err
	}
	if err := ch.ExchangeDeclare(exchange, amqp.ExchangeDirect, true, false, false, false, nil); err != nil {
		return run, err
	}
	for _, q := range []string{in, out} {
		if _, err := ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
			return run, err
		}
		if err := ch.QueueBind(q, q, exchange, false, nil); err != nil {
			return run, err
		}
		if _, err := ch.QueuePurge(q, false); err != nil {
			return run, err
		}
	}
	defer func() {
		if ch, err := conn.Channel(); err == nil {
			_, _ = ch.QueueDelete(in, false, false, false)
			_, _ = ch.QueueDelete(out, false, false, false)
			_ = ch.Close()
		}
	}()
	if err := preload(ctx, conn, exchange, in, total, body); err != nil {
		return run, fmt.Errorf("preloading %d messages: %w", total, err)
	}

	t0 := time.Now()
	stop, err := w(ctx, in, out)
	if err != nil {
		return run, fmt.Errorf("starting the worker: %w", err)
	}
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	warmed := warm == 0
	for {
		q, err := ch.QueueDeclarePassive(out, true, false, false, false, nil)
		if err != nil {
			_ = stop()
			return run, err
		}
		if !warmed && q.Messages >= warm {
			// The clock starts now; the messages beyond warm that moved
			// since the last poll count for the warm-up too.
			warmed = true
			t0 = time.Now()
			run.Warmup = q.Messages
			run.Messages = total - q.Messages
		}
		if q.Messages >= total {
			break
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			_ = stop()
			return run, fmt.Errorf("%d of %d messages moved: %w", q.Messages, total, ctx.Err())
		}
	}
	run.Elapsed = time.Since(t0)
	run.ElapsedUS = run.Elapsed.Microseconds()
	if err := stop(); err != nil {
		return run, fmt.Errorf("worker: %w", err)
	}
	qi, err1 := ch.QueueDeclarePassive(in, true, false, false, false, nil)
	qo, err2 := ch.QueueDeclarePassive(out, true, false, false, false, nil)
	if err := errors.Join(err1, err2); err != nil {
		return run, err
	}
	if qi.Messages != 0 || qo.Messages != total {
		return run, fmt.Errorf("after the run %d messages are left in the input queue and %d in the output queue, want 0 and %d", qi.Messages, qo.Messages, total)
	}
	return run, nil
}

// preload publishes n persistent copies of body to key, all in flight at
// once, and waits for every confirmation.
func preload(ctx context.Context, conn *amqp.Connection, exchange, key string, n int, body []byte) error {
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	if err := ch.Confirm(false); err != nil {
		return err
	}
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, n))
	for range n {
		if err := ch.PublishWithContext(ctx, exchange, key, false, false, amqp.Publishing{DeliveryMode: amqp.Persistent, Body: body}); err != nil {
			return err
		}
	}
	for range n {
		select {
		case c := <-confirms:
			if !c.Ack {
				return errNacked
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// PlainAMQPWorker is the reference: the consume → publish loop as one
// would write it with amqp091-go alone. One connection, two channels (one
// consuming with the prefetch and manual acks, one publishing in confirm
// mode, as RabbitMQ advises); one goroutine publishes every delivery to
// exchange with the key out, persistent or not as the bus does, and hands
// the deferred confirmation to a second goroutine, which waits for the
// confirmations in order and acks each delivery once its output is
// confirmed. Up to prefetch messages are in flight, and their order is
// kept.
func PlainAMQPWorker(url, exchange string, prefetch int, persistent bool) BusWorker {
	return func(ctx context.Context, in, out string) (func() error, error) {
		conn, err := amqp.DialConfig(url, amqp.Config{Properties: amqp.Table{"connection_name": "dynworkers bench plain"}})
		if err != nil {
			return nil, err
		}
		fail := func(err error) (func() error, error) { _ = conn.Close(); return nil, err }
		cch, err := conn.Channel()
		if err != nil {
			return fail(err)
		}
		pch, err := conn.Channel()
		if err != nil {
			return fail(err)
		}
		if err := pch.Confirm(false); err != nil {
			return fail(err)
		}
		if err := cch.Qos(prefetch, 0, false); err != nil {
			return fail(err)
		}
		const consumerTag = "bench-plain"
		deliveries, err := cch.Consume(in, consumerTag, false, false, false, false, nil)
		if err != nil {
			return fail(err)
		}
		mode := amqp.Transient
		if persistent {
			mode = amqp.Persistent
		}
		type pending struct {
			dc  *amqp.DeferredConfirmation
			tag uint64
		}
		inflight := make(chan pending, prefetch)
		var firstErr error
		var errOnce sync.Once
		setErr := func(err error) { errOnce.Do(func() { firstErr = err }) }
		var wg sync.WaitGroup
		wg.Go(func() {
			defer close(inflight)
			for d := range deliveries {
				dc, err := pch.PublishWithDeferredConfirm(exchange, out, false, false, amqp.Publishing{
					DeliveryMode: mode, Headers: d.Headers, Body: d.Body,
				})
				if err != nil {
					setErr(err)
					return
				}
				inflight <- pending{dc, d.DeliveryTag}
			}
		})
		wg.Go(func() {
			for p := range inflight {
				<-p.dc.Done()
				if !p.dc.Acked() {
					setErr(errNacked)
					continue
				}
				if err := cch.Ack(p.tag, false); err != nil {
					setErr(err)
				}
			}
		})
		return func() error {
			// Stop the deliveries, let the messages in flight be confirmed
			// and acked, then close.
			err := cch.Cancel(consumerTag, false)
			wg.Wait()
			return errors.Join(err, firstErr, conn.Close())
		}, nil
	}
}
