package sdk

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/dynworkers/dynworkers/internal/wire"
	"github.com/dynworkers/dynworkers/sdk/internal/envhook"
)

// Messaging (DESIGN §7). A worker opens no broker connection of its own: it
// publishes and consumes through the host (Env.Publish, Env.Consume), which
// uses RabbitMQ when it is configured with an amqp block and its embedded
// in-process bus otherwise, so the same plugin runs unchanged on a laptop
// and in production. Messages go through the "vumi" exchange; a queue is
// bound to it with routing keys (Vumi's convention: the queue
// "smpp.outbound" is bound with the key "smpp.outbound").

// Message is one message delivered to a Handler.
type Message struct {
	// Queue is the queue the message was consumed from.
	Queue string
	// RoutingKey is the key the message was published with.
	RoutingKey string
	// Body is the message, e.g. a Vumi message as JSON.
	Body []byte
	// Headers are the message's AMQP headers (string values only).
	Headers map[string]string
	// Redelivered is set when the message was delivered before and not
	// acked: a worker that crashed while handling it, or a handler that
	// returned an error.
	Redelivered bool
	// Failures is how many times a handler failed on this message before,
	// as far as the host knows; at WithMaxRedeliveries failures the host
	// dead-letters it.
	Failures int
}

// Handler handles a consumed message. Its result settles the message:
//
//   - nil acks it: the bus forgets it;
//   - an error wrapping ErrDrop (see Drop) nacks it without requeueing: the
//     bus drops it, to the queue's dead-letter exchange where one is
//     configured. Use it for messages that can never be handled, such as
//     malformed ones, or they come back forever;
//   - any other error nacks it with requeue: it is delivered again, after a
//     short pause that grows while the handler keeps failing.
//
// ctx ends when the consumer stops (the worker is stopping, or the context
// given with WithContext ended): a handler that is still busy should give
// up and return ctx's error, and the message is requeued.
//
// A consumer calls its handler for one message at a time, in delivery
// order. To handle messages of one queue in parallel, call Env.Consume
// several times with the same queue: each consumer gets its share.
//
// Publishing with ctx while the handler runs is deferred (see
// Env.Publish): the ack of the message waits, on the host, for the
// broker's confirmation of what the handler published, and becomes a
// requeue if one fails. The next message's handler does not wait for
// that: settlements are sent to the host in order, without a round trip.
type Handler func(ctx context.Context, m Message) error

// ErrDrop marks a handler's error as permanent: the message is nacked
// without requeue (see Handler).
var ErrDrop = errors.New("message dropped")

// Drop returns an error wrapping ErrDrop and err, for a Handler to return
// when the message can never be handled.
func Drop(err error) error {
	if err == nil {
		return ErrDrop
	}
	return fmt.Errorf("%w: %w", ErrDrop, err)
}

// Outcome is how a handler's result settles a message.
type Outcome int

// Outcomes of a handled message.
const (
	// OutcomeAck: the handler returned nil; the message is acked.
	OutcomeAck Outcome = iota
	// OutcomeRequeue: the handler failed; the message is nacked and
	// requeued.
	OutcomeRequeue
	// OutcomeDrop: the handler returned an error wrapping ErrDrop; the
	// message is nacked without requeue.
	OutcomeDrop
)

func (o Outcome) String() string {
	switch o {
	case OutcomeAck:
		return "ack"
	case OutcomeRequeue:
		return "requeue"
	case OutcomeDrop:
		return "drop"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// OutcomeOf returns how the handler result err settles a message.
func OutcomeOf(err error) Outcome {
	switch {
	case err == nil:
		return OutcomeAck
	case errors.Is(err, ErrDrop):
		return OutcomeDrop
	}
	return OutcomeRequeue
}

// Prefetch bounds of a consumer (WithPrefetch).
const (
	// DefaultPrefetch is the prefetch of a consumer without WithPrefetch.
	DefaultPrefetch = 20
	// MaxPrefetch is the largest prefetch the host accepts.
	MaxPrefetch = 10000
)

// ConsumeOption configures a consumer (Env.Consume): WithPrefetch,
// WithBindings, WithMaxRedeliveries, WithDeadLetter, WithContext.
type ConsumeOption func(*consumeConfig)

// WithPrefetch sets how many messages the host may deliver ahead, unacked,
// to the consumer: 1 to MaxPrefetch, DefaultPrefetch by default. The host
// sends a message only while fewer than n are unsettled, so a slow handler
// slows delivery down instead of growing anyone's memory.
func WithPrefetch(n int) ConsumeOption {
	return func(c *consumeConfig) { c.Prefetch = n }
}

// WithBindings sets the routing keys the queue is bound with on the "vumi"
// exchange, replacing the default: the queue's own name.
func WithBindings(keys ...string) ConsumeOption {
	return func(c *consumeConfig) { c.Bindings = slices.Clone(keys) }
}

// DefaultMaxRedeliveries is how many failed attempts a message of a
// consumer without WithMaxRedeliveries gets before it is dead-lettered.
const DefaultMaxRedeliveries = 5

// WithMaxRedeliveries sets how many times the handler may fail on one
// message (return an error other than ErrDrop) before the host
// dead-letters it instead of requeueing it again: the n-th failure sends
// the message to the dead-letter queue (WithDeadLetter), with the error in
// its headers, and counts in the worker's dead_lettered metric. n below 0
// requeues forever, as a plain AMQP consumer would; 0 means
// DefaultMaxRedeliveries.
func WithMaxRedeliveries(n int) ConsumeOption {
	return func(c *consumeConfig) { c.MaxRedeliveries = n }
}

// WithDeadLetter sets the routing key, and the name of the queue the host
// declares and binds with it, that dead-lettered messages go to; by default
// "<queue>.dlq". The key is checked like a queue name (CheckBusName).
func WithDeadLetter(key string) ConsumeOption {
	return func(c *consumeConfig) { c.DeadLetter = key }
}

// WithContext makes the consumer stop when ctx ends, before the worker
// stops. Without it a consumer runs for the life of the worker.
func WithContext(ctx context.Context) ConsumeOption {
	return func(c *consumeConfig) { c.Context = ctx }
}

// consumeConfig is a consumer's configuration, as the options of
// Env.Consume make it (sdktest gets it through envhook).
type consumeConfig = envhook.ConsumeConfig

// newConsumeConfig applies opts to the defaults for queue and checks the
// result as the host does: the queue and bindings must be valid and not
// reserved (CheckBusName), and the prefetch within 1..MaxPrefetch.
func newConsumeConfig(queue string, opts ...ConsumeOption) (consumeConfig, error) {
	c := consumeConfig{Queue: queue, Prefetch: DefaultPrefetch}
	for _, o := range opts {
		o(&c)
	}
	if len(c.Bindings) == 0 {
		c.Bindings = []string{queue}
	}
	if c.MaxRedeliveries == 0 {
		c.MaxRedeliveries = DefaultMaxRedeliveries
	}
	if c.DeadLetter == "" {
		c.DeadLetter = queue + ".dlq"
	}
	if err := CheckBusName("queue", queue); err != nil {
		return c, err
	}
	for _, b := range c.Bindings {
		if err := CheckBusName("binding", b); err != nil {
			return c, err
		}
	}
	// After the queue's: a reserved queue's default key is reserved too,
	// and the queue is what is at fault.
	if err := CheckBusName("dead-letter key", c.DeadLetter); err != nil {
		return c, err
	}
	if c.Prefetch < 1 || c.Prefetch > MaxPrefetch {
		return c, fmt.Errorf("%w: prefetch %d is not within 1..%d", ErrInvalidConfig, c.Prefetch, MaxPrefetch)
	}
	return c, nil
}

// reservedPrefixes are the prefixes of the names a worker may not use.
var reservedPrefixes = []string{"vumi.control", "vumi.metrics", "vumi.health", "vumi.events", "amq."}

// MaxNameLen is the longest routing key or queue name, in bytes (AMQP's
// short string).
const MaxNameLen = 255

var (
	// ErrReservedName matches the error for a routing key, queue or
	// binding that belongs to the host (its control, metrics, health and events names, "vumi.control", "vumi.metrics", "vumi.health", "vumi.events", or AMQP's own, "amq."). The host
	// answers PermissionDenied.
	ErrReservedName = errors.New("reserved name")
	// ErrInvalidName matches the error for an empty routing key, queue or
	// binding, or one longer than MaxNameLen bytes or not UTF-8. The host
	// answers InvalidArgument.
	ErrInvalidName = errors.New("invalid name")
)

// BusNameError is the error of CheckBusName. errors.Is matches it with
// ErrReservedName or ErrInvalidName, and with ErrInvalidConfig: a worker
// whose config makes it use a name it may not use cannot work, so when its
// Start fails with this error the host does not restart it.
type BusNameError struct {
	// Kind says what the name is: "routing key", "queue", "binding".
	Kind string
	// Name is the name, as given.
	Name string
	// Reserved is set when the name belongs to the host; otherwise it is
	// malformed.
	Reserved bool
	// Reason says why the name is refused.
	Reason string
}

func (e *BusNameError) Error() string {
	return fmt.Sprintf("%s %q %s", e.Kind, e.Name, e.Reason)
}

// Is reports whether target is ErrReservedName, ErrInvalidName or
// ErrInvalidConfig, as the error is.
func (e *BusNameError) Is(target error) bool {
	switch target {
	case ErrReservedName:
		return e.Reserved
	case ErrInvalidName:
		return !e.Reserved
	case ErrInvalidConfig:
		return true
	}
	return false
}

// CheckBusName checks a routing key, queue name or binding key (kind says
// which, for the message) that a worker wants to publish to or consume
// from. It returns nil or a *BusNameError: for an empty name, one longer
// than MaxNameLen bytes or not valid UTF-8, and for names that start with
// one of the reserved prefixes (the host's control, metrics, health and events
// exchanges and queues, and AMQP's "amq." names). The host applies the same
// check to every call of the Host service.
func CheckBusName(kind, name string) error {
	switch {
	case name == "":
		return &BusNameError{Kind: kind, Name: name, Reason: "must not be empty"}
	case len(name) > MaxNameLen:
		return &BusNameError{Kind: kind, Name: name[:32] + "...", Reason: fmt.Sprintf("is %d bytes long, more than %d", len(name), MaxNameLen)}
	case !utf8.ValidString(name):
		return &BusNameError{Kind: kind, Name: name, Reason: "is not valid UTF-8"}
	}
	for _, p := range reservedPrefixes {
		if strings.HasPrefix(name, p) {
			return &BusNameError{Kind: kind, Name: name, Reserved: true,
				Reason: fmt.Sprintf("is reserved: names starting with %q belong to the host (%s), and workers may not publish to or consume from them", p, reservedWhat(p))}
		}
	}
	return nil
}

func reservedWhat(prefix string) string {
	switch prefix {
	case "vumi.control":
		return "its control channel"
	case "vumi.metrics":
		return "its metrics"
	case "vumi.health":
		return "its heartbeats"
	case "vumi.events":
		return "its lifecycle events"
	}
	return "AMQP's own exchanges and queues"
}

// Metric aggregators (Env.Metric): how the host combines the values a
// worker reports within one metrics interval.
const (
	AggSum  = "sum"
	AggAvg  = "avg"
	AggMin  = "min"
	AggMax  = "max"
	AggLast = "last"
)

// ErrInvalidMetric matches the error for a metric the host would refuse:
// an empty or overlong name, a value that is NaN or infinite, an unknown
// aggregator.
var ErrInvalidMetric = errInvalidMetric

// errInvalidMetric is the sentinel the metric checks shared with the host
// wrap.
var errInvalidMetric = wire.ErrInvalidMetric

var (
	// ErrNoBus is the error of Env.Publish and Env.Consume when the host
	// offers the worker no message bus: no Host service at all (then the
	// error matches ErrNoHostService too), or one that carries no
	// messages for this worker.
	ErrNoBus = errors.New("the host offers no message bus")
	// ErrNoMetrics is the error of Env.Metric when the host does not
	// collect the worker's metrics.
	ErrNoMetrics = errors.New("the host collects no metrics from this worker")
	// ErrConsumerStopped is the error of Env.Consume once the worker is
	// stopping.
	ErrConsumerStopped = errors.New("the worker is stopping: no new consumers")
)

// noHostError is the error of a bus or metric call when the worker has no
// Host service: it matches ErrNoHostService and the call's own error.
type noHostError struct {
	call string
	name string
	also error
}

func (e *noHostError) Error() string {
	return fmt.Sprintf("%s: %v (%v)", callName(e.call, e.name), e.also, ErrNoHostService)
}

func (e *noHostError) Is(target error) bool { return target == ErrNoHostService || target == e.also }
