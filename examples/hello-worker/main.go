// Command hello-worker is a minimal dynworkers worker plugin: the class
// "hello" logs a greeting every interval, counts it in a metric and, if
// publish_to is set, publishes it on the host's message bus. It is the
// starting point of the plugin author's tutorial in README.md.
package main

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/dynworkers/dynworkers/sdk"
)

// Config is the hello class's config block. Its struct tags are the schema
// the host validates configs with.
type Config struct {
	Greeting string        `config:"greeting" default:"hello" help:"what to say"`
	Name     string        `config:"name" default:"world" help:"who to greet"`
	Interval time.Duration `config:"interval" default:"5s" help:"time between greetings"`
	// PublishTo, if set, is the routing key each greeting is published
	// with, through the host's bus.
	PublishTo string `config:"publish_to" help:"routing key to publish each greeting with (optional)"`
}

// Hello greets every interval until it is stopped. Its Start and Stop are
// sdk.Run's, around the blocking loop run.
type Hello struct {
	sdk.Worker
	cfg   Config
	count atomic.Int64
}

// newHello checks the config and builds the worker.
func newHello(cfg Config) (sdk.Worker, error) {
	if cfg.Interval <= 0 {
		return nil, sdk.InvalidConfig("interval must be positive, got %s", cfg.Interval)
	}
	if cfg.PublishTo != "" {
		if err := sdk.CheckBusName("routing key", cfg.PublishTo); err != nil {
			return nil, sdk.InvalidConfig("publish_to: %v", err)
		}
	}
	h := &Hello{cfg: cfg}
	h.Worker = sdk.Run(h.run)
	return h, nil
}

// run greets every interval until ctx ends (the host stops the worker).
func (h *Hello) run(ctx context.Context, env *sdk.Env) error {
	env.Logger().Info("hello worker started", "interval", h.cfg.Interval.String())
	t := time.NewTicker(h.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			h.greet(ctx, env)
		}
	}
}

// greet logs one greeting, counts it and publishes it if asked to.
func (h *Hello) greet(ctx context.Context, env *sdk.Env) {
	n := h.count.Add(1)
	text := fmt.Sprintf("%s, %s!", h.cfg.Greeting, h.cfg.Name)
	env.Logger().Info(text, "count", n)
	// The host sums the values of each metrics interval and publishes
	// them as dynworkers.<system>.<host>.worker.<name>.greetings.
	if err := env.Metric("greetings", 1, sdk.AggSum); err != nil && n == 1 {
		env.Logger().Debug("not reporting metrics", "error", err)
	}
	if h.cfg.PublishTo == "" {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := env.Publish(ctx, h.cfg.PublishTo, []byte(text), map[string]string{"count": fmt.Sprint(n)}); err != nil {
		env.Logger().Warn("publishing the greeting failed", "error", err)
	}
}

// Status reports how many greetings were logged.
func (h *Hello) Status(context.Context) (map[string]any, error) {
	return map[string]any{"greetings": h.count.Load()}, nil
}

// Class is the hello class, exported for tests.
var Class = sdk.Class{
	Name:        "hello",
	Aliases:     []string{"examples.hello"},
	Description: "logs a greeting every interval",
	Version:     "1.0.0",
	New:         sdk.Construct(newHello),
}

func main() {
	sdk.Serve(Class)
}
