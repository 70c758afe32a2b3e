// Command hybrid is a test-only hybrid worker plugin: at Start its worker
// asks the host, through the Host service, to start count children of class
// (named "1".."count", with config and restart), then to stop the child
// named stop if set, and reports what it got in its Status. Status also
// lists the children afresh at every call, so tests can check calls made
// long after Start. It offers the class "hybrid".
//
// Status details:
//
//	started      []ChildInfo the StartChild answers, in order
//	errors       []string    the errors of StartChild and StopChild calls
//	error_kinds  []string    for each error: invalid_config, not_found,
//	                         exists, no_host_service, deadline or other
//	stopped      []string    the children StopChild stopped
//	children     []ChildInfo ListChildren, called by this Status
//	list_error   string      ListChildren's error, if any
//	pid          int         this process
package main

import (
	"context"
	"errors"
	"os"
	"strconv"
	"sync"

	"github.com/dynworkers/dynworkers/sdk"
)

type config struct {
	Class   string            `config:"class" default:"chaos" help:"the children's class"`
	Count   int               `config:"count" default:"0" help:"how many children to start at Start"`
	Config  map[string]string `config:"config" default:"{}" help:"the children's config"`
	Restart string            `config:"restart" help:"the children's restart type"`
	Stop    string            `config:"stop" help:"the child to stop after starting them"`
	Fail    bool              `config:"fail" default:"false" help:"fail Start with the first error"`
}

type worker struct {
	cfg config

	mu      sync.Mutex
	env     *sdk.Env
	started []sdk.ChildInfo
	errs    []string
	kinds   []string
	stopped []string
}

func (w *worker) Start(ctx context.Context, env *sdk.Env) error {
	w.mu.Lock()
	w.env = env
	w.mu.Unlock()
	c := env.Children()
	for i := 1; i <= w.cfg.Count; i++ {
		info, err := c.StartChild(ctx, sdk.ChildSpec{
			Name:    strconv.Itoa(i),
			Class:   w.cfg.Class,
			Config:  w.cfg.Config,
			Restart: w.cfg.Restart,
		})
		if err != nil {
			if w.cfg.Fail {
				return err
			}
			w.record(err)
			continue
		}
		w.mu.Lock()
		w.started = append(w.started, info)
		w.mu.Unlock()
	}
	if w.cfg.Stop != "" {
		if err := c.StopChild(ctx, w.cfg.Stop); err != nil {
			if w.cfg.Fail {
				return err
			}
			w.record(err)
		} else {
			w.mu.Lock()
			w.stopped = append(w.stopped, w.cfg.Stop)
			w.mu.Unlock()
		}
	}
	return nil
}

func (w *worker) record(err error) {
	kind := "other"
	switch {
	case errors.Is(err, sdk.ErrInvalidConfig):
		kind = "invalid_config"
	case errors.Is(err, sdk.ErrChildNotFound):
		kind = "not_found"
	case errors.Is(err, sdk.ErrChildExists):
		kind = "exists"
	case errors.Is(err, sdk.ErrNoHostService):
		kind = "no_host_service"
	case errors.Is(err, context.DeadlineExceeded):
		kind = "deadline"
	}
	w.mu.Lock()
	w.errs = append(w.errs, err.Error())
	w.kinds = append(w.kinds, kind)
	w.mu.Unlock()
}

func (w *worker) Stop(context.Context) error { return nil }

func (w *worker) Status(ctx context.Context) (map[string]any, error) {
	w.mu.Lock()
	env := w.env
	out := map[string]any{
		"started":     w.started,
		"errors":      w.errs,
		"error_kinds": w.kinds,
		"stopped":     w.stopped,
		"pid":         os.Getpid(),
	}
	w.mu.Unlock()
	list, err := env.Children().ListChildren(ctx)
	out["children"] = list
	if err != nil {
		out["list_error"] = err.Error()
	}
	return out, nil
}

func main() {
	sdk.Serve(sdk.Class{
		Name:        "hybrid",
		Description: "A hybrid worker that starts children at Start (tests only).",
		Version:     "1.0.0",
		New: sdk.Construct(func(cfg config) (sdk.Worker, error) {
			return &worker{cfg: cfg}, nil
		}),
	})
}
