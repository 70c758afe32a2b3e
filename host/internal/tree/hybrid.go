package tree

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/config"
	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/host/internal/pluginproc"
	"github.com/dynworkers/dynworkers/host/internal/supervise"
	"github.com/dynworkers/dynworkers/sdk"
)

// Hybrid workers: a worker that starts child workers through the Host
// service. Each incarnation of a worker has a supervise.Family; its
// children run in the Family's supervisor, at path "<the worker's
// supervisor>/<the worker's name>", and are named "<worker>.<child>" in the
// host. When the incarnation ends, for any reason, its children are stopped
// before its exit is reported, so a restarted hybrid starts with no
// children and creates what it wants again. If the children's supervisor
// exceeds its restart intensity, the incarnation is killed: its own
// supervisor then restarts it (or escalates).

// childSep joins a hybrid's name and its child's short name.
const childSep = "."

// childHost is the pluginproc.ChildHost of one incarnation of a worker.
type childHost struct {
	t     *Tree
	owner *node
	fam   *supervise.Family
}

var _ pluginproc.ChildHost = (*childHost)(nil)

func (h *childHost) globalName(short string) string { return h.owner.name + childSep + short }

func (h *childHost) StartChild(ctx context.Context, req pluginproc.ChildRequest) (pluginproc.ChildInfo, string, error) {
	t := h.t
	if err := config.ValidateName(req.Name); err != nil {
		return pluginproc.ChildInfo{}, "", fmt.Errorf("%w: child name: %v", pluginproc.ErrInvalidChild, err)
	}
	if req.Restart == "" {
		req.Restart = supervise.Permanent.String()
	}
	if _, err := supervise.ParseRestartType(req.Restart); err != nil {
		return pluginproc.ChildInfo{}, "", fmt.Errorf("%w: %v", pluginproc.ErrInvalidChild, err)
	}
	name := h.globalName(req.Name)
	if fp := h.owner.familyPath(); config.Depth(fp) > config.MaxDepth {
		return pluginproc.ChildInfo{}, "", fmt.Errorf("%w: worker %q cannot have children: their supervisor %q would be %d levels deep, and supervisors may nest at most %d levels",
			pluginproc.ErrInvalidChild, h.owner.name, fp, config.Depth(fp), config.MaxDepth)
	}
	w, cerr := t.opts.Resolve(name, req.Class, req.ConfigJSON, h.owner.familyPath())
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
	// The owner may pass its secrets to its child: the child's output is
	// scrubbed of them too.
	w.OwnerSecrets = h.owner.worker.Scrubber()
	w.Restart = req.Restart

	unlock, err := t.locks.lock(ctx, name)
	if err != nil {
		return pluginproc.ChildInfo{}, "", err
	}
	defer unlock()
	kids, err := h.fam.Supervisor()
	if err != nil {
		return pluginproc.ChildInfo{}, "", fmt.Errorf("worker %q is stopping: it cannot start children now", h.owner.name)
	}
	outcome := pluginproc.ChildStarted
	t.mu.Lock()
	if t.closed || h.owner.gone || h.owner.fam != h.fam {
		t.mu.Unlock()
		return pluginproc.ChildInfo{}, "", fmt.Errorf("worker %q is stopping: it cannot start children now", h.owner.name)
	}
	old := t.nodes[name]
	if old == nil {
		if err := t.childLimitLocked(h); err != nil {
			t.mu.Unlock()
			return pluginproc.ChildInfo{}, "", err
		}
	}
	if old != nil {
		switch {
		case old.home != h.fam || old.source != api.SourceHybrid:
			t.mu.Unlock()
			return pluginproc.ChildInfo{}, "", fmt.Errorf("%w: the name %q is taken by another worker of the host", pluginproc.ErrChildExists, name)
		case old.worker.SpecHash() == w.SpecHash() && old.worker.Restart == w.Restart:
			t.mu.Unlock()
			return h.info(req.Name), pluginproc.ChildUnchanged, nil
		}
		outcome = pluginproc.ChildReplaced
	}
	t.mu.Unlock()
	if old != nil {
		if err := kids.Remove(ctx, name); err != nil && !errors.Is(err, supervise.ErrNotFound) {
			return pluginproc.ChildInfo{}, "", fmt.Errorf("stopping child %q for its new spec: %w", req.Name, err)
		}
		t.mu.Lock()
		t.unregisterLocked(old)
		t.mu.Unlock()
	}
	n := &node{name: name, kind: kindWorker, source: api.SourceHybrid, parent: h.owner, worker: w, home: h.fam}
	if err := t.register(n); err != nil {
		return pluginproc.ChildInfo{}, "", fmt.Errorf("%w: %v", pluginproc.ErrChildExists, err)
	}
	if err := kids.Add(ctx, t.workerSpec(n)); err != nil {
		if errors.Is(err, supervise.ErrStopped) || errors.Is(err, supervise.ErrDuplicate) {
			t.mu.Lock()
			gone := t.unregisterLocked(n)
			t.mu.Unlock()
			t.forget(gone)
		}
		// A child whose first start failed stays supervised: it is
		// retried by its restart type.
		return h.info(req.Name), outcome, fmt.Errorf("child %q: %w", req.Name, err)
	}
	return h.info(req.Name), outcome, nil
}

// childLimitLocked refuses a new child of h's worker when the worker has
// ChildrenPerWorker children already, or the host's hybrids have Children
// (the input_limits block). The refusal is an invalid request to the
// plugin (gRPC InvalidArgument), so a hybrid that returns it from its
// Start fails for good instead of retrying what cannot succeed.
func (t *Tree) childLimitLocked(h *childHost) error {
	lim := t.opts.Limits
	mine, all := 0, 0
	for _, n := range t.nodes {
		if n.source != api.SourceHybrid {
			continue
		}
		all++
		if n.home == h.fam {
			mine++
		}
	}
	switch {
	case mine >= lim.ChildrenPerWorker:
		return fmt.Errorf("%w: worker %q has %d children, the most a worker may have (input_limits.children_per_worker = %d)",
			pluginproc.ErrInvalidChild, h.owner.name, mine, lim.ChildrenPerWorker)
	case all >= lim.Children:
		return fmt.Errorf("%w: the host runs %d children of hybrid workers, the most it may (input_limits.children = %d)",
			pluginproc.ErrInvalidChild, all, lim.Children)
	}
	return nil
}

func (h *childHost) info(short string) pluginproc.ChildInfo {
	ci := pluginproc.ChildInfo{Name: short}
	if wi, ok := h.t.Worker(h.globalName(short)); ok {
		ci.Class, ci.State, ci.Pid, ci.Restarts = wi.Class, wi.State, wi.Pid, wi.Restarts
	}
	return ci
}

func (h *childHost) StopChild(ctx context.Context, short string) error {
	t := h.t
	name := h.globalName(short)
	unlock, err := t.locks.lock(ctx, name)
	if err != nil {
		return err
	}
	defer unlock()
	t.mu.Lock()
	n := t.nodes[name]
	if n == nil || n.source != api.SourceHybrid || n.home != h.fam {
		t.mu.Unlock()
		return fmt.Errorf("%w: %q", pluginproc.ErrChildNotFound, short)
	}
	t.mu.Unlock()
	kids := h.fam.Current()
	if kids != nil {
		if err := kids.Remove(ctx, name); err != nil && !errors.Is(err, supervise.ErrNotFound) && !errors.Is(err, supervise.ErrStopped) {
			return fmt.Errorf("stopping child %q: %w", short, err)
		}
	}
	t.mu.Lock()
	gone := t.unregisterLocked(n)
	t.mu.Unlock()
	t.forget(gone)
	return nil
}

func (h *childHost) ListChildren(context.Context) ([]pluginproc.ChildInfo, error) {
	out := []pluginproc.ChildInfo{}
	kids := h.fam.Current()
	if kids == nil {
		return out, nil
	}
	for _, cs := range kids.Status() {
		ci := pluginproc.ChildInfo{Name: strings.TrimPrefix(cs.Name, h.owner.name+childSep),
			Class: cs.Meta["class"], State: string(cs.State), Restarts: cs.Restarts}
		if p := ProcessOf(cs.Instance); p != nil {
			ci.Pid = p.Pid()
		}
		out = append(out, ci)
	}
	return out, nil
}

// familyEnded forgets the children of an incarnation once they are
// stopped for good.
func (t *Tree) familyEnded(owner *node, fam *supervise.Family) {
	t.mu.Lock()
	var gone []*node
	for _, c := range append([]*node(nil), owner.children...) {
		if c.home == fam {
			gone = append(gone, t.unregisterLocked(c)...)
		}
	}
	if owner.fam == fam {
		owner.fam = nil
	}
	t.mu.Unlock()
	t.forget(gone)
}

// ChildHost returns the ChildHost of the named worker's current
// incarnation: what its StartChild, StopChild and ListChildren calls reach.
// It is for tests, which drive a worker's children without a hybrid plugin.
func (t *Tree) ChildHost(name string) (pluginproc.ChildHost, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.nodes[name]
	if n == nil || n.kind != kindWorker || n.fam == nil {
		return nil, false
	}
	return &childHost{t: t, owner: n, fam: n.fam}, true
}
