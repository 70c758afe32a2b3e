package pluginproc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dynworkers/dynworkers/host/internal/scrub"
	"github.com/dynworkers/dynworkers/internal/wire/proto"
	"github.com/dynworkers/dynworkers/sdk"
)

// DefaultHostCallTimeout bounds one call of a worker to the Host service
// when Options.HostCallTimeout is zero. A StartChild may have to stop a
// child and start it again, so it is twice DefaultStartTimeout.
const DefaultHostCallTimeout = 2 * DefaultStartTimeout

// ChildHost answers a hybrid worker's Host service calls: StartChild,
// StopChild and ListChildren. The daemon implements it, bound to the one
// worker it passes it for (Options.ChildHost); nil means the worker may not
// start children, and its calls fail with FailedPrecondition and a message
// that says so.
//
// The methods are called from the Host service's gRPC goroutines,
// concurrently, from just before the worker's Start RPC (a hybrid usually
// starts its children in its Start, so before Start returns) until the
// process is gone. Each call gets a ctx that ends after
// Options.HostCallTimeout, when the plugin's own deadline for the call
// passes, or when the process ends; the plugin gets its answer then even if
// the method has not returned yet. Errors are mapped to gRPC codes (see
// ChildStatus), and their text is what the worker sees.
type ChildHost interface {
	// StartChild starts the child req.Name of the worker, or makes sure it
	// runs, and returns it with the outcome: "started", "unchanged" (a
	// child of that name and spec runs already) or "replaced" (one with
	// another spec was stopped and the new one started). It returns once
	// the child has started, or with the error of its start.
	StartChild(ctx context.Context, req ChildRequest) (ChildInfo, string, error)
	// StopChild stops the child and forgets it; an error wrapping
	// ErrChildNotFound when there is no child of that name.
	StopChild(ctx context.Context, name string) error
	// ListChildren lists the worker's children.
	ListChildren(ctx context.Context) ([]ChildInfo, error)
}

// ChildRequest is a hybrid worker's request to start a child.
type ChildRequest struct {
	// Name is the child's short name, chosen by the worker; unchecked.
	Name string
	// Class is the class name or alias the worker asked for; unchecked.
	Class string
	// ConfigJSON is the child's config as the worker sent it: a JSON
	// object, not yet validated against the class's schema ("{}" when the
	// worker sent none).
	ConfigJSON []byte
	// Restart is "", "permanent", "transient" or "temporary" as far as the
	// worker respects the protocol; unchecked.
	Restart string
}

// ChildInfo describes a child worker to the hybrid that started it.
type ChildInfo struct {
	// Name is the child's short name.
	Name string
	// Class is the child's canonical class name.
	Class string
	// State is the child's state as the status API shows it.
	State string
	// Pid is the child's plugin process, 0 when none runs.
	Pid int
	// Restarts counts the child's restarts.
	Restarts int
}

// Outcomes of ChildHost.StartChild.
const (
	ChildStarted   = "started"
	ChildUnchanged = "unchanged"
	ChildReplaced  = "replaced"
)

// Errors a ChildHost wraps to choose the gRPC code the worker gets (see
// ChildStatus).
var (
	// ErrChildNotFound: the worker has no child of that name (NotFound).
	ErrChildNotFound = errors.New("no such child")
	// ErrChildExists: the name is taken, e.g. the child's worker name is
	// that of another worker (AlreadyExists).
	ErrChildExists = errors.New("child already exists")
	// ErrInvalidChild: a bad request: a bad name, an unknown class, an
	// invalid restart type (InvalidArgument). An invalid config may wrap
	// sdk.ErrInvalidConfig instead, which maps to the same code.
	ErrInvalidChild = errors.New("invalid child")
)

// ChildStatus returns the gRPC status error the worker gets for err, an
// error of a ChildHost: an error that carries a gRPC status (it implements
// GRPCStatus() *status.Status, possibly wrapped) keeps it; otherwise the
// code is NotFound for ErrChildNotFound, AlreadyExists for ErrChildExists,
// InvalidArgument for ErrInvalidChild and sdk.ErrInvalidConfig,
// DeadlineExceeded and Canceled for the context errors, and Unknown for the
// rest, with err's text as the message in every case. nil gives nil.
func ChildStatus(err error) error {
	if err == nil {
		return nil
	}
	if s, ok := status.FromError(err); ok {
		return s.Err()
	}
	code := codes.Unknown
	switch {
	case errors.Is(err, ErrChildNotFound):
		code = codes.NotFound
	case errors.Is(err, ErrChildExists):
		code = codes.AlreadyExists
	case errors.Is(err, ErrInvalidChild), errors.Is(err, sdk.ErrInvalidConfig):
		code = codes.InvalidArgument
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	}
	return status.Error(code, err.Error())
}

// hostServer serves the Host service to one worker process.
type hostServer struct {
	proto.UnimplementedHostServer

	worker   string
	children ChildHost  // nil: the worker may not start children
	bus      BusHost    // nil: the host offers the worker no bus
	metrics  MetricSink // nil: the host collects no metrics from it
	timeout  time.Duration
	logger   hclog.Logger // scrubbed
	// scrubber scrubs what the worker sends that the host shows (the
	// names of its metrics).
	scrubber *scrub.Scrubber

	consumers busState // the worker's Consume streams
}

func (h *hostServer) StartChild(ctx context.Context, req *proto.StartChildRequest) (*proto.StartChildResponse, error) {
	if h.children == nil {
		return nil, h.noChildren("start")
	}
	cfg := req.GetConfigJson()
	if len(cfg) == 0 {
		cfg = []byte("{}")
	}
	cr := ChildRequest{Name: req.GetName(), Class: req.GetClass(), ConfigJSON: cfg, Restart: req.GetRestart()}
	type result struct {
		info    ChildInfo
		outcome string
	}
	r, err := hostCall(ctx, h, "StartChild", func(ctx context.Context) (result, error) {
		info, outcome, err := h.children.StartChild(ctx, cr)
		return result{info, outcome}, err
	})
	if err != nil {
		h.logger.Debug("a child did not start", "child", cr.Name, "class", cr.Class, "error", err)
		return nil, err
	}
	h.logger.Debug("child start asked by the worker", "child", r.info.Name, "class", r.info.Class, "outcome", r.outcome, "pid", r.info.Pid)
	return &proto.StartChildResponse{Child: childInfoProto(r.info), Outcome: r.outcome}, nil
}

func (h *hostServer) StopChild(ctx context.Context, req *proto.StopChildRequest) (*proto.StopChildResponse, error) {
	if h.children == nil {
		return nil, h.noChildren("stop")
	}
	_, err := hostCall(ctx, h, "StopChild", func(ctx context.Context) (struct{}, error) {
		return struct{}{}, h.children.StopChild(ctx, req.GetName())
	})
	if err != nil {
		return nil, err
	}
	h.logger.Debug("child stopped as the worker asked", "child", req.GetName())
	return &proto.StopChildResponse{}, nil
}

func (h *hostServer) ListChildren(ctx context.Context, _ *proto.ListChildrenRequest) (*proto.ListChildrenResponse, error) {
	if h.children == nil {
		return nil, h.noChildren("list")
	}
	list, err := hostCall(ctx, h, "ListChildren", h.children.ListChildren)
	if err != nil {
		return nil, err
	}
	resp := &proto.ListChildrenResponse{Children: make([]*proto.ChildInfo, 0, len(list))}
	for _, ci := range list {
		resp.Children = append(resp.Children, childInfoProto(ci))
	}
	return resp, nil
}

func (h *hostServer) noChildren(verb string) error {
	return status.Errorf(codes.FailedPrecondition, "worker %q may not %s child workers: the host does not run children for it", h.worker, verb)
}

// hostCall runs f with the call's deadline: h.timeout, or the plugin's own
// if sooner. It returns at that deadline even if f has not returned (f's
// ctx is done then), so a slow ChildHost or BusHost never holds the plugin
// longer; a result f returns after that is passed to late, if given, to be
// released. Errors are gRPC status errors (HostStatus).
func hostCall[T any](ctx context.Context, h *hostServer, call string, f func(context.Context) (T, error), late ...func(T)) (T, error) {
	cctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		v, err := f(cctx)
		ch <- result{v, err}
	}()
	var zero T
	select {
	case r := <-ch:
		if r.err != nil {
			return zero, HostStatus(r.err)
		}
		return r.v, nil
	case <-cctx.Done():
	}
	if len(late) > 0 {
		go func() {
			if r := <-ch; r.err == nil {
				for _, l := range late {
					l(r.v)
				}
			}
		}()
	}
	switch {
	case ctx.Err() == nil: // the host's own deadline
		h.logger.Warn("a Host service call of the worker took too long", "call", call, "timeout", h.timeout.String())
		return zero, status.Errorf(codes.DeadlineExceeded, "the host did not answer %s within %s", call, h.timeout)
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return zero, status.Errorf(codes.DeadlineExceeded, "%s: the worker's deadline passed", call)
	}
	return zero, status.Errorf(codes.Canceled, "%s: cancelled", call)
}

func childInfoProto(ci ChildInfo) *proto.ChildInfo {
	return &proto.ChildInfo{
		Name:     ci.Name,
		Class:    ci.Class,
		State:    ci.State,
		Pid:      int64(ci.Pid),
		Restarts: int32(min(ci.Restarts, 1<<31-1)),
	}
}

// serveHost serves the Host service to the plugin on a new broker id and
// returns the id, for the Start RPC. It is called by Start, right before
// the Start RPC, and not when the process is launched: go-plugin's broker
// in the plugin keeps the connection info the host sends for 5 s only, so
// a warm spare launched minutes before its Start would have lost it. The
// server runs until the process is gone (watchExit stops it).
func (p *Process) serveHost(ctx context.Context, srv *hostServer) (uint32, error) {
	if p.broker == nil {
		return 0, errors.New("no go-plugin broker for this process")
	}
	id := p.broker.NextId()
	type accepted struct {
		ln  net.Listener
		err error
	}
	ch := make(chan accepted, 1)
	go func() {
		// Accept creates the listener and sends its address to the
		// plugin over the broker's stream.
		ln, err := p.broker.Accept(id)
		ch <- accepted{ln, err}
	}()
	var a accepted
	select {
	case a = <-ch:
	case <-ctx.Done():
		go func() {
			if a := <-ch; a.ln != nil {
				a.ln.Close()
			}
		}()
		return 0, ctx.Err()
	}
	if a.err != nil {
		return 0, a.err
	}
	// One connection per worker: its write buffer is shared (see launch).
	gs := grpc.NewServer(grpc.SharedWriteBuffer(true))
	proto.RegisterHostServer(gs, srv)
	p.mu.Lock()
	if p.hostStopped {
		p.mu.Unlock()
		a.ln.Close()
		return 0, errors.New("the process has ended")
	}
	p.hostSrv = gs
	p.hostImpl = srv
	p.mu.Unlock()
	go func() { _ = gs.Serve(a.ln) }()
	return id, nil
}

// stopHost stops the Host service of the process, if it has one: it closes
// the listener and the connection, cancels the calls under way and closes
// the worker's consumers (so the bus requeues what the worker did not
// settle). Called once the process is gone.
func (p *Process) stopHost() {
	p.mu.Lock()
	gs, srv := p.hostSrv, p.hostImpl
	p.hostStopped = true
	p.mu.Unlock()
	if gs != nil {
		gs.Stop()
	}
	if srv != nil {
		srv.consumers.closeAll()
	}
}

// hostError explains a failure to serve the Host service at Start.
func hostError(path string, err error) error {
	return fmt.Errorf("plugin %s: serving the Host service: %w", path, err)
}
