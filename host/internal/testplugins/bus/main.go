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
//	anything     acked
//
// and, before the handler returns, "got:<body>" is published to reply_to
// (if set). Status details:
//
//	errors      []string  the errors of try_publish, try_consume and metric
//	kinds       []string  for each error: reserved, invalid_name, no_bus,
//	                      no_metrics, invalid_metric, other
//	handled     []string  the bodies handled, in order, each with the
//	                      outcome ("hello=ack"), and "*" when redelivered
//	in_handler  int       handlers under way
package main

import (
	"context"
	"errors"
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
}

type worker struct {
	cfg config
	env *sdk.Env

	mu        sync.Mutex
	errs      []string
	kinds     []string
	handled   []string
	failed    map[string]bool
	inHandler int
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
			return &worker{cfg: cfg}, nil
		}),
	})
}
