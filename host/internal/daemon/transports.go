package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/host/internal/httpapi"
)

// transports are the ways control requests reach the host: the local HTTP
// API always, AMQP when an amqp block is configured. All of them go
// through one Dispatcher.
type transports struct {
	dispatcher *control.Dispatcher
	http       *httpapi.Server
	httpErr    chan error
	cancel     context.CancelFunc
}

// startHTTP starts the HTTP API and returns once it listens, or with the
// listen error (an address in use stops the host from starting: a host
// that cannot be reached is not what the operator asked for).
func (d *Daemon) startHTTP(ctx context.Context) error {
	tctx, cancel := context.WithCancel(context.Background())
	d.tr.cancel = cancel
	d.tr.dispatcher = control.NewDispatcher(d, d.logger.Named("control"))
	d.tr.http = httpapi.New(httpapi.Options{
		Addr:   d.cfg.Host.HTTPAddr,
		Token:  d.cfg.Host.HTTPToken,
		Doer:   d.tr.dispatcher,
		Logger: d.logger.Named("http"),
	})
	d.tr.httpErr = make(chan error, 1)
	go func() { d.tr.httpErr <- d.tr.http.ListenAndServe(tctx) }()
	select {
	case <-d.tr.http.Listening():
		d.logger.Info("HTTP API listening", "addr", d.tr.http.Addr(), "auth", d.cfg.Host.HTTPToken != "")
		return nil
	case err := <-d.tr.httpErr:
		cancel()
		return fmt.Errorf("HTTP API on %s: %w", d.cfg.Host.HTTPAddr, err)
	case <-ctx.Done():
		cancel()
		<-d.tr.httpErr
		return ctx.Err()
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
// first (the HTTP server shuts down gracefully).
func (d *Daemon) stopTransports() {
	if d.tr.cancel == nil {
		return
	}
	d.tr.cancel()
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
