package control

import (
	"errors"
	"fmt"
	"strings"

	"github.com/hashicorp/go-hclog"
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
	// receives for an operator to look at, up to DeadLetterMaxLength
	// messages and DeadLetterMaxBytes of bodies: beyond either, the oldest
	// are dropped (x-overflow drop-head), so that a flood of rejected
	// messages cannot fill the broker's disk.
	DeadLetterQueue = "vumi.control.dlx"
	// EventsExchange is the topic exchange lifecycle events are published
	// to, with the routing key EventKey.
	EventsExchange = "vumi.events"
)

// Bounds of DeadLetterQueue (its x-max-length and x-max-length-bytes).
const (
	DeadLetterMaxLength = 10000
	DeadLetterMaxBytes  = 64 << 20
)

// DeadLetterQueueArgs are the arguments DeadLetterQueue is declared with.
func DeadLetterQueueArgs() amqp.Table {
	return amqp.Table{
		"x-max-length":       int32(DeadLetterMaxLength),
		"x-max-length-bytes": int32(DeadLetterMaxBytes),
		"x-overflow":         "drop-head",
	}
}

// DeadLetterPolicyCommand is the command that bounds a DeadLetterQueue
// declared by an older version without DeadLetterQueueArgs (a queue's
// arguments cannot change; a policy applies to an existing queue).
const DeadLetterPolicyCommand = `rabbitmqctl set_policy --apply-to queues dynworkers-dlx '^vumi\.control\.dlx$' '{"max-length":10000,"max-length-bytes":67108864,"overflow":"drop-head"}'`

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
//   - exchange vumi.control.dlx (fanout, durable), the
//     x-dead-letter-exchange of both control queues, and queue
//     vumi.control.dlx bound to it, bounded (DeadLetterQueueArgs);
//   - exchange vumi.events (topic, durable).
//
// Queues are neither exclusive nor auto-delete: messages sent while no host
// runs wait for one. Declarations are idempotent, but a queue that already
// exists with other arguments (say, without the dead-letter exchange) makes
// the broker refuse the declaration; the error says which queue.
//
// One exception: a dead-letter queue declared by an older version, without
// its bounds, is kept as it is (the host cannot change a queue's arguments,
// and deleting it would lose what it holds); TopologyLogged logs a warning
// that names the command that bounds it (DeadLetterPolicyCommand). The
// broker closes the channel when it refuses a declaration, so the
// dead-letter queue is declared last: run Topology last on its channel.
func Topology(systemID, hostName string) func(*amqp.Channel) error {
	return TopologyLogged(systemID, hostName, nil)
}

// TopologyLogged is Topology with a logger for the warning about an
// unbounded dead-letter queue; nil logs nothing.
func TopologyLogged(systemID, hostName string, log hclog.Logger) func(*amqp.Channel) error {
	if log == nil {
		log = hclog.NewNullLogger()
	}
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
		return declareDeadLetterQueue(ch, DeadLetterQueue, DeadLetterQueueArgs(), log)
	}
}

// declareDeadLetterQueue declares the queue name with args and binds it to
// DeadLetterExchange. If it exists with other arguments (an older version
// declared it without bounds), it logs a warning with the fix and returns
// nil: that version bound it already, and the channel is closed now.
func declareDeadLetterQueue(ch *amqp.Channel, name string, args amqp.Table, log hclog.Logger) error {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	_, err := ch.QueueDeclare(name, true, false, false, false, args)
	var aerr *amqp.Error
	if errors.As(err, &aerr) && aerr.Code == amqp.PreconditionFailed {
		log.Warn("the dead-letter queue exists without its length limit (declared by an older version) and grows without bound; "+
			"bound it with a policy, or delete it once empty for the host to declare it again at its next connection",
			"queue", name, "fix", strings.ReplaceAll(DeadLetterPolicyCommand, `vumi\.control\.dlx`, strings.ReplaceAll(name, ".", `\.`)),
			"broker_said", aerr.Reason)
		return nil
	}
	if err != nil {
		return fmt.Errorf("declaring queue %q: %w", name, err)
	}
	if err := ch.QueueBind(name, "", DeadLetterExchange, false, nil); err != nil {
		return fmt.Errorf("binding queue %q to %q: %w", name, DeadLetterExchange, err)
	}
	return nil
}
