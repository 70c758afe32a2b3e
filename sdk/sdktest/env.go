package sdktest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/internal/wire"
	"github.com/dynworkers/dynworkers/sdk"
	"github.com/dynworkers/dynworkers/sdk/internal/envhook"
	"github.com/dynworkers/dynworkers/sdk/vumi"
)

// WaitTimeout bounds the Wait methods of Env.
var WaitTimeout = 10 * time.Second

// Published is a message a worker published.
type Published struct {
	RoutingKey string
	Body       []byte
	Headers    map[string]string
}

// UserMessage decodes the message as a Vumi user message, failing the test
// if it is not one.
func (p Published) UserMessage(t testing.TB) *vumi.TransportUserMessage {
	t.Helper()
	m, err := vumi.ParseUserMessage(p.Body)
	if err != nil {
		t.Fatalf("message published on %q is not a valid user message: %v\n%s", p.RoutingKey, err, p.Body)
	}
	return m
}

// Event decodes the message as a Vumi event, failing the test if it is not
// one.
func (p Published) Event(t testing.TB) *vumi.TransportEvent {
	t.Helper()
	e, err := vumi.ParseEvent(p.Body)
	if err != nil {
		t.Fatalf("message published on %q is not a valid event: %v\n%s", p.RoutingKey, err, p.Body)
	}
	return e
}

// Metric is a value a worker reported with Env.Metric.
type Metric struct {
	Name  string
	Value float64
	// Aggregators are as the host gets them: without duplicates, [avg]
	// when the worker gave none.
	Aggregators []string
}

// ConsumerInfo describes a consumer a worker opened with Env.Consume.
type ConsumerInfo struct {
	Queue    string
	Bindings []string
	Prefetch int
	// Stopped is set once the consumer has stopped (the worker stopped, or
	// its WithContext context ended).
	Stopped bool
}

// Option configures an Env.
type Option func(*Env)

// WorkerName sets the worker's name; "test-worker" by default.
func WorkerName(name string) Option { return func(e *Env) { e.name = name } }

// SystemID sets the system id; "test" by default.
func SystemID(id string) Option { return func(e *Env) { e.systemID = id } }

// HostName sets the host's name; "test-host" by default.
func HostName(name string) Option { return func(e *Env) { e.hostName = name } }

// ClassName sets the class name the worker sees; Run sets the class's.
func ClassName(name string) Option { return func(e *Env) { e.class = name } }

// OnPublish sets a function called with every message the worker
// publishes, before it is recorded. An error is what Publish returns, and
// the message is not recorded. Use it to simulate a bus failure, or to route
// messages to another Env (OnPublish(other.Route)).
func OnPublish(f func(ctx context.Context, p Published) error) Option {
	return func(e *Env) { e.onPublish = f }
}

// WithChildren makes the worker's Env.Children c instead of the Env's
// in-memory fake (FakeChildren), e.g. sdk.NoChildren() for a host that
// offers no Host service, or a fake of the test's own.
func WithChildren(c sdk.Children) Option { return func(e *Env) { e.childrenOf = c } }

// WithoutBus makes the Env behave as a host that offers no message bus and
// collects no metrics: Publish and Consume fail with sdk.ErrNoBus, Metric
// with sdk.ErrNoMetrics.
func WithoutBus() Option { return func(e *Env) { e.noBus = true } }

// Env is an sdk.Env for tests: it records what the worker publishes,
// reports and logs, lets the test deliver messages to the worker's
// consumers, and answers Children calls from memory. It applies the host's
// rules: reserved and invalid names, prefetch bounds and invalid metrics
// are refused with the errors the SDK gives in a plugin process.
//
// Its methods are safe for concurrent use. Those that take no testing.TB
// and fail the test (Deliver, the Wait methods) must be called from the
// test's goroutine.
type Env struct {
	t                               testing.TB
	name, class, systemID, hostName string
	logger                          *slog.Logger
	onPublish                       func(context.Context, Published) error
	noBus                           bool
	children                        *Children
	childrenOf                      sdk.Children // WithChildren's; children if nil
	sdkEnv                          *sdk.Env
	// onExit, set by Start, stops the worker when it calls Exit.
	onExit func(ctx context.Context)

	mu        sync.Mutex
	changed   chan struct{} // closed and replaced whenever something is recorded
	published []Published
	metrics   []Metric
	logs      []LogEntry
	consumers []*consumer
	next      map[string]int // round robin among a queue's consumers
	stopped   bool
	exitErr   error
	exited    chan struct{}
	exitOnce  sync.Once
}

// NewEnv returns an Env whose logs go to t.Log. Run makes one for you.
func NewEnv(t testing.TB, opts ...Option) *Env {
	e := &Env{
		t:        t,
		name:     "test-worker",
		class:    "test",
		systemID: "test",
		hostName: "test-host",
		changed:  make(chan struct{}),
		next:     map[string]int{},
		exited:   make(chan struct{}),
		children: newChildren(),
	}
	for _, o := range opts {
		o(e)
	}
	w := &testWriter{t: t}
	t.Cleanup(w.close)
	e.logger = slog.New(&recorder{e: e, w: w}).With("worker", e.name)
	e.sdkEnv = envhook.NewEnv(backend{e}).(*sdk.Env)
	return e
}

// SDK returns the *sdk.Env whose calls this Env records and answers: what
// a worker's Start gets (Run and Start give it).
func (e *Env) SDK() *sdk.Env { return e.sdkEnv }

// testWriter writes to t.Log until the test ends (goroutines of a worker
// may log after that, which t.Log does not allow).
type testWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testWriter) line(s string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(s)
	}
}

func (w *testWriter) close() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

// record changes the Env's records under its lock and wakes the waiters.
func (e *Env) record(f func()) {
	e.mu.Lock()
	f()
	close(e.changed)
	e.changed = make(chan struct{})
	e.mu.Unlock()
}

// backend is what the Env's sdk.Env (SDK) calls.
type backend struct{ e *Env }

func (b backend) WorkerName() string   { return b.e.name }
func (b backend) ClassName() string    { return b.e.class }
func (b backend) SystemID() string     { return b.e.systemID }
func (b backend) HostName() string     { return b.e.hostName }
func (b backend) Logger() *slog.Logger { return b.e.logger }
func (b backend) Exit(err error)       { b.e.exit(err) }
func (b backend) Children() sdk.Children {
	if b.e.childrenOf != nil {
		return b.e.childrenOf
	}
	return b.e.children
}
func (b backend) Publish(ctx context.Context, routingKey string, body []byte, headers map[string]string) error {
	return b.e.publish(ctx, routingKey, body, headers)
}
func (b backend) Consume(cfg envhook.ConsumeConfig, handler sdk.Handler) error {
	return b.e.consume(cfg, handler)
}
func (b backend) Metric(name string, value float64, aggregators ...string) error {
	return b.e.metric(name, value, aggregators)
}

// FakeChildren returns the in-memory Children the worker's Children calls
// go to (unless WithChildren gave others), to inspect its calls or make
// it fail.
func (e *Env) FakeChildren() *Children { return e.children }

// Exited is closed once the worker has called Exit (or Run's function
// has returned by itself) and the exit's stop has ended: its consumers
// stopped and, for a worker started by Run or Start, its Stop returned.
func (e *Env) Exited() <-chan struct{} { return e.exited }

// exit is the Env's Exit: as in a plugin process, the worker's consumers
// stop, then its Stop is called (for a worker of Run or Start), in the
// background; then err is recorded and Exited closed. The calling
// goroutine ends with runtime.Goexit: like the real Exit, it does not
// return. (Deliver runs a handler in a goroutine of its own, so a handler
// may call it; a test's own goroutine may not.)
func (e *Env) exit(err error) {
	e.exitOnce.Do(func() {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), StopTimeout)
			defer cancel()
			e.mu.Lock()
			onExit := e.onExit
			e.mu.Unlock()
			if onExit != nil {
				onExit(ctx)
			} else {
				e.StopConsumers(ctx)
			}
			e.mu.Lock()
			e.exitErr = err
			e.mu.Unlock()
			close(e.exited)
		}()
	})
	runtime.Goexit()
}

// ExitErr returns the error the worker exited with, and whether it has
// exited (see Exited).
func (e *Env) ExitErr() (error, bool) {
	select {
	case <-e.exited:
	default:
		return nil, false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.exitErr, true
}

// publish records the message (see OnPublish), after the checks the host
// makes.
func (e *Env) publish(ctx context.Context, routingKey string, body []byte, headers map[string]string) error {
	if err := sdk.CheckBusName("routing key", routingKey); err != nil {
		return fmt.Errorf("Publish: %w", err)
	}
	if e.noBus {
		return fmt.Errorf("Publish %q: %w", routingKey, sdk.ErrNoBus)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("Publish %q: %w", routingKey, err)
	}
	p := Published{RoutingKey: routingKey, Body: slices.Clone(body), Headers: maps.Clone(headers)}
	if e.onPublish != nil {
		if err := e.onPublish(ctx, p); err != nil {
			return err
		}
	}
	e.record(func() { e.published = append(e.published, p) })
	return nil
}

// metric records the value, after the checks the host makes.
func (e *Env) metric(name string, value float64, aggregators []string) error {
	aggs, err := wire.CheckMetric(name, value, aggregators)
	if err != nil {
		return fmt.Errorf("Metric: %w", err)
	}
	if e.noBus {
		return fmt.Errorf("Metric %q: %w", name, sdk.ErrNoMetrics)
	}
	e.record(func() { e.metrics = append(e.metrics, Metric{Name: name, Value: value, Aggregators: aggs}) })
	return nil
}

// consumer is one Env.Consume.
type consumer struct {
	cfg     envhook.ConsumeConfig
	handler sdk.Handler
	ctx     context.Context // the handler's; ends when the consumer stops
	cancel  context.CancelFunc
	busy    sync.Mutex // one handler call at a time, as in a plugin process
	stopped bool       // under Env.mu
}

// consume registers a consumer (sdk.Env has applied the options and made
// the host's checks). Its messages come from Deliver.
func (e *Env) consume(cfg envhook.ConsumeConfig, handler sdk.Handler) error {
	queue := cfg.Queue
	if e.noBus {
		return fmt.Errorf("Consume %q: %w", queue, sdk.ErrNoBus)
	}
	c := &consumer{cfg: cfg, handler: handler}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	var stopped bool
	e.record(func() {
		stopped = e.stopped
		if !stopped {
			e.consumers = append(e.consumers, c)
		}
	})
	if stopped {
		c.cancel()
		return fmt.Errorf("Consume %q: %w", queue, sdk.ErrConsumerStopped)
	}
	if cfg.Context != nil {
		context.AfterFunc(cfg.Context, func() { e.stopConsumer(c) })
	}
	return nil
}

func (e *Env) stopConsumer(c *consumer) {
	e.record(func() { c.stopped = true })
	c.cancel()
}

// StopConsumers stops every consumer, as the SDK does before it calls the
// worker's Stop: handlers' contexts end, and StopConsumers waits for the
// handlers under way until ctx ends. Later Consume calls fail with
// sdk.ErrConsumerStopped. Worker.Stop calls it.
func (e *Env) StopConsumers(ctx context.Context) {
	var all []*consumer
	e.record(func() {
		e.stopped = true
		for _, c := range e.consumers {
			c.stopped = true
			all = append(all, c)
		}
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, c := range all {
			c.cancel()
			c.busy.Lock() // waits for the handler under way
			c.busy.Unlock()
		}
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// Consumers lists the consumers the worker opened, in order.
func (e *Env) Consumers() []ConsumerInfo {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]ConsumerInfo, 0, len(e.consumers))
	for _, c := range e.consumers {
		out = append(out, ConsumerInfo{Queue: c.cfg.Queue, Bindings: slices.Clone(c.cfg.Bindings), Prefetch: c.cfg.Prefetch, Stopped: c.stopped})
	}
	return out
}

// Deliver delivers a message with body to a consumer of queue (the next
// one in turn if the worker consumes it several times) and returns how
// the handler settled it, and the handler's error. Deliver waits for the
// handler, which runs after the handler call under way on that consumer,
// if any, has returned. The message's routing key is the queue's name.
//
// The test fails if the worker does not consume queue. A consumer that has
// stopped does not handle the message: it is requeued, with an error
// wrapping sdk.ErrConsumerStopped. A handler that calls Exit requeues it
// too (with an error saying so).
func (e *Env) Deliver(queue string, body []byte) (sdk.Outcome, error) {
	e.t.Helper()
	return e.DeliverMessage(sdk.Message{Queue: queue, RoutingKey: queue, Body: body})
}

// DeliverMessage is Deliver for a whole message: its Queue says which
// consumer gets it, and an empty RoutingKey is the queue's name.
func (e *Env) DeliverMessage(m sdk.Message) (sdk.Outcome, error) {
	e.t.Helper()
	c := e.pick(m.Queue)
	if c == nil {
		e.t.Fatalf("Deliver: the worker does not consume queue %q (it consumes %v)", m.Queue, e.queues())
		return sdk.OutcomeRequeue, nil
	}
	if m.RoutingKey == "" {
		m.RoutingKey = m.Queue
	}
	m.Body = slices.Clone(m.Body)
	m.Headers = maps.Clone(m.Headers)
	c.busy.Lock()
	defer c.busy.Unlock()
	e.mu.Lock()
	stopped := c.stopped
	e.mu.Unlock()
	if stopped {
		return sdk.OutcomeRequeue, fmt.Errorf("consumer of queue %q: %w", m.Queue, sdk.ErrConsumerStopped)
	}
	return c.call(m)
}

// errHandlerExited is Deliver's error for a handler that called Exit.
var errHandlerExited = errors.New("the handler called Exit: the message is requeued")

// call runs the handler on m in a goroutine of its own (so that it may
// call Exit, which ends its goroutine) and returns how it settled m. A
// panic of the handler is raised again in the caller's goroutine.
func (c *consumer) call(m sdk.Message) (sdk.Outcome, error) {
	var (
		err      error
		returned bool
		panicked any
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if !returned {
				panicked = recover()
			}
		}()
		err = c.handler(c.ctx, m)
		returned = true
	}()
	<-done
	switch {
	case panicked != nil:
		panic(panicked)
	case !returned:
		return sdk.OutcomeRequeue, errHandlerExited
	}
	return sdk.OutcomeOf(err), err
}

// Route delivers a published message to this Env's consumers whose
// bindings include its routing key, in the background (one goroutine per
// message, so that handlers that publish do not deadlock). It is meant for
// OnPublish of another Env, to wire two workers together in a test:
//
//	app := sdktest.NewEnv(t)
//	transport := sdktest.NewEnv(t, sdktest.OnPublish(app.Route))
//
// Handler errors are logged to the test; a message no consumer is bound to
// is dropped, as the bus would.
func (e *Env) Route(_ context.Context, p Published) error {
	e.mu.Lock()
	var targets []*consumer
	for _, c := range e.consumers {
		if !c.stopped && slices.Contains(c.cfg.Bindings, p.RoutingKey) {
			targets = append(targets, c)
		}
	}
	e.mu.Unlock()
	for _, c := range targets {
		m := sdk.Message{Queue: c.cfg.Queue, RoutingKey: p.RoutingKey, Body: slices.Clone(p.Body), Headers: maps.Clone(p.Headers)}
		go func() {
			c.busy.Lock()
			defer c.busy.Unlock()
			if err := c.handler(c.ctx, m); err != nil {
				e.logger.Warn("sdktest: a routed message's handler failed", "queue", m.Queue, "routing_key", m.RoutingKey, "error", err)
			}
		}()
	}
	return nil
}

func (e *Env) pick(queue string) *consumer {
	e.mu.Lock()
	defer e.mu.Unlock()
	var cands []*consumer
	for _, c := range e.consumers {
		if c.cfg.Queue == queue {
			cands = append(cands, c)
		}
	}
	if len(cands) == 0 {
		return nil
	}
	i := e.next[queue] % len(cands)
	e.next[queue]++
	return cands[i]
}

func (e *Env) queues() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var qs []string
	for _, c := range e.consumers {
		qs = append(qs, c.cfg.Queue)
	}
	return qs
}

// Published returns the messages the worker published, in order.
func (e *Env) Published() []Published {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.published)
}

// PublishedTo returns the messages the worker published with routingKey.
func (e *Env) PublishedTo(routingKey string) []Published {
	var out []Published
	for _, p := range e.Published() {
		if p.RoutingKey == routingKey {
			out = append(out, p)
		}
	}
	return out
}

// Metrics returns the metric values the worker reported, in order.
func (e *Env) Metrics() []Metric {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.metrics)
}

// Logs returns the lines the worker logged, in order.
func (e *Env) Logs() []LogEntry {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.logs)
}

// WaitPublished waits until the worker has published at least n messages
// with routingKey, and returns them all; the test fails after WaitTimeout.
func (e *Env) WaitPublished(routingKey string, n int) []Published {
	e.t.Helper()
	var got []Published
	if !e.wait(func() bool {
		got = got[:0]
		for _, p := range e.published {
			if p.RoutingKey == routingKey {
				got = append(got, p)
			}
		}
		return len(got) >= n
	}) {
		e.t.Fatalf("%d messages published on %q after %s, want %d; published: %s", len(got), routingKey, WaitTimeout, n, e.describePublished())
	}
	return got
}

// WaitLog waits until the worker has logged a line whose message contains
// text, and returns it; the test fails after WaitTimeout.
func (e *Env) WaitLog(text string) LogEntry {
	e.t.Helper()
	var found LogEntry
	if !e.wait(func() bool {
		for _, l := range e.logs {
			if strings.Contains(l.Message, text) {
				found = l
				return true
			}
		}
		return false
	}) {
		e.t.Fatalf("no log line containing %q after %s", text, WaitTimeout)
	}
	return found
}

// WaitMetric waits until the worker has reported a value of the metric
// name, and returns the values reported so far; the test fails after
// WaitTimeout.
func (e *Env) WaitMetric(name string) []Metric {
	e.t.Helper()
	var got []Metric
	if !e.wait(func() bool {
		got = got[:0]
		for _, m := range e.metrics {
			if m.Name == name {
				got = append(got, m)
			}
		}
		return len(got) > 0
	}) {
		e.t.Fatalf("no value of metric %q after %s", name, WaitTimeout)
	}
	return got
}

// wait calls cond under the Env's lock until it holds or WaitTimeout
// passes.
func (e *Env) wait(cond func() bool) bool {
	deadline := time.NewTimer(WaitTimeout)
	defer deadline.Stop()
	for {
		e.mu.Lock()
		ok := cond()
		changed := e.changed
		e.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-changed:
		case <-deadline.C:
			return false
		}
	}
}

func (e *Env) describePublished() string {
	var b strings.Builder
	for _, p := range e.Published() {
		fmt.Fprintf(&b, "\n  %s: %.200s", p.RoutingKey, p.Body)
	}
	if b.Len() == 0 {
		return "none"
	}
	return b.String()
}
