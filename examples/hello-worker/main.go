// Command hello-worker is a minimal dynworkers worker plugin: the class
// "hello" logs a greeting every interval. It is the starting point of the
// plugin author's tutorial in README.md.
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
				h.mu.Lock()
				h.count++
				n := h.count
				h.mu.Unlock()
				log.Info(fmt.Sprintf("%s, %s!", h.cfg.Greeting, h.cfg.Name), "count", n)
			}
		}
	})
	log.Info("hello worker started", "interval", h.cfg.Interval.String())
	return nil
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
