package cli

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dynworkers/dynworkers/host/internal/amqpurl"
	"github.com/dynworkers/dynworkers/host/internal/auth"
	"github.com/dynworkers/dynworkers/host/internal/broker"
	"github.com/dynworkers/dynworkers/host/internal/config"
	"github.com/dynworkers/dynworkers/host/internal/control"
)

// ControlExchange is the topic exchange control messages are published to
// (DESIGN §5).
const ControlExchange = "vumi.control"

// amqpDialTimeout bounds connecting to the broker, apart from -timeout.
const amqpDialTimeout = 10 * time.Second

// routingKey is the key the flags address: <system_id>.<host>, .all or
// .any. A missing system id is taken from -config, else the default.
func (o *clientOptions) routingKey(stderr io.Writer) string {
	sys := o.systemID
	if sys == "" {
		if f, reason := o.config(); f != nil {
			sys = f.SystemID
		} else {
			sys = config.DefaultSystemID
			fmt.Fprintf(stderr, "dynworkers %s: note: %s %s; using system_id %q (set -system-id or -config)\n", o.cmd, o.configPath, reason, sys)
		}
	}
	switch {
	case o.all:
		return sys + ".all"
	case o.any:
		return sys + ".any"
	}
	return sys + "." + o.host
}

// doAMQP publishes body as a control message to the exchange with the key
// the flags name, with reply_to set to an exclusive, auto-deleted,
// server-named queue and a random correlation_id, and returns the replies:
// the first one, or with -all every one that comes within the timeout.
func (o *clientOptions) doAMQP(ctx context.Context, body []byte, stderr io.Writer) ([]answer, error) {
	key := o.routingKey(stderr)
	s, err := o.dialAMQP(ctx)
	if err != nil {
		return nil, err
	}
	defer s.close()
	return s.request(ctx, key, body)
}

// amqpSession is a connection to the broker with a channel in confirm
// mode and a reply queue, ready to send requests one after another.
// After a failed request it must be closed: a late confirm or return of
// the failed message would be taken for the next one's.
type amqpSession struct {
	o          *clientOptions
	where      string // the broker URL, password hidden
	user       string // the broker user, sent as user_id
	conn       *amqp.Connection
	ch         *amqp.Channel
	closed     chan *amqp.Error
	queue      string
	deliveries <-chan amqp.Delivery
	confirms   chan amqp.Confirmation
	returns    chan amqp.Return
}

// dialAMQP connects to the broker of -amqp and sets up a session.
func (o *clientOptions) dialAMQP(ctx context.Context) (*amqpSession, error) {
	where := amqpurl.Redact(o.amqpURL)
	var tlsCfg *tls.Config
	if strings.HasPrefix(strings.ToLower(o.amqpURL), "amqps://") {
		c, err := o.amqpTLS.ClientConfig(tlsFlagNames)
		if err != nil {
			return nil, fmt.Errorf("TLS settings for %s: %w", where, err)
		}
		tlsCfg = c
	}
	tlsCfg, certReq := broker.WatchCertRequest(tlsCfg)
	conn, err := amqp.DialConfig(o.amqpURL, amqp.Config{
		Properties:      amqp.Table{"connection_name": "dynworkers " + o.cmd},
		Dial:            dialContext(ctx, amqpDialTimeout),
		TLSClientConfig: tlsCfg,
	})
	if err != nil {
		if hint := broker.TLSHint(err, certReq, tlsFlags); hint != "" {
			return nil, fmt.Errorf("cannot connect to the broker at %s over TLS: %s: %w", where, hint, err)
		}
		var ne net.Error
		if errors.As(err, &ne) || errors.Is(err, amqp.ErrCredentials) || errors.Is(err, amqp.ErrVhost) {
			return nil, fmt.Errorf("cannot reach the broker at %s: %w", where, err)
		}
		return nil, fmt.Errorf("connecting to the broker at %s: %w", where, err)
	}
	s := &amqpSession{o: o, where: where, conn: conn}
	// Only a user named in the URL: without one the library logs in as
	// guest, and with SASL EXTERNAL (a client certificate) the broker user
	// is the certificate's, which the URL does not say.
	if u, err := url.Parse(o.amqpURL); err == nil && u.User != nil {
		s.user = u.User.Username()
	}
	if err := s.setup(); err != nil {
		conn.Close()
		return nil, err
	}
	return s, nil
}

func (s *amqpSession) setup() error {
	ch, err := s.conn.Channel()
	if err != nil {
		return fmt.Errorf("opening a channel: %w", err)
	}
	s.ch = ch
	s.closed = ch.NotifyClose(make(chan *amqp.Error, 1))
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		return fmt.Errorf("declaring the reply queue: %w", err)
	}
	s.queue = q.Name
	if s.deliveries, err = ch.Consume(q.Name, "", true, true, false, false, nil); err != nil {
		return fmt.Errorf("consuming the reply queue: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		return fmt.Errorf("enabling publisher confirms: %w", err)
	}
	s.confirms = ch.NotifyPublish(make(chan amqp.Confirmation, 1))
	// The broker returns a mandatory message no queue is bound for before
	// it confirms it, and the library hands both over in that order.
	s.returns = ch.NotifyReturn(make(chan amqp.Return, 1))
	return nil
}

func (s *amqpSession) close() { s.conn.Close() }

// tlsFlagNames words the TLS settings' errors with the flags that set them.
var tlsFlagNames = map[string]string{"ca_file": "-amqp-ca", "cert_file": "-amqp-cert", "key_file": "-amqp-key", "server_name": "-amqp-server-name"}

// tlsFlags names the same flags in the broker's hints after a failed
// handshake.
var tlsFlags = broker.TLSSettingNames{CA: "-amqp-ca", Cert: "-amqp-cert", Key: "-amqp-key", ServerName: "-amqp-server-name"}

// dialContext is amqp.DefaultDial that also gives up when ctx ends.
func dialContext(ctx context.Context, timeout time.Duration) func(network, addr string) (net.Conn, error) {
	return func(network, addr string) (net.Conn, error) {
		d := net.Dialer{Timeout: timeout}
		conn, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		// As in amqp.DefaultDial: a deadline for the AMQP handshake, which
		// the library clears once the connection is open.
		if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
			conn.Close()
			return nil, err
		}
		return conn, nil
	}
}

// request publishes body with key and gathers the replies.
func (s *amqpSession) request(ctx context.Context, key string, body []byte) ([]answer, error) {
	o := s.o
	corrID := randomID()
	ctx, cancel := context.WithTimeout(ctx, o.wait())
	defer cancel()
	msg := amqp.Publishing{
		ContentType:   "application/json",
		DeliveryMode:  amqp.Persistent,
		CorrelationId: corrID,
		MessageId:     corrID,
		ReplyTo:       s.queue,
		Timestamp:     time.Now(),
		AppId:         "dynworkers-cli",
		// The broker checks that user_id is the connection's user, so a
		// host can identify the sender by it (control.principal's
		// broker_users).
		UserId: s.user,
		Body:   body,
	}
	if o.signer != nil {
		msg.Headers = amqp.Table(o.signer.Sign(auth.AMQPScope(key), body, time.Now()).AMQPHeaders())
	}
	err := s.ch.PublishWithContext(ctx, ControlExchange, key, true, false, msg)
	if err != nil {
		return nil, fmt.Errorf("publishing to exchange %s: %w", ControlExchange, err)
	}
	select {
	case c, ok := <-s.confirms:
		if !ok {
			return nil, channelError(s.closed, key)
		}
		if !c.Ack {
			return nil, fmt.Errorf("the broker refused the message (nack) for %s", key)
		}
	case <-ctx.Done():
		return nil, fmt.Errorf("the broker at %s did not confirm the message within %s", s.where, o.wait())
	}
	select {
	case <-s.returns:
		return nil, fmt.Errorf("no host listens on %s: no queue is bound to exchange %s with key %q (is a host with that system_id%s connected to %s?)",
			key, ControlExchange, key, hostHint(o.host), s.where)
	default:
	}
	return o.gather(ctx, s.deliveries, s.closed, corrID, key, body)
}

func hostHint(host string) string {
	if host == "" {
		return ""
	}
	return fmt.Sprintf(" and host name %q", host)
}

// gather collects the replies carrying corrID until the first one (or, for
// -all, until ctx ends).
func (o *clientOptions) gather(ctx context.Context, deliveries <-chan amqp.Delivery, closed <-chan *amqp.Error,
	corrID, key string, body []byte) ([]answer, error) {
	var answers []answer
	for {
		select {
		case d, ok := <-deliveries:
			if !ok {
				return nil, channelError(closed, key)
			}
			if d.CorrelationId != corrID {
				continue // not a reply to this request
			}
			rep, ok := parseReply(d.Body)
			if !ok {
				rep = clientReply{Error: control.Errorf(control.CodeInternal, "unreadable reply: the body is not a control reply")}
			}
			answers = append(answers, answer{host: replyHost(d, rep), reply: rep, raw: d.Body})
			if !o.all {
				return answers, nil
			}
		case <-ctx.Done():
			if len(answers) > 0 {
				return answers, nil
			}
			msg := fmt.Sprintf("no reply on %s within %s", key, o.wait())
			if !o.all {
				msg += " (the message waits in the host's queue: a host will still carry it out when it consumes it)"
			}
			if !json.Valid(body) {
				msg += "; the body is not valid JSON, which hosts dead-letter without a reply"
			}
			return nil, errors.New(msg)
		}
	}
}

// replyHost returns the replying host when the reply says: a status result
// carries "host"; a transport may also set a "host" header.
func replyHost(d amqp.Delivery, rep clientReply) string {
	var res struct {
		Host string `json:"host"`
	}
	if len(rep.Result) > 0 && json.Unmarshal(rep.Result, &res) == nil && res.Host != "" {
		return res.Host
	}
	if h, ok := d.Headers["host"].(string); ok {
		return h
	}
	return ""
}

// channelError explains a closed channel, such as NOT_FOUND for a missing
// exchange.
func channelError(closed <-chan *amqp.Error, key string) error {
	select {
	case e := <-closed:
		if e != nil && e.Code == amqp.NotFound {
			return fmt.Errorf("exchange %s does not exist on the broker: no host has connected to it yet (%s)", ControlExchange, e.Reason)
		}
		if e != nil {
			return fmt.Errorf("the broker closed the channel while sending to %s: %w", key, e)
		}
	case <-time.After(time.Second):
	}
	return fmt.Errorf("the connection to the broker was lost while sending to %s", key)
}

func randomID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}
