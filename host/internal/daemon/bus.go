package daemon

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/dynworkers/dynworkers/host/internal/broker"
	"github.com/dynworkers/dynworkers/host/internal/monitor"
	"github.com/dynworkers/dynworkers/host/internal/pluginproc"
)

// The message bus of the workers (DESIGN §7): RabbitMQ's "vumi" exchange
// when an amqp block is configured, the embedded in-process bus otherwise.
// Workers reach it through the Host service (pluginproc.BusHost), never
// with a connection of their own.

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
	d.busMu.Unlock()
}

// currentBus returns the bus, nil before Run made it.
func (d *Daemon) currentBus() broker.Bus {
	d.busMu.Lock()
	defer d.busMu.Unlock()
	return d.bus
}

// closeBus ends every consumer of the bus; their unacked messages go back
// to their queues.
func (d *Daemon) closeBus() {
	if bus := d.currentBus(); bus != nil {
		_ = bus.Close()
	}
}

// busHost adapts the host's bus to the Host service of one worker.
type busHost struct{ bus broker.Bus }

var _ pluginproc.BusHost = busHost{}

func (b busHost) Publish(ctx context.Context, key string, body []byte, headers map[string]string) error {
	return busErr(b.bus.Publish(ctx, key, body, headers))
}

func (b busHost) Consume(ctx context.Context, queue string, bindings []string, prefetch int) (pluginproc.Consumer, error) {
	c, err := b.bus.Consume(ctx, queue, bindings, prefetch)
	if err != nil {
		return nil, busErr(err)
	}
	bc := &busConsumer{c: c, out: make(chan pluginproc.Delivery), done: make(chan struct{})}
	go bc.forward()
	return bc, nil
}

func busErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, broker.ErrDisconnected), errors.Is(err, broker.ErrClosed):
		return fmt.Errorf("%w: %w", pluginproc.ErrBusUnavailable, err)
	}
	return err
}

// busConsumer hands a broker consumer's deliveries to pluginproc, one at a
// time: it takes the next delivery only once pluginproc took the previous
// one, so it holds at most one message beyond what the worker has.
type busConsumer struct {
	c        broker.Consumer
	out      chan pluginproc.Delivery
	done     chan struct{}
	stopOnce sync.Once
}

func (bc *busConsumer) forward() {
	defer close(bc.out)
	for {
		select {
		case d, ok := <-bc.c.Deliveries():
			if !ok {
				return
			}
			select {
			case bc.out <- pluginproc.Delivery{Tag: d.Tag, RoutingKey: d.RoutingKey, Body: d.Body, Headers: d.Headers, Redelivered: d.Redelivered}:
			case <-bc.done:
				return // Close requeues it with the rest
			}
		case <-bc.done:
			return
		}
	}
}

func (bc *busConsumer) Deliveries() <-chan pluginproc.Delivery { return bc.out }
func (bc *busConsumer) Ack(tag uint64) error                   { return bc.c.Ack(tag) }
func (bc *busConsumer) Nack(tag uint64, requeue bool) error    { return bc.c.Nack(tag, requeue) }

func (bc *busConsumer) Close() error {
	bc.stopOnce.Do(func() { close(bc.done) })
	return bc.c.Close()
}

// metricSink records a worker's own metrics under its prefix.
type metricSink struct {
	reg    *monitor.Registry
	prefix string
}

func (m metricSink) Metric(name string, value float64, aggregators []string) error {
	return m.reg.Record(m.prefix, name, value, aggregators)
}
