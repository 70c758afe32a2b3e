// Command forward is a test-only worker plugin for the benchmarks of the
// workers' bus. It offers the class "forward": its worker consumes the
// queue in and publishes every message it takes, body and headers
// unchanged, with the routing key out, using its handler's context (so the
// publish is deferred, and the input is acked once the output is
// confirmed). It is the plugin counterpart of a plain consume → publish
// program: the SDK, the Host service and the host's bus, with no work of
// its own.
package main

import (
	"context"

	"github.com/dynworkers/dynworkers/sdk"
)

type config struct {
	In       string `config:"in,required" help:"the queue to consume"`
	Out      string `config:"out,required" help:"the routing key to publish to"`
	Prefetch int    `config:"prefetch" default:"0" help:"the consumer's prefetch; 0 for the SDK's default"`
}

type worker struct {
	cfg config
	env *sdk.Env
}

func (w *worker) Start(_ context.Context, env *sdk.Env) error {
	w.env = env
	var opts []sdk.ConsumeOption
	if w.cfg.Prefetch > 0 {
		opts = append(opts, sdk.WithPrefetch(w.cfg.Prefetch))
	}
	return env.Consume(w.cfg.In, w.handle, opts...)
}

func (w *worker) handle(ctx context.Context, m sdk.Message) error {
	return w.env.Publish(ctx, w.cfg.Out, m.Body, m.Headers)
}

func (w *worker) Stop(context.Context) error { return nil }

func main() {
	sdk.Serve(sdk.Class{
		Name:        "forward",
		Description: "Forwards every message of a queue to another routing key (benchmarks only).",
		Version:     "1.0.0",
		New: sdk.Construct(func(cfg config) (sdk.Worker, error) {
			if cfg.Prefetch < 0 || cfg.Prefetch > sdk.MaxPrefetch {
				return nil, sdk.InvalidConfig("prefetch %d is not within 0..%d", cfg.Prefetch, sdk.MaxPrefetch)
			}
			return &worker{cfg: cfg}, nil
		}),
	})
}
