package httpapi

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
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
	// AllowedHosts lists further names the Host header may carry, besides
	// IP addresses, localhost and the listen address's host: exact names,
	// or "*.example.com" for the names under example.com. The Host check
	// is on when Addr is a loopback address or AllowedHosts is set (see
	// guard).
	AllowedHosts []string
	// TLS, when set, makes ListenAndServe serve HTTPS.
	TLS *TLSFiles
	// Timeouts bounds every connection; zero fields take the defaults.
	Timeouts Timeouts
	// MaxBody bounds every request body (413 beyond it); 0 or less than
	// MaxBodyBytes means MaxBodyBytes. The daemon sets it to the host's
	// input_limits.control_message_size when that is larger, so that every
	// control message the host accepts over AMQP fits over HTTP too.
	MaxBody int64
	// MaxLogStreams bounds the log follow streams (GET
	// /v1/workers/{name}/logs?follow=1) open at once; one more is
	// answered 503. 0 means DefaultMaxLogStreams.
	MaxLogStreams int
	// LogKeepAlive is how long a follow stream stays silent before a
	// blank line is sent; 0 means DefaultLogKeepAlive.
	LogKeepAlive time.Duration
}

// Timeouts bounds the time a connection may take, on every path,
// authenticated or not.
type Timeouts struct {
	// ReadHeader is how long the request line and headers may take to
	// arrive (default 10s).
	ReadHeader time.Duration
	// Body is how long the body may take to arrive once the headers are
	// read (default 30s); a body cut off is answered 400 when the handler
	// reads it, and its connection is closed in any case.
	Body time.Duration
	// Write is how long an answer may take to be written once it is ready
	// (default 30s). The operation itself has no deadline.
	Write time.Duration
	// Idle is how long a kept-alive connection may wait for its next
	// request (default 2m).
	Idle time.Duration
}

// Default timeouts, see Timeouts.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultBodyTimeout       = 30 * time.Second
	DefaultWriteTimeout      = 30 * time.Second
	DefaultIdleTimeout       = 2 * time.Minute
)

// withDefaults fills the zero fields of t.
func (t Timeouts) withDefaults() Timeouts {
	for _, f := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&t.ReadHeader, DefaultReadHeaderTimeout}, {&t.Body, DefaultBodyTimeout}, {&t.Write, DefaultWriteTimeout}, {&t.Idle, DefaultIdleTimeout}} {
		if *f.v <= 0 {
			*f.v = f.def
		}
	}
	return t
}

const (
	shutdownTimeout = 5 * time.Second
	maxHeaderBytes  = 64 << 10
)

// MaxBodyBytes is the smallest limit on a request body (1 MiB), and the
// limit when Options.MaxBody is not larger; a larger body is answered 413
// with code malformed.
const MaxBodyBytes = 1 << 20

// Server is the HTTP control API of one host. Create it with New, then run
// ListenAndServe once; Handler serves the same routes without a listener.
type Server struct {
	opts     Options
	maxBody  int64 // the limit on a request body (Options.MaxBody)
	logger   hclog.Logger
	handler  http.Handler
	timeouts Timeouts
	// checkHost turns on the Host check; listenHost is Addr's host,
	// lowercased (see hostAllowed).
	checkHost  bool
	listenHost string

	mu        sync.Mutex
	addr      string
	listening chan struct{}

	// logStreams holds a token per open follow stream; streamsCtx ends
	// when ListenAndServe shuts down, and ends the streams with it (a
	// stream never goes idle by itself, so Shutdown would wait for it).
	logStreams   chan struct{}
	logKeepAlive time.Duration
	streamsCtx   context.Context
	stopStreams  context.CancelFunc
}

// New returns a Server for o. It does not listen yet.
func New(o Options) *Server {
	logger := o.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	s := &Server{opts: o, logger: logger, listening: make(chan struct{}), timeouts: o.Timeouts.withDefaults(), maxBody: max(o.MaxBody, MaxBodyBytes)}
	s.checkHost = loopback(o.Addr) || len(o.AllowedHosts) > 0
	maxStreams := o.MaxLogStreams
	if maxStreams <= 0 {
		maxStreams = DefaultMaxLogStreams
	}
	s.logStreams = make(chan struct{}, maxStreams)
	s.logKeepAlive = o.LogKeepAlive
	if s.logKeepAlive <= 0 {
		s.logKeepAlive = DefaultLogKeepAlive
	}
	s.streamsCtx, s.stopStreams = context.WithCancel(context.Background())
	if h, _, err := net.SplitHostPort(o.Addr); err == nil {
		s.listenHost = strings.ToLower(strings.Trim(h, "[]"))
	}
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
// stops accepting connections, ends the log follow streams and waits up to
// 5s for the requests in flight before closing the rest. It returns at once the error of a listen that
// fails (the address is taken, or it is not a loopback address and there is
// no token), nil after a clean shutdown, and an error when requests had to
// be cut off. Call it once per Server.
func (s *Server) ListenAndServe(ctx context.Context) error {
	if s.opts.Token == "" && !loopback(s.opts.Addr) {
		return fmt.Errorf("http api: refusing to listen on %s without a token: only a loopback address may go without host.http_token", s.opts.Addr)
	}
	var tlsConfig *tls.Config
	if s.opts.TLS != nil {
		var err error
		if tlsConfig, err = s.opts.TLS.config(); err != nil {
			return fmt.Errorf("http api: %w", err)
		}
	}
	ln, err := net.Listen("tcp", s.opts.Addr)
	if err != nil {
		return fmt.Errorf("http api: %w", err)
	}
	if tlsConfig != nil {
		ln = tls.NewListener(ln, tlsConfig)
	}
	t := s.timeouts
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: t.ReadHeader,
		// ReadTimeout caps the whole request, headers and body, whatever
		// the handler does; withLimits sets the body's own deadline.
		ReadTimeout:    t.ReadHeader + t.Body,
		IdleTimeout:    t.Idle,
		MaxHeaderBytes: maxHeaderBytes,
		// HTTP/1.1 only, also over TLS: one connection is one request at a
		// time, which the timeouts above bound.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
		ErrorLog:     s.logger.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Debug}),
	}
	s.mu.Lock()
	s.addr = ln.Addr().String()
	s.mu.Unlock()
	// The daemon logs "HTTP API listening" once Listening is closed.
	close(s.listening)

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("http api: %w", err)
	case <-ctx.Done():
	}
	s.stopStreams() // the follow streams end, so that their connections go idle
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
