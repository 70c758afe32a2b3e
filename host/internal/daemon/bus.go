package daemon

import (
	"github.com/dynworkers/dynworkers/host/internal/broker"
	"github.com/dynworkers/dynworkers/host/internal/config"
)

// The message bus of the workers (DESIGN §7): RabbitMQ's "vumi" exchange
// when an amqp block is configured, the embedded in-process bus otherwise.
// Workers reach it through the Host service, never with a connection of
// their own: each worker process gets a bridge of broker.Bridges on it
// (launch), which defers its publishes, delays its acks, holds the process
// back when too many publishes are outstanding, and dead-letters poison
// messages (counted in the worker's metric dead_lettered). The embedded
// bus's queues are bounded and expire as the host block's bus block says
// (RabbitMQ's, by the operator's policies); /metrics reports what the
// bounds dropped (busStats).

// openBus makes the host's bus. The AMQP bus shares the control channel's
// connection, so it is made once that exists (startAMQP); until then, and
// without an amqp block, workers use the embedded bus. Run calls it before
// any worker starts.
func (d *Daemon) openBus() {
	var bus broker.Bus
	if d.cfg.AMQP == nil {
		o := embeddedBusOptions(d.cfg.Host.Bus)
		bus = broker.NewEmbeddedBus(o)
		d.logger.Info("embedded bus", "max_length", o.MaxLength, "max_length_bytes", o.MaxLengthBytes,
			"max_total_bytes", o.MaxTotalBytes, "overflow", o.Overflow, "expires", o.Expires)
	} else {
		bus = broker.NewAMQPBus(d.tr.conn, broker.AMQPBusOptions{Logger: d.logger.Named("bus")})
	}
	d.busMu.Lock()
	d.bus = bus
	d.bridges = broker.NewBridges(bus)
	d.busMu.Unlock()
}

// currentBus returns the bus, nil before Run made it.
func (d *Daemon) currentBus() broker.Bus {
	d.busMu.Lock()
	defer d.busMu.Unlock()
	return d.bus
}

// currentBridges returns the bridges on the bus, nil before Run made it.
func (d *Daemon) currentBridges() *broker.Bridges {
	d.busMu.Lock()
	defer d.busMu.Unlock()
	return d.bridges
}

// closeBus ends every consumer of the bus; their unacked messages go back
// to their queues.
func (d *Daemon) closeBus() {
	if bus := d.currentBus(); bus != nil {
		_ = bus.Close()
	}
}

// Bus returns the bus the workers' messages go through: the AMQP bus with
// an amqp block, the embedded bus otherwise; nil before Run made it. For
// tests and benchmarks that feed a worker or read what it publishes,
// above all on the embedded bus, which nothing outside the process
// reaches.
func (d *Daemon) Bus() broker.Bus { return d.currentBus() }

// embeddedBusOptions are the embedded bus's options from the host block's
// bus block, with the bus's defaults for what it leaves out (every value
// is filled in, so that the host logs what it runs with).
func embeddedBusOptions(c config.BusConfig) broker.EmbeddedBusOptions {
	o := broker.EmbeddedBusOptions{
		MaxLength: c.MaxLength, MaxLengthBytes: c.MaxLengthBytes, MaxTotalBytes: c.MaxTotalBytes,
		Overflow: broker.Overflow(c.Overflow), Expires: c.Expires,
	}
	if o.MaxLength == 0 {
		o.MaxLength = broker.DefaultMaxLength
	}
	if o.MaxLengthBytes == 0 {
		o.MaxLengthBytes = broker.DefaultMaxLengthBytes
	}
	if o.MaxTotalBytes == 0 {
		o.MaxTotalBytes = broker.DefaultMaxTotalBytes
	}
	if o.Overflow == "" {
		o.Overflow = broker.DropHead
	}
	if o.Expires == 0 {
		o.Expires = broker.DefaultExpires
	}
	return o
}

// busStats returns the embedded bus's figures for /metrics, nil without
// one (before Run made it, or with an amqp block: RabbitMQ reports its
// queues itself).
func (d *Daemon) busStats() *broker.EmbeddedBusStats {
	eb, ok := d.currentBus().(*broker.EmbeddedBus)
	if !ok {
		return nil
	}
	s := eb.Stats()
	return &s
}
