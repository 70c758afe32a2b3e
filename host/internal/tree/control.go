package tree

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/config"
	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/host/internal/pluginproc"
	"github.com/dynworkers/dynworkers/host/internal/state"
	"github.com/dynworkers/dynworkers/host/internal/supervise"
	"github.com/dynworkers/dynworkers/sdk"
)

// hybridConflict is the error of a control operation on a hybrid's child.
func hybridConflict(name string, owner *node, what string) error {
	return control.Errorf(control.CodeConflict,
		"worker %q is a child of hybrid worker %q, which manages it: a control message cannot %s it; act on %q instead",
		name, owner.name, what, owner.name)
}

func familyConflict(path string, owner *node) error {
	return control.Errorf(control.CodeConflict,
		"supervisor %q holds the children of hybrid worker %q, which manages them itself", path, owner.name)
}

// targetLocked finds the supervisor a start goes into, or says why none.
func (t *Tree) targetLocked(path string) (*node, error) {
	if t.closed {
		return nil, errClosed
	}
	sn := t.findSupervisorLocked(path)
	if sn == nil {
		if owner := t.hybridAtLocked(path); owner != nil {
			return nil, familyConflict(owner.familyPath(), owner)
		}
		return nil, control.Errorf(control.CodeNotFound, "supervisor %q not found", path)
	}
	for x := sn; x != nil; x = x.parent {
		if x.removing {
			return nil, control.Errorf(control.CodeConflict, "supervisor %q is being removed", x.sup.Path)
		}
	}
	return sn, nil
}

// StartWorker starts a worker asked for by a control message. It is
// idempotent: the same name and spec is a no-op. A different spec under a
// taken name is a conflict unless spec.Replace; an HCL worker's, a
// supervisor's or a hybrid child's name is always a conflict. The worker is
// persisted before it is started, so a start that was answered survives a
// crash of the host.
func (t *Tree) StartWorker(ctx context.Context, spec control.WorkerSpec) (api.StartResult, error) {
	if err := config.ValidateWorkerName(spec.Name); err != nil {
		return api.StartResult{}, &control.Error{Code: control.CodeInvalidConfig, Message: fmt.Sprintf("worker_name: %v", err)}
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
		return api.StartResult{}, cerr
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
			"supervisor %q is %s; start it again first (start_supervisor, or restart_worker on one of its workers)", sn.sup.Path, st)
	}
	action := "started"
	old := t.nodes[spec.Name]
	if old != nil {
		switch {
		case old.kind == kindSupervisor:
			err = control.Errorf(control.CodeConflict, "the name %q is taken by supervisor %q", spec.Name, old.sup.Path)
		case old.source == api.SourceHybrid:
			err = hybridConflict(spec.Name, old.parent, "start or replace")
		case old.source == api.SourceCluster:
			err = clusterConflict(spec.Name, "start or replace")
		case old.source == api.SourceHCL:
			err = control.Errorf(control.CodeConflict,
				"worker %q is configured in HCL (%s); a control message cannot start another worker under its name", spec.Name, old.worker.Range)
		case old.worker.SpecHash() == w.SpecHash() && old.parent == sn:
			t.mu.Unlock()
			return t.startResult(spec.Name, "unchanged"), nil
		case !spec.Replace:
			err = control.Errorf(control.CodeConflict,
				"worker %q already runs with a different spec; send \"replace\": true to replace it", spec.Name)
		}
		if err != nil {
			t.mu.Unlock()
			return api.StartResult{}, err
		}
		action = "replaced"
	}
	t.mu.Unlock()

	cfgJSON, err := w.ConfigJSON()
	if err != nil {
		return api.StartResult{}, fmt.Errorf("encoding config of %q: %w", spec.Name, err)
	}
	rec := state.Worker{Name: spec.Name, Class: w.Class, Supervisor: sn.sup.Path, Config: cfgJSON, CreatedAt: time.Now().UTC()}
	if err := t.persist(func(ws []state.Worker, ss []state.Supervisor) ([]state.Worker, []state.Supervisor) {
		if i := slices.IndexFunc(ws, func(x state.Worker) bool { return x.Name == rec.Name }); i >= 0 {
			ws[i] = rec // a replaced worker keeps its place
			return ws, ss
		}
		return append(ws, rec), ss
	}); err != nil {
		return api.StartResult{}, err
	}
	if old != nil {
		if err := old.parent.run.Remove(ctx, spec.Name); err != nil && !errors.Is(err, supervise.ErrNotFound) {
			t.logger.Error("removing the replaced worker", "worker", spec.Name, "error", err)
		}
		t.mu.Lock()
		t.unregisterLocked(old)
		t.mu.Unlock()
	}
	n := &node{name: spec.Name, kind: kindWorker, source: api.SourceControl, parent: sn, worker: w}
	if err := t.register(n); err != nil {
		return api.StartResult{}, err
	}
	result, err := sn.run.AddAsync(ctx, t.workerSpec(n))
	if err != nil {
		// The supervisor went down meanwhile: nothing runs; forget it.
		t.mu.Lock()
		t.unregisterLocked(n)
		t.mu.Unlock()
		_ = t.persist(func(ws []state.Worker, ss []state.Supervisor) ([]state.Worker, []state.Supervisor) {
			return slices.DeleteFunc(ws, func(x state.Worker) bool { return x.Name == spec.Name }), ss
		})
		return api.StartResult{}, fmt.Errorf("adding worker %q: %w", spec.Name, err)
	}
	var startErr error
	select {
	case startErr = <-result: // the outcome shows in the state reported below
	case <-ctx.Done():
	}
	if errors.Is(startErr, supervise.ErrPermanent) {
		return api.StartResult{}, t.undoStart(n, w, startErr, old != nil)
	}
	if t.opts.ControlStarted != nil {
		t.opts.ControlStarted(w)
	}
	return t.startResult(spec.Name, action), nil
}

// undoStart takes back a control start whose first start failed with a
// permanent error (an invalid config, a config too large for the plugin, a
// binary that no longer matches its checksum, a class gone): retrying
// cannot help, so the worker is removed and its record too, and the client
// gets the error. Nothing of the request is left (but the worker it
// replaced, if any, which was stopped before the start).
func (t *Tree) undoStart(n *node, w *config.Worker, startErr error, replaced bool) error {
	ctx := context.Background()
	if err := n.parent.run.Remove(ctx, n.name); err != nil && !errors.Is(err, supervise.ErrNotFound) {
		t.logger.Error("removing a worker whose start failed", "worker", n.name, "error", err)
	}
	t.mu.Lock()
	gone := t.unregisterLocked(n)
	t.mu.Unlock()
	t.forget(gone)
	perr := t.persist(func(ws []state.Worker, ss []state.Supervisor) ([]state.Worker, []state.Supervisor) {
		return slices.DeleteFunc(ws, func(x state.Worker) bool { return x.Name == n.name }), ss
	})
	if perr != nil {
		return perr
	}
	msg := scrubSecrets(startErr.Error(), w.Secrets())
	msg = strings.TrimPrefix(msg, fmt.Sprintf("starting %q: ", n.name))
	msg = strings.TrimPrefix(msg, supervise.ErrPermanent.Error()+": ")
	what := "it was not started and nothing was persisted"
	if replaced {
		what = "the worker it replaced was stopped; the new one was not started and is not persisted"
	}
	code := control.CodeInternal
	if errors.Is(startErr, sdk.ErrInvalidConfig) || pluginproc.IsTooLarge(startErr) {
		code = control.CodeInvalidConfig
	}
	return control.Errorf(code, "worker %q failed to start with an error that retrying cannot fix (%s): %s", n.name, what, msg)
}

// scrubSecrets replaces every secret in s by config.RedactedValue.
func scrubSecrets(s string, secrets []string) string {
	for _, sec := range secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, config.RedactedValue)
		}
	}
	return s
}

func (t *Tree) startResult(name, action string) api.StartResult {
	r := api.StartResult{Worker: name, Action: action}
	if wi, ok := t.Worker(name); ok {
		r.Pid, r.State = wi.Pid, wi.State
	}
	return r
}

// lockWorker locks the name of a worker a control message acts on (verb:
// "stop", "restart") and returns its node, or why it may not.
func (t *Tree) lockWorker(ctx context.Context, name, verb string) (*node, func(), error) {
	unlock, err := t.locks.lock(ctx, name)
	if err != nil {
		return nil, nil, err
	}
	t.mu.Lock()
	n := t.nodes[name]
	switch {
	case t.closed:
		err = errClosed
	case n == nil || n.kind != kindWorker:
		err = control.Errorf(control.CodeNotFound, "no worker named %q", name)
	case n.source == api.SourceHybrid:
		err = hybridConflict(name, n.parent, verb)
	case n.source == api.SourceCluster:
		err = clusterConflict(name, verb)
	}
	t.mu.Unlock()
	if err != nil {
		unlock()
		return nil, nil, err
	}
	return n, unlock, nil
}

// StopWorker stops a worker by control message. A dynamic worker is
// stopped and forgotten (removed from the persisted state first). A worker
// from HCL is stopped until the next reload or host restart. A hybrid's
// child cannot be stopped by a control message.
func (t *Tree) StopWorker(ctx context.Context, name string) error {
	_, err := t.StopWorkerResult(ctx, name)
	return err
}

// StopWorkerResult is StopWorker, and says whether the worker had to be
// killed: one that does not stop within its shutdown_timeout is killed,
// which is a successful stop (Killed set), not an error.
func (t *Tree) StopWorkerResult(ctx context.Context, name string) (api.WorkerResult, error) {
	res := api.WorkerResult{Worker: name, Action: "stopped"}
	n, unlock, err := t.lockWorker(ctx, name, "stop")
	if err != nil {
		var cerr *control.Error
		if errors.As(err, &cerr) && cerr.Code == control.CodeNotFound {
			if forgot, ferr := t.forgetRecord(ctx, name); forgot || ferr != nil {
				return res, ferr
			}
		}
		return api.WorkerResult{}, err
	}
	defer unlock()
	if n.source == api.SourceHCL {
		err := killedAtStop(&res, n.parent.run.StopChild(ctx, name))
		if err != nil {
			return api.WorkerResult{}, err
		}
		return res, nil
	}
	if err := t.persist(func(ws []state.Worker, ss []state.Supervisor) ([]state.Worker, []state.Supervisor) {
		return slices.DeleteFunc(ws, func(x state.Worker) bool { return x.Name == name }), ss
	}); err != nil {
		return api.WorkerResult{}, err
	}
	err = killedAtStop(&res, n.parent.run.Remove(ctx, name))
	t.mu.Lock()
	gone := t.unregisterLocked(n)
	t.mu.Unlock()
	t.forget(gone)
	if err != nil && !errors.Is(err, supervise.ErrNotFound) {
		return api.WorkerResult{}, fmt.Errorf("stopping worker %q: %w", name, err)
	}
	return res, nil
}

// killedAtStop turns the error of a stop that had to kill the worker at
// its deadline into a success that says so.
func killedAtStop(res *api.WorkerResult, err error) error {
	if !errors.Is(err, pluginproc.ErrKilledAtStop) {
		return err
	}
	res.Killed = true
	res.Detail = err.Error()
	return nil
}

// forgetRecord removes the persisted record of a control-started worker
// that does not run: one the host has not restored yet, or one it could
// not restore (its class or supervisor is gone), which the state file
// keeps. It reports whether there was one.
func (t *Tree) forgetRecord(ctx context.Context, name string) (bool, error) {
	unlock, err := t.locks.lock(ctx, name)
	if err != nil {
		return false, err
	}
	defer unlock()
	t.mu.Lock()
	_, running := t.nodes[name]
	has := slices.ContainsFunc(t.dynW, func(w state.Worker) bool { return w.Name == name })
	t.mu.Unlock()
	if running || !has {
		return false, nil
	}
	t.logger.Info("forgetting a persisted worker that does not run", "worker", name)
	return true, t.persist(func(ws []state.Worker, ss []state.Supervisor) ([]state.Worker, []state.Supervisor) {
		return slices.DeleteFunc(ws, func(x state.Worker) bool { return x.Name == name }), ss
	})
}

// RestartWorker restarts a worker by hand, from any state, with a fresh
// restart budget. If its supervisor or one above it is down (failed, or
// stopped), the first of them that is down is started again with its whole
// subtree, which starts the worker afresh. A hybrid's child cannot be
// restarted by a control message.
func (t *Tree) RestartWorker(ctx context.Context, name string) error {
	n, unlock, err := t.lockWorker(ctx, name, "restart")
	if err != nil {
		return err
	}
	defer unlock()
	revived, err := t.revive(ctx, n.parent)
	if err != nil {
		return &control.Error{Code: control.CodeInternal, Message: err.Error()}
	}
	if cs, ok := n.parent.run.Child(name); revived && ok && cs.State == supervise.StateRunning {
		return nil
	}
	err = n.parent.run.RestartChild(ctx, name)
	if errors.Is(err, supervise.ErrNotFound) {
		return control.Errorf(control.CodeNotFound, "no worker named %q", name)
	}
	if err != nil {
		// The worker is supervised and retried; say how its start went.
		return &control.Error{Code: control.CodeInternal, Message: fmt.Sprintf("worker %q restarted but its start failed: %v", name, err)}
	}
	return nil
}

// revive makes sure every supervisor from the root down to sn runs: the
// first one that is down is started again (the root by Up, any other by a
// restart of it in its parent), which starts its whole subtree. It reports
// whether it started anything.
func (t *Tree) revive(ctx context.Context, sn *node) (bool, error) {
	var chain []*node
	for x := sn; x != nil; x = x.parent {
		chain = append(chain, x)
	}
	slices.Reverse(chain)
	revived := false
	for _, x := range chain {
		if x.run.Info().State == supervise.SupervisorRunning {
			continue
		}
		var err error
		if x.parent == nil {
			err = x.run.Up(ctx)
		} else {
			err = x.parent.run.RestartChild(ctx, x.name)
		}
		if err != nil {
			return revived, fmt.Errorf("starting supervisor %q again: %w", x.sup.Path, err)
		}
		revived = true
	}
	return revived, nil
}

// StartSupervisor starts a supervisor asked for by a control message, as a
// child of the parent it names, and persists it. A supervisor of that name
// with the same settings is left alone ("unchanged") or, if it is down,
// started again ("revived"); other settings are a conflict.
func (t *Tree) StartSupervisor(ctx context.Context, spec control.SupervisorSpec) (api.SupervisorResult, error) {
	unlock, err := t.locks.lock(ctx, spec.Name)
	if err != nil {
		return api.SupervisorResult{}, err
	}
	defer unlock()
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return api.SupervisorResult{}, errClosed
	}
	parent := t.findSupervisorLocked(spec.Parent)
	if parent == nil {
		var err error = control.Errorf(control.CodeNotFound, "parent supervisor %q not found", spec.Parent)
		if owner := t.hybridAtLocked(spec.Parent); owner != nil {
			err = familyConflict(owner.familyPath(), owner)
		}
		t.mu.Unlock()
		return api.SupervisorResult{}, err
	}
	if old := t.nodes[spec.Name]; old != nil && old.kind == kindSupervisor {
		t.mu.Unlock()
		return t.startExisting(ctx, old, spec, parent)
	}
	cfg, cerr := supervisorConfig(spec, parent)
	if cerr != nil {
		t.mu.Unlock()
		return api.SupervisorResult{}, cerr
	}
	if old := t.nodes[spec.Name]; old != nil {
		t.mu.Unlock()
		return api.SupervisorResult{}, control.Errorf(control.CodeConflict, "the name %q is taken by a worker", spec.Name)
	}
	if _, err := t.targetLocked(parent.sup.Path); err != nil {
		t.mu.Unlock()
		return api.SupervisorResult{}, err
	}
	if st := parent.run.Info().State; st != supervise.SupervisorRunning {
		t.mu.Unlock()
		return api.SupervisorResult{}, control.Errorf(control.CodeConflict,
			"parent supervisor %q is %s; start it again first (start_supervisor or restart_worker)", parent.sup.Path, st)
	}
	t.mu.Unlock()
	rec := state.Supervisor{Name: cfg.Name, Parent: parent.sup.Path, Strategy: cfg.Strategy, Intensity: cfg.Intensity,
		Period: cfg.Period.String(), CreatedAt: time.Now().UTC()}
	if err := t.persist(func(ws []state.Worker, ss []state.Supervisor) ([]state.Worker, []state.Supervisor) {
		return ws, append(ss, rec)
	}); err != nil {
		return api.SupervisorResult{}, err
	}
	n, err := t.addSupervisor(ctx, cfg, parent, api.SourceControl)
	if err != nil {
		_ = t.persist(func(ws []state.Worker, ss []state.Supervisor) ([]state.Worker, []state.Supervisor) {
			return ws, slices.DeleteFunc(ss, func(x state.Supervisor) bool { return x == rec })
		})
		return api.SupervisorResult{}, err
	}
	t.mu.Lock()
	st := supervisorStatusLocked(n).State
	t.mu.Unlock()
	return api.SupervisorResult{Supervisor: cfg.Path, Action: "started", State: st}, nil
}

// addSupervisor makes a supervisor at run time and adds it to its parent.
func (t *Tree) addSupervisor(ctx context.Context, cfg *config.Supervisor, parent *node, source string) (*node, error) {
	n, err := t.newSupervisorNode(cfg, parent, source)
	if err != nil {
		return nil, err
	}
	if err := t.register(n); err != nil {
		_ = n.run.Stop(context.Background())
		return nil, err
	}
	if err := parent.run.Add(ctx, supChildSpec(n)); err != nil {
		t.mu.Lock()
		gone := t.unregisterLocked(n)
		t.mu.Unlock()
		t.forget(gone)
		return nil, fmt.Errorf("adding supervisor %q: %w", cfg.Path, err)
	}
	return n, nil
}

// startExisting answers a start_supervisor of a supervisor that exists:
// the settings the request gives (and its parent, if given) must be the
// supervisor's; then a supervisor that is down is started again, with
// everything that is down above it, and one that runs is left alone.
func (t *Tree) startExisting(ctx context.Context, old *node, spec control.SupervisorSpec, parent *node) (api.SupervisorResult, error) {
	info := old.run.Info()
	var diffs []string
	if spec.Parent != "" && old.parent != parent {
		diffs = append(diffs, fmt.Sprintf("it runs under %q", old.parent.sup.Path))
	}
	if spec.Strategy != "" && spec.Strategy != string(info.Strategy) {
		diffs = append(diffs, fmt.Sprintf("its strategy is %s", info.Strategy))
	}
	if spec.Intensity != 0 && max(spec.Intensity, 0) != info.Intensity {
		diffs = append(diffs, fmt.Sprintf("its intensity is %d", info.Intensity))
	}
	if spec.Period != 0 && spec.Period != info.Period {
		diffs = append(diffs, fmt.Sprintf("its period is %v", info.Period))
	}
	if len(diffs) > 0 {
		return api.SupervisorResult{}, control.Errorf(control.CodeConflict,
			"supervisor %q exists with other settings: %s", old.sup.Path, strings.Join(diffs, ", "))
	}
	revived, err := t.revive(ctx, old)
	if err != nil {
		return api.SupervisorResult{}, &control.Error{Code: control.CodeInternal, Message: err.Error()}
	}
	action := "unchanged"
	if revived {
		action = "revived"
	}
	t.mu.Lock()
	st := supervisorStatusLocked(old).State
	t.mu.Unlock()
	return api.SupervisorResult{Supervisor: old.sup.Path, Action: action, State: st}, nil
}

// supervisorConfig validates a start_supervisor request.
func supervisorConfig(spec control.SupervisorSpec, parent *node) (*config.Supervisor, *control.Error) {
	if err := config.ValidateName(spec.Name); err != nil {
		return nil, &control.Error{Code: control.CodeInvalidConfig, Message: fmt.Sprintf("supervisor_name: %v", err)}
	}
	if path := parent.sup.Path + "/" + spec.Name; config.Depth(path) > config.MaxDepth {
		return nil, &control.Error{Code: control.CodeInvalidConfig, Message: fmt.Sprintf(
			"supervisor %q would be %d levels deep; supervisors may nest at most %d levels", path, config.Depth(path), config.MaxDepth)}
	}
	strategy := spec.Strategy
	if strategy == "" {
		strategy = string(supervise.StrategyOneForOne)
	}
	st, err := supervise.ParseStrategy(strategy)
	if err != nil {
		return nil, &control.Error{Code: control.CodeInvalidConfig, Message: "strategy: " + err.Error()}
	}
	if spec.Period < 0 {
		return nil, &control.Error{Code: control.CodeInvalidConfig, Message: fmt.Sprintf("period: must be positive, not %v", spec.Period)}
	}
	// As in HCL, the config holds explicit values: intensity 0 allows no
	// restart.
	intensity, period := spec.Intensity, spec.Period
	switch {
	case intensity == 0:
		intensity = config.DefaultIntensity
	case intensity < 0:
		intensity = 0
	}
	if period == 0 {
		period = config.DefaultPeriod
	}
	return &config.Supervisor{Name: spec.Name, Path: parent.sup.Path + "/" + spec.Name, Strategy: string(st),
		Intensity: intensity, Period: period}, nil
}

// clusterBelowLocked returns the name of a cluster worker in n's subtree,
// "" when there is none.
func clusterBelowLocked(n *node) string {
	for _, c := range n.children {
		if c.kind == kindWorker && c.source == api.SourceCluster {
			return c.name
		}
		if c.kind == kindSupervisor {
			if name := clusterBelowLocked(c); name != "" {
				return name
			}
		}
	}
	return ""
}

// subtreeNamesLocked returns the names of n and of everything below it.
func subtreeNamesLocked(n *node) []string {
	out := []string{n.name}
	for _, c := range n.children {
		out = append(out, subtreeNamesLocked(c)...)
	}
	return out
}

// StopSupervisor stops a supervisor by control message. One from HCL is
// stopped with its subtree until the next reload or host restart (the root
// too: the host then runs no worker, but keeps answering). One started by a
// control message is removed with its subtree, its workers and
// supervisors, from the host and from the persisted state.
func (t *Tree) StopSupervisor(ctx context.Context, path string) (api.SupervisorResult, error) {
	t.mu.Lock()
	sn := t.findSupervisorLocked(path)
	var err error
	switch {
	case t.closed:
		err = errClosed
	case sn == nil || path == "":
		err = control.Errorf(control.CodeNotFound, "supervisor %q not found", path)
		if owner := t.hybridAtLocked(path); owner != nil {
			err = control.Errorf(control.CodeConflict,
				"supervisor %q holds the children of hybrid worker %q; stop the worker instead", owner.familyPath(), owner.name)
		}
	}
	if err != nil {
		t.mu.Unlock()
		return api.SupervisorResult{}, err
	}
	var names []string
	if sn.source == api.SourceControl {
		if c := clusterBelowLocked(sn); c != "" {
			t.mu.Unlock()
			return api.SupervisorResult{}, control.Errorf(control.CodeConflict,
				"supervisor %q runs cluster worker %q: drain this host (or stop the worker through the cluster) first", sn.sup.Path, c)
		}
		// Nothing new may start under it from now on, so the names below
		// it are all there are.
		sn.removing = true
		names = subtreeNamesLocked(sn)
	} else {
		names = []string{sn.name}
	}
	t.mu.Unlock()
	unlock, err := t.locks.lock(ctx, names...)
	if err != nil {
		t.mu.Lock()
		sn.removing = false
		t.mu.Unlock()
		return api.SupervisorResult{}, err
	}
	defer unlock()
	if sn.source == api.SourceHCL {
		if sn.parent == nil {
			err = sn.run.Down(ctx)
		} else {
			err = sn.parent.run.StopChild(ctx, sn.name)
		}
		if err != nil {
			return api.SupervisorResult{}, fmt.Errorf("stopping supervisor %q: %w", sn.sup.Path, err)
		}
		t.mu.Lock()
		st := supervisorStatusLocked(sn).State
		t.mu.Unlock()
		return api.SupervisorResult{Supervisor: sn.sup.Path, Action: "stopped", State: st}, nil
	}

	t.mu.Lock()
	if sn.gone {
		t.mu.Unlock()
		return api.SupervisorResult{}, control.Errorf(control.CodeNotFound, "supervisor %q not found", path)
	}
	inTree := func(p string) bool { return under(p, sn.sup.Path) }
	var removed []string
	for _, w := range t.dynW {
		if inTree(w.Supervisor) {
			removed = append(removed, w.Name)
		}
	}
	for _, s := range t.dynS {
		if p := s.Parent + "/" + s.Name; inTree(p) {
			removed = append(removed, p)
		}
	}
	t.mu.Unlock()
	if err := t.persist(func(ws []state.Worker, ss []state.Supervisor) ([]state.Worker, []state.Supervisor) {
		ws = slices.DeleteFunc(ws, func(w state.Worker) bool { return inTree(w.Supervisor) })
		ss = slices.DeleteFunc(ss, func(s state.Supervisor) bool { return inTree(s.Parent + "/" + s.Name) })
		return ws, ss
	}); err != nil {
		t.mu.Lock()
		sn.removing = false
		t.mu.Unlock()
		return api.SupervisorResult{}, err
	}
	// Removing it from its parent stops the subtree, deepest first.
	err = sn.parent.run.Remove(ctx, sn.name)
	t.mu.Lock()
	gone := t.unregisterLocked(sn)
	t.mu.Unlock()
	t.forget(gone)
	if err != nil && !errors.Is(err, supervise.ErrNotFound) {
		return api.SupervisorResult{}, fmt.Errorf("stopping supervisor %q: %w", sn.sup.Path, err)
	}
	return api.SupervisorResult{Supervisor: sn.sup.Path, Action: "removed", State: string(supervise.SupervisorStopped), Removed: removed}, nil
}
