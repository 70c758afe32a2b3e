// Command other is a second test-only worker plugin. It offers the class
// "other" (alias "other.legacy"), a well-behaved worker without config
// beyond a greeting, so tests have a second, different binary: for class
// conflicts (copy it twice), aliases, and a binary swapped for another.
package main

import (
	"context"

	"github.com/dynworkers/dynworkers/sdk"
)

type config struct {
	Greeting string `config:"greeting" default:"hello" help:"logged at start"`
}

type worker struct{ cfg config }

func (w *worker) Start(ctx context.Context, env *sdk.Env) error {
	env.Logger().Info(w.cfg.Greeting)
	return nil
}

func (w *worker) Stop(context.Context) error { return nil }

func main() {
	sdk.Serve(sdk.Class{
		Name:        "other",
		Aliases:     []string{"other.legacy"},
		Description: "A quiet worker (tests only).",
		Version:     "0.2.0",
		New: sdk.Construct(func(cfg config) (sdk.Worker, error) {
			return &worker{cfg: cfg}, nil
		}),
	})
}
