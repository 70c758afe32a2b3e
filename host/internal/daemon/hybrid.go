package daemon

import (
	"context"
	"errors"
	"fmt"
	"github.com/dynworkers/dynworkers/host/internal/api"
	"strings"
	"sync"

	"github.com/dynworkers/dynworkers/host/internal/config"
	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/host/internal/pluginproc"
	"github.com/dynworkers/dynworkers/host/internal/supervise"
	"github.com/dynworkers/dynworkers/sdk"
)

// Hybrid workers: a worker that starts child workers through the Host
// service (pluginproc.ChildHost). The children run in plugin processes of
// their own, in a supervisor owned by that one incarnation of the worker,
// at path "<the worker's supervisor>/<the worker's name>", and are named
// "<worker>.<child>" in the host. When the worker's process ends, for any
// reason, its children are stopped before its exit is reported to its
// supervisor, so a restarted hybrid starts with no children and creates
// what it wants again. If the children's supervisor exceeds its restart
// intensity, the hybrid is killed: its own supervisor then restarts it (or
// escalates), as if a supervisor child had failed.

// childSep joins a hybrid's name and its child's short name.
const childSep = "."

// childHost is the pluginproc.ChildHost of one incarnation of a worker.
type childHost struct {
	d      *Daemon
	owner  *config.Worker
	parent *supNode // the owner's supervisor

	opMu sync.Mutex // serialises the worker's calls

	mu       sync.Mutex
	node     *supNode // the children's supervisor, made at the first StartChild
	closed   bool     // the worker is stopping or gone
	proc     *pluginproc.Process
	failed   bool // the children's supervisor failed before proc was known
	closedCh chan struct{}
}

func newChildHost(d *Daemon, owner *config.Worker, parent *supNode) *childHost {
	return &childHost{d: d, owner: owner, parent: parent, closedCh: make(chan struct{})}
}

var _ pluginproc.ChildHost = (*childHost)(nil)

func (h *childHost) globalName(short string) string { return h.owner.Name + childSep + short }

// ensureNode returns the children's supervisor, made on first use.
func (h *childHost) ensureNode() (*supNode, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, fmt.Errorf("worker %q is stopping: it cannot start children now", h.owner.Name)
	}
	if h.node != nil {
		return h.node, nil
	}
	path := h.parent.cfg.Path + "/" + h.owner.Name
	sup, err := supervise.New(supervise.Spec{
		Name: path,
		EventHook: func(ev supervise.Event) {
			h.d.onEvent(ev)
			if _, ok := ev.(supervise.SupervisorEscalated); ok {
				go h.childrenFailed()
			}
		},
	})
	if err != nil {
		return nil, err
	}
	h.node = &supNode{cfg: &config.Supervisor{Name: h.owner.Name, Path: path, Strategy: string(supervise.StrategyOneForOne)},
		sup: sup, parent: h.parent, source: api.SourceHybrid}
	h.d.supMu.Lock()
	h.d.sups = append(h.d.sups, h.node)
	h.d.supMu.Unlock()
	return h.node, nil
}

// childrenFailed kills the worker whose children's supervisor failed.
func (h *childHost) childrenFailed() {
	h.mu.Lock()
	p := h.proc
	if p == nil {
		h.failed = true
	}
	h.mu.Unlock()
	if p != nil {
		h.d.logger.Error("the children of a hybrid worker restarted too often: killing the worker", "worker", h.owner.Name)
		p.Kill("its children's supervisor exceeded its restart intensity")
	}
}

// started records the worker's process once its Start returned.
func (h *childHost) started(p *pluginproc.Process) {
	h.mu.Lock()
	h.proc = p
	failed := h.failed
	h.mu.Unlock()
	if failed {
		h.childrenFailed()
	}
}

func (h *childHost) StartChild(ctx context.Context, req pluginproc.ChildRequest) (pluginproc.ChildInfo, string, error) {
	h.opMu.Lock()
	defer h.opMu.Unlock()
	if err := config.ValidateName(req.Name); err != nil {
		return pluginproc.ChildInfo{}, "", fmt.Errorf("%w: child name: %v", pluginproc.ErrInvalidChild, err)
	}
	if req.Restart == "" {
		req.Restart = supervise.Permanent.String()
	}
	if _, err := supervise.ParseRestartType(req.Restart); err != nil {
		return pluginproc.ChildInfo{}, "", fmt.Errorf("%w: %v", pluginproc.ErrInvalidChild, err)
	}
	node, err := h.ensureNode()
	if err != nil {
		return pluginproc.ChildInfo{}, "", err
	}
	name := h.globalName(req.Name)
	w, cerr := h.d.resolveWorker(control.WorkerSpec{Name: name, Class: req.Class, Config: req.ConfigJSON}, node)
	if cerr != nil {
		msg := cerr.Message
		for _, det := range cerr.Details {
			msg += "; " + strings.TrimSpace(det.Summary+": "+det.Detail)
		}
		if cerr.Code == control.CodeInvalidConfig {
			return pluginproc.ChildInfo{}, "", fmt.Errorf("%s: %w", msg, sdk.ErrInvalidConfig)
		}
		return pluginproc.ChildInfo{}, "", fmt.Errorf("%w: %s", pluginproc.ErrInvalidChild, msg)
	}
	w.Restart = req.Restart
	outcome := pluginproc.ChildStarted
	if old, ok := h.d.reg.get(name); ok {
		switch {
		case old.sup != node:
			return pluginproc.ChildInfo{}, "", fmt.Errorf("%w: the name %q is taken by another worker of the host", pluginproc.ErrChildExists, name)
		case old.cfg.SpecHash() == w.SpecHash() && old.cfg.Restart == w.Restart:
			return h.info(req.Name), pluginproc.ChildUnchanged, nil
		}
		if err := node.sup.Remove(ctx, name); err != nil && !errors.Is(err, supervise.ErrNotFound) {
			return pluginproc.ChildInfo{}, "", fmt.Errorf("stopping child %q for its new spec: %w", req.Name, err)
		}
		outcome = pluginproc.ChildReplaced
	}
	h.d.reg.put(name, &entry{cfg: w, source: api.SourceHybrid, sup: node})
	if err := node.sup.Add(ctx, h.d.childSpec(w)); err != nil {
		if errors.Is(err, supervise.ErrStopped) || errors.Is(err, supervise.ErrDuplicate) {
			h.d.reg.put(name, nil)
		}
		// A child whose first start failed stays supervised: it is
		// retried by its restart type.
		return h.info(req.Name), outcome, fmt.Errorf("child %q: %w", req.Name, err)
	}
	return h.info(req.Name), outcome, nil
}

func (h *childHost) info(short string) pluginproc.ChildInfo {
	ci := pluginproc.ChildInfo{Name: short}
	if ws, ok := h.d.Worker(h.globalName(short)); ok {
		ci.Class, ci.State, ci.Pid, ci.Restarts = ws.Class, ws.State, ws.Pid, ws.Restarts
	}
	return ci
}

func (h *childHost) StopChild(ctx context.Context, short string) error {
	h.opMu.Lock()
	defer h.opMu.Unlock()
	h.mu.Lock()
	node := h.node
	h.mu.Unlock()
	name := h.globalName(short)
	e, ok := h.d.reg.get(name)
	if node == nil || !ok || e.sup != node {
		return fmt.Errorf("%w: %q", pluginproc.ErrChildNotFound, short)
	}
	h.d.reg.put(name, nil)
	if err := node.sup.Remove(ctx, name); err != nil && !errors.Is(err, supervise.ErrNotFound) && !errors.Is(err, supervise.ErrStopped) {
		return fmt.Errorf("stopping child %q: %w", short, err)
	}
	return nil
}

func (h *childHost) ListChildren(context.Context) ([]pluginproc.ChildInfo, error) {
	h.mu.Lock()
	node := h.node
	h.mu.Unlock()
	out := []pluginproc.ChildInfo{}
	if node == nil {
		return out, nil
	}
	for _, cs := range node.sup.Status() {
		ws := workerStatus(node.cfg.Path, cs)
		out = append(out, pluginproc.ChildInfo{Name: strings.TrimPrefix(cs.Name, h.owner.Name+childSep),
			Class: ws.Class, State: ws.State, Pid: ws.Pid, Restarts: ws.Restarts})
	}
	return out, nil
}

// close stops the children, in reverse order, each within its shutdown
// timeout, and forgets them. Later StartChild calls are refused. It may be
// called more than once; every call returns once the children are gone.
func (h *childHost) close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		<-h.closedCh
		return
	}
	h.closed = true
	node := h.node
	h.mu.Unlock()
	defer close(h.closedCh)
	if node == nil {
		return
	}
	if err := node.sup.Stop(context.Background()); err != nil {
		h.d.logger.Warn("stopping the children of a hybrid worker", "worker", h.owner.Name, "error", err)
	}
	h.d.supMu.Lock()
	for i, sn := range h.d.sups {
		if sn == node {
			h.d.sups = append(h.d.sups[:i], h.d.sups[i+1:]...)
			break
		}
	}
	h.d.supMu.Unlock()
	h.d.reg.mu.Lock()
	for name, e := range h.d.reg.workers {
		if e.sup == node {
			delete(h.d.reg.workers, name)
		}
	}
	h.d.reg.mu.Unlock()
}

// workerInstance is a worker's plugin process as its supervisor sees it:
// it is done only once the process has exited and the worker's children (if
// it started any) are stopped, and stopping it stops the children first.
type workerInstance struct {
	*pluginproc.Process
	children *childHost
	done     chan struct{}
}

func newWorkerInstance(p *pluginproc.Process, children *childHost) *workerInstance {
	wi := &workerInstance{Process: p, children: children, done: make(chan struct{})}
	go func() {
		<-p.Done()
		children.close()
		close(wi.done)
	}()
	return wi
}

// Done is closed once the process has exited and the children are gone.
func (wi *workerInstance) Done() <-chan struct{} { return wi.done }

// Stop stops the children, then the worker.
func (wi *workerInstance) Stop(ctx context.Context) error {
	wi.children.close()
	err := wi.Process.Stop(ctx)
	<-wi.done
	return err
}

// ProcessOf returns the plugin process of a worker instance, as found in
// supervise events and status, or nil if inst is none (e.g. a supervisor).
func ProcessOf(inst supervise.Instance) *pluginproc.Process {
	switch i := inst.(type) {
	case *workerInstance:
		return i.Process
	case *pluginproc.Process:
		return i
	}
	return nil
}
