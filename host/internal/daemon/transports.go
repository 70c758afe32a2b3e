package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/dynworkers/dynworkers/host/internal/broker"
	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/host/internal/httpapi"
	"github.com/dynworkers/dynworkers/host/internal/promexport"
	"github.com/dynworkers/dynworkers/host/internal/supervise"
	"github.com/dynworkers/dynworkers/host/internal/web"
)

// transports are the ways control requests reach the host: the local HTTP
// API always, AMQP when an amqp block is configured. All of them go
// through one Dispatcher.
type transports struct {
	dispatcher *control.Dispatcher
	http       *httpapi.Server
	httpErr    chan error
	cancel     context.CancelFunc
	httpCancel context.CancelFunc // stops the HTTP API alone
	ctx        context.Context    // ends when the transports stop

	conn    *broker.Conn
	connSet chan struct{} // closed once conn is set (made by Load when AMQP is configured)
	amqp    *control.AMQPTransport
	amqpErr chan error
	events  chan supervise.Event // to be published on vumi.events
	evDone  chan struct{}
}

// eventQueue bounds the events waiting to be published; beyond it events
// are dropped (and counted in the log) rather than slowing the supervisor.
const eventQueue = 1024

// startHTTP starts the HTTP API and returns once it listens, or with the
// listen error (an address in use stops the host from starting: a host
// that cannot be reached is not what the operator asked for).
func (d *Daemon) startHTTP(ctx context.Context) error {
	d.tr.dispatcher = control.NewDispatcher(d, d.logger.Named("control"))
	d.tr.http = httpapi.New(httpapi.Options{
		Addr:   d.cfg.Host.HTTPAddr,
		Token:  d.cfg.Host.HTTPToken,
		Doer:   d.tr.dispatcher,
		Logger: d.logger.Named("http"),
		Events: d.eventMaps,
		UI:     web.Handler(),
		Metrics: promexport.NewHandler(d.Snapshot,
			promexport.WithErrorLog(d.logger.Named("metrics").StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}))),
	})
	hctx, cancel := context.WithCancel(d.tr.ctx)
	d.tr.httpCancel = cancel // stopTransports cancels d.tr.ctx, and hctx with it
	d.tr.httpErr = make(chan error, 1)
	go func() { d.tr.httpErr <- d.tr.http.ListenAndServe(hctx) }()
	select {
	case <-d.tr.http.Listening():
		d.logger.Info("HTTP API listening", "addr", d.tr.http.Addr(), "auth", d.cfg.Host.HTTPToken != "")
		return nil
	case err := <-d.tr.httpErr:
		cancel()
		d.tr.httpErr = nil // consumed: stopTransports must not wait for it
		return fmt.Errorf("HTTP API on %s: %w", d.cfg.Host.HTTPAddr, err)
	case <-ctx.Done():
		cancel()
		<-d.tr.httpErr
		d.tr.httpErr = nil
		return ctx.Err()
	}
}

// initTransports makes the context of the transports, which
// stopTransports cancels.
func (d *Daemon) initTransports() {
	d.tr.ctx, d.tr.cancel = context.WithCancel(context.Background())
}

// dialBroker connects to the broker, when an amqp block is configured. It
// returns at once: the connection is made (and remade after a loss) in the
// background. Run dials before starting workers, so that the bus they use
// exists, and takes control messages later (startAMQP).
func (d *Daemon) dialBroker() error {
	if d.cfg.AMQP == nil {
		return nil
	}
	sys, host := d.cfg.SystemID, d.cfg.Host.Name
	conn, err := broker.Dial(d.tr.ctx, broker.Options{
		URL:            d.cfg.AMQP.URL,
		ConnectionName: fmt.Sprintf("dynworkers %s/%s", sys, host),
		Logger:         d.logger.Named("amqp"),
		Setup:          topology(sys, host),
	})
	if err != nil {
		return err
	}
	d.tr.conn = conn
	close(d.tr.connSet)
	return nil
}

// startAMQP starts consuming control messages and publishing events; the
// messages published meanwhile waited in the durable queues.
func (d *Daemon) startAMQP() error {
	if d.tr.conn == nil {
		return nil
	}
	sys, host := d.cfg.SystemID, d.cfg.Host.Name
	d.tr.amqp = control.NewAMQPTransport(control.AMQPOptions{
		SystemID: sys, HostName: host, Conn: d.tr.conn,
		Handler: d.tr.dispatcher,
		Logger:  d.logger.Named("amqp"),
	})
	d.tr.amqpErr = make(chan error, 1)
	go func() { d.tr.amqpErr <- d.tr.amqp.Run(d.tr.ctx) }()
	d.tr.evDone = make(chan struct{})
	go d.publishEvents()
	return nil
}

// WaitBroker waits until the host is connected to the broker with its
// topology declared, so that control messages published from then on are
// queued for it. It fails at once when no amqp block is configured.
func (d *Daemon) WaitBroker(ctx context.Context) error {
	if d.tr.connSet == nil {
		return errors.New("no amqp block configured")
	}
	select {
	case <-d.tr.connSet:
	case <-ctx.Done():
		return ctx.Err()
	}
	return d.tr.conn.WaitConnected(ctx)
}

// queueEvent hands an event to the publisher without blocking the
// supervisor that emitted it.
func (d *Daemon) queueEvent(ev supervise.Event) {
	if d.tr.events == nil {
		return
	}
	select {
	case d.tr.events <- ev:
	default:
		d.logger.Warn("event queue full: event not published", "event", ev.Type(), "worker", ev.Map()["worker"])
	}
}

// publishEvents publishes queued events to vumi.events until the
// transports stop. An event that cannot be published while the broker is
// away waits for the reconnection (Publish waits), so events are delayed,
// not lost, unless the queue overflows.
func (d *Daemon) publishEvents() {
	defer close(d.tr.evDone)
	for {
		select {
		case <-d.tr.ctx.Done():
			return
		case ev := <-d.tr.events:
			name, body := d.publishedEvent(ev)
			if err := d.tr.amqp.PublishEvent(d.tr.ctx, name, body); err != nil && d.tr.ctx.Err() == nil {
				d.logger.Warn("publishing event", "event", ev.Type(), "error", err)
			}
		}
	}
}

// HTTPAddr returns the address the HTTP API listens on ("" before Run has
// started it); with http_addr port 0 this is the port picked.
func (d *Daemon) HTTPAddr() string {
	if d.tr.http == nil {
		return ""
	}
	select {
	case <-d.tr.http.Listening():
		return d.tr.http.Addr()
	default:
		return ""
	}
}

// stopTransports stops taking control requests; requests in flight finish
// first (the HTTP server shuts down gracefully). The broker connection
// stays open for the workers' bus until closeBroker.
func (d *Daemon) stopTransports() {
	if d.tr.cancel == nil {
		return
	}
	d.tr.cancel()
	if d.tr.amqpErr != nil {
		if err := <-d.tr.amqpErr; err != nil {
			d.logger.Warn("AMQP control transport stopped with an error", "error", err)
		}
		if d.tr.evDone != nil {
			<-d.tr.evDone
		}
	}
	if d.tr.httpErr != nil {
		select {
		case err := <-d.tr.httpErr:
			if err != nil && !errors.Is(err, context.Canceled) {
				d.logger.Warn("HTTP API stopped with an error", "error", err)
			}
		case <-time.After(10 * time.Second):
			d.logger.Warn("HTTP API did not stop within 10s")
		}
	}
}

// closeBroker closes the broker connection, once the workers are stopped
// and the bus is closed.
func (d *Daemon) closeBroker() {
	if d.tr.conn == nil {
		return
	}
	if err := d.tr.conn.Close(); err != nil {
		d.logger.Debug("closing the AMQP connection", "error", err)
	}
}
