package daemon

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/host/internal/monitor"
)

// Vumi metrics and heartbeats (DESIGN §6), made by monitor.Monitor (see
// monitor.Datapoints for the names) and published here: on RabbitMQ's
// exchanges vumi.metrics and vumi.health with an amqp block; without one,
// on the embedded bus, whose exchange is implicit, under the same routing
// keys (vumi.metrics, heartbeat.inbound), so that an in-process consumer
// of those queues gets what a Vumi metrics or heartbeat worker would.
// Workers cannot consume them: the names are the host's (sdk.CheckBusName).

// topology declares the exchanges of monitoring and the control channel's
// topology, last (control.Topology may leave its channel closed).
func topology(systemID, host string, log hclog.Logger) func(ch *amqp.Channel) error {
	ctl := control.TopologyLogged(systemID, host, log)
	return func(ch *amqp.Channel) error {
		for _, ex := range []string{monitor.MetricsExchange, monitor.HeartbeatExchange} {
			if err := ch.ExchangeDeclare(ex, "direct", true, false, false, false, nil); err != nil {
				return fmt.Errorf("declaring exchange %s: %w", ex, err)
			}
		}
		return ctl(ch)
	}
}

// publishMonitoring is the Monitor's Publish. It never waits for a broker
// that is away (TryPublishAll fails at once then); the embedded bus only
// appends to its queues.
func (d *Daemon) publishMonitoring(ctx context.Context, exchange, key string, bodies ...[]byte) error {
	if d.tr.conn != nil {
		msgs := make([]amqp.Publishing, len(bodies))
		now := time.Now()
		for i, body := range bodies {
			msgs[i] = amqp.Publishing{ContentType: "application/json", Timestamp: now, Body: body}
		}
		return d.tr.conn.TryPublishAll(ctx, exchange, key, msgs)
	}
	if bus := d.currentBus(); bus != nil {
		for _, body := range bodies {
			if err := bus.Publish(ctx, key, body, nil); err != nil {
				return fmt.Errorf("publishing on the embedded bus with key %s: %w", key, err)
			}
		}
	}
	return nil
}
