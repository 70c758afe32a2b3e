// Command echo is a first-party dynworkers plugin offering the class
// "dynworkers.echo" (aliases "echo" and Vumi's
// "vumi.demos.words.EchoWorker"): a Vumi application that replies to every
// user message with its own content. See README.md.
package main

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/dynworkers/dynworkers/sdk"
	"github.com/dynworkers/dynworkers/sdk/vumi"
)

// Config is the echo class's config block.
type Config struct {
	TransportName string `config:"transport_name,required" help:"the transport to serve: echo consumes <transport_name>.inbound and <transport_name>.event and replies on <transport_name>.outbound"`
}

// Class is the echo class.
var Class = sdk.Class{
	Name:        "dynworkers.echo",
	Aliases:     []string{"echo", "vumi.demos.words.EchoWorker"},
	Description: "Vumi echo application: replies to every user message with its content.",
	Version:     "1.0.0",
	New: sdk.Construct(func(cfg Config) (sdk.Worker, error) {
		if err := checkTransportName(cfg.TransportName); err != nil {
			return nil, err
		}
		return &Echo{cfg: cfg}, nil
	}),
}

func main() { sdk.Serve(Class) }

// checkTransportName refuses a transport name whose routing keys a worker
// may not use.
func checkTransportName(name string) error {
	if name == "" {
		return sdk.InvalidConfig("transport_name must not be empty")
	}
	for _, key := range []string{vumi.InboundKey(name), vumi.OutboundKey(name), vumi.EventKey(name)} {
		if err := sdk.CheckBusName("routing key", key); err != nil {
			return sdk.InvalidConfig("transport_name %q: %v", name, err)
		}
	}
	return nil
}

// Echo is a worker of the echo class.
type Echo struct {
	cfg Config
	env sdk.Env

	echoed, ignored         atomic.Int64
	acks, nacks, deliveries atomic.Int64
	metricsOnce             sync.Once
}

// Start consumes the transport's inbound messages and events.
func (e *Echo) Start(_ context.Context, env sdk.Env) error {
	e.env = env
	tn := e.cfg.TransportName
	if err := vumi.ConsumeUserMessages(env, vumi.InboundKey(tn), e.handleInbound); err != nil {
		return err
	}
	if err := vumi.ConsumeEvents(env, vumi.EventKey(tn), e.handleEvent); err != nil {
		return err
	}
	env.Logger().Info("echoing", "inbound", vumi.InboundKey(tn), "outbound", vumi.OutboundKey(tn))
	return nil
}

// handleInbound replies to a message with its content, keeping the session
// open. A message without content (a session starting or ending on a
// transport that says so with a null content) and one that closes its
// session get no reply.
func (e *Echo) handleInbound(ctx context.Context, msg *vumi.TransportUserMessage) error {
	if !msg.Content.Valid || msg.SessionEvent == vumi.SessionClose {
		e.ignored.Add(1)
		return nil
	}
	reply := msg.Reply(msg.Content.String, true)
	if err := vumi.PublishUserMessage(ctx, e.env, vumi.OutboundKey(e.cfg.TransportName), reply); err != nil {
		return err // requeued, replied to later
	}
	e.echoed.Add(1)
	e.metric("echoed", 1, sdk.AggSum)
	return nil
}

// handleEvent counts the transport's events about the replies.
func (e *Echo) handleEvent(_ context.Context, ev *vumi.TransportEvent) error {
	switch ev.EventType {
	case vumi.EventAck:
		e.acks.Add(1)
	case vumi.EventNack:
		e.nacks.Add(1)
		e.env.Logger().Warn("the transport could not send a reply", "user_message_id", ev.UserMessageID, "reason", ev.NackReason)
	case vumi.EventDeliveryReport:
		e.deliveries.Add(1)
	}
	return nil
}

// metric reports a metric; a host that collects none is noted once.
func (e *Echo) metric(name string, v float64, aggs ...string) {
	if err := e.env.Metric(name, v, aggs...); err != nil {
		e.metricsOnce.Do(func() { e.env.Logger().Debug("not reporting metrics", "error", err) })
	}
}

// Stop has nothing to do: the SDK stops the consumers before it.
func (e *Echo) Stop(context.Context) error { return nil }

// Status reports the counts.
func (e *Echo) Status(context.Context) (map[string]any, error) {
	return map[string]any{
		"transport_name":   e.cfg.TransportName,
		"echoed":           e.echoed.Load(),
		"ignored":          e.ignored.Load(),
		"acks":             e.acks.Load(),
		"nacks":            e.nacks.Load(),
		"delivery_reports": e.deliveries.Load(),
	}, nil
}
