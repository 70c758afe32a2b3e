package sdktest

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/sdk"
	"github.com/dynworkers/dynworkers/sdk/internal/envhook"
)

// Timeouts of Run and Worker.
var (
	// StartTimeout bounds a worker's Start, as the host's start_timeout.
	StartTimeout = 30 * time.Second
	// StopTimeout bounds the Stop made when the test ends.
	StopTimeout = 10 * time.Second
)

// Worker is a worker of a class running in the test's process with a
// recording Env.
type Worker struct {
	// Impl is the worker the class's constructor built; assert it to the
	// class's type to look inside.
	Impl sdk.Worker
	// Env is the worker's Env.
	Env *Env

	t        testing.TB
	stopOnce sync.Once
	stopErr  error
}

// Run builds a worker of class from config, exactly as a plugin process
// does (decoding, defaults, ErrInvalidConfig for a bad config), starts it
// with a new Env and returns it; the test fails if either step fails. The
// worker is stopped when the test ends, unless the test stopped it.
//
// config is the worker's config as a JSON object: a json.RawMessage, a
// []byte or a string is taken as JSON text, nil means {}, anything else (a
// map, a struct with json tags) is encoded with encoding/json. As in a
// plugin process, values have their JSON types ("5s" for a duration, 2773
// for a number); the host's conversions ("2773" for a number) do not
// happen here.
//
// The Env's class name is class.Name unless an Option says otherwise.
func Run(t testing.TB, class sdk.Class, config any, opts ...Option) *Worker {
	t.Helper()
	w, err := Start(t, class, config, opts...)
	if err != nil {
		t.Fatalf("starting a worker of class %q: %v", class.Name, err)
	}
	return w
}

// Start is Run for tests of failures: it returns the error of the
// constructor or of the worker's Start instead of failing the test. On
// error nothing is left running.
func Start(t testing.TB, class sdk.Class, config any, opts ...Option) (*Worker, error) {
	t.Helper()
	raw, err := configJSON(config)
	if err != nil {
		return nil, err
	}
	impl, err := newWorker(class, raw)
	if err != nil {
		return nil, err
	}
	env := NewEnv(t, append([]Option{ClassName(class.Name)}, opts...)...)
	w := &Worker{Impl: impl, Env: env, t: t}
	env.mu.Lock()
	env.onExit = func(ctx context.Context) { _ = w.Stop(ctx) }
	env.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	if err := impl.Start(ctx, env.SDK()); err != nil {
		env.StopConsumers(ctx)
		return nil, err
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), StopTimeout)
		defer cancel()
		if err := w.Stop(ctx); err != nil {
			t.Errorf("stopping the worker at the end of the test: %v", err)
		}
	})
	return w, nil
}

// NewWorker builds a worker of class from config, exactly as a plugin
// process does (decoding, defaults, sdk.ErrInvalidConfig for a bad
// config), without starting it: start it with the sdk.Env of an Env
// (NewEnv(t).SDK()). config is as for Run. Run does both.
func NewWorker(class sdk.Class, config any) (sdk.Worker, error) {
	raw, err := configJSON(config)
	if err != nil {
		return nil, err
	}
	return newWorker(class, raw)
}

func newWorker(class sdk.Class, configJSON []byte) (sdk.Worker, error) {
	w, err := envhook.NewWorker(class, configJSON)
	if err != nil {
		return nil, err
	}
	ww, _ := w.(sdk.Worker)
	if ww == nil {
		return nil, fmt.Errorf("class %q: the constructor returned no worker", class.Name)
	}
	return ww, nil
}

func configJSON(config any) ([]byte, error) {
	var b []byte
	switch c := config.(type) {
	case nil:
		return []byte("{}"), nil
	case json.RawMessage:
		b = c
	case []byte:
		b = c
	case string:
		b = []byte(c)
	default:
		var err error
		if b, err = json.Marshal(config); err != nil {
			return nil, fmt.Errorf("%w: encoding the config: %w", sdk.ErrInvalidConfig, err)
		}
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(b, &obj); err != nil || obj == nil {
		return nil, fmt.Errorf("%w: the config must be a JSON object, got %.100s", sdk.ErrInvalidConfig, b)
	}
	return b, nil
}

// Stop stops the worker as the host does: its consumers first (see
// Env.StopConsumers), then its Stop, with ctx. Later calls return the
// first call's result.
func (w *Worker) Stop(ctx context.Context) error {
	w.stopOnce.Do(func() {
		w.Env.StopConsumers(ctx)
		w.stopErr = w.Impl.Stop(ctx)
	})
	return w.stopErr
}

// Health returns the worker's health as the host would see it: nil for a
// worker without a Health method.
func (w *Worker) Health(ctx context.Context) error {
	if hc, ok := w.Impl.(sdk.HealthChecker); ok {
		return hc.Health(ctx)
	}
	return nil
}

// Status returns the worker's status details, round-tripped through JSON
// as the host gets them (numbers are float64); nil for a worker without a
// Status method. The test fails if they cannot be encoded.
func (w *Worker) Status(ctx context.Context) map[string]any {
	w.t.Helper()
	sr, ok := w.Impl.(sdk.StatusReporter)
	if !ok {
		return nil
	}
	details, err := sr.Status(ctx)
	if err != nil {
		w.t.Fatalf("Status: %v", err)
	}
	b, err := json.Marshal(details)
	if err != nil {
		w.t.Fatalf("Status: the details cannot be encoded as JSON: %v", err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		w.t.Fatalf("Status: %v", err)
	}
	return out
}
