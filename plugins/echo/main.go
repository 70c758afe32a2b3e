// Command echo is a first-party dynworkers plugin offering the class
// "dynworkers.echo" (aliases "echo" and Vumi's
// "vumi.demos.words.EchoWorker"): a Vumi application that replies to every
// user message with its own content. See README.md.
package main

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

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
	env *sdk.Env

	echoed, ignored         atomic.Int64
	acks, nacks, deliveries atomic.Int64
	metricsOnce             sync.Once

	stopMetrics chan struct{} // closed by Stop
	metricsDone chan struct{} // closed once the last count is reported
	stopOnce    sync.Once
}

// metricInterval is how often echo reports the replies it sent since the
// last report as its "echoed" metric (a sum): one value a second, not one
// per message, as each value is a message to the host.
const metricInterval = time.Second

// Start consumes the transport's inbound messages and events.
func (e *Echo) Start(_ context.Context, env *sdk.Env) error {
	e.env = env
	tn := e.cfg.TransportName
	if err := vumi.ConsumeUserMessages(env, vumi.InboundKey(tn), e.handleInbound); err != nil {
		return err
	}
	if err := vumi.ConsumeEvents(env, vumi.EventKey(tn), e.handleEvent); err != nil {
		return err
	}
	e.stopMetrics, e.metricsDone = make(chan struct{}), make(chan struct{})
	go e.reportMetrics()
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

// reportMetrics reports the count of replies sent every metricInterval
// while it changes, and a last time when Stop is called.
func (e *Echo) reportMetrics() {
	defer close(e.metricsDone)
	tick := time.NewTicker(metricInterval)
	defer tick.Stop()
	var reported int64
	for {
		stopping := false
		select {
		case <-tick.C:
		case <-e.stopMetrics:
			stopping = true
		}
		if n := e.echoed.Load(); n > reported {
			e.metric("echoed", float64(n-reported), sdk.AggSum)
			reported = n
		}
		if stopping {
			return
		}
	}
}

// metric reports a metric; a host that collects none is noted once.
func (e *Echo) metric(name string, v float64, aggs ...string) {
	if err := e.env.Metric(name, v, aggs...); err != nil {
		e.metricsOnce.Do(func() { e.env.Logger().Debug("not reporting metrics", "error", err) })
	}
}

// Stop reports the replies sent since the last report; the SDK has
// stopped the consumers before it.
func (e *Echo) Stop(ctx context.Context) error {
	if e.stopMetrics == nil {
		return nil // Start failed
	}
	e.stopOnce.Do(func() { close(e.stopMetrics) })
	select {
	case <-e.metricsDone:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

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
