package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dynworkers/dynworkers/internal/wire/proto"
)

// Children lets a hybrid worker start, stop and list child workers. The
// host runs each child in its own plugin process and supervises it; when
// the hybrid exits, the host stops its children first.
//
// Children are named by short names the hybrid chooses, unique among its
// own children; the host derives each child's worker name (the one shown
// by the status API) from the hybrid's name and the short name. A hybrid
// that restarts finds the children it had still running: it should list
// them at Start and reconcile rather than assume it has none.
//
// Errors the host returns are *HostError values that keep the host's
// message: errors.Is(err, ErrInvalidConfig) for an invalid child (unknown
// class, bad name, invalid config or restart), ErrChildNotFound for a child
// name that does not exist, ErrChildExists for a name taken by another
// worker, ErrUnavailable when the host could not be reached,
// context.DeadlineExceeded when the call timed out. When the host offers
// no Host service at all, every method fails with ErrNoHostService.
type Children interface {
	// StartChild starts the child spec.Name, or makes sure it runs: a child
	// of that name with the same class, config and restart is left alone
	// (Outcome "unchanged"), one with another spec is stopped and started
	// again (Outcome "replaced"). It returns once the child has started,
	// or with the error of its start.
	StartChild(ctx context.Context, spec ChildSpec) (ChildInfo, error)
	// StopChild stops the child and forgets it; ErrChildNotFound when the
	// worker has no child of that name.
	StopChild(ctx context.Context, name string) error
	// ListChildren lists the worker's children, by name.
	ListChildren(ctx context.Context) ([]ChildInfo, error)
}

// ChildSpec says which child worker to start.
type ChildSpec struct {
	// Name is the child's short name, unique among the worker's children.
	Name string
	// Class is the child's class, a name or an alias.
	Class string
	// Config is the child's config. It is sent as a JSON object: a
	// json.RawMessage or a []byte is taken as JSON text and sent as is
	// (never base64-encoded), nil means {}, and anything else (a map, a
	// struct with json tags) is encoded with encoding/json. The host
	// validates and decodes it with the child class's schema, as it does
	// the config of any worker: it applies defaults and converts values, so
	// strings are fine for numbers, bools and durations ("2773", "1h").
	Config any
	// Restart is the child's restart type: "permanent", "transient" or
	// "temporary"; empty means permanent.
	Restart string
}

// ChildInfo describes a child worker.
type ChildInfo struct {
	// Name is the child's short name.
	Name string
	// Class is the child's canonical class name.
	Class string
	// State is the child's state as the host's status API shows it, e.g.
	// "running", "starting", "backoff" or "failed".
	State string
	// Pid is the child's plugin process, 0 when none runs.
	Pid int
	// Restarts counts the child's restarts.
	Restarts int
	// Outcome is set by StartChild only: "started", "unchanged" or
	// "replaced".
	Outcome string
}

// Outcomes of Children.StartChild.
const (
	ChildStarted   = "started"
	ChildUnchanged = "unchanged"
	ChildReplaced  = "replaced"
)

var (
	// ErrNoHostService is the error of every Children method, and of
	// Env.Publish, Env.Consume and Env.Metric, when the host offered no
	// Host service to the worker (StartRequest.host_broker_id 0), or does
	// not implement the call.
	ErrNoHostService = errors.New("the host offers no Host service")
	// ErrChildNotFound matches the error of a StopChild (or StartChild)
	// for a child name the worker has no child of.
	ErrChildNotFound = errors.New("no such child")
	// ErrChildExists matches the error of a StartChild whose name is
	// taken by another worker.
	ErrChildExists = errors.New("child already exists")
)

// ErrUnavailable matches the error of a call that did not reach the host,
// or that the host could not serve for now: the connection to it failed or
// broke, or its bus is down. Retrying later may succeed.
var ErrUnavailable = errors.New("the host is unavailable")

// HostError is an error the host returned for a call of the worker's
// (Children's methods, Env.Publish, Env.Consume, Env.Metric, and the acks
// and nacks of its consumers). It keeps the host's message; what it means
// is told by errors.Is, not by a code:
//
//   - ErrInvalidConfig: the host refused the request as invalid (for a
//     child: an unknown class, a bad name, an invalid config or restart;
//     for the bus: also a reserved name);
//   - ErrChildNotFound, ErrChildExists: for Children's methods;
//   - ErrNoBus, ErrReservedName, ErrInvalidName: for Publish and Consume
//     (and the acks and nacks of a consumer);
//   - ErrNoMetrics, ErrInvalidMetric: for Metric;
//   - ErrNoHostService: the host does not implement the call;
//   - ErrUnavailable: the host could not be reached or could not serve
//     the call for now;
//   - context.DeadlineExceeded, context.Canceled: the call timed out or
//     was cancelled on the host's side.
//
// Use errors.As to read Call, Name and Message.
type HostError struct {
	// Call is the Host service method: StartChild, StopChild, ListChildren,
	// Publish, Consume, Ack, Nack or Metric.
	Call string
	// Name is what the call was about, if anything: the child, the routing
	// key, the queue, the metric.
	Name string
	// Message is the host's message.
	Message string

	code codes.Code // the gRPC code of the host's answer
}

func (e *HostError) Error() string {
	return fmt.Sprintf("%s: %s (%s)", callName(e.Call, e.Name), e.Message, e.code)
}

// Is reports whether the host's answer means target (see HostError).
func (e *HostError) Is(target error) bool {
	bus := e.Call == "Publish" || e.Call == "Consume" || e.Call == "Ack" || e.Call == "Nack"
	switch target {
	case ErrInvalidConfig:
		return e.code == codes.InvalidArgument || (bus && e.code == codes.PermissionDenied)
	case ErrChildNotFound:
		return e.code == codes.NotFound && !bus
	case ErrChildExists:
		return e.code == codes.AlreadyExists
	case ErrNoHostService:
		return e.code == codes.Unimplemented
	case ErrUnavailable:
		return e.code == codes.Unavailable
	case ErrNoBus:
		return bus && (e.code == codes.FailedPrecondition || e.code == codes.Unimplemented)
	case ErrReservedName:
		return bus && e.code == codes.PermissionDenied
	case ErrInvalidName:
		return bus && e.code == codes.InvalidArgument
	case ErrNoMetrics:
		return e.Call == "Metric" && (e.code == codes.FailedPrecondition || e.code == codes.Unimplemented)
	case ErrInvalidMetric:
		return e.Call == "Metric" && e.code == codes.InvalidArgument
	case context.DeadlineExceeded:
		return e.code == codes.DeadlineExceeded
	case context.Canceled:
		return e.code == codes.Canceled
	}
	return false
}

// hostError turns the error of a Host service call into a *HostError, or
// into ctx's error when ctx ended (the call's own deadline or
// cancellation, which the caller knows best).
func hostError(ctx context.Context, call, name string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %w", callName(call, name), ctx.Err())
	}
	s, _ := status.FromError(err)
	return &HostError{Call: call, Name: name, code: s.Code(), Message: s.Message()}
}

func callName(call, name string) string {
	if name == "" {
		return call
	}
	return fmt.Sprintf("%s %q", call, name)
}

// childConfigJSON encodes a ChildSpec's Config as a JSON object.
func childConfigJSON(cfg any) ([]byte, error) {
	var b []byte
	switch c := cfg.(type) {
	case nil:
		return []byte("{}"), nil
	case json.RawMessage:
		b = c
	case []byte:
		b = c
	default:
		var err error
		if b, err = json.Marshal(cfg); err != nil {
			return nil, fmt.Errorf("%w: encoding the child's config: %w", ErrInvalidConfig, err)
		}
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(b, &obj); err != nil || obj == nil {
		return nil, fmt.Errorf("%w: the child's config must be a JSON object, got %.100s", ErrInvalidConfig, b)
	}
	return b, nil
}

// hostConn is the worker process's connection to the host's Host service.
// It is dialed when the worker receives Start: go-plugin's broker keeps the
// connection info the host sent for only 5 s, so it cannot wait for the
// first use of Children. The gRPC connection itself is made lazily, on the
// first call.
type hostConn struct {
	ready  chan struct{} // closed once dialing has ended
	conn   *grpc.ClientConn
	client proto.HostClient
	err    error

	closeOnce sync.Once
}

// dialHost starts dialing the host's broker id in the background.
func dialHost(broker *plugin.GRPCBroker, id uint32, logger *slog.Logger) *hostConn {
	h := &hostConn{ready: make(chan struct{})}
	go func() {
		defer close(h.ready)
		if broker == nil {
			h.err = unavailable(errors.New("the plugin has no go-plugin broker to reach the host with"))
			return
		}
		conn, err := broker.Dial(id)
		if err != nil {
			logger.Warn("connecting to the host's Host service failed", "broker_id", id, "error", err)
			h.err = unavailable(fmt.Errorf("connecting to the host's Host service (broker id %d): %w", id, err))
			return
		}
		h.conn = conn
		h.client = proto.NewHostClient(conn)
	}()
	return h
}

// get waits for the dial to end (or ctx) and returns the client.
func (h *hostConn) get(ctx context.Context) (proto.HostClient, error) {
	select {
	case <-h.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return h.client, h.err
}

// unavailableError is an error that matches ErrUnavailable: the host
// could not be reached.
type unavailableError struct{ err error }

func unavailable(err error) error { return &unavailableError{err} }

func (e *unavailableError) Error() string        { return e.err.Error() }
func (e *unavailableError) Unwrap() error        { return e.err }
func (e *unavailableError) Is(target error) bool { return target == ErrUnavailable }

// close closes the connection once dialing has ended.
func (h *hostConn) close() {
	h.closeOnce.Do(func() {
		go func() {
			<-h.ready
			if h.conn != nil {
				h.conn.Close()
			}
		}()
	})
}

// hostChildren is the Children of a worker whose host offers a Host
// service.
type hostChildren struct{ h *hostConn }

func (c hostChildren) StartChild(ctx context.Context, spec ChildSpec) (ChildInfo, error) {
	const call = "StartChild"
	cfg, err := childConfigJSON(spec.Config)
	if err != nil {
		return ChildInfo{}, fmt.Errorf("%s: %w", callName(call, spec.Name), err)
	}
	client, err := c.h.get(ctx)
	if err != nil {
		return ChildInfo{}, fmt.Errorf("%s: %w", callName(call, spec.Name), err)
	}
	resp, err := client.StartChild(ctx, &proto.StartChildRequest{
		Name:       spec.Name,
		Class:      spec.Class,
		ConfigJson: cfg,
		Restart:    spec.Restart,
	})
	if err != nil {
		return ChildInfo{}, hostError(ctx, call, spec.Name, err)
	}
	info := childInfo(resp.GetChild())
	info.Outcome = resp.GetOutcome()
	return info, nil
}

func (c hostChildren) StopChild(ctx context.Context, name string) error {
	const call = "StopChild"
	client, err := c.h.get(ctx)
	if err != nil {
		return fmt.Errorf("%s: %w", callName(call, name), err)
	}
	if _, err := client.StopChild(ctx, &proto.StopChildRequest{Name: name}); err != nil {
		return hostError(ctx, call, name, err)
	}
	return nil
}

func (c hostChildren) ListChildren(ctx context.Context) ([]ChildInfo, error) {
	const call = "ListChildren"
	client, err := c.h.get(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", call, err)
	}
	resp, err := client.ListChildren(ctx, &proto.ListChildrenRequest{})
	if err != nil {
		return nil, hostError(ctx, call, "", err)
	}
	out := make([]ChildInfo, 0, len(resp.GetChildren()))
	for _, ci := range resp.GetChildren() {
		out = append(out, childInfo(ci))
	}
	return out, nil
}

func childInfo(ci *proto.ChildInfo) ChildInfo {
	return ChildInfo{
		Name:     ci.GetName(),
		Class:    ci.GetClass(),
		State:    ci.GetState(),
		Pid:      int(ci.GetPid()),
		Restarts: int(ci.GetRestarts()),
	}
}

// NoChildren returns the Children of a worker whose host offers no Host
// service: every method fails with ErrNoHostService. It is meant for the
// Env of tests that run a worker in-process.
func NoChildren() Children { return noChildren{} }

// noChildren is the Children of a worker whose host offers no Host service.
type noChildren struct{}

func (noChildren) StartChild(_ context.Context, spec ChildSpec) (ChildInfo, error) {
	return ChildInfo{}, fmt.Errorf("%s: %w", callName("StartChild", spec.Name), ErrNoHostService)
}

func (noChildren) StopChild(_ context.Context, name string) error {
	return fmt.Errorf("%s: %w", callName("StopChild", name), ErrNoHostService)
}

func (noChildren) ListChildren(context.Context) ([]ChildInfo, error) {
	return nil, fmt.Errorf("ListChildren: %w", ErrNoHostService)
}
