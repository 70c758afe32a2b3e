package sdk

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/dynworkers/dynworkers/sdk/internal/envhook"
)

// Env is what the host gives a worker at Start: its names, its logger, its
// children, and the host's message bus and metrics. The host makes it (in
// tests, package sdktest does); a worker keeps the pointer for its
// lifetime. Env is a concrete type so that it can gain methods without
// breaking plugins: fake it in tests with sdktest.NewEnv, not with a type
// of your own. Its methods are safe for concurrent use.
type Env struct {
	b backend
}

// backend is what an Env runs on: the plugin process's (processEnv) or
// sdktest's recording one, which reaches it through envhook.NewEnv.
type backend interface {
	WorkerName() string
	ClassName() string
	SystemID() string
	HostName() string
	Logger() *slog.Logger
	Exit(err error)
	Children() Children
	Publish(ctx context.Context, routingKey string, body []byte, headers map[string]string) error
	Consume(cfg envhook.ConsumeConfig, handler Handler) error
	Metric(name string, value float64, aggregators ...string) error
}

func init() {
	envhook.NewEnv = func(b any) any {
		be, ok := b.(backend)
		if !ok {
			panic(fmt.Sprintf("sdk: %T does not implement an Env's backend", b))
		}
		return &Env{b: be}
	}
	envhook.NewWorker = func(class any, configJSON []byte) (any, error) {
		return class.(Class).newWorker(configJSON)
	}
}

// WorkerName is the worker's unique name on its host.
func (e *Env) WorkerName() string { return e.b.WorkerName() }

// ClassName is the class name the worker was started as (the canonical
// name, never an alias).
func (e *Env) ClassName() string { return e.b.ClassName() }

// SystemID is the system_id of the host's configuration.
func (e *Env) SystemID() string { return e.b.SystemID() }

// HostName is the name of the host running the worker.
func (e *Env) HostName() string { return e.b.HostName() }

// Logger logs to the host, which re-logs every line under the worker's
// name with its level and attributes kept, and keeps it in the worker's
// log. Lines below the host's log level are not written. The logger
// already has the attribute worker=<WorkerName>.
func (e *Env) Logger() *slog.Logger { return e.b.Logger() }

// Exit ends the worker from the inside, cleanly: its consumers stop (the
// handlers under way finish, the messages delivered ahead are requeued),
// what it published and settled is flushed to the host, its Worker.Stop
// is called, and then its process exits. nil is a normal exit (a
// transient worker is not restarted), an error an abnormal one, logged
// and shown in the host's exit event. Exit does not return: it ends the
// calling goroutine (running its deferred calls), so it may be called from
// a Handler or from any goroutine of the worker's, even one Stop waits
// for. The whole sequence is bounded (10 s), after which the process exits
// anyway. Run's function returning is the same as calling Exit.
func (e *Env) Exit(err error) { e.b.Exit(err) }

// Children lets a hybrid worker start, stop and list child workers that
// the host runs and supervises (see Children). It is never nil; when the
// host offers no Host service its methods fail with ErrNoHostService.
func (e *Env) Children() Children { return e.b.Children() }

// Publish publishes body on the "vumi" exchange with routingKey (e.g.
// "smpp.inbound") and AMQP headers (nil for none), through the host's bus:
// RabbitMQ when the host is configured with it, its embedded in-process
// bus otherwise. It returns once the bus has taken the message (with
// RabbitMQ, once the broker confirmed it), or with ctx's error. Routing
// keys of the host's own are refused (see CheckBusName):
// errors.Is(err, ErrReservedName). Without a bus the error matches
// ErrNoBus; when the host cannot be reached, ErrUnavailable. body and
// headers may be reused once it returns.
//
// With the ctx of a Handler (or one derived from it), while the handler
// runs, the publish is deferred: Publish returns at once, the message goes
// to the host with the delivery's ack when the handler returns (sooner
// when it publishes many), and the delivery is acked on the bus only once
// the message is confirmed; if it is not, the delivery is requeued instead
// of acked, and comes again. A handler that publishes its output this way
// before returning keeps at-least-once delivery, and the outputs of
// consecutive deliveries are in flight together. A deferred publish's
// failure shows as that requeue, not as Publish's error.
func (e *Env) Publish(ctx context.Context, routingKey string, body []byte, headers map[string]string) error {
	return e.b.Publish(ctx, routingKey, body, headers)
}

// Consume consumes the queue named queue in the background and calls
// handler for each of its messages, one at a time; the handler's result
// acks or nacks the message (see Handler). The host declares the queue
// durable and binds it to the "vumi" exchange with the queue's own name as
// routing key (WithBindings to change that), and delivers at most
// WithPrefetch messages ahead of the handler.
//
// Consume returns once the host consumes the queue for the worker, or with
// the error that kept it from doing so: a reserved or invalid name
// (errors.Is(err, ErrReservedName), ErrInvalidName; both match
// ErrInvalidConfig, so a Start that returns them fails for good), a
// prefetch out of bounds (ErrInvalidConfig), no bus (ErrNoBus), a worker
// that is stopping (ErrConsumerStopped). The consumer then runs until the
// worker stops (or the context given WithContext ends): the SDK stops its
// consumers before it calls Worker.Stop, waiting for the handlers under
// way (their context ends), and the messages delivered ahead are
// requeued. If the host's consumer fails meanwhile, the SDK subscribes
// again with backoff; if that takes longer than 15 s the worker's health
// checks fail, and the host restarts it.
func (e *Env) Consume(queue string, handler Handler, opts ...ConsumeOption) error {
	cfg, err := newConsumeConfig(queue, opts...)
	if err != nil {
		return fmt.Errorf("%s: %w", callName("Consume", queue), err)
	}
	if handler == nil {
		return fmt.Errorf("%s: no handler given", callName("Consume", queue))
	}
	return e.b.Consume(cfg, handler)
}

// Metric reports one value of a metric of the worker's own, e.g.
// Metric("messages_sent", 1, AggSum). The host aggregates the values of
// each metrics interval with the given aggregators (AggSum, AggAvg,
// AggMin, AggMax, AggLast; AggAvg when none are given) and publishes them
// with its own metrics, named
// dynworkers.<system_id>.<host>.worker.<worker>.<name>. Errors:
// ErrInvalidMetric (also for a name the host refuses: one that is another
// name of the worker's once sanitised, such as "Sent" after "sent", or one
// name too many), ErrNoMetrics when the host collects none. Once the host
// has taken a value of a name, later values of that name are sent without
// waiting for it (in order with the worker's deferred publishes and acks).
func (e *Env) Metric(name string, value float64, aggregators ...string) error {
	return e.b.Metric(name, value, aggregators...)
}
