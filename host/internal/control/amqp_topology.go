package control

import (
	"errors"
	"fmt"
	"strings"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Names of the AMQP control channel's exchanges and queues (DESIGN §5).
const (
	// ControlExchange is the topic exchange control messages are sent to.
	ControlExchange = "vumi.control"
	// DeadLetterExchange receives rejected control messages: malformed
	// ones and ones whose handling panicked. It is a fanout exchange.
	DeadLetterExchange = "vumi.control.dlx"
	// DeadLetterQueue is bound to DeadLetterExchange and keeps what it
	// receives for an operator to look at.
	DeadLetterQueue = "vumi.control.dlx"
	// EventsExchange is the topic exchange lifecycle events are published
	// to, with the routing key EventKey.
	EventsExchange = "vumi.events"
)

// HostKey is the routing key of control messages for one host.
func HostKey(systemID, hostName string) string { return systemID + "." + hostName }

// AllKey is the routing key of control messages for every host of a system.
func AllKey(systemID string) string { return systemID + ".all" }

// AnyKey is the routing key of control messages for any one host of a
// system, whichever takes it first.
func AnyKey(systemID string) string { return systemID + ".any" }

// HostQueue is the durable queue one host consumes, bound to ControlExchange
// with HostKey and AllKey.
func HostQueue(systemID, hostName string) string {
	return ControlExchange + "." + systemID + "." + hostName
}

// AnyQueue is the durable queue shared by every host of a system, bound to
// ControlExchange with AnyKey.
func AnyQueue(systemID string) string { return ControlExchange + "." + systemID + ".any" }

// EventKey is the routing key of a lifecycle event on EventsExchange.
func EventKey(systemID, hostName, event string) string {
	return systemID + "." + hostName + "." + event
}

// CheckNames reports whether systemID and hostName can name a host on the
// control channel: both non-empty, free of the topic wildcards '*' and '#'
// and of whitespace, and a host name other than "all" and "any", which
// would collide with the broadcast key and the shared queue.
func CheckNames(systemID, hostName string) error {
	var errs []error
	for _, n := range []struct{ what, v string }{{"system_id", systemID}, {"host name", hostName}} {
		switch {
		case n.v == "":
			errs = append(errs, fmt.Errorf("%s is empty", n.what))
		case strings.ContainsAny(n.v, "*# \t\r\n"):
			errs = append(errs, fmt.Errorf("%s %q contains '*', '#' or whitespace, which AMQP topic keys cannot carry", n.what, n.v))
		}
	}
	if hostName == "all" || hostName == "any" {
		errs = append(errs, fmt.Errorf("host name %q is reserved on the control channel", hostName))
	}
	if q := HostQueue(systemID, hostName); len(q) > 255 {
		errs = append(errs, fmt.Errorf("queue name %q is longer than AMQP's 255 bytes", q))
	}
	return errors.Join(errs...)
}

// Topology returns the function that declares the control channel's
// topology for one host; pass it as broker.Options.Setup, so that it runs
// on every (re)connection before consuming resumes:
//
//   - exchange vumi.control (topic, durable);
//   - queue vumi.control.<system_id>.<host_name> (durable), bound with
//     <system_id>.<host_name> and <system_id>.all;
//   - queue vumi.control.<system_id>.any (durable, shared by every host),
//     bound with <system_id>.any;
//   - exchange and queue vumi.control.dlx (fanout, durable), the
//     x-dead-letter-exchange of both control queues;
//   - exchange vumi.events (topic, durable).
//
// Queues are neither exclusive nor auto-delete: messages sent while no host
// runs wait for one. Declarations are idempotent, but a queue that already
// exists with other arguments (say, without the dead-letter exchange) makes
// the broker refuse the declaration; the error says which queue.
func Topology(systemID, hostName string) func(*amqp.Channel) error {
	return func(ch *amqp.Channel) error {
		if err := CheckNames(systemID, hostName); err != nil {
			return err
		}
		exchanges := []struct{ name, kind string }{
			{ControlExchange, amqp.ExchangeTopic},
			{DeadLetterExchange, amqp.ExchangeFanout},
			{EventsExchange, amqp.ExchangeTopic},
		}
		for _, e := range exchanges {
			if err := ch.ExchangeDeclare(e.name, e.kind, true, false, false, false, nil); err != nil {
				return fmt.Errorf("declaring exchange %q: %w", e.name, err)
			}
		}
		dlArgs := amqp.Table{"x-dead-letter-exchange": DeadLetterExchange}
		queues := []struct {
			name     string
			args     amqp.Table
			exchange string
			keys     []string
		}{
			{DeadLetterQueue, nil, DeadLetterExchange, []string{""}},
			{HostQueue(systemID, hostName), dlArgs, ControlExchange, []string{HostKey(systemID, hostName), AllKey(systemID)}},
			{AnyQueue(systemID), dlArgs, ControlExchange, []string{AnyKey(systemID)}},
		}
		for _, q := range queues {
			if _, err := ch.QueueDeclare(q.name, true, false, false, false, q.args); err != nil {
				return fmt.Errorf("declaring queue %q: %w", q.name, err)
			}
			for _, k := range q.keys {
				if err := ch.QueueBind(q.name, k, q.exchange, false, nil); err != nil {
					return fmt.Errorf("binding queue %q to %q with key %q: %w", q.name, q.exchange, k, err)
				}
			}
		}
		return nil
	}
}
