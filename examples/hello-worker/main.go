// Command hello-worker is a minimal dynworkers worker plugin: the class
// "hello" logs a greeting every interval, counts it in a metric and, if
// publish_to is set, publishes it on the host's message bus. It is the
// starting point of the plugin author's tutorial in README.md.
package main

import (
	"context"
	"fmt"
	"sync"
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

// Hello logs a greeting every interval until it is stopped.
type Hello struct {
	cfg  Config
	stop chan struct{}
	done sync.WaitGroup

	mu    sync.Mutex
	count int
}

// Start launches the greeting loop and returns at once.
func (h *Hello) Start(_ context.Context, env sdk.Env) error {
	if h.cfg.Interval <= 0 {
		return sdk.InvalidConfig("interval must be positive, got %s", h.cfg.Interval)
	}
	if h.cfg.PublishTo != "" {
		if err := sdk.CheckBusName("routing key", h.cfg.PublishTo); err != nil {
			return sdk.InvalidConfig("publish_to: %v", err)
		}
	}
	h.stop = make(chan struct{})
	log := env.Logger()
	h.done.Go(func() {
		t := time.NewTicker(h.cfg.Interval)
		defer t.Stop()
		for {
			select {
			case <-h.stop:
				return
			case <-t.C:
				h.greet(env)
			}
		}
	})
	log.Info("hello worker started", "interval", h.cfg.Interval.String())
	return nil
}

// greet logs one greeting, counts it and publishes it if asked to.
func (h *Hello) greet(env sdk.Env) {
	h.mu.Lock()
	h.count++
	n := h.count
	h.mu.Unlock()
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
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := env.Publish(ctx, h.cfg.PublishTo, []byte(text), map[string]string{"count": fmt.Sprint(n)}); err != nil {
		env.Logger().Warn("publishing the greeting failed", "error", err)
	}
}

// Stop ends the loop and waits for it, or gives up when ctx is done.
func (h *Hello) Stop(ctx context.Context) error {
	close(h.stop)
	done := make(chan struct{})
	go func() { h.done.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Status reports how many greetings were logged.
func (h *Hello) Status(context.Context) (map[string]any, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return map[string]any{"greetings": h.count}, nil
}

// Class is the hello class, exported for tests.
var Class = sdk.Class{
	Name:        "hello",
	Aliases:     []string{"examples.hello"},
	Description: "logs a greeting every interval",
	Version:     "1.0.0",
	New: sdk.Construct(func(cfg Config) (sdk.Worker, error) {
		return &Hello{cfg: cfg}, nil
	}),
}

func main() {
	sdk.Serve(Class)
}
