package daemon

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/broker"
	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/host/internal/events"
	"github.com/dynworkers/dynworkers/host/internal/httpapi"
	"github.com/dynworkers/dynworkers/host/internal/promexport"
	"github.com/dynworkers/dynworkers/host/internal/web"
)

// transports are the ways control requests reach the host: the local HTTP
// API always, AMQP when an amqp block is configured. All of them go
// through one Dispatcher. With AMQP they also carry the lifecycle events
// out, through the event publisher.
type transports struct {
	dispatcher *control.Dispatcher
	http       *httpapi.Server
	httpErr    chan error
	cancel     context.CancelFunc
	httpCancel context.CancelFunc // stops the HTTP API alone
	ctx        context.Context    // ends when the host stops taking control requests (stopControl)

	conn    *broker.Conn
	connSet chan struct{} // closed once conn is set (made by Load when AMQP is configured)
	amqp    *control.AMQPTransport
	amqpErr chan error
	// pub publishes the lifecycle events to vumi.events; set by
	// dialBroker, read by onEvent on the supervisors' goroutines.
	pub atomic.Pointer[events.Publisher]
}

// eventDrainTimeout bounds how long a stopping host keeps publishing the
// events still queued (the workers' stop events among them) once its
// workers are stopped: a broker that is away must not hold the exit for
// long.
const eventDrainTimeout = 5 * time.Second

// startHTTP starts the HTTP API and returns once it listens, or with the
// listen error (an address in use stops the host from starting: a host
// that cannot be reached is not what the operator asked for).
func (d *Daemon) startHTTP(ctx context.Context) error {
	hs := d.cfg.Host.HTTP
	var tlsFiles *httpapi.TLSFiles
	if hs.TLS != nil {
		tlsFiles = &httpapi.TLSFiles{CertFile: hs.TLS.CertFile, KeyFile: hs.TLS.KeyFile, ClientCAFile: hs.TLS.ClientCAFile}
	}
	d.tr.http = httpapi.New(httpapi.Options{
		Addr:         d.cfg.Host.HTTPAddr,
		Token:        d.cfg.Host.HTTPToken,
		AllowedHosts: hs.AllowedHosts,
		TLS:          tlsFiles,
		Timeouts: httpapi.Timeouts{ReadHeader: hs.ReadHeaderTimeout, Body: hs.BodyTimeout,
			Write: hs.WriteTimeout, Idle: hs.IdleTimeout},
		MaxBody: int64(d.cfg.Limits.ControlMessageBytes),
		Doer:    d.tr.dispatcher,
		Logger:  d.logger.Named("http"),
		Events:  d.EventLog,
		UI:      web.Handler(),
		Metrics: promexport.NewHandler(d.Snapshot,
			promexport.WithErrorLog(d.logger.Named("metrics").StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true})),
			promexport.WithCollectors(promexport.NewBusCollector(d.busStats))),
	})
	// The HTTP server outlives the control transports: a stopping host
	// still answers status and /metrics, and refuses changes (stopControl),
	// until closeHTTP.
	hctx, cancel := context.WithCancel(context.Background())
	d.tr.httpCancel = cancel
	d.tr.httpErr = make(chan error, 1)
	go func() { d.tr.httpErr <- d.tr.http.ListenAndServe(hctx) }()
	select {
	case <-d.tr.http.Listening():
		d.logger.Info("HTTP API listening", "addr", d.tr.http.Addr(), "auth", d.cfg.Host.HTTPToken != "", "tls", tlsFiles != nil)
		return nil
	case err := <-d.tr.httpErr:
		cancel()
		d.tr.httpErr = nil // consumed: closeHTTP must not wait for it
		return fmt.Errorf("HTTP API on %s: %w", d.cfg.Host.HTTPAddr, err)
	case <-ctx.Done():
		cancel()
		<-d.tr.httpErr
		d.tr.httpErr = nil
		return ctx.Err()
	}
}

// initTransports makes the dispatcher of control requests and the context
// of the control transports, which stopControl cancels.
func (d *Daemon) initTransports() {
	d.tr.ctx, d.tr.cancel = context.WithCancel(context.Background())
	d.tr.dispatcher = control.NewDispatcher(d, d.logger.Named("control"))
	d.setPolicy()
	d.tr.dispatcher.SetMaxMessageBytes(d.cfg.Limits.ControlMessageBytes)
}

// dialBroker connects to the broker, when an amqp block is configured, and
// starts the event publisher. It returns at once: the connection is made
// (and remade after a loss) in the background. Run dials before starting
// workers, so that the bus they use exists and their first events are
// published, and takes control messages later (startAMQP).
func (d *Daemon) dialBroker() error {
	if d.cfg.AMQP == nil {
		return nil
	}
	sys, host := d.cfg.SystemID, d.cfg.Host.Name
	tlsCfg, err := d.cfg.AMQP.TLSConfig()
	if err != nil {
		return err
	}
	conn, err := broker.Dial(d.tr.ctx, broker.Options{
		TLS:            tlsCfg,
		URL:            d.cfg.AMQP.URL,
		ConnectionName: fmt.Sprintf("dynworkers %s/%s", sys, host),
		Logger:         d.logger.Named("amqp"),
		Setup:          topology(sys, host, d.logger.Named("amqp")),
	})
	if err != nil {
		return err
	}
	d.tr.conn = conn
	d.tr.amqp = control.NewAMQPTransport(control.AMQPOptions{
		SystemID: sys, HostName: host, Conn: conn,
		Handler: d.tr.dispatcher,
		Logger:  d.logger.Named("amqp"),
		// The size limit: see control.AMQPTransport.refuseOversize.
		MaxMessageBytes: d.cfg.Limits.ControlMessageBytes,
	})
	// PublishEvent waits for the broker while it is away and returns once
	// it confirmed the event, so events are delayed, not lost, and the
	// publisher knows what reached the broker.
	amqpT := d.tr.amqp
	d.tr.pub.Store(events.NewPublisher(events.PublisherOptions{
		Publish: func(ctx context.Context, ev api.Event) error { return amqpT.PublishEvent(ctx, ev.Event, ev) },
		Logger:  d.logger.Named("events"),
	}))
	close(d.tr.connSet)
	return nil
}

// startAMQP starts consuming control messages; the messages published
// meanwhile waited in the durable queues.
func (d *Daemon) startAMQP() error {
	if d.tr.amqp == nil {
		return nil
	}
	d.tr.amqpErr = make(chan error, 1)
	go func() { d.tr.amqpErr <- d.tr.amqp.Run(d.tr.ctx) }()
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

// stopControl stops taking control requests: the AMQP consumers end (a
// message cut short is left for redelivery), and the dispatcher refuses
// every request that would change the host, so that no request can start
// a worker behind the shutdown's back. Status, list_classes, /metrics and
// /v1/events go on answering over HTTP until closeHTTP, so an operator
// watches the workers stop. The broker connection stays open for the
// workers' bus and the events until closeBroker.
func (d *Daemon) stopControl() {
	if d.tr.dispatcher != nil {
		d.tr.dispatcher.Refuse(control.Errorf(control.CodeConflict,
			"the host %s is shutting down; nothing can be started or changed on it now", d.cfg.Host.Name))
	}
	if d.tr.cancel == nil {
		return
	}
	d.tr.cancel()
	if d.tr.amqpErr != nil {
		if err := <-d.tr.amqpErr; err != nil {
			d.logger.Warn("AMQP control transport stopped with an error", "error", err)
		}
	}
}

// closeHTTP shuts the HTTP server down, gracefully: requests in flight
// finish (up to the server's own bound).
func (d *Daemon) closeHTTP() {
	if d.tr.httpCancel == nil {
		return
	}
	d.tr.httpCancel()
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

// drainEvents publishes the events still queued, the stop events of the
// workers among them, once nothing emits events anymore (the supervisors
// are stopped), within eventDrainTimeout.
func (d *Daemon) drainEvents() {
	p := d.tr.pub.Load()
	if p == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), eventDrainTimeout)
	defer cancel()
	err := p.Close(ctx)
	st := p.Stats()
	if err != nil {
		d.logger.Warn("events not published before the host stops", "error", err, "published", st.Published)
	}
	if st.Dropped > 0 || st.Failed > 0 {
		d.logger.Warn("some events were never published", "dropped", st.Dropped, "failed", st.Failed)
	}
	d.logger.Debug("event publisher closed", "published", st.Published)
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
