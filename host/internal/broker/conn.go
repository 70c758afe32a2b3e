package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dynworkers/dynworkers/host/internal/amqpurl"
	"github.com/dynworkers/dynworkers/host/internal/supervise"
)

// Errors returned by Conn's methods; test them with errors.Is.
var (
	// ErrClosed means Close was called.
	ErrClosed = errors.New("broker connection closed")
	// ErrDisconnected means there is no connection to the broker right now,
	// or the connection was lost before the broker answered.
	ErrDisconnected = errors.New("not connected to the broker")
	// ErrNacked means the broker refused a published message (basic.nack).
	ErrNacked = errors.New("message refused by the broker (nack)")
)

// Default reconnect backoff bounds.
const (
	DefaultMinBackoff = 100 * time.Millisecond
	DefaultMaxBackoff = 10 * time.Second
)

// dialTimeout bounds the TCP connect and the AMQP handshake of one attempt.
const dialTimeout = 30 * time.Second

// stableAfter is how long a connection must have lived for the backoff to
// start again from its minimum: a broker that accepts connections and drops
// them at once must not be hammered every MinBackoff.
const stableAfter = 30 * time.Second

// Options configure a Conn. Zero values mean the documented defaults.
type Options struct {
	// URL is the broker's amqp:// or amqps:// URL. It is never logged with
	// its password.
	URL string
	// ConnectionName is shown in RabbitMQ's management UI and by
	// `rabbitmqctl list_connections client_properties`; the host uses
	// "dynworkers <system_id>/<host>". Default "dynworkers".
	ConnectionName string
	// Logger receives connection events. Default: no logging.
	Logger hclog.Logger
	// MinBackoff and MaxBackoff bound the delay between reconnection
	// attempts: it doubles from MinBackoff up to MaxBackoff, and each delay
	// is drawn at random from its upper half. Defaults 100ms and 10s.
	MinBackoff, MaxBackoff time.Duration
	// Setup runs on every connection, on a fresh channel that is closed
	// afterwards, before the connection is offered to publishers and
	// consumers: declare the topology there. If it fails the connection is
	// dropped and the next attempt follows the backoff.
	Setup func(ch *amqp.Channel) error
	// TLS is the TLS configuration of an amqps:// URL (the CA to trust, the
	// client certificate, the server name); a copy is used for each
	// connection. Nil with amqps:// means the system's roots, no client
	// certificate and the URL's host as the name to check. It must be nil
	// with amqp://. Verification is never turned off by this package: a
	// TLS with InsecureSkipVerify is refused.
	TLS *tls.Config
}

// Conn is a self-healing connection to the broker. Its methods are safe for
// concurrent use.
type Conn struct {
	o         Options
	backoff   supervise.Backoff // the retry schedule of Options' MinBackoff and MaxBackoff
	url       string
	redacted  string
	log       hclog.Logger
	dialCtx   context.Context // canceled by Close, so that a dial in progress ends
	stopDials context.CancelFunc

	exchanges atomic.Pointer[[]string] // declared on each publishing channel (declareForPublishing; written under mu)

	mu     sync.Mutex
	cur    *session      // nil while disconnected
	ready  chan struct{} // closed while cur != nil
	closed bool
	done   chan struct{} // closed by Close

	wg       sync.WaitGroup // the manager goroutine
	closeErr error          // set by the manager before it exits
}

// Dial checks the options and returns at once; the connection is made in
// the background and remade whenever it is lost, until Close. Use
// WaitConnected to wait for it. Dial fails only for options that can never
// work (an unparseable URL) or a ctx that is already done; ctx does not
// bound the Conn's life.
func Dial(ctx context.Context, o Options) (*Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if _, err := amqp.ParseURI(o.URL); err != nil {
		// The parser's messages quote the URL or pieces of it (the whole
		// URL, a port, an escape), and with reserved characters left
		// unescaped any of those may be the password: err is not wrapped.
		return nil, fmt.Errorf("broker url %s: not a valid amqp:// or amqps:// URL "+
			"(reserved characters such as @ : / ? # %% in the user name or password must be percent-encoded)",
			amqpurl.Redact(o.URL))
	}
	if err := checkTLS(o.URL, o.TLS); err != nil {
		return nil, err
	}
	if o.ConnectionName == "" {
		o.ConnectionName = "dynworkers"
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = DefaultMinBackoff
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = o.MinBackoff
	}
	c := &Conn{
		o:        o,
		backoff:  reconnectBackoff(o.MinBackoff, o.MaxBackoff),
		url:      o.URL,
		redacted: amqpurl.Redact(o.URL),
		log:      o.Logger,
		ready:    make(chan struct{}),
		done:     make(chan struct{}),
	}
	c.dialCtx, c.stopDials = context.WithCancel(context.Background())
	c.wg.Add(1)
	go c.manage()
	return c, nil
}

// RedactURL returns u with its password replaced by "xxxxx", for logs and
// errors, or a fixed placeholder when u cannot be taken apart safely: it is
// amqpurl.Redact, which the host's other printers of AMQP URLs use too.
func RedactURL(u string) string { return amqpurl.Redact(u) }

// Connected reports whether a connection is up and set up right now.
func (c *Conn) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur != nil
}

// WaitConnected returns nil once a connection is up and set up (at once if
// it is now), ErrClosed if the Conn is closed, or ctx's error.
func (c *Conn) WaitConnected(ctx context.Context) error {
	_, err := c.session(ctx, true)
	return err
}

// Done returns a channel that is closed when Close is called.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Close stops reconnecting, closes the connection and waits for the
// background goroutine to end. Publishes and Consumes in progress return
// with ErrClosed. Close is idempotent; it returns the error of closing the
// connection, if any.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		c.wg.Wait()
		return nil
	}
	c.closed = true
	close(c.done)
	c.mu.Unlock()
	c.stopDials()
	c.wg.Wait()
	return c.closeErr
}

// session returns the current session. While disconnected it waits for the
// next one if wait is set, else it returns ErrDisconnected.
func (c *Conn) session(ctx context.Context, wait bool) (*session, error) {
	return c.sessionUntil(ctx, wait, nil)
}

// sessionUntil is session that also gives up, with ErrClosed, once stop
// (a user's close; nil for none) is closed.
func (c *Conn) sessionUntil(ctx context.Context, wait bool, stop <-chan struct{}) (*session, error) {
	for {
		c.mu.Lock()
		s, ready, closed := c.cur, c.ready, c.closed
		c.mu.Unlock()
		switch {
		case closed:
			return nil, ErrClosed
		case s != nil:
			return s, nil
		case !wait:
			return nil, ErrDisconnected
		}
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-c.done:
			return nil, ErrClosed
		case <-stop:
			return nil, ErrClosed
		}
	}
}

// manage is the one goroutine that connects, watches the connection and
// reconnects.
func (c *Conn) manage() {
	defer c.wg.Done()
	attempt := 0 // consecutive failures; the first connection is tried at once
	for {
		if attempt > 0 && !c.sleep(c.backoff.Delay(attempt, nil)) {
			return
		}
		s, err := c.connect()
		if err != nil {
			if c.isClosed() {
				return
			}
			attempt++
			c.log.Warn("cannot connect to the broker", "url", c.redacted, "attempt", attempt, "error", err)
			continue
		}
		began := time.Now()
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			c.closeErr = closeConn(s.conn)
			return
		}
		c.cur = s
		close(c.ready)
		c.mu.Unlock()
		c.log.Info("connected to the broker", "url", c.redacted, "name", c.o.ConnectionName)

		var reason *amqp.Error
		select {
		case reason = <-s.notify:
		case <-c.done:
		}
		c.mu.Lock()
		c.cur = nil
		c.ready = make(chan struct{})
		closed := c.closed
		c.mu.Unlock()
		close(s.lost)
		if closed {
			c.closeErr = closeConn(s.conn)
			return
		}
		_ = s.conn.Close() // usually closed already; makes sure after a graceful close
		if time.Since(began) >= stableAfter {
			attempt = 1
		} else {
			attempt++
		}
		c.log.Warn("lost the broker connection; reconnecting", "url", c.redacted, "reason", reason)
	}
}

// connect dials, runs Setup and opens the publishing channel.
func (c *Conn) connect() (*session, error) {
	props := amqp.NewConnectionProperties()
	props["connection_name"] = c.o.ConnectionName
	tlsCfg, certReq := c.tlsConfig()
	conn, err := amqp.DialConfig(c.url, amqp.Config{
		Properties:      props,
		Dial:            c.dial,
		TLSClientConfig: tlsCfg,
	})
	if err != nil {
		return nil, fmt.Errorf("dialing: %w", explainTLS(err, certReq))
	}
	s := &session{
		conn:   conn,
		notify: conn.NotifyClose(make(chan *amqp.Error, 1)),
		lost:   make(chan struct{}),
	}
	if c.o.Setup != nil {
		if err := c.setup(conn); err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("setting up the topology: %w", err)
		}
	}
	if _, err := c.publisher(c.dialCtx, s); err != nil {
		_ = conn.Close()
		return nil, err
	}
	return s, nil
}

func (c *Conn) setup(conn *amqp.Connection) error {
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("opening a channel: %w", err)
	}
	defer func() { _ = ch.Close() }()
	return c.o.Setup(ch)
}

// dial opens the TCP connection. It is canceled by Close and sets a
// deadline for the handshake, as amqp.DefaultDial does; the library clears
// it once the connection is open.
func (c *Conn) dial(network, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: dialTimeout}
	conn, err := d.DialContext(c.dialCtx, network, addr)
	if err != nil {
		return nil, err
	}
	if err := conn.SetDeadline(time.Now().Add(dialTimeout)); err != nil {
		_ = conn.Close()
		return nil, err
	}
	return conn, nil
}

func (c *Conn) isClosed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// sleep waits d; it returns false if Close was called meanwhile.
func (c *Conn) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.done:
		return false
	}
}

func closeConn(conn *amqp.Connection) error {
	if err := conn.Close(); err != nil && !errors.Is(err, amqp.ErrClosed) {
		return fmt.Errorf("closing the broker connection: %w", err)
	}
	return nil
}
