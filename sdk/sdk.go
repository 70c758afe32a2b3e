package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"

	"github.com/hashicorp/go-hclog"
)

// Version is the version of this SDK, reported to the host by Describe.
const Version = "0.1.0"

// Worker is one running instance of a class. The host creates a worker in a
// plugin process of its own, calls Start once, may call Health and Status
// while it runs, and calls Stop once. See the package documentation for the
// whole lifecycle contract.
type Worker interface {
	// Start starts the worker and returns once it runs. Long-running work
	// belongs in goroutines that Start launches; Start itself must return
	// before ctx is done (the host's start_timeout), or the process is killed
	// and the start counts as failed. An error wrapping ErrInvalidConfig is
	// permanent: the host marks the worker failed instead of restarting it.
	Start(ctx context.Context, env Env) error
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

// Env is what the host gives a worker at Start.
type Env interface {
	// WorkerName is the worker's unique name on its host.
	WorkerName() string
	// ClassName is the class name the worker was started as (the canonical
	// name, never an alias).
	ClassName() string
	// SystemID is the system_id of the host's configuration.
	SystemID() string
	// HostName is the name of the host running the worker.
	HostName() string
	// Logger logs to the host, which re-logs under the worker's name.
	Logger() hclog.Logger
	// Exit ends the worker from the inside, without a Stop: nil is a normal
	// exit (a transient worker is not restarted), an error an abnormal one.
	// Exit does not return.
	Exit(err error)
	// Children lets a hybrid worker start, stop and list child workers
	// that the host runs and supervises (see Children). It is never nil;
	// when the host offers no Host service its methods fail with
	// ErrNoHostService.
	Children() Children

	// Publish publishes body on the "vumi" exchange with routingKey (e.g.
	// "smpp.inbound") and AMQP headers (nil for none), through the host's
	// bus: RabbitMQ when the host is configured with it, its embedded
	// in-process bus otherwise. It returns once the bus has taken the
	// message (with RabbitMQ, once the broker confirmed it), or with
	// ctx's error. Routing keys of the host's own are refused (see
	// CheckBusName): errors.Is(err, ErrReservedName). Without a bus the
	// error matches ErrNoBus. body and headers may be reused once it
	// returns.
	//
	// With the ctx of a Handler (or one derived from it), while the
	// handler runs, the publish is deferred: Publish returns at once, the
	// message goes to the host with the delivery's ack when the handler
	// returns (sooner when it publishes many), and the delivery is acked
	// on the bus only once the message is confirmed; if it is not, the
	// delivery is requeued instead of acked, and comes again. A handler
	// that publishes its output this way before returning keeps
	// at-least-once delivery, and the outputs of consecutive deliveries
	// are in flight together. A deferred publish's failure shows as that
	// requeue, not as Publish's error.
	Publish(ctx context.Context, routingKey string, body []byte, headers map[string]string) error
	// Consume consumes the queue named queue in the background and calls
	// handler for each of its messages, one at a time; the handler's
	// result acks or nacks the message (see Handler). The host declares
	// the queue durable and binds it to the "vumi" exchange with the
	// queue's own name as routing key (WithBindings to change that), and
	// delivers at most WithPrefetch messages ahead of the handler.
	//
	// Consume returns once the host consumes the queue for the worker, or
	// with the error that kept it from doing so: a reserved or invalid
	// name (errors.Is(err, ErrReservedName), ErrInvalidName; both match
	// ErrInvalidConfig, so a Start that returns them fails for good), no
	// bus (ErrNoBus). The consumer then runs until the worker stops (or
	// the context given WithContext ends): the SDK stops its consumers
	// before it calls Worker.Stop, waiting for the handlers under way
	// (their context ends), and the messages delivered ahead are requeued.
	// If the host's consumer fails meanwhile, the SDK subscribes again
	// with backoff; if that takes longer than 15 s the worker's health
	// checks fail, and the host restarts it.
	Consume(queue string, handler Handler, opts ...ConsumeOption) error
	// Metric reports one value of a metric of the worker's own, e.g.
	// Metric("messages_sent", 1, AggSum). The host aggregates the values
	// of each metrics interval with the given aggregators (AggSum, AggAvg,
	// AggMin, AggMax, AggLast; AggAvg when none are given) and publishes
	// them with its own metrics, named
	// dynworkers.<system_id>.<host>.worker.<worker>.<name>. Errors:
	// ErrInvalidMetric (also for a name the host refuses: one that is
	// another name of the worker's once sanitised, such as "Sent" after
	// "sent", or one name too many), ErrNoMetrics when the host collects
	// none. Once the host has taken a value of a name, later values of
	// that name are sent without waiting for it (in order with the
	// worker's deferred publishes and acks).
	Metric(name string, value float64, aggregators ...string) error
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

// NewWorker builds a worker of the class from a config JSON object, as the
// host does in a plugin process. It is meant for tests of plugins.
func (c Class) NewWorker(configJSON []byte) (Worker, error) {
	if c.New == nil {
		return nil, fmt.Errorf("class %q has no constructor", c.Name)
	}
	return c.New.build(configJSON)
}

// MustJSON encodes v as JSON and panics on error; handy for configs in tests.
func MustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
