package sdk

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"regexp"
)

// Version is the version of this SDK, reported to the host by Describe.
const Version = "0.1.0"

// Worker is one running instance of a class. The host creates a worker in a
// plugin process of its own, calls Start once, may call Health and Status
// while it runs, and calls Stop once. See the package documentation for the
// whole lifecycle contract. Run makes a Worker of a blocking function.
type Worker interface {
	// Start starts the worker and returns once it runs; env stays valid
	// for the worker's lifetime. Long-running work belongs in goroutines
	// that Start launches; Start itself must return
	// before ctx is done (the host's start_timeout), or the process is killed
	// and the start counts as failed. An error wrapping ErrInvalidConfig is
	// permanent: the host marks the worker failed instead of restarting it.
	Start(ctx context.Context, env *Env) error
	// Stop stops the worker and returns once it has stopped. The host kills
	// the process when ctx is done (the worker's shutdown_timeout).
	Stop(ctx context.Context) error
}

// HealthChecker is implemented by workers that can tell whether they are
// healthy. A worker without it is healthy while its process answers. An
// error, or no answer within the host's health_timeout, is a failed check;
// three in a row make the host kill and restart the worker.
type HealthChecker interface {
	Health(ctx context.Context) error
}

// StatusReporter is implemented by workers that add details to the host's
// status API. The map is encoded as JSON.
type StatusReporter interface {
	Status(ctx context.Context) (map[string]any, error)
}

// ErrInvalidConfig marks an error as a problem with the worker's config. A
// Start that fails with it is not retried: the worker goes to failed.
var ErrInvalidConfig = errors.New("invalid config")

// InvalidConfig returns an error wrapping ErrInvalidConfig.
func InvalidConfig(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
}

// Class describes a kind of worker a plugin binary offers.
type Class struct {
	// Name is the class's canonical name, e.g. "hello" or
	// "vumi.transports.smpp.SmppTransport". Unique across all plugins of a
	// host.
	Name string
	// Aliases are other names configs and control messages may use.
	Aliases []string
	// Description is a one-line summary shown by `dynworkers classes`.
	Description string
	// Version is the class's own version.
	Version string
	// New builds a worker from its decoded config; see Construct.
	New Constructor
}

// Constructor builds workers of a class from their config. Make one with
// Construct.
type Constructor interface {
	schema() (Schema, error)
	build(configJSON []byte) (Worker, error)
}

// Construct returns a Constructor for workers whose config decodes into C,
// a struct type whose fields define the class's schema (see SchemaOf). The
// host validates a worker's config against that schema before it starts
// any process, and fn receives the config already decoded, with defaults
// applied. Use struct{} for a class without config.
func Construct[C any](fn func(cfg C) (Worker, error)) Constructor {
	return constructor[C]{fn: fn}
}

type constructor[C any] struct {
	fn func(C) (Worker, error)
}

func (c constructor[C]) schema() (Schema, error) {
	var zero C
	return SchemaOf(zero)
}

func (c constructor[C]) build(raw []byte) (Worker, error) {
	t := reflect.TypeFor[C]()
	v, err := decodeConfig(t, raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return c.fn(v.Interface().(C))
}

var classNameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.:\-]*$`)

// Schema returns the class's config schema.
func (c Class) Schema() (Schema, error) {
	if c.New == nil {
		return nil, fmt.Errorf("class %q has no constructor", c.Name)
	}
	return c.New.schema()
}

// Validate checks a class definition: a valid name and aliases, a
// constructor and a well-formed schema.
func (c Class) Validate() error {
	var errs []error
	if !classNameRE.MatchString(c.Name) {
		errs = append(errs, fmt.Errorf("class name %q must match %s", c.Name, classNameRE))
	}
	for _, a := range c.Aliases {
		if !classNameRE.MatchString(a) {
			errs = append(errs, fmt.Errorf("class %q: alias %q must match %s", c.Name, a, classNameRE))
		}
	}
	if _, err := c.Schema(); err != nil {
		errs = append(errs, fmt.Errorf("class %q: %w", c.Name, err))
	}
	return errors.Join(errs...)
}

// newWorker builds a worker of the class from a config JSON object, as the
// plugin process does (sdktest.NewWorker for tests).
func (c Class) newWorker(configJSON []byte) (Worker, error) {
	if c.New == nil {
		return nil, fmt.Errorf("class %q has no constructor", c.Name)
	}
	return c.New.build(configJSON)
}
