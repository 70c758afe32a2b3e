// Command telnet is a first-party dynworkers plugin offering the class
// "dynworkers.telnet" (alias "telnet"): a Vumi transport that is a TCP line
// server. Every connection is a session, every line a user message, and
// the messages a Vumi application sends to a session are written to its
// connection. See README.md.
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dynworkers/dynworkers/sdk"
	"github.com/dynworkers/dynworkers/sdk/vumi"
)

// Config is the telnet class's config block.
type Config struct {
	TransportName string        `config:"transport_name,required" help:"the transport's name: it publishes on <transport_name>.inbound and .event and consumes <transport_name>.outbound"`
	Host          string        `config:"host" default:"127.0.0.1" help:"the address to listen on"`
	Port          int           `config:"port,required" help:"the TCP port to listen on; 0 picks a free one (the worker's status says which)"`
	WriteTimeout  time.Duration `config:"write_timeout" default:"10s" help:"how long writing a message to a client may take before its session is closed"`
}

// Class is the telnet class.
var Class = sdk.Class{
	Name:        "dynworkers.telnet",
	Aliases:     []string{"telnet"},
	Description: "Vumi transport serving telnet (TCP line) clients: a session per connection, a message per line.",
	Version:     "1.0.0",
	New:         sdk.Construct(newTransport),
}

func main() { sdk.Serve(Class) }

// MaxLineLen is the longest line a client may send, in bytes; a longer one
// ends its session.
const MaxLineLen = 64 * 1024

// publishTimeout bounds one attempt to publish a message. A line is not
// lost when an attempt fails: publishInbound tries again, with a backoff
// from retryMin to retryMax, until it is published or the worker stops.
var publishTimeout = 30 * time.Second

// Bounds of the delay between two attempts to publish a message.
var (
	retryMin = 100 * time.Millisecond
	retryMax = 5 * time.Second
)

func newTransport(cfg Config) (sdk.Worker, error) {
	if cfg.TransportName == "" {
		return nil, sdk.InvalidConfig("transport_name must not be empty")
	}
	for _, key := range []string{vumi.InboundKey(cfg.TransportName), vumi.OutboundKey(cfg.TransportName), vumi.EventKey(cfg.TransportName)} {
		if err := sdk.CheckBusName("routing key", key); err != nil {
			return nil, sdk.InvalidConfig("transport_name %q: %v", cfg.TransportName, err)
		}
	}
	if cfg.Port < 0 || cfg.Port > 65535 {
		return nil, sdk.InvalidConfig("port %d is not within 0..65535", cfg.Port)
	}
	if cfg.WriteTimeout <= 0 {
		return nil, sdk.InvalidConfig("write_timeout must be positive, got %s", cfg.WriteTimeout)
	}
	return &Transport{cfg: cfg, sessions: map[string]*session{}, byMsgID: map[string]*session{}}, nil
}

// Transport is a worker of the telnet class.
type Transport struct {
	cfg  Config
	env  *sdk.Env
	ln   net.Listener
	addr string // the listener's address: the to_addr of inbound messages
	wg   sync.WaitGroup

	mu        sync.Mutex
	sessions  map[string]*session // by the client's address
	byMsgID   map[string]*session // by the message_id of inbound messages
	closing   bool
	acceptErr error

	// run ends when the worker has stopped, or Stop's deadline has passed:
	// publications still being retried then are given up.
	run     context.Context
	stopRun context.CancelFunc

	inbound, outbound, acks, nacks atomic.Int64
	metricsOnce                    sync.Once
}

// session is one client connection.
type session struct {
	id   string // the client's address: from_addr of its messages
	conn net.Conn
	// ids are the message_ids of the session's recent inbound messages,
	// oldest first, so that a reply can find the session by in_reply_to.
	ids []string
}

// maxIDs bounds the message_ids a session remembers for in_reply_to.
const maxIDs = 64

// Start listens, consumes the outbound messages and accepts clients.
func (t *Transport) Start(_ context.Context, env *sdk.Env) error {
	t.env = env
	t.run, t.stopRun = context.WithCancel(context.Background())
	ln, err := net.Listen("tcp", net.JoinHostPort(t.cfg.Host, strconv.Itoa(t.cfg.Port)))
	if err != nil {
		return fmt.Errorf("listening: %w", err)
	}
	t.ln = ln
	t.addr = ln.Addr().String()
	// Consuming with prefetch 1 would not change the order: the SDK hands
	// messages to the handler one at a time, in order, so the messages of
	// every session are written in the order they were sent.
	if err := vumi.ConsumeUserMessages(env, vumi.OutboundKey(t.cfg.TransportName), t.send); err != nil {
		ln.Close()
		return err
	}
	t.wg.Go(t.accept)
	env.Logger().Info("telnet transport listening", "addr", t.addr, "transport_name", t.cfg.TransportName)
	return nil
}

func (t *Transport) accept() {
	for {
		conn, err := t.ln.Accept()
		if err != nil {
			t.mu.Lock()
			closing := t.closing
			if !closing {
				t.acceptErr = err
			}
			t.mu.Unlock()
			if !closing {
				t.env.Logger().Error("accepting clients failed", "error", err)
			}
			return
		}
		s := &session{id: conn.RemoteAddr().String(), conn: conn}
		t.mu.Lock()
		if t.closing {
			t.mu.Unlock()
			conn.Close()
			return
		}
		t.sessions[s.id] = s
		t.mu.Unlock()
		t.wg.Go(func() { t.serve(s) })
	}
}

// serve publishes the session's start, each of its lines and its end.
func (t *Transport) serve(s *session) {
	log := t.env.Logger().With("session", s.id)
	log.Debug("client connected")
	t.publishInbound(s, vumi.SessionNew, vumi.NullString{})
	r := bufio.NewReader(s.conn)
	var err error
	for {
		var line string
		line, err = readLine(r, MaxLineLen)
		if err != nil && line == "" {
			break
		}
		t.publishInbound(s, vumi.SessionResume, vumi.String(line))
		if err != nil {
			break
		}
	}
	t.forget(s)
	s.conn.Close()
	t.publishInbound(s, vumi.SessionClose, vumi.NullString{})
	if errors.Is(err, errLineTooLong) {
		log.Warn("closed a session whose client sent a line that is too long", "max_bytes", MaxLineLen)
	} else {
		log.Debug("client disconnected")
	}
}

// publishInbound publishes a message of the session, trying again after a
// failure (a broker outage: the host's bus waits for the broker until the
// attempt's publishTimeout) until it is published, or the worker stopped.
// serve reads the session's next line only then: a session has one line
// in flight at most, and while the bus is away its client is held back by
// TCP flow control (its writes block once the socket buffers are full),
// instead of lines piling up in memory or being dropped. A line whose
// attempt timed out but had reached the broker is published twice, with
// the same message_id.
func (t *Transport) publishInbound(s *session, ev vumi.SessionEvent, content vumi.NullString) {
	msg := vumi.NewUserMessage()
	msg.TransportName, msg.TransportType = t.cfg.TransportName, vumi.TransportTypeTelnet
	msg.FromAddr, msg.ToAddr = s.id, t.addr
	msg.SessionEvent = ev
	msg.Content = content
	t.mu.Lock()
	if _, open := t.sessions[s.id]; open {
		s.ids = append(s.ids, msg.MessageID)
		t.byMsgID[msg.MessageID] = s
		if len(s.ids) > maxIDs {
			delete(t.byMsgID, s.ids[0])
			s.ids = s.ids[1:]
		}
	}
	t.mu.Unlock()
	err := t.retry("an inbound message", []any{"session", s.id, "session_event", string(ev), "message_id", msg.MessageID},
		func(ctx context.Context) error {
			return vumi.PublishUserMessage(ctx, t.env, vumi.InboundKey(t.cfg.TransportName), msg)
		})
	if err != nil {
		return
	}
	if content.Valid {
		t.inbound.Add(1)
		t.metric("inbound", 1, sdk.AggSum)
	}
}

// forget removes a session that has ended.
func (t *Transport) forget(s *session) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.sessions, s.id)
	for _, id := range s.ids {
		delete(t.byMsgID, id)
	}
	s.ids = nil
}

// lookup finds the session a message is for: the one named by its to_addr,
// else the one its in_reply_to came from.
func (t *Transport) lookup(msg *vumi.TransportUserMessage) *session {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s, ok := t.sessions[msg.ToAddr]; ok {
		return s
	}
	if s, ok := t.byMsgID[msg.InReplyTo]; ok {
		return s
	}
	return nil
}

// send writes an outbound message to its session and publishes an ack, or
// a nack when the session is gone or the write fails. A message that
// closes the session (session_event "close") ends the connection after
// its content is written. The bus message is acked in every case: a nack
// event tells the application, and requeueing would not bring a session
// back.
func (t *Transport) send(_ context.Context, msg *vumi.TransportUserMessage) error {
	t.outbound.Add(1)
	s := t.lookup(msg)
	if s == nil {
		to := msg.ToAddr
		if to == "" {
			to = "(none)"
		}
		t.event(vumi.Nack(msg, "no session "+to+": the client has disconnected"))
		return nil
	}
	if msg.Content.Valid {
		text := strings.ReplaceAll(strings.ReplaceAll(msg.Content.String, "\r\n", "\n"), "\n", "\r\n") + "\r\n"
		_ = s.conn.SetWriteDeadline(time.Now().Add(t.cfg.WriteTimeout))
		if _, err := io.WriteString(s.conn, text); err != nil {
			s.conn.Close() // serve publishes the close
			t.event(vumi.Nack(msg, "writing to the client failed: "+err.Error()))
			return nil
		}
	}
	ack := vumi.Ack(msg)
	t.event(ack)
	t.metric("outbound", 1, sdk.AggSum)
	if msg.SessionEvent == vumi.SessionClose {
		s.conn.Close()
	}
	return nil
}

// event publishes an event about an outbound message. A failure is
// logged: the message itself was handled.
func (t *Transport) event(ev *vumi.TransportEvent) {
	if ev.EventType == vumi.EventAck {
		t.acks.Add(1)
	} else {
		t.nacks.Add(1)
	}
	_ = t.retry("an event", []any{"event_type", string(ev.EventType), "user_message_id", ev.UserMessageID},
		func(ctx context.Context) error {
			return vumi.PublishEvent(ctx, t.env, vumi.EventKey(t.cfg.TransportName), ev)
		})
}

// retry calls publish, each attempt bounded by publishTimeout, until it
// succeeds or the worker stopped (t.run ended), waiting between attempts
// from retryMin, doubling up to retryMax. Each failure is logged with
// what; the error is returned only when the worker stopped first, after
// an error log that says the message is lost.
func (t *Transport) retry(what string, kv []any, publish func(context.Context) error) error {
	delay := retryMin
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(t.run, publishTimeout)
		err := publish(ctx)
		cancel()
		if err == nil {
			if attempt > 1 {
				t.env.Logger().Info("published "+what+" after a retry", append(kv, "attempts", attempt)...)
			}
			return nil
		}
		if t.run.Err() != nil {
			t.env.Logger().Error("publishing "+what+" failed and the worker stopped; it is lost", append(kv, "attempts", attempt, "error", err)...)
			return err
		}
		t.env.Logger().Warn("publishing "+what+" failed; trying again", append(kv, "attempt", attempt, "retry_in", delay, "error", err)...)
		select {
		case <-time.After(delay):
		case <-t.run.Done():
		}
		delay = min(2*delay, retryMax)
	}
}

// metric reports a metric; a host that collects none is noted once.
func (t *Transport) metric(name string, v float64, aggs ...string) {
	if err := t.env.Metric(name, v, aggs...); err != nil {
		t.metricsOnce.Do(func() { t.env.Logger().Debug("not reporting metrics", "error", err) })
	}
}

// Stop closes the listener and every session (publishing their close
// messages), and waits for them until ctx ends.
func (t *Transport) Stop(ctx context.Context) error {
	// Publications being retried go on until ctx ends, then are given up.
	defer context.AfterFunc(ctx, t.stopRun)()
	defer t.stopRun()
	t.mu.Lock()
	t.closing = true
	for _, s := range t.sessions {
		s.conn.Close()
	}
	t.mu.Unlock()
	t.ln.Close()
	done := make(chan struct{})
	go func() { t.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("sessions still closing: %w", ctx.Err())
	}
}

// Health fails once the listener has failed.
func (t *Transport) Health(context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.acceptErr != nil {
		return fmt.Errorf("not accepting clients: %w", t.acceptErr)
	}
	return nil
}

// Status reports the address and the counts.
func (t *Transport) Status(context.Context) (map[string]any, error) {
	t.mu.Lock()
	sessions := len(t.sessions)
	t.mu.Unlock()
	return map[string]any{
		"addr":           t.addr,
		"transport_name": t.cfg.TransportName,
		"sessions":       sessions,
		"inbound":        t.inbound.Load(),
		"outbound":       t.outbound.Load(),
		"acks":           t.acks.Load(),
		"nacks":          t.nacks.Load(),
	}, nil
}

// Addr returns the address the transport listens on.
func (t *Transport) Addr() string { return t.addr }

// Telnet protocol bytes (RFC 854).
const (
	iac  = 255
	dont = 254
	do   = 253
	wont = 252
	will = 251
	sb   = 250
	se   = 240
)

var errLineTooLong = errors.New("line too long")

// readLine reads one line from a telnet client: up to "\n", without the
// line end ("\r\n" or "\n"), without NULs and bare carriage returns
// ("\r\0"), and with telnet commands (IAC ...) taken out. Bytes that are not UTF-8 are replaced. At the end of input
// it returns the partial line, if any, with the error.
func readLine(r *bufio.Reader, max int) (string, error) {
	var buf []byte
	for {
		b, err := r.ReadByte()
		if err != nil {
			return clean(buf), err
		}
		switch b {
		case iac:
			cmd, err := r.ReadByte()
			if err != nil {
				return clean(buf), err
			}
			switch cmd {
			case iac:
				buf = append(buf, iac) // an escaped 255
			case will, wont, do, dont:
				if _, err := r.ReadByte(); err != nil { // the option
					return clean(buf), err
				}
			case sb: // subnegotiation: skip to IAC SE
				for prev := byte(0); ; {
					c, err := r.ReadByte()
					if err != nil {
						return clean(buf), err
					}
					if prev == iac && c == se {
						break
					}
					prev = c
				}
			}
			// Other commands (NOP, AYT, IP, ...) are two bytes: ignored.
		case '\n':
			return clean(buf), nil
		case 0:
			// "\r\0" is a bare carriage return, which means nothing
			// in a line; nor does a NUL.
			if n := len(buf); n > 0 && buf[n-1] == '\r' {
				buf = buf[:n-1]
			}
		default:
			buf = append(buf, b)
		}
		if len(buf) > max {
			return "", errLineTooLong
		}
	}
}

func clean(b []byte) string {
	s := strings.TrimSuffix(string(b), "\r")
	return strings.ToValidUTF8(s, "\uFFFD")
}
