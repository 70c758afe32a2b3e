package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dynworkers/dynworkers/host/internal/broker"
)

// Handler handles one control message body; the dispatcher implements it.
// It returns once the effect is durable (persisted), since the transport
// acknowledges the message right after. It must be safe for concurrent
// use: the host's queue and the shared "any" queue are handled
// concurrently. A message may be handled more than once (it is redelivered
// when the connection is lost before its ack), so operations must be
// idempotent where they can be, as start is.
type Handler interface {
	Handle(ctx context.Context, body []byte) Reply
}

// DefaultPrefetch is the prefetch of the host's own queue when
// AMQPOptions.Prefetch is not set.
const DefaultPrefetch = 16

// replyTimeout bounds the publication of one reply.
const replyTimeout = 10 * time.Second

// AMQPOptions configure an AMQPTransport.
type AMQPOptions struct {
	SystemID, HostName string
	// Conn is the broker connection. Dial it with Setup set to
	// Topology(SystemID, HostName).
	Conn *broker.Conn
	// Handler handles every control message.
	Handler Handler
	// Logger receives one line per failure. Message bodies are never
	// logged: they may carry sensitive config values. Default: no logging.
	Logger hclog.Logger
	// Prefetch is how many messages of the host's own queue the broker may
	// deliver ahead of the one being handled. Default DefaultPrefetch. The
	// shared "any" queue always uses 1, so that a start sent there goes to
	// a host that is free to take it rather than queueing behind another
	// host's backlog.
	Prefetch int
	// MaxMessageBytes bounds a message body: a larger one is refused
	// before it is decoded (see refuseOversize). Default
	// DefaultMaxMessageBytes.
	MaxMessageBytes int
}

// AMQPTransport receives control messages over AMQP (DESIGN §5): it
// consumes this host's queue and the system's shared "any" queue, hands
// each body to the Handler, answers to reply_to and acknowledges.
//
// Messages of one queue are handled one at a time, in the order of the
// queue, so control messages for the same worker keep their order; the two
// queues are handled concurrently.
//
// Acknowledgement rules, per delivery:
//
//   - The ack is sent only after Handle returned (the effect is durable) and,
//     if the message has reply_to, after the broker confirmed the reply. If
//     the reply cannot be published because the connection is lost, the
//     message is not acked: the broker redelivers it after reconnection and
//     it is handled again. If the reply fails while connected, the message
//     is requeued; if the broker refuses the reply (nack), the message is
//     acked anyway and the loss of the reply logged, since handling it again
//     would not change that.
//   - A reply with code "malformed", "unauthenticated" or "forbidden"
//     rejects the message without requeue, so the broker dead-letters it to
//     vumi.control.dlx: it can never loop, and an operator sees what was
//     refused. The reply is still sent if reply_to is set.
//   - A panic in Handle is recovered: the client gets an "internal" reply
//     and the message is dead-lettered like a malformed one. Acking would
//     claim an effect nobody knows happened, and requeueing a message that
//     makes the handler panic would loop; dead-lettering stops the loop and
//     keeps the message for an operator.
//   - If the run's context ends while Handle runs and Handle answers
//     "internal", the message is left unacked and goes back to the queue
//     when the consumer stops: the host is shutting down and the effect may
//     not have happened.
type AMQPTransport struct {
	o   AMQPOptions
	log hclog.Logger
}

// NewAMQPTransport returns a transport; Run starts it.
func NewAMQPTransport(o AMQPOptions) *AMQPTransport {
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	if o.Prefetch <= 0 {
		o.Prefetch = DefaultPrefetch
	}
	return &AMQPTransport{o: o, log: o.Logger}
}

// Setup declares the control topology; it is TopologyLogged(SystemID,
// HostName, Logger).
func (t *AMQPTransport) Setup(ch *amqp.Channel) error {
	return TopologyLogged(t.o.SystemID, t.o.HostName, t.log)(ch)
}

// Run consumes this host's queue and the shared "any" queue until ctx ends,
// resuming on every new connection of Conn; messages sent while the host
// was disconnected are waiting in the queues and are handled then. Run
// returns nil when ctx ends, broker.ErrClosed if Conn was closed first, or
// an error at once if the options are incomplete.
func (t *AMQPTransport) Run(ctx context.Context) error {
	switch {
	case t.o.Conn == nil:
		return errors.New("control over AMQP: no broker connection")
	case t.o.Handler == nil:
		return errors.New("control over AMQP: no handler")
	}
	if err := CheckNames(t.o.SystemID, t.o.HostName); err != nil {
		return fmt.Errorf("control over AMQP: %w", err)
	}
	queues := []struct {
		name     string
		prefetch int
	}{
		{HostQueue(t.o.SystemID, t.o.HostName), t.o.Prefetch},
		{AnyQueue(t.o.SystemID), 1},
	}
	var wg sync.WaitGroup
	for _, q := range queues {
		wg.Go(func() {
			t.o.Conn.Consume(ctx, q.name, q.prefetch, func(d amqp.Delivery) { t.deliver(ctx, q.name, d) })
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return broker.ErrClosed
}

// PublishEvent publishes body as JSON to the events exchange with the key
// <system_id>.<host_name>.<event>, persistent, and returns once the broker
// confirmed it. While disconnected it waits for the connection until ctx
// ends.
func (t *AMQPTransport) PublishEvent(ctx context.Context, event string, body any) error {
	if event == "" {
		return errors.New("publishing an event: no event name")
	}
	b, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("publishing event %q: %w", event, err)
	}
	key := EventKey(t.o.SystemID, t.o.HostName, event)
	err = t.o.Conn.Publish(ctx, EventsExchange, key, amqp.Publishing{
		ContentType:  "application/json",
		DeliveryMode: amqp.Persistent,
		Timestamp:    time.Now(),
		Type:         event,
		Body:         b,
	})
	if err != nil {
		return fmt.Errorf("publishing event %q: %w", key, err)
	}
	return nil
}

// deliver handles one delivery and settles it by the rules on AMQPTransport.
func (t *AMQPTransport) deliver(ctx context.Context, queue string, d amqp.Delivery) {
	log := t.log.With("queue", queue, "routing_key", d.RoutingKey, "correlation_id", d.CorrelationId, "redelivered", d.Redelivered)
	if t.refuseOversize(ctx, log, d) {
		return
	}
	ctx = withDeliveryCredentials(ctx, d)
	// The dispatcher tells a system-wide start (.any, .all) by its key.
	ctx = WithRoute(ctx, d.RoutingKey)
	reply, panicked := t.handle(ctx, log, d.Body)
	code := Code("")
	if reply.Error != nil {
		code = reply.Error.Code
	}
	switch {
	case panicked || code == CodeMalformed || refusedByPolicy(code):
		if err := t.reply(ctx, d, reply); err != nil {
			log.Warn("cannot send the reply to a rejected control message", "error", err)
		}
		if err := d.Nack(false, false); err != nil {
			log.Warn("cannot reject a control message; it will be redelivered", "error", err)
			return
		}
		log.Warn("control message rejected to the dead-letter exchange", "code", code, "panic", panicked)
		return
	case code == CodeInternal && ctx.Err() != nil:
		log.Info("control message interrupted by shutdown; left for redelivery")
		return
	}
	if err := t.reply(ctx, d, reply); err != nil {
		if !errors.Is(err, broker.ErrNacked) {
			log.Warn("cannot send a control reply; the message will be handled again", "error", err)
			_ = d.Nack(false, true) // fails harmlessly if the channel is gone: the broker requeues then
			return
		}
		log.Error("the broker refused a control reply; acking the message without it", "error", err)
	}
	if err := d.Ack(false); err != nil {
		log.Warn("cannot ack a control message; it will be handled again", "error", err)
		return
	}
	if code != "" {
		log.Debug("control message answered with an error", "code", code)
	}
}

// refuseOversize refuses a delivery whose body is over MaxMessageBytes
// before anything decodes it: the client gets a "malformed" reply naming
// the limit, the message is dead-lettered, and the body is let go at once.
// It reports whether it refused d.
//
// The AMQP client has already read the whole body by then (amqp091-go
// assembles it before it delivers), so the host holds one copy of it,
// briefly, and no more: nothing parses or copies it. The broker's own
// max_message_size (rabbitmq.conf) is what refuses a body before it
// reaches the host; docs/security.md says how to set it.
func (t *AMQPTransport) refuseOversize(ctx context.Context, log hclog.Logger, d amqp.Delivery) bool {
	size := len(d.Body)
	cerr := checkMessageSize(size, t.o.MaxMessageBytes)
	if cerr == nil {
		return false
	}
	d.Body = nil
	if size >= bigBody {
		// Give the memory back now rather than at the next GC cycles: a
		// burst of such messages should not leave the host's RSS high.
		defer debug.FreeOSMemory()
	}
	if err := t.reply(ctx, d, Reply{Error: cerr}); err != nil {
		log.Warn("cannot send the reply to an oversized control message", "error", err)
	}
	if err := d.Nack(false, false); err != nil {
		log.Warn("cannot reject an oversized control message; it will be redelivered", "error", err)
		return true
	}
	log.Warn("control message over the size limit rejected to the dead-letter exchange", "size", size, "error", cerr.Message)
	return true
}

// bigBody is the size from which a refused body's memory is handed back
// to the system at once.
const bigBody = 16 << 20

// handle calls the Handler, turning a panic into an internal error.
func (t *AMQPTransport) handle(ctx context.Context, log hclog.Logger, body []byte) (r Reply, panicked bool) {
	defer func() {
		if p := recover(); p != nil {
			log.Error("control handler panicked", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			r = Reply{Error: Errorf(CodeInternal, "internal error while handling the message")}
			panicked = true
		}
	}()
	return t.o.Handler.Handle(ctx, body), false
}

// reply publishes r to d's reply_to, if any, with d's correlation id, and
// waits for the broker's confirmation. It does not wait for a new
// connection: once d's connection is lost, d cannot be acked anymore and a
// reply would only duplicate the one its redelivery will get.
func (t *AMQPTransport) reply(ctx context.Context, d amqp.Delivery, r Reply) error {
	if d.ReplyTo == "" {
		return nil
	}
	if ch, ok := d.Acknowledger.(*amqp.Channel); ok && ch.IsClosed() {
		return broker.ErrDisconnected
	}
	body, err := json.Marshal(r)
	if err != nil {
		t.log.Error("cannot encode a control reply", "error", err)
		body, _ = json.Marshal(Reply{RequestID: r.RequestID, Error: Errorf(CodeInternal, "cannot encode the reply")})
	}
	// The reply is part of finishing the message, so a shutdown that
	// begins now does not cut it short; replyTimeout bounds it.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), replyTimeout)
	defer cancel()
	// Persistent: the message is acked once the broker confirmed the reply,
	// so a reply to a durable reply_to queue must survive a broker restart
	// as the effect does (the broker confirms a persistent message to a
	// durable queue once it is on disk).
	return t.o.Conn.TryPublish(rctx, "", d.ReplyTo, amqp.Publishing{
		ContentType:   "application/json",
		DeliveryMode:  amqp.Persistent,
		CorrelationId: d.CorrelationId,
		Timestamp:     time.Now(),
		Body:          body,
	})
}
