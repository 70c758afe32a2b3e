// Package brokertest helps tests run against a real RabbitMQ: it finds the
// broker (or skips), makes unique names, opens an administrative connection
// that deletes what a test declared, and closes the host's connections
// through rabbitmqctl to simulate an outage.
package brokertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dynworkers/dynworkers/host/internal/broker"
)

// DefaultURL is the broker used when AMQP_URL is not set.
const DefaultURL = "amqp://guest:guest@127.0.0.1:5672/"

var (
	probeOnce sync.Map // url -> *probeResult
)

type probeResult struct {
	once sync.Once
	err  error
}

// URL returns the broker's URL (AMQP_URL, else DefaultURL) once a broker
// answers there. If none does, the test fails when the CI environment
// variable is set and is skipped otherwise.
func URL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("AMQP_URL")
	if u == "" {
		u = DefaultURL
	}
	v, _ := probeOnce.LoadOrStore(u, &probeResult{})
	r := v.(*probeResult)
	r.once.Do(func() { r.err = Probe(u) })
	if r.err != nil {
		msg := fmt.Sprintf("no RabbitMQ broker at %s (set AMQP_URL, or start one: see README): %v", broker.RedactURL(u), r.err)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return u
}

// Probe connects to the broker at u and closes the connection, within a
// few seconds; it tells whether a broker answers.
func Probe(u string) error {
	conn, err := amqp.DialConfig(u, amqp.Config{
		Dial: func(network, addr string) (net.Conn, error) {
			c, err := net.DialTimeout(network, addr, 3*time.Second)
			if err != nil {
				return nil, err
			}
			return c, c.SetDeadline(time.Now().Add(5 * time.Second))
		},
	})
	if err != nil {
		return err
	}
	return conn.Close()
}

// ID returns a name unique to this test run, "test-" and 12 hex digits, to
// use as a system_id or a prefix of queue names.
func ID(t testing.TB) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "test-" + hex.EncodeToString(b)
}

// Admin is a plain connection for a test's own declarations, publishes and
// inspections, independent of the code under test. Each operation uses a
// fresh channel, since any channel error closes a channel.
type Admin struct {
	t    testing.TB
	url  string
	mu   sync.Mutex
	conn *amqp.Connection
}

// NewAdmin connects to URL(t). At cleanup it deletes the queues and
// exchanges registered with DeleteAtCleanup and closes its connection. It
// reconnects by itself if its connection was closed (by CloseConnections).
func NewAdmin(t testing.TB) *Admin {
	t.Helper()
	a := &Admin{t: t, url: URL(t)}
	t.Cleanup(func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.conn != nil {
			_ = a.conn.Close()
		}
	})
	return a
}

// Channel returns a new channel on the admin connection; close it when done.
func (a *Admin) Channel() *amqp.Channel {
	a.t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.conn == nil || a.conn.IsClosed() {
		conn, err := amqp.DialConfig(a.url, amqp.Config{
			Properties: amqp.Table{"connection_name": "brokertest admin"},
		})
		if err != nil {
			a.t.Fatalf("admin connection: %v", err)
		}
		a.conn = conn
	}
	ch, err := a.conn.Channel()
	if err != nil {
		a.t.Fatalf("admin channel: %v", err)
	}
	return ch
}

// Do runs f on a fresh channel and closes it.
func (a *Admin) Do(f func(ch *amqp.Channel) error) error {
	a.t.Helper()
	ch := a.Channel()
	defer func() { _ = ch.Close() }()
	return f(ch)
}

// DeleteAtCleanup deletes the named queues and exchanges when the test
// ends (cleanups run in reverse order, so register this before starting
// whatever consumes them). Names that do not exist are ignored.
func (a *Admin) DeleteAtCleanup(queues, exchanges []string) {
	a.t.Cleanup(func() {
		for _, q := range queues {
			_ = a.Do(func(ch *amqp.Channel) error { _, err := ch.QueueDelete(q, false, false, false); return err })
		}
		for _, e := range exchanges {
			_ = a.Do(func(ch *amqp.Channel) error { return ch.ExchangeDelete(e, false, false) })
		}
	})
}

// InspectQueue declares queue passively and returns what the broker says
// (message and consumer counts), or the error (NOT_FOUND) if it does not
// exist.
func (a *Admin) InspectQueue(queue string) (amqp.Queue, error) {
	a.t.Helper()
	var q amqp.Queue
	err := a.Do(func(ch *amqp.Channel) error {
		var err error
		q, err = ch.QueueDeclarePassive(queue, false, false, false, false, nil)
		return err
	})
	return q, err
}

// TempQueue declares a server-named, exclusive, auto-delete queue bound to
// exchange with each key (no binding if exchange is ""), and returns its
// name and a consumer of it with auto-ack. It lives as long as the admin
// connection.
func (a *Admin) TempQueue(exchange string, keys ...string) (string, <-chan amqp.Delivery) {
	a.t.Helper()
	ch := a.Channel()
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		a.t.Fatalf("declaring a temporary queue: %v", err)
	}
	for _, k := range keys {
		if err := ch.QueueBind(q.Name, k, exchange, false, nil); err != nil {
			a.t.Fatalf("binding %s to %s with %q: %v", q.Name, exchange, k, err)
		}
	}
	d, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		a.t.Fatalf("consuming %s: %v", q.Name, err)
	}
	return q.Name, d
}

// Publish publishes msg with a publisher confirm and fails the test if the
// broker does not confirm it within 10s.
func (a *Admin) Publish(exchange, key string, msg amqp.Publishing) {
	a.t.Helper()
	a.PublishWithin(10*time.Second, exchange, key, msg)
}

// PublishWithin is Publish with another deadline for the confirm: on a
// loaded machine the broker takes a while to take a message of 100 MiB.
func (a *Admin) PublishWithin(timeout time.Duration, exchange, key string, msg amqp.Publishing) {
	a.t.Helper()
	ch := a.Channel()
	defer func() { _ = ch.Close() }()
	if err := ch.Confirm(false); err != nil {
		a.t.Fatalf("confirm mode: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, false, false, msg)
	if err != nil {
		a.t.Fatalf("publishing to %q/%q: %v", exchange, key, err)
	}
	if ok, err := dc.WaitContext(ctx); !ok || err != nil {
		a.t.Fatalf("publishing to %q/%q: not confirmed (%v)", exchange, key, err)
	}
}

// Receive returns the next delivery from d, failing the test after timeout.
func Receive(t testing.TB, d <-chan amqp.Delivery, timeout time.Duration) amqp.Delivery {
	t.Helper()
	select {
	case m, ok := <-d:
		if !ok {
			t.Fatal("delivery channel closed")
		}
		return m
	case <-time.After(timeout):
		t.Fatalf("no delivery within %v", timeout)
	}
	return amqp.Delivery{}
}

// CloseConnections closes every broker connection whose connection_name is
// name, with `rabbitmqctl close_connection`, as a broker outage would, and
// returns how many it closed. It fails the test if there is none, and
// skips it if rabbitmqctl is not available.
func CloseConnections(t testing.TB, name string) int {
	t.Helper()
	if _, err := exec.LookPath("rabbitmqctl"); err != nil {
		t.Skip("rabbitmqctl not found: cannot close broker connections")
	}
	pids, err := connectionPids(name)
	if err != nil {
		t.Fatal(err)
	}
	if len(pids) == 0 {
		t.Fatalf("no broker connection named %q", name)
	}
	for _, pid := range pids {
		out, err := exec.Command("rabbitmqctl", "-q", "close_connection", pid, "closed by test").CombinedOutput()
		if err != nil {
			t.Fatalf("rabbitmqctl close_connection %s: %v\n%s", pid, err, out)
		}
	}
	return len(pids)
}

// ConnectionNames lists the connection_name of every broker connection
// (empty for connections that have none), with rabbitmqctl.
func ConnectionNames(t testing.TB) []string {
	t.Helper()
	if _, err := exec.LookPath("rabbitmqctl"); err != nil {
		t.Skip("rabbitmqctl not found")
	}
	conns, err := listConnections()
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(conns))
	for _, c := range conns {
		names = append(names, c.name)
	}
	return names
}

type connInfo struct {
	pid, name string
}

// listConnections runs `rabbitmqctl list_connections pid client_properties`.
// The table formatter is used because only its pids are accepted by
// close_connection; it renders client_properties as Erlang-ish terms such
// as [{"connection_name","dynworkers s/h"},{"capabilities",[...]}].
func listConnections() ([]connInfo, error) {
	out, err := exec.Command("rabbitmqctl", "-q", "--no-table-headers", "list_connections", "pid", "client_properties").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, fmt.Errorf("rabbitmqctl list_connections: %v\n%s", err, ee.Stderr)
		}
		return nil, fmt.Errorf("rabbitmqctl list_connections: %w", err)
	}
	var conns []connInfo
	for line := range strings.Lines(string(out)) {
		pid, props, ok := strings.Cut(strings.TrimSpace(line), "\t")
		if !ok {
			continue
		}
		c := connInfo{pid: pid}
		const key = `{"connection_name","`
		if i := strings.Index(props, key); i >= 0 {
			rest := props[i+len(key):]
			if j := strings.Index(rest, `"}`); j >= 0 {
				c.name = rest[:j]
			}
		}
		conns = append(conns, c)
	}
	return conns, nil
}

func connectionPids(name string) ([]string, error) {
	conns, err := listConnections()
	if err != nil {
		return nil, err
	}
	var pids []string
	for _, c := range conns {
		if c.name == name {
			pids = append(pids, c.pid)
		}
	}
	return pids, nil
}

// RemoveMessages takes the messages for which match is true out of queue
// and returns how many there were; the others go back to the queue. Use it
// to clean a queue that other tests share, such as the dead-letter queue.
func (a *Admin) RemoveMessages(queue string, match func(amqp.Delivery) bool) int {
	a.t.Helper()
	ch := a.Channel()
	// Closing the channel returns the unmatched messages, still unacked, to
	// the queue; until then basic.get does not return them again.
	defer func() { _ = ch.Close() }()
	n := 0
	for {
		d, ok, err := ch.Get(queue, false)
		if err != nil {
			a.t.Errorf("getting from %s: %v", queue, err)
			return n
		}
		if !ok {
			return n
		}
		if match(d) {
			if err := d.Ack(false); err != nil {
				a.t.Errorf("acking in %s: %v", queue, err)
			}
			n++
		}
	}
}
