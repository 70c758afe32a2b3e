package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/control"
)

// Doer carries out a control request and answers it. control.Dispatcher
// implements it; Do must be safe for concurrent use.
type Doer interface {
	Do(ctx context.Context, req *control.Request) control.Reply
}

var _ Doer = (*control.Dispatcher)(nil)

// Options configures a Server.
type Options struct {
	// Addr is the address to listen on, host:port ("127.0.0.1:7780"; port 0
	// picks a free port, see Server.Addr).
	Addr string
	// Token is the bearer token every route but /healthz requires. ""
	// means no authentication, which only a loopback Addr may have.
	Token string
	// Doer carries out the requests.
	Doer Doer
	// Logger receives one debug line per request; nil means no logging.
	Logger hclog.Logger
	// Events, if set, returns the most recent lifecycle events, oldest
	// first, as published on vumi.events; it backs GET /v1/events.
	Events func() []api.Event
	// Metrics, if set, serves GET /metrics (the Prometheus exposition).
	Metrics http.Handler
	// UI, if set, serves the web dashboard: GET / and GET /ui/..., without
	// the token (see the package documentation). It must serve only static
	// files that hold no data: the page reads everything through /v1 with
	// the token.
	UI http.Handler
}

// Timeouts of the HTTP server, see the package documentation.
const (
	readHeaderTimeout = 10 * time.Second
	bodyTimeout       = 30 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 2 * time.Minute
	shutdownTimeout   = 5 * time.Second
	maxHeaderBytes    = 64 << 10
)

// MaxBodyBytes is the largest request body accepted (1 MiB); a larger one is
// answered 413 with code malformed.
const MaxBodyBytes = 1 << 20

// Server is the HTTP control API of one host. Create it with New, then run
// ListenAndServe once; Handler serves the same routes without a listener.
type Server struct {
	opts    Options
	logger  hclog.Logger
	handler http.Handler

	mu        sync.Mutex
	addr      string
	listening chan struct{}
}

// New returns a Server for o. It does not listen yet.
func New(o Options) *Server {
	logger := o.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	s := &Server{opts: o, logger: logger, listening: make(chan struct{})}
	s.handler = s.routes()
	return s
}

// Handler returns the API's handler: authentication, logging and routes.
func (s *Server) Handler() http.Handler { return s.handler }

// Addr returns the address the server is bound to once it listens (with the
// real port when Options.Addr asked for port 0), and "" before.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Listening returns a channel closed once the server is bound to its
// address, after which Addr is set.
func (s *Server) Listening() <-chan struct{} { return s.listening }

// ListenAndServe listens on Options.Addr and serves until ctx ends; then it
// stops accepting connections and waits up to 5s for the requests in flight
// before closing the rest. It returns at once the error of a listen that
// fails (the address is taken, or it is not a loopback address and there is
// no token), nil after a clean shutdown, and an error when requests had to
// be cut off. Call it once per Server.
func (s *Server) ListenAndServe(ctx context.Context) error {
	if s.opts.Token == "" && !loopback(s.opts.Addr) {
		return fmt.Errorf("http api: refusing to listen on %s without a token: only a loopback address may go without host.http_token", s.opts.Addr)
	}
	ln, err := net.Listen("tcp", s.opts.Addr)
	if err != nil {
		return fmt.Errorf("http api: %w", err)
	}
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          s.logger.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Debug}),
	}
	s.mu.Lock()
	s.addr = ln.Addr().String()
	s.mu.Unlock()
	close(s.listening)
	s.logger.Info("http api listening", "addr", ln.Addr().String(), "auth", s.opts.Token != "")

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("http api: %w", err)
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err = srv.Shutdown(shutCtx)
	if err != nil {
		srv.Close()
		err = fmt.Errorf("http api: requests still running after %s were cut off: %w", shutdownTimeout, err)
	}
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = fmt.Errorf("http api: %w", serr)
	}
	return err
}

// loopback reports whether a listen address is on the loopback interface
// only, as the configuration decides it.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
