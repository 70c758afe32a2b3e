package sdk

import (
	"context"
	"errors"
	"sync"
)

// Run returns a Worker that runs fn for its lifetime, for a worker whose
// work is one blocking loop (as suture's Serve):
//
//	New: sdk.Construct(func(cfg Config) (sdk.Worker, error) {
//		return sdk.Run(func(ctx context.Context, env *sdk.Env) error {
//			t := time.NewTicker(cfg.Interval)
//			defer t.Stop()
//			for {
//				select {
//				case <-ctx.Done():
//					return nil
//				case <-t.C:
//					env.Logger().Info("hello")
//				}
//			}
//		}), nil
//	}),
//
// Start launches fn in a goroutine of its own and returns; Stop cancels
// fn's ctx and waits for fn to return (or for Stop's own ctx to end), and
// returns fn's error unless it is ctx's. When fn returns by itself, the
// worker ends as with Env.Exit: its consumers stop, what it published and
// settled is flushed, and the process exits, normally if fn returned nil,
// abnormally (with the error in the host's exit event) otherwise. The
// worker counts as started as soon as fn is launched, so an error fn
// returns, even at once, is an exit the host restarts by the worker's
// restart policy: check the config in the constructor, where an error
// wrapping ErrInvalidConfig fails the worker for good.
func Run(fn func(ctx context.Context, env *Env) error) Worker {
	return &runWorker{fn: fn}
}

// runWorker is the Worker of Run.
type runWorker struct {
	fn func(ctx context.Context, env *Env) error

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{} // closed when fn has returned
	err    error         // fn's result, set before done is closed
	ended  bool          // fn returned by itself (its error goes to Exit)
}

func (r *runWorker) Start(_ context.Context, env *Env) error {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	r.mu.Lock()
	r.cancel, r.done = cancel, done
	r.mu.Unlock()
	go func() {
		err := r.fn(ctx, env)
		ended := ctx.Err() == nil
		r.mu.Lock()
		r.err, r.ended = err, ended
		r.mu.Unlock()
		close(done)
		if ended {
			// fn returned by itself, not by Stop: the worker ends.
			env.Exit(err)
		}
	}()
	return nil
}

func (r *runWorker) Stop(ctx context.Context) error {
	r.mu.Lock()
	cancel, done := r.cancel, r.done
	r.mu.Unlock()
	if cancel == nil {
		return nil // never started
	}
	cancel()
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	r.mu.Lock()
	err, ended := r.err, r.ended
	r.mu.Unlock()
	if ended || errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
