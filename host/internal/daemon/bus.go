package daemon

import "github.com/dynworkers/dynworkers/host/internal/broker"

// The message bus of the workers (DESIGN §7): RabbitMQ's "vumi" exchange
// when an amqp block is configured, the embedded in-process bus otherwise.
// Workers reach it through the Host service, never with a connection of
// their own: each worker process gets a bridge of broker.Bridges on it
// (launch), which defers its publishes, delays its acks, holds the process
// back when too many publishes are outstanding, and dead-letters poison
// messages (counted in the worker's metric dead_lettered).

// openBus makes the host's bus. The AMQP bus shares the control channel's
// connection, so it is made once that exists (startAMQP); until then, and
// without an amqp block, workers use the embedded bus. Run calls it before
// any worker starts.
func (d *Daemon) openBus() {
	var bus broker.Bus
	if d.cfg.AMQP == nil {
		bus = broker.NewEmbeddedBus()
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
