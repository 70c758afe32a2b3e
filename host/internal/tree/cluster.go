package tree

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/config"
	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/host/internal/pluginproc"
	"github.com/dynworkers/dynworkers/host/internal/supervise"
	"github.com/dynworkers/dynworkers/sdk"
)

// Cluster workers are nodes of source api.SourceCluster: the cluster's
// agent (through the daemon's cluster.Runner) starts, replaces, restarts
// and stops them. Their desired state is in etcd, so they are never written
// to the state file; a reload leaves them alone (as it does control-started
// workers); control messages cannot start, stop or restart them on this
// host directly (the daemon sends those to the cluster). The tree keeps the
// cluster's own spec hash of each (ClusterSpec.SpecHash): hosts may differ
// in their default worker limits, so the hash of the worker as built here
// is not the cluster's.

// ClusterSpec is a cluster worker as the cluster asks this host to run it:
// cluster.Spec, in the tree's own terms (the tree does not import cluster).
type ClusterSpec struct {
	Name       string
	Class      string
	Supervisor string // path; "" is the root
	Config     json.RawMessage
	// SpecHash is the cluster's hash of the spec: a start with another one
	// replaces the worker, one with the same leaves it alone.
	SpecHash   string
	Generation int64
}

// ClusterState is a cluster worker's state on this host (cluster.WorkerState).
type ClusterState struct {
	State    string
	PID      int
	Since    time.Time
	Restarts int
	LastExit string
	// SpecHash and Generation are those of the ClusterSpec it runs with.
	SpecHash   string
	Generation int64
}

// clusterConflict is the error of a local control operation on a cluster
// worker.
func clusterConflict(name, what string) error {
	return control.Errorf(control.CodeConflict,
		"worker %q is a cluster worker: a control message cannot %s it on this host alone; send it to the cluster (start it with \"cluster\": true, stop or restart it by name through any host of the cluster)", name, what)
}

// SupervisorPath returns the path of the supervisor path names (as a
// start names it: its path, its path without the root, its name, or ""
// for the root), and whether the host has it.
func (t *Tree) SupervisorPath(path string) (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if sn := t.findSupervisorLocked(path); sn != nil {
		return sn.sup.Path, true
	}
	return "", false
}

// IsCluster reports whether name is a cluster worker on this host.
func (t *Tree) IsCluster(name string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.nodes[name]
	return n != nil && n.source == api.SourceCluster
}

// StartCluster makes the cluster worker spec run on this host: it starts
// it under spec.Supervisor, leaves it alone when it runs with the same
// SpecHash under that supervisor ("unchanged"), or replaces it (stops it,
// then starts the new spec: "replaced"). It returns once the first start
// has ended (or ctx ended), with the worker's state. The name must not be
// taken by any other worker (HCL, control, hybrid) or supervisor: that is
// a conflict. A first start that fails for good (the plugin rejected the
// config, the class is unknown here) removes the worker and returns an
// error that errors.Is supervise.ErrPermanent and errors.As a
// *control.Error with the code a local start would give.
func (t *Tree) StartCluster(ctx context.Context, spec ClusterSpec) (api.StartResult, error) {
	if err := config.ValidateWorkerName(spec.Name); err != nil {
		return api.StartResult{}, permanent(&control.Error{Code: control.CodeInvalidConfig, Message: fmt.Sprintf("worker_name: %v", err)})
	}
	unlock, err := t.locks.lock(ctx, spec.Name)
	if err != nil {
		return api.StartResult{}, err
	}
	defer unlock()
	t.mu.Lock()
	sn, err := t.targetLocked(spec.Supervisor)
	t.mu.Unlock()
	if err != nil {
		return api.StartResult{}, err
	}
	w, cerr := t.opts.Resolve(spec.Name, spec.Class, spec.Config, sn.sup.Path)
	if cerr != nil {
		// Checked already by the host that took the start: here it means
		// this host's plugins differ, which retrying cannot change.
		return api.StartResult{}, permanent(cerr)
	}

	t.mu.Lock()
	if sn, err = t.targetLocked(spec.Supervisor); err != nil {
		t.mu.Unlock()
		return api.StartResult{}, err
	}
	w.Path = sn.sup.Path + "/" + w.Name
	if st := sn.run.Info().State; st != supervise.SupervisorRunning {
		t.mu.Unlock()
		return api.StartResult{}, control.Errorf(control.CodeConflict,
			"supervisor %q is %s on host; it cannot start cluster worker %q now", sn.sup.Path, st, spec.Name)
	}
	action := "started"
	old := t.nodes[spec.Name]
	if old != nil {
		switch {
		case old.kind == kindSupervisor:
			err = control.Errorf(control.CodeConflict, "the name %q is taken by supervisor %q on this host", spec.Name, old.sup.Path)
		case old.source == api.SourceHybrid:
			err = control.Errorf(control.CodeConflict, "the name %q is taken on this host by a child of hybrid worker %q", spec.Name, old.parent.name)
		case old.source != api.SourceCluster:
			err = control.Errorf(control.CodeConflict, "the name %q is taken on this host by a worker of source %s", spec.Name, old.source)
		case old.clusterHash == spec.SpecHash && old.parent == sn:
			old.clusterGen = max(old.clusterGen, spec.Generation)
			t.mu.Unlock()
			return t.startResult(spec.Name, "unchanged"), nil
		}
		if err != nil {
			t.mu.Unlock()
			return api.StartResult{}, err
		}
		action = "replaced"
	}
	t.mu.Unlock()

	if old != nil {
		if err := old.parent.run.Remove(ctx, spec.Name); err != nil && !errors.Is(err, supervise.ErrNotFound) &&
			!errors.Is(err, pluginproc.ErrKilledAtStop) {
			t.logger.Error("removing the replaced cluster worker", "worker", spec.Name, "error", err)
		}
		t.mu.Lock()
		gone := t.unregisterLocked(old)
		t.mu.Unlock()
		t.forget(gone[1:]) // its hybrid children; the name itself goes on
	}
	n := &node{name: spec.Name, kind: kindWorker, source: api.SourceCluster, parent: sn, worker: w,
		clusterHash: spec.SpecHash, clusterGen: spec.Generation}
	if err := t.register(n); err != nil {
		return api.StartResult{}, err
	}
	result, err := sn.run.AddAsync(ctx, t.workerSpec(n))
	if err != nil {
		t.mu.Lock()
		t.unregisterLocked(n)
		t.mu.Unlock()
		return api.StartResult{}, fmt.Errorf("adding cluster worker %q: %w", spec.Name, err)
	}
	var startErr error
	select {
	case startErr = <-result:
	case <-ctx.Done():
	}
	if errors.Is(startErr, supervise.ErrPermanent) {
		return api.StartResult{}, t.undoCluster(n, w, startErr)
	}
	return t.startResult(spec.Name, action), nil
}

// permanent marks a control error as one that retrying cannot fix.
func permanent(cerr *control.Error) error { return &clusterStartError{cerr: cerr} }

// clusterStartError is a cluster worker's start that failed for good. Its
// text is the control error's message (no code: the cluster records the
// code apart); it is supervise.ErrPermanent, the *control.Error, and the
// start's own error (sdk.ErrInvalidConfig, ...), whose text may hold
// secrets and is never printed.
type clusterStartError struct {
	cerr  *control.Error
	cause error
}

func (e *clusterStartError) Error() string { return e.cerr.Message }

func (e *clusterStartError) Unwrap() []error {
	out := []error{supervise.ErrPermanent, e.cerr}
	if e.cause != nil {
		out = append(out, e.cause)
	}
	return out
}

// undoCluster removes a cluster worker whose first start failed for good
// and returns the error to report: permanent, with the control code a
// local start would give, scrubbed of the worker's secrets.
func (t *Tree) undoCluster(n *node, w *config.Worker, startErr error) error {
	if err := n.parent.run.Remove(context.Background(), n.name); err != nil && !errors.Is(err, supervise.ErrNotFound) {
		t.logger.Error("removing a cluster worker whose start failed", "worker", n.name, "error", err)
	}
	t.mu.Lock()
	gone := t.unregisterLocked(n)
	t.mu.Unlock()
	t.forget(gone)
	msg := scrubSecrets(startErr.Error(), w.Secrets())
	msg = strings.TrimPrefix(msg, fmt.Sprintf("starting %q: ", n.name))
	msg = strings.TrimPrefix(msg, supervise.ErrPermanent.Error()+": ")
	code := control.CodeInternal
	if errors.Is(startErr, sdk.ErrInvalidConfig) || pluginproc.IsTooLarge(startErr) {
		code = control.CodeInvalidConfig
	}
	return &clusterStartError{cerr: control.Errorf(code, "worker %q failed to start with an error that retrying cannot fix: %s", n.name, msg), cause: startErr}
}

// killPoll is how often a stop past its deadline kills what runs of the
// worker again (a start that was in flight may hand over a new instance).
const killPoll = 50 * time.Millisecond

// StopCluster stops the cluster worker and removes it from the host; nil
// if there is none of that name. The worker gets its shutdown_timeout, but
// no more than ctx allows: when ctx ends first, it is killed (a start in
// flight is cancelled), and StopCluster returns only once no process of
// the worker is left, whatever ctx says.
func (t *Tree) StopCluster(ctx context.Context, name string) error {
	unlock, err := t.lockPastDeadline(ctx, name)
	if err != nil {
		return err
	}
	defer unlock()
	t.mu.Lock()
	n := t.nodes[name]
	t.mu.Unlock()
	if n == nil {
		return nil
	}
	if n.kind != kindWorker || n.source != api.SourceCluster {
		return control.Errorf(control.CodeConflict, "%q is not a cluster worker on this host", name)
	}
	done := make(chan error, 1)
	go func() { done <- n.parent.run.Remove(context.Background(), name) }()
	err = t.waitKilling(ctx, n, done)
	t.mu.Lock()
	gone := t.unregisterLocked(n)
	t.mu.Unlock()
	t.forget(gone)
	if err != nil && !errors.Is(err, supervise.ErrNotFound) && !errors.Is(err, pluginproc.ErrKilledAtStop) &&
		!errors.Is(err, supervise.ErrStopped) {
		return fmt.Errorf("stopping cluster worker %q: %w", name, err)
	}
	return nil
}

// lockPastDeadline locks name. If ctx ends while an operation on the name
// (a start that hangs) holds it, the worker's start is cancelled and what
// runs of it killed, until the lock is free: a stop must not give up.
func (t *Tree) lockPastDeadline(ctx context.Context, name string) (func(), error) {
	unlock, err := t.locks.lock(ctx, name)
	if err == nil {
		return unlock, nil
	}
	bg, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan func(), 1)
	go func() {
		u, err := t.locks.lock(bg, name)
		if err != nil {
			return
		}
		got <- u
	}()
	tick := time.NewTicker(killPoll)
	defer tick.Stop()
	for {
		t.mu.Lock()
		n := t.nodes[name]
		t.mu.Unlock()
		if n != nil && n.source == api.SourceCluster {
			t.killNow(n)
		}
		select {
		case u := <-got:
			return u, nil
		case <-tick.C:
		}
	}
}

// waitKilling waits for done; once ctx ends, it kills n's instance (and
// cancels its start in flight) until done says it is down.
func (t *Tree) waitKilling(ctx context.Context, n *node, done <-chan error) error {
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	t.logger.Warn("cluster worker did not stop in time; killing it", "worker", n.name)
	tick := time.NewTicker(killPoll)
	defer tick.Stop()
	for {
		t.killNow(n)
		select {
		case err := <-done:
			return err
		case <-tick.C:
		}
	}
}

// killNow cancels n's start in flight, if any, and kills its current
// instance, if any (an Instance.Stop whose deadline has passed kills at
// once, and returns once the process is gone).
func (t *Tree) killNow(n *node) {
	t.mu.Lock()
	cancelStart := n.cancelStart
	run := n.runner()
	t.mu.Unlock()
	if cancelStart != nil {
		cancelStart()
	}
	if run == nil {
		return
	}
	cs, ok := run.Child(n.name)
	if !ok || cs.Instance == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = supervise.Unwrap(cs.Instance).Stop(ctx)
}

// RestartCluster restarts the cluster worker with a fresh restart budget
// (its supervisor first, if that is down) and returns its state once the
// start has ended.
func (t *Tree) RestartCluster(ctx context.Context, name string) (ClusterState, error) {
	unlock, err := t.locks.lock(ctx, name)
	if err != nil {
		return ClusterState{}, err
	}
	defer unlock()
	t.mu.Lock()
	n := t.nodes[name]
	switch {
	case t.closed:
		err = errClosed
	case n == nil || n.kind != kindWorker || n.source != api.SourceCluster:
		err = control.Errorf(control.CodeNotFound, "no cluster worker named %q on this host", name)
	}
	t.mu.Unlock()
	if err != nil {
		return ClusterState{}, err
	}
	revived, err := t.revive(ctx, n.parent)
	if err != nil {
		return t.clusterState(n), &control.Error{Code: control.CodeInternal, Message: err.Error()}
	}
	if cs, ok := n.parent.run.Child(name); revived && ok && cs.State == supervise.StateRunning {
		return t.clusterState(n), nil
	}
	err = n.parent.run.RestartChild(ctx, name)
	if err != nil {
		return t.clusterState(n), &control.Error{Code: control.CodeInternal,
			Message: fmt.Sprintf("cluster worker %q restarted but its start failed: %s", name, scrubSecrets(err.Error(), n.worker.Secrets()))}
	}
	return t.clusterState(n), nil
}

// SetClusterGeneration records the generation a cluster worker runs (after
// a restart the cluster asked for), for ClusterWorkers.
func (t *Tree) SetClusterGeneration(name string, gen int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if n := t.nodes[name]; n != nil && n.source == api.SourceCluster {
		n.clusterGen = gen
	}
}

// ClusterWorkers lists the cluster workers on this host and their states.
func (t *Tree) ClusterWorkers() map[string]ClusterState {
	t.mu.Lock()
	var nodes []*node
	for _, n := range t.nodes {
		if n.kind == kindWorker && n.source == api.SourceCluster {
			nodes = append(nodes, n)
		}
	}
	t.mu.Unlock()
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].name < nodes[j].name })
	out := make(map[string]ClusterState, len(nodes))
	for _, n := range nodes {
		out[n.name] = t.clusterState(n)
	}
	return out
}

// clusterState is n's state from its supervisor's listing; "starting"
// while it is registered but not yet added (or being replaced).
func (t *Tree) clusterState(n *node) ClusterState {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := ClusterState{State: string(supervise.StateStarting), SpecHash: n.clusterHash, Generation: n.clusterGen}
	if n.gone {
		st.State = string(supervise.StateStopped)
		return st
	}
	if wi, ok := workerInfoLocked(n); ok {
		st.State, st.PID, st.Since, st.Restarts, st.LastExit = wi.State, wi.Pid, wi.Since, wi.Restarts, wi.LastExit
	}
	return st
}
