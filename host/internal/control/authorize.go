package control

import (
	"context"
	"errors"
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dynworkers/dynworkers/host/internal/auth"
)

// Locator is optionally implemented by a Host, so that the dispatcher can
// authorise a request by where it acts: the daemon implements it. Without
// it, supervisor paths are taken as written and the class of a worker to
// stop or restart is unknown (only a principal allowed every class and
// the whole tree may then stop or restart).
type Locator interface {
	// WorkerPlace returns the path of the supervisor the named worker runs
	// under and its class, if there is such a worker.
	WorkerPlace(name string) (supervisor, class string, ok bool)
	// SupervisorPath returns the full path ("root/a/b") of the supervisor
	// a request's path or name designates, if there is one.
	SupervisorPath(path string) (string, bool)
	// CanonicalClass returns the canonical name of a class name or alias,
	// if the class exists.
	CanonicalClass(name string) (string, bool)
}

// SetPolicy makes the dispatcher authenticate and authorise requests with
// p (nil: take every request, as without a control block). Call it before
// the transports start.
//
// With a policy, Handle authenticates a message before decoding it, from
// the credentials its transport put in the context (auth.WithCredentials:
// the AMQP transport does), and Do authorises the request of the principal
// in the context (auth.WithPrincipal, set by Handle or by the HTTP API's
// Authenticate). A request without a principal is refused as
// unauthenticated when the policy requires it, except a read-only one
// (status, list_classes, cluster_status, logs) that the HTTP API marked
// auth.WithLocalRead: a GET guarded by its bearer token. drain, undrain
// and cluster_status act on no supervisor or class: the principal needs
// only the operation; logs is authorised as stop_worker is, by the class
// of the worker and the supervisor it runs under (a principal allowed status may use cluster_status). When the policy does not require
// (require = false), nothing is refused: what would be is logged.
func (d *Dispatcher) SetPolicy(p *auth.Policy) { d.policy = p }

// Policy returns the policy set by SetPolicy, or nil.
func (d *Dispatcher) Policy() *auth.Policy { return d.policy }

// Authenticate identifies the sender of body by c and returns ctx carrying
// the principal. It refuses (CodeUnauthenticated) only when the policy
// requires; without a policy it returns ctx as it is. The HTTP API calls
// it for signed requests; Handle for AMQP messages.
func (d *Dispatcher) Authenticate(ctx context.Context, c auth.Credentials, body []byte) (context.Context, *Error) {
	p := d.policy
	if p == nil {
		return ctx, nil
	}
	pr, err := p.Authenticate(c, body)
	if err != nil {
		if !p.Required() {
			d.logger.Warn("control request would be refused as unauthenticated (control.require is false)",
				"transport", c.Transport, "broker_user", short(c.BrokerUser), "reason", err.Error())
			return ctx, nil
		}
		return ctx, Errorf(CodeUnauthenticated, "%s", err.Error())
	}
	return auth.WithPrincipal(ctx, pr), nil
}

// authenticate runs in Handle, before the body is decoded.
func (d *Dispatcher) authenticate(ctx context.Context, body []byte) (context.Context, *Error) {
	if d.policy == nil {
		return ctx, nil
	}
	if _, ok := auth.PrincipalFrom(ctx); ok {
		return ctx, nil // the transport authenticated it (HTTP)
	}
	c, ok := auth.CredentialsFrom(ctx)
	if !ok {
		return ctx, nil // authorize decides
	}
	return d.Authenticate(ctx, c, body)
}

// authorize runs in Do, once the request is valid: it refuses a request
// whose principal may not do it, or that has none when one is required.
func (d *Dispatcher) authorize(ctx context.Context, r *Request) *Error {
	p := d.policy
	if p == nil {
		return nil
	}
	pr, ok := auth.PrincipalFrom(ctx)
	if !ok {
		if readOnly(r.Operation) && auth.IsLocalRead(ctx) {
			return nil
		}
		if !p.Required() {
			return nil // Authenticate logged why, if there was anything to check
		}
		return Errorf(CodeUnauthenticated,
			"this host requires authenticated control requests (control.require): sign the request with a principal's key (the CLI's -key), or publish it over AMQP as a principal's broker user with user_id set")
	}
	err := pr.Authorize(d.action(r))
	if err == nil {
		return nil
	}
	var ae *auth.Error
	if !errors.As(err, &ae) {
		return Errorf(CodeInternal, internalMessage)
	}
	if !p.Required() {
		d.logger.Warn("control request would be refused as forbidden (control.require is false)",
			append(logArgs(r), "principal", pr.Name(), "reason", ae.Message)...)
		return nil
	}
	return Errorf(CodeForbidden, "%s", ae.Message)
}

// action describes r for the policy, locating its targets through the
// Host when it is a Locator.
func (d *Dispatcher) action(r *Request) auth.Action {
	loc, _ := d.host.(Locator)
	supPath := func(p string) string {
		if loc != nil {
			if full, ok := loc.SupervisorPath(p); ok {
				return full
			}
		}
		return auth.CanonicalPath(p)
	}
	a := auth.Action{Operation: r.Operation}
	switch r.Operation {
	case OpStartWorker:
		a.Class = r.WorkerClass
		if loc != nil {
			if c, ok := loc.CanonicalClass(r.WorkerClass); ok {
				a.Class = c
			}
		}
		a.Supervisor = supPath(r.Supervisor)
	case OpKillWorker:
		fallthrough // located as a restart is
	case OpStopWorker, OpRestartWorker:
		if loc != nil {
			if sup, class, ok := loc.WorkerPlace(r.WorkerName); ok {
				a.Supervisor, a.Class = auth.CanonicalPath(sup), class
			}
		}
	case OpLogs:
		// As stop_worker: the worker's class and where it runs.
		if loc != nil {
			if sup, class, ok := loc.WorkerPlace(r.WorkerName); ok {
				a.Supervisor, a.Class = auth.CanonicalPath(sup), class
			}
		}
	case OpStartSupervisor:
		a.Supervisor = supPath(r.Supervisor) + "/" + r.SupervisorName
	case OpStopSupervisor:
		a.Supervisor = supPath(r.Supervisor)
	}
	return a
}

// refusedByPolicy reports whether a reply's code refuses a message on
// the policy's behalf; such messages are dead-lettered.
func refusedByPolicy(c Code) bool { return c == CodeUnauthenticated || c == CodeForbidden }

// withDeliveryCredentials puts what the delivery says of its sender in
// ctx: its user_id (which RabbitMQ validated against the publishing
// connection's user), its signature headers, the scope it was signed for
// (its routing key) and whether it is a redelivery.
func withDeliveryCredentials(ctx context.Context, d amqp.Delivery) context.Context {
	return auth.WithCredentials(ctx, auth.Credentials{
		Transport:  "amqp",
		BrokerUser: d.UserId,
		Signature: auth.Signature{
			KeyID:     headerString(d.Headers, auth.HeaderKeyID),
			Timestamp: headerString(d.Headers, auth.HeaderTimestamp),
			Nonce:     headerString(d.Headers, auth.HeaderNonce),
			Value:     headerString(d.Headers, auth.HeaderSignature),
		},
		Scope:       auth.AMQPScope(d.RoutingKey),
		Redelivered: d.Redelivered,
	})
}

// headerString returns a header's value as text: a string, bytes, or an
// integer (a timestamp sent as a number); "" for anything else.
func headerString(h amqp.Table, name string) string {
	switch v := h[name].(type) {
	case string:
		return v
	case []byte:
		return string(v)
	case int8, int16, int32, int64, int, uint8, uint16, uint32, uint64:
		return fmt.Sprint(v)
	}
	return ""
}
