// Command bus is a test-only worker plugin that uses the host's message bus
// through the Host service. It offers the class "bus".
//
// At Start its worker publishes "hello" to each key of try_publish and
// tries to consume each queue of try_consume, recording the errors; reports
// the metric named metric (if set), then each of metrics, with value 1 and
// aggregators "sum" and "max"; then consumes queue (if set) with bindings
// and prefetch. Each
// message it consumes is handled by its body:
//
//	drop         the handler returns sdk.Drop: nacked without requeue
//	fail         the handler fails on its first delivery (requeued), and
//	             acks it when it is redelivered
//	sleep:DUR    the handler sleeps DUR, then acks
//	hold         the handler blocks until its context ends
//	exit         the process exits with status 3 while handling it
//	poison       the handler always fails (requeued with its error, until
//	             the host dead-letters it)
//	flood        the handler publishes "flood:<n>" to reply_to, deferred,
//	             until its context ends or the process is released
//	             (release), counting them in status published; then acks
//	release      releases the flood handlers; acked
//	anything     acked
//
// and, before the handler returns, "got:<body>" is published to reply_to
// (if set; not for flood). max_redeliveries and dead_letter are the
// consumer's options (0 and "" for the SDK's defaults). Status details:
//
//	errors      []string  the errors of try_publish, try_consume and metric
//	kinds       []string  for each error: reserved, invalid_name, no_bus,
//	                      no_metrics, invalid_metric, other
//	handled     []string  the bodies handled, in order, each with the
//	                      outcome ("hello=ack"), and "*" when redelivered
//	in_handler  int       handlers under way
//	failures    []int     Message.Failures of each delivery, in order
//	published   int       flood's publishes that returned
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/dynworkers/dynworkers/sdk"
)

type config struct {
	Queue      string   `config:"queue" help:"the queue to consume"`
	Bindings   []string `config:"bindings" help:"its bindings"`
	Prefetch   int      `config:"prefetch" default:"0" help:"its prefetch; 0 for the SDK's default"`
	ReplyTo    string   `config:"reply_to" help:"where to publish got:<body>"`
	TryPublish []string `config:"try_publish" help:"keys to publish hello to at Start"`
	TryConsume []string `config:"try_consume" help:"queues to try to consume at Start"`
	Metric     string   `config:"metric" help:"a metric to report at Start"`
	Metrics    []string `config:"metrics" help:"more metrics to report at Start, in order"`
	MaxRedel   int      `config:"max_redeliveries" default:"0" help:"the consumer's max redeliveries; 0 for the SDK's default"`
	DeadLetter string   `config:"dead_letter" help:"the consumer's dead-letter key; empty for the SDK's default"`
	// Password is a secret the poison mode's error gives away, so tests
	// can see the host scrub it from what it does with the error.
	Password string `config:"password,sensitive" help:"a secret the poison error names"`
}

type worker struct {
	cfg config
	env *sdk.Env

	mu        sync.Mutex
	errs      []string
	kinds     []string
	handled   []string
	failed    map[string]bool
	failures  []int
	inHandler int
	published int
	released  chan struct{}
	release   sync.Once
}

func (w *worker) Start(ctx context.Context, env *sdk.Env) error {
	w.env = env
	for _, k := range w.cfg.TryPublish {
		w.record(env.Publish(ctx, k, []byte("hello"), map[string]string{"from": env.WorkerName()}))
	}
	for _, q := range w.cfg.TryConsume {
		w.record(env.Consume(q, func(context.Context, sdk.Message) error { return nil }))
	}
	if w.cfg.Metric != "" {
		w.record(env.Metric(w.cfg.Metric, 1, sdk.AggSum, sdk.AggMax))
	}
	for _, m := range w.cfg.Metrics {
		w.record(env.Metric(m, 1, sdk.AggSum, sdk.AggMax))
	}
	if w.cfg.Queue == "" {
		return nil
	}
	opts := []sdk.ConsumeOption{sdk.WithBindings(w.cfg.Bindings...)}
	if w.cfg.Prefetch > 0 {
		opts = append(opts, sdk.WithPrefetch(w.cfg.Prefetch))
	}
	if w.cfg.MaxRedel != 0 {
		opts = append(opts, sdk.WithMaxRedeliveries(w.cfg.MaxRedel))
	}
	if w.cfg.DeadLetter != "" {
		opts = append(opts, sdk.WithDeadLetter(w.cfg.DeadLetter))
	}
	return env.Consume(w.cfg.Queue, w.handle, opts...)
}

func (w *worker) handle(ctx context.Context, m sdk.Message) error {
	w.mu.Lock()
	w.inHandler++
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.inHandler--
		w.mu.Unlock()
	}()
	body := string(m.Body)
	w.mu.Lock()
	w.failures = append(w.failures, m.Failures)
	w.mu.Unlock()
	if body == "flood" {
		return w.flood(ctx)
	}
	if w.cfg.ReplyTo != "" {
		if err := w.env.Publish(ctx, w.cfg.ReplyTo, []byte("got:"+body), m.Headers); err != nil {
			return err
		}
	}
	var err error
	switch {
	case body == "drop":
		err = sdk.Drop(errors.New("told to drop"))
	case body == "fail":
		w.mu.Lock()
		first := !w.failed[body]
		if w.failed == nil {
			w.failed = map[string]bool{}
		}
		w.failed[body] = true
		w.mu.Unlock()
		if first {
			err = errors.New("told to fail once")
		}
	case strings.HasPrefix(body, "sleep:"):
		d, _ := time.ParseDuration(strings.TrimPrefix(body, "sleep:"))
		select {
		case <-time.After(d):
		case <-ctx.Done():
			err = ctx.Err()
		}
	case body == "hold":
		<-ctx.Done()
		err = ctx.Err()
	case body == "exit":
		os.Exit(3)
	case body == "poison":
		err = errors.New("told to fail always")
		if w.cfg.Password != "" {
			err = fmt.Errorf("%w (password %s)", err, w.cfg.Password)
		}
	case body == "release":
		w.release.Do(func() { close(w.released) })
	}
	entry := body + "=" + sdk.OutcomeOf(err).String()
	if m.Redelivered {
		entry += "*"
	}
	w.mu.Lock()
	w.handled = append(w.handled, entry)
	w.mu.Unlock()
	return err
}

// flood publishes to reply_to, deferred (with the handler's context),
// until ctx ends or the worker is released.
func (w *worker) flood(ctx context.Context) error {
	for n := 0; ; n++ {
		select {
		case <-w.released:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if err := w.env.Publish(ctx, w.cfg.ReplyTo, fmt.Appendf(nil, "flood:%d", n), nil); err != nil {
			return err
		}
		w.mu.Lock()
		w.published++
		w.mu.Unlock()
	}
}

func (w *worker) record(err error) {
	if err == nil {
		return
	}
	kind := "other"
	switch {
	case errors.Is(err, sdk.ErrReservedName):
		kind = "reserved"
	case errors.Is(err, sdk.ErrInvalidName):
		kind = "invalid_name"
	case errors.Is(err, sdk.ErrNoBus):
		kind = "no_bus"
	case errors.Is(err, sdk.ErrNoMetrics):
		kind = "no_metrics"
	case errors.Is(err, sdk.ErrInvalidMetric):
		kind = "invalid_metric"
	}
	w.mu.Lock()
	w.errs = append(w.errs, err.Error())
	w.kinds = append(w.kinds, kind)
	w.mu.Unlock()
}

func (w *worker) Stop(context.Context) error { return nil }

func (w *worker) Status(context.Context) (map[string]any, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return map[string]any{
		"errors":     w.errs,
		"kinds":      w.kinds,
		"handled":    w.handled,
		"in_handler": w.inHandler,
		"failures":   w.failures,
		"published":  w.published,
	}, nil
}

func main() {
	sdk.Serve(sdk.Class{
		Name:        "bus",
		Description: "A worker that publishes and consumes through the host (tests only).",
		Version:     "1.0.0",
		New: sdk.Construct(func(cfg config) (sdk.Worker, error) {
			if cfg.Prefetch < 0 {
				return nil, sdk.InvalidConfig("prefetch %d", cfg.Prefetch)
			}
			return &worker{cfg: cfg, released: make(chan struct{})}, nil
		}),
	})
}
