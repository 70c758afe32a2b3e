package pluginproc

import (
	"context"
	"errors"
	"io"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dynworkers/dynworkers/internal/wire"
	"github.com/dynworkers/dynworkers/internal/wire/proto"
	"github.com/dynworkers/dynworkers/sdk"
)

// BusHost carries a worker's messages: the Host service's Publish and
// Consume (DESIGN §7). The daemon implements it on top of its bus (RabbitMQ
// or the embedded one) and passes it in Options.BusHost, one per worker
// (it may be shared: the calls carry no worker identity). Nil means the
// host offers the worker no bus, and its calls fail with
// FailedPrecondition.
//
// Names reach a BusHost already checked with CheckBusName: never empty,
// never reserved. The methods are called from the Host service's gRPC
// goroutines, concurrently, from just before the worker's Start RPC until
// the process is gone. Errors are mapped to gRPC codes by HostStatus; an
// error of the bus itself (a broker that is down and does not come back
// within the call's deadline) should wrap ErrBusUnavailable.
type BusHost interface {
	// Publish publishes body on the "vumi" exchange with routingKey and
	// headers (nil for none), persistent, and returns once the bus has
	// taken it (RabbitMQ: the broker confirmed it) or ctx ends. ctx ends
	// after Options.HostCallTimeout, when the plugin gives up, or when the
	// process ends.
	//
	// deferred is set for a publish the worker makes while handling a
	// delivery (PublishRequest.deferred, or the Outbox stream): then
	// Publish may return once the message is sent, before its
	// confirmation, provided the Consumers of the same process ack no
	// delivery on the bus before the deferred publishes made while the
	// worker had it are confirmed, and requeue it instead when one of them
	// failed, whether the broker refused it or it could not be sent (an
	// error Publish returns). The BusHost keeps that account, not
	// pluginproc. For a publish of the Outbox stream ctx is the stream's,
	// without a deadline: a deferred Publish may block while the process
	// has too many deferred publishes outstanding (backpressure: the
	// Outbox stream is not read meanwhile, so the worker's sends block),
	// and bounds its own send.
	Publish(ctx context.Context, routingKey string, body []byte, headers map[string]string, deferred bool) error
	// Consume declares spec.Queue durable, binds it to the "vumi" exchange
	// with each of spec.Bindings (never empty: [queue] unless the worker
	// chose others), and returns a Consumer of its messages that has at
	// most spec.Prefetch of them unsettled at a time (1..sdk.MaxPrefetch).
	// The Consumer runs until it is closed or ctx ends, whichever comes
	// first; pluginproc always closes it, at the latest when the process
	// is gone. Consume itself should return promptly: its setup is bounded
	// by Options.HostCallTimeout.
	Consume(ctx context.Context, spec ConsumeSpec) (Consumer, error)
}

// DefaultMaxRedeliveries is a consumer's max_redeliveries when the worker
// sends 0: its deliveries are dead-lettered at their fifth failure.
const DefaultMaxRedeliveries = 5

// ConsumeSpec is what a worker's Consume asks for, checked, with the
// protocol's defaults filled in.
type ConsumeSpec struct {
	Queue    string
	Bindings []string // never empty
	Prefetch int      // 1..sdk.MaxPrefetch
	// MaxRedeliveries is how many failed attempts (a Nack with requeue
	// and a reason) a delivery may have: at the last one the BusHost
	// publishes it to DeadLetter instead of requeueing it. Never 0 (the
	// protocol's 0 is DefaultMaxRedeliveries); negative: never
	// dead-lettered.
	MaxRedeliveries int
	// DeadLetter is the routing key, and queue, of the dead letters:
	// "<queue>.dlq" unless the worker chose another (checked like a queue
	// name).
	DeadLetter string
}

// Consumer is one consumer of a queue, made by BusHost.Consume for one
// Consume stream of a worker.
//
// pluginproc receives from Deliveries only while the worker has fewer than
// the consumer's prefetch deliveries unsettled, so a Consumer that buffers
// nothing beyond what it is asked for keeps at most prefetch messages in
// the host per consumer, however slow the worker. It settles every
// delivery it received at most once, with Ack or Nack, and calls Close
// exactly once.
//
// Ack and Nack are called from the worker's Ack and Nack calls, whose
// answer waits for them, and pluginproc gives the stream its credit back
// as soon as they return; they should not wait for the bus. A Consumer may
// settle on the bus later (the daemon's waits for the confirmations of the
// deferred publishes before it): the bus does not deliver more than
// prefetch messages not acked on it, so deliveries slow down rather than
// pile up while settlements wait.
type Consumer interface {
	// Deliveries delivers the queue's messages. It is closed when the
	// consumer ends by itself (the bus gave up on it); pluginproc then
	// ends the worker's stream with Unavailable, and the SDK subscribes
	// again.
	Deliveries() <-chan Delivery
	// Ack acks the delivery with the given tag.
	Ack(tag uint64) error
	// Nack nacks the delivery with the given tag: requeued when requeue is
	// set, dropped (dead-lettered where configured) otherwise. reason is
	// the handler's error when the worker's handler failed
	// (NackRequest.error), empty for a plain return to the queue (a
	// consumer stopping): a Nack with requeue and a reason is a failed
	// attempt, which counts towards ConsumeSpec.MaxRedeliveries.
	Nack(tag uint64, requeue bool, reason string) error
	// Close ends the consumer; the bus requeues the deliveries that are
	// not settled. A Consumer that settles later finishes (within a
	// bound) what Ack and Nack were asked before Close.
	Close() error
}

// Receiver is an optional interface of a Consumer. pluginproc then takes
// each delivery with Receive, in the goroutine that sends it on to the
// worker, and does not call Deliveries: no goroutine stands between the
// bus and the worker, and the Consumer knows when a delivery is handed
// over.
type Receiver interface {
	// Receive waits for the next delivery until done is closed. It
	// returns false when done was closed, or when the consumer has ended
	// by itself (as when Deliveries is closed).
	Receive(done <-chan struct{}) (Delivery, bool)
}

// TryReceiver is an optional interface of a Receiver: pluginproc takes
// the deliveries that are ready with TryReceive to send them to the worker
// in one stream message with the one Receive returned, when the worker
// takes batches (ConsumeRequest.max_batch).
type TryReceiver interface {
	// TryReceive returns a delivery if one is ready now, without waiting;
	// false if none is (or the consumer has ended: the next Receive says
	// so).
	TryReceive() (Delivery, bool)
}

// Delivery is one message of a Consumer.
type Delivery struct {
	// Tag names the delivery in Ack and Nack; unique within its Consumer
	// while it is unsettled. The worker sees a tag of pluginproc's own.
	Tag         uint64
	RoutingKey  string
	Body        []byte
	Headers     map[string]string
	Redelivered bool
	// Failures is how many failed attempts the BusHost knows of for the
	// message (Delivery.failures).
	Failures int
}

// MetricSink receives the values a worker reports with Env.Metric. The
// daemon implements it, bound to the worker (it prefixes the name with the
// worker's), and passes it in Options.MetricSink; nil means the host
// collects no metrics from the worker, and its Metric calls fail with
// FailedPrecondition.
//
// Metric is called from the Host service's gRPC goroutines, concurrently;
// it should only record the value (the daemon aggregates and publishes on
// its own timer), not block. The name is checked (non-empty, at most 255
// bytes, UTF-8, but not yet sanitised), the value is finite, and the
// aggregators are valid, without duplicates, never empty (see
// wire.CheckMetric). An error refuses the metric: the worker gets it as
// InvalidArgument (sdk.ErrInvalidMetric), unless it carries a gRPC status
// of its own.
type MetricSink interface {
	Metric(name string, value float64, aggregators []string) error
}

// Errors of the bus calls.
var (
	// ErrReservedName is the error of CheckBusName for a name of the
	// host's own (PermissionDenied).
	ErrReservedName = sdk.ErrReservedName
	// ErrInvalidName is the error of CheckBusName for an empty, overlong
	// or non-UTF-8 name (InvalidArgument).
	ErrInvalidName = sdk.ErrInvalidName
	// ErrBusUnavailable is for a BusHost to wrap when its bus cannot take
	// or give messages now (Unavailable): the worker may try again.
	ErrBusUnavailable = errors.New("the message bus is unavailable")
)

// CheckBusName checks a routing key, queue name or binding key that a
// worker asked for (kind says which: "routing key", "queue", "binding"). It
// returns nil or an error matching ErrInvalidName (an empty name, one longer
// than 255 bytes or not UTF-8) or ErrReservedName (a name starting with
// "vumi.control", "vumi.metrics", "vumi.health", "vumi.events" or "amq.":
// the host's control, metrics, health and events exchanges and queues, and
// AMQP's own), with a message that says why. pluginproc checks every name a
// worker sends with it before it reaches the BusHost; the daemon may use it
// for names from elsewhere. The rule is sdk.CheckBusName, so a worker gets
// the same answer in its unit tests.
func CheckBusName(kind, name string) error { return sdk.CheckBusName(kind, name) }

// consumerGone is the error of an Ack or Nack naming a consumer that has
// ended.
func consumerGone(id uint64) error {
	return status.Errorf(codes.NotFound, "consumer %d has ended; the messages it did not settle were requeued", id)
}

// busState is the bus part of a worker process's Host service: its
// consumers.
type busState struct {
	mu     sync.Mutex
	closed bool
	nextID uint64
	all    map[uint64]*streamConsumer
}

// streamConsumer is the host side of one Consume stream: the BusHost's
// Consumer and the deliveries the worker has not settled.
type streamConsumer struct {
	id       uint64
	queue    string
	c        Consumer
	credit   chan struct{} // one token per delivery the worker may still take
	closeOne sync.Once

	mu      sync.Mutex
	nextTag uint64
	pending map[uint64]uint64 // our tag → the Consumer's tag, of the deliveries the worker has not settled
}

// add registers a consumer; false once the process is gone.
func (b *busState) add(c Consumer, queue string, prefetch int) (*streamConsumer, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, false
	}
	if b.all == nil {
		b.all = map[uint64]*streamConsumer{}
	}
	b.nextID++
	sc := &streamConsumer{id: b.nextID, queue: queue, c: c, credit: make(chan struct{}, prefetch), pending: map[uint64]uint64{}}
	for range prefetch {
		sc.credit <- struct{}{}
	}
	b.all[sc.id] = sc
	return sc, true
}

func (b *busState) get(id uint64) *streamConsumer {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.all[id]
}

// remove forgets the consumer and closes it.
func (b *busState) remove(sc *streamConsumer) {
	b.mu.Lock()
	delete(b.all, sc.id)
	b.mu.Unlock()
	sc.close()
}

// closeAll closes every consumer and refuses new ones: the process is gone.
func (b *busState) closeAll() {
	b.mu.Lock()
	b.closed = true
	all := b.all
	b.all = nil
	b.mu.Unlock()
	// At once: a Consumer's Close may wait (bounded) for what it settles
	// on the bus.
	var wg sync.WaitGroup
	for _, sc := range all {
		wg.Go(sc.close)
	}
	wg.Wait()
}

func (sc *streamConsumer) close() {
	sc.closeOne.Do(func() { _ = sc.c.Close() })
}

// track records a delivery sent to the worker and returns its tag.
func (sc *streamConsumer) track(busTag uint64) uint64 {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	sc.nextTag++
	sc.pending[sc.nextTag] = busTag
	return sc.nextTag
}

// settle forgets a delivery the worker settles and returns its Consumer's
// tag; false if it is not pending.
func (sc *streamConsumer) settle(tag uint64) (uint64, bool) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	busTag, ok := sc.pending[tag]
	if ok {
		delete(sc.pending, tag)
	}
	return busTag, ok
}

func (h *hostServer) noBus() error {
	return status.Errorf(codes.FailedPrecondition, "the host offers no message bus to worker %q", h.worker)
}

func (h *hostServer) Publish(ctx context.Context, req *proto.PublishRequest) (*proto.PublishResponse, error) {
	if err := CheckBusName("routing key", req.GetRoutingKey()); err != nil {
		return nil, HostStatus(err)
	}
	if h.bus == nil {
		return nil, h.noBus()
	}
	_, err := hostCall(ctx, h, "Publish", func(ctx context.Context) (struct{}, error) {
		return struct{}{}, h.bus.Publish(ctx, req.GetRoutingKey(), req.GetBody(), req.GetHeaders(), req.GetDeferred())
	})
	if err != nil {
		return nil, err
	}
	return &proto.PublishResponse{}, nil
}

// Consume serves one Consume stream: it sets up a Consumer, announces it,
// and then forwards its deliveries, one only while the worker has fewer
// than prefetch unsettled, until the worker cancels the stream, the
// Consumer ends or the process is gone. The Consumer is closed then, so
// the bus requeues what the worker did not settle.
func (h *hostServer) Consume(req *proto.ConsumeRequest, stream proto.Host_ConsumeServer) error {
	queue := req.GetQueue()
	if err := CheckBusName("queue", queue); err != nil {
		return HostStatus(err)
	}
	bindings := req.GetBindings()
	if len(bindings) == 0 {
		bindings = []string{queue}
	}
	for _, b := range bindings {
		if err := CheckBusName("binding", b); err != nil {
			return HostStatus(err)
		}
	}
	prefetch := int(req.GetPrefetch())
	switch {
	case prefetch == 0:
		prefetch = sdk.DefaultPrefetch
	case prefetch < 0 || prefetch > sdk.MaxPrefetch:
		return status.Errorf(codes.InvalidArgument, "prefetch %d is not within 1..%d", prefetch, sdk.MaxPrefetch)
	}
	spec := ConsumeSpec{Queue: queue, Bindings: bindings, Prefetch: prefetch,
		MaxRedeliveries: int(req.GetMaxRedeliveries()), DeadLetter: req.GetDeadLetterKey()}
	if spec.MaxRedeliveries == 0 {
		spec.MaxRedeliveries = DefaultMaxRedeliveries
	}
	if spec.DeadLetter == "" {
		spec.DeadLetter = queue + ".dlq"
	}
	if err := CheckBusName("dead-letter key", spec.DeadLetter); err != nil {
		return HostStatus(err)
	}
	if h.bus == nil {
		return h.noBus()
	}
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	// The Consumer lives as long as the stream (ctx), not the setup's
	// deadline; one that comes after the deadline is closed.
	c, err := hostCall(ctx, h, "Consume", func(context.Context) (Consumer, error) {
		return h.bus.Consume(ctx, spec)
	}, func(c Consumer) { _ = c.Close() })
	if err != nil {
		return err
	}
	sc, ok := h.consumers.add(c, queue, prefetch)
	if !ok {
		_ = c.Close()
		return status.Error(codes.Canceled, "the worker's process has ended")
	}
	defer h.consumers.remove(sc)
	// Deliveries per stream message: as many as the worker takes
	// (ConsumeRequest.max_batch), within the prefetch.
	maxBatch := min(max(int(req.GetMaxBatch()), 1), prefetch)
	h.logger.Debug("consuming for the worker", "queue", queue, "bindings", bindings, "prefetch", prefetch, "max_batch", maxBatch, "consumer", sc.id)
	if err := stream.Send(&proto.Delivery{ConsumerId: sc.id}); err != nil {
		return err
	}
	for {
		// Take a delivery from the bus only once the worker may have it.
		select {
		case <-sc.credit:
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
		var d Delivery
		ok := false
		if r, isR := c.(Receiver); isR {
			d, ok = r.Receive(ctx.Done())
		} else {
			select {
			case d, ok = <-c.Deliveries():
			case <-ctx.Done():
			}
		}
		if !ok {
			if ctx.Err() != nil {
				return status.FromContextError(ctx.Err()).Err()
			}
			h.logger.Warn("the bus ended a consumer of the worker", "queue", queue)
			return status.Errorf(codes.Unavailable, "the host's consumer of queue %q ended; subscribe again", queue)
		}
		msg := sc.message(d)
		// More in the same stream message, as far as the worker takes
		// batches and the bus has them ready now.
		for len(msg.More) < maxBatch-1 {
			m, ok := sc.tryNext()
			if !ok {
				break
			}
			msg.More = append(msg.More, m)
		}
		if err := stream.Send(msg); err != nil {
			return err // the worker is gone; closing the Consumer requeues
		}
	}
}

// message records a delivery sent to the worker and returns its message.
func (sc *streamConsumer) message(d Delivery) *proto.Delivery {
	return &proto.Delivery{
		ConsumerId:  sc.id,
		DeliveryTag: sc.track(d.Tag),
		RoutingKey:  d.RoutingKey,
		Body:        d.Body,
		Headers:     d.Headers,
		Redelivered: d.Redelivered,
		Failures:    uint32(max(d.Failures, 0)),
	}
}

// tryNext takes another delivery for the worker if it may have one (a
// credit) and the bus has one ready, without waiting.
func (sc *streamConsumer) tryNext() (*proto.Delivery, bool) {
	select {
	case <-sc.credit:
	default:
		return nil, false
	}
	var d Delivery
	ok := false
	if tr, isTR := sc.c.(TryReceiver); isTR {
		d, ok = tr.TryReceive()
	} else if _, isR := sc.c.(Receiver); !isR {
		select {
		case d, ok = <-sc.c.Deliveries():
		default:
		}
	}
	if !ok {
		sc.credit <- struct{}{} // not used: the next Receive waits for one
		return nil, false
	}
	return sc.message(d), true
}

func (h *hostServer) Ack(ctx context.Context, req *proto.AckRequest) (*proto.AckResponse, error) {
	if err := h.settle(ctx, "Ack", req.GetConsumerId(), req.GetDeliveryTag(), true, false, ""); err != nil {
		return nil, err
	}
	return &proto.AckResponse{}, nil
}

func (h *hostServer) Nack(ctx context.Context, req *proto.NackRequest) (*proto.NackResponse, error) {
	if err := h.settle(ctx, "Nack", req.GetConsumerId(), req.GetDeliveryTag(), false, req.GetRequeue(), h.scrubber.String(req.GetError())); err != nil {
		return nil, err
	}
	return &proto.NackResponse{}, nil
}

// settle settles a delivery of one of the worker's consumers (an ack, or
// a nack with requeue or not, and the handler's error if it failed) and
// gives the consumer credit for another.
func (h *hostServer) settle(ctx context.Context, call string, id, tag uint64, ack, requeue bool, reason string) error {
	sc, busTag, err := h.take(id, tag)
	if err != nil {
		return err
	}
	defer func() { sc.credit <- struct{}{} }()
	_, err = hostCall(ctx, h, call, func(context.Context) (struct{}, error) {
		return struct{}{}, apply(sc, busTag, ack, requeue, reason)
	})
	return err
}

// take finds an unsettled delivery of one of the worker's consumers and
// forgets it. The caller gives the consumer its credit back once the
// delivery is settled.
func (h *hostServer) take(id, tag uint64) (*streamConsumer, uint64, error) {
	if h.bus == nil {
		return nil, 0, h.noBus()
	}
	sc := h.consumers.get(id)
	if sc == nil {
		return nil, 0, consumerGone(id)
	}
	busTag, ok := sc.settle(tag)
	if !ok {
		return nil, 0, status.Errorf(codes.NotFound, "consumer %d (queue %q) has no unsettled delivery %d: settled already, or never sent", id, sc.queue, tag)
	}
	return sc, busTag, nil
}

// apply settles a delivery taken from sc on its Consumer.
func apply(sc *streamConsumer, busTag uint64, ack, requeue bool, reason string) error {
	if ack {
		return sc.c.Ack(busTag)
	}
	return sc.c.Nack(busTag, requeue, reason)
}

// Outbox serves the worker's one-way calls (see host.proto), in order,
// until the worker ends the stream or the process is gone.
func (h *hostServer) Outbox(stream proto.Host_OutboxServer) error {
	ctx := stream.Context()
	if err := stream.Send(&proto.OutboxReply{}); err != nil {
		return err
	}
	for {
		req, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		for _, call := range req.GetCalls() {
			if err := h.outboxCall(ctx, stream, call); err != nil {
				return err
			}
		}
	}
}

// outboxCall handles one call of the outbox; an error ends the stream.
func (h *hostServer) outboxCall(ctx context.Context, stream proto.Host_OutboxServer, call *proto.OutboxCall) error {
	switch c := call.GetCall().(type) {
	case *proto.OutboxCall_Publish:
		return h.outboxPublish(ctx, c.Publish)
	case *proto.OutboxCall_Ack:
		h.outboxSettle("ack", c.Ack.GetConsumerId(), c.Ack.GetDeliveryTag(), true, false, "")
	case *proto.OutboxCall_Nack:
		h.outboxSettle("nack", c.Nack.GetConsumerId(), c.Nack.GetDeliveryTag(), false, c.Nack.GetRequeue(), h.scrubber.String(c.Nack.GetError()))
	case *proto.OutboxCall_Metric:
		if _, err := h.Metric(ctx, c.Metric); err != nil {
			h.logger.Debug("a metric of the worker's outbox was refused", "metric", c.Metric.GetName(), "error", status.Convert(err).Message())
		}
	case *proto.OutboxCall_Sync:
		return stream.Send(&proto.OutboxReply{Synced: c.Sync})
	}
	return nil
}

// outboxPublish publishes a deferred message of the outbox, with the
// stream's context: the BusHost may hold it back (backpressure) and
// requeues the deliveries it protects if it fails. A name the SDK would
// never send ends the stream: the SDK requeues the deliveries whose
// publishes went on a broken outbox.
func (h *hostServer) outboxPublish(ctx context.Context, req *proto.PublishRequest) error {
	key := req.GetRoutingKey()
	if err := CheckBusName("routing key", key); err != nil {
		return HostStatus(err)
	}
	if h.bus == nil {
		h.logger.Warn("a deferred publish of the worker was refused", "routing_key", key, "error", h.noBus())
		return nil
	}
	if err := h.bus.Publish(ctx, key, req.GetBody(), req.GetHeaders(), true); err != nil && ctx.Err() == nil {
		h.logger.Warn("a deferred publish of the worker failed; the deliveries it has not settled will be requeued", "routing_key", key, "error", err)
	}
	return nil
}

// outboxSettle settles a delivery for the outbox; a failure is logged.
func (h *hostServer) outboxSettle(call string, id, tag uint64, ack, requeue bool, reason string) {
	sc, busTag, err := h.take(id, tag)
	if err == nil {
		err = apply(sc, busTag, ack, requeue, reason)
		sc.credit <- struct{}{}
	}
	if err != nil {
		h.logger.Debug("settling a delivery of the worker's outbox failed; the bus delivers it again", "call", call, "error", err)
	}
}

func (h *hostServer) Metric(_ context.Context, req *proto.MetricRequest) (*proto.MetricResponse, error) {
	// A metric's name is shown (Vumi metrics, /metrics): never a secret.
	name := h.scrubber.String(req.GetName())
	aggs, err := wire.CheckMetric(name, req.GetValue(), req.GetAggregators())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if h.metrics == nil {
		return nil, status.Errorf(codes.FailedPrecondition, "the host collects no metrics from worker %q", h.worker)
	}
	if err := h.metrics.Metric(name, req.GetValue(), aggs); err != nil {
		// The sink refuses a metric for what it is (a name that collides
		// with another, one too many): the worker's ErrInvalidMetric.
		if _, ok := status.FromError(err); ok {
			return nil, HostStatus(err)
		}
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return &proto.MetricResponse{}, nil
}

// HostStatus returns the gRPC status error a worker gets for err, the error
// of a ChildHost, BusHost, Consumer or MetricSink: an error that carries a
// gRPC status (it implements GRPCStatus() *status.Status, possibly wrapped)
// keeps it; otherwise the code is PermissionDenied for ErrReservedName,
// InvalidArgument for ErrInvalidName, Unavailable for ErrBusUnavailable,
// and as ChildStatus says for the rest, with err's text as the message in
// every case. nil gives nil.
func HostStatus(err error) error {
	if err == nil {
		return nil
	}
	if s, ok := status.FromError(err); ok {
		return s.Err()
	}
	switch {
	case errors.Is(err, ErrReservedName):
		return status.Error(codes.PermissionDenied, err.Error())
	case errors.Is(err, ErrInvalidName):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, ErrBusUnavailable):
		return status.Error(codes.Unavailable, err.Error())
	}
	return ChildStatus(err)
}
