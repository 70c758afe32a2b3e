package tree

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/config"
	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/host/internal/supervise"
)

// Running describes what the tree runs now, for plan.
func (t *Tree) Running() Running {
	t.mu.Lock()
	defer t.mu.Unlock()
	var r Running
	var visit func(*node)
	visit = func(n *node) {
		switch n.kind {
		case kindSupervisor:
			// The settings are the supervisor's own: a reconfigured one
			// has those of its last reload.
			info := n.run.Info()
			rs := RunningSupervisor{Name: n.name, Path: n.sup.Path, Source: n.source,
				Strategy: string(info.Strategy), Intensity: info.Intensity, Period: info.Period}
			if n.parent == nil {
				rs.StoppedByRequest = info.State == supervise.SupervisorStopped
			} else {
				rs.Parent = n.parent.sup.Path
				cs, ok := n.parent.run.Child(n.name)
				rs.StoppedByRequest = ok && cs.State == supervise.StateStopped && n.parent.run.Info().State == supervise.SupervisorRunning
			}
			r.Supervisors = append(r.Supervisors, rs)
		case kindWorker:
			rw := RunningWorker{Name: n.name, Supervisor: n.supPath(), Source: n.source, SpecHash: n.worker.SpecHash()}
			if n.source == api.SourceHybrid {
				rw.Owner = n.parent.name
			} else if cs, ok := n.parent.run.Child(n.name); ok {
				rw.StoppedByRequest = cs.State == supervise.StateStopped && n.parent.run.Info().State == supervise.SupervisorRunning
			}
			r.Workers = append(r.Workers, rw)
		}
		for _, c := range n.children {
			visit(c)
		}
	}
	if t.root != nil {
		visit(t.root)
	}
	return r
}

// Reload applies the configuration rooted at wanted: it plans the change
// (plan) and, unless that is refused, locks every name the plan touches,
// checks that the plan still holds, calls beforeApply (the daemon installs
// the rescanned catalog there) and applies it: workers and supervisors gone
// from the configuration are removed, changed supervisors reconfigured in
// place, new supervisors started, changed workers restarted and new ones
// started, up to StartConcurrency at once. Workers and supervisors the
// plan does not name go on undisturbed, and control operations on other
// names proceed meanwhile.
func (t *Tree) Reload(ctx context.Context, wanted *config.Supervisor, beforeApply func()) (api.ReloadResult, error) {
	t.reloadMu.Lock()
	defer t.reloadMu.Unlock()
	var p Plan
	var unlock func()
	for attempt := 0; ; attempt++ {
		r := t.Running()
		var err error
		if p, err = plan(r, wanted); err != nil {
			return api.ReloadResult{}, err
		}
		names := p.Names(r)
		if unlock, err = t.locks.lock(ctx, names...); err != nil {
			return api.ReloadResult{}, err
		}
		// Control operations may have changed the tree while the locks
		// were awaited: plan again, and go on if the plan needs no other
		// name.
		r = t.Running()
		if p, err = plan(r, wanted); err != nil {
			unlock()
			return api.ReloadResult{}, err
		}
		if again := p.Names(r); !slices.ContainsFunc(again, func(n string) bool { return !slices.Contains(names, n) }) {
			break
		}
		unlock()
		if attempt == 10 {
			return api.ReloadResult{}, control.Errorf(control.CodeConflict, "reload: the tree keeps changing under it; try again")
		}
	}
	defer unlock()
	t.mu.Lock()
	closed := t.closed
	t.mu.Unlock()
	if closed {
		return api.ReloadResult{}, errClosed
	}
	if beforeApply != nil {
		beforeApply()
	}
	return t.apply(ctx, p)
}

// apply carries out a plan whose names are locked.
func (t *Tree) apply(ctx context.Context, p Plan) (api.ReloadResult, error) {
	res := api.ReloadResult{Added: []string{}, Removed: []string{}, Restarted: []string{}, Resumed: []string{}, Unchanged: p.Unchanged}
	var errs []error
	var emu sync.Mutex
	fail := func(err error) {
		emu.Lock()
		errs = append(errs, err)
		emu.Unlock()
	}
	nodeOf := func(name string) *node {
		t.mu.Lock()
		defer t.mu.Unlock()
		return t.nodes[name]
	}
	tolerated := func(err error) bool {
		return err == nil || errors.Is(err, supervise.ErrNotFound) || errors.Is(err, supervise.ErrStopped)
	}

	// Removals, in parallel: each stops within its shutdown timeout.
	t.parallel(p.RemoveWorkers, func(name string) {
		n := nodeOf(name)
		if n == nil {
			return
		}
		if err := n.parent.run.Remove(ctx, name); !tolerated(err) {
			fail(fmt.Errorf("removing %q: %w", name, err))
		}
		t.mu.Lock()
		gone := t.unregisterLocked(n)
		t.mu.Unlock()
		t.forget(gone)
	})
	res.Removed = append(res.Removed, p.RemoveWorkers...)
	for _, path := range p.RemoveSupervisors {
		t.mu.Lock()
		sn := t.findSupervisorLocked(path)
		t.mu.Unlock()
		if sn == nil || sn.parent == nil {
			continue
		}
		if err := sn.parent.run.Remove(ctx, sn.name); !tolerated(err) {
			fail(fmt.Errorf("removing supervisor %q: %w", path, err))
		}
		t.mu.Lock()
		gone := t.unregisterLocked(sn)
		t.mu.Unlock()
		for _, g := range slices.Backward(gone) { // deepest first, as they stopped
			if g.kind == kindSupervisor {
				res.SupervisorsRemoved = append(res.SupervisorsRemoved, g.sup.Path)
			}
		}
		t.forget(gone)
	}
	for _, s := range p.Reconfigure {
		n := nodeOf(s.Name)
		if n == nil {
			continue
		}
		if err := n.run.Reconfigure(ctx, supervise.Strategy(s.Strategy), supIntensity(s.Intensity), s.Period); err != nil {
			fail(fmt.Errorf("reconfiguring supervisor %q: %w", s.Path, err))
			continue
		}
		res.SupervisorsReconfigured = append(res.SupervisorsReconfigured, s.Path)
	}
	for _, path := range p.ResumeSupervisors {
		t.mu.Lock()
		sn := t.findSupervisorLocked(path)
		t.mu.Unlock()
		if sn == nil {
			continue
		}
		var err error
		if sn.parent == nil {
			err = sn.run.Up(ctx)
		} else {
			err = sn.parent.run.RestartChild(ctx, sn.name)
		}
		if err != nil {
			fail(fmt.Errorf("starting supervisor %q again: %w", path, err))
			continue
		}
		res.SupervisorsResumed = append(res.SupervisorsResumed, path)
	}
	for _, s := range p.AddSupervisors {
		t.mu.Lock()
		parent := t.findSupervisorLocked(s.Path[:len(s.Path)-len(s.Name)-1])
		t.mu.Unlock()
		if parent == nil {
			fail(fmt.Errorf("adding supervisor %q: its parent is gone", s.Path))
			continue
		}
		n, err := t.newSupervisorNode(s, parent, api.SourceHCL)
		if err == nil {
			err = t.register(n)
		}
		if err == nil {
			err = parent.run.Add(ctx, supChildSpec(n))
			if errors.Is(err, supervise.ErrSupervisorDown) {
				// Its parent is down: it starts with it. A supervisor is
				// made running, so take it down to match.
				if err = n.run.Down(ctx); err == nil {
					err = parent.run.Register(ctx, supChildSpec(n))
				}
			}
		}
		if err != nil {
			fail(fmt.Errorf("adding supervisor %q: %w", s.Path, err))
		}
		res.SupervisorsAdded = append(res.SupervisorsAdded, s.Path)
	}

	// Restarts: the old incarnations stop in parallel; then the new
	// workers are added in declared order, their starts overlapping.
	t.parallel(names(p.Restart), func(name string) {
		if n := nodeOf(name); n != nil {
			if err := n.parent.run.Remove(ctx, name); !tolerated(err) {
				fail(fmt.Errorf("stopping %q for its new spec: %w", name, err))
			}
			t.mu.Lock()
			gone := t.unregisterLocked(n)
			t.mu.Unlock()
			for _, g := range gone[1:] { // its hybrid children, not the name itself
				if t.opts.Forget != nil && g.kind == kindWorker {
					t.opts.Forget(g.name)
				}
			}
		}
	})
	sem := make(chan struct{}, t.concurrency())
	var wg sync.WaitGroup
	start := func(w *config.Worker, what string, list *[]string) {
		t.mu.Lock()
		parent := t.findSupervisorLocked(w.Path[:len(w.Path)-len(w.Name)-1])
		t.mu.Unlock()
		if parent == nil {
			fail(fmt.Errorf("adding %q: its supervisor is gone", w.Name))
			return
		}
		n := &node{name: w.Name, kind: kindWorker, source: api.SourceHCL, parent: parent, worker: w}
		if err := t.register(n); err != nil {
			fail(fmt.Errorf("adding %q: %w", w.Name, err))
			return
		}
		*list = append(*list, w.Name)
		sem <- struct{}{}
		result, err := parent.run.AddAsync(ctx, t.workerSpec(n))
		if errors.Is(err, supervise.ErrSupervisorDown) {
			// Registered only: it starts when its supervisor does.
			err = parent.run.Register(ctx, t.workerSpec(n))
			<-sem
			if err != nil {
				fail(fmt.Errorf("adding %q: %w", w.Name, err))
			}
			return
		}
		if err != nil {
			<-sem
			fail(fmt.Errorf("adding %q: %w", w.Name, err))
			return
		}
		wg.Go(func() {
			if err := <-result; err != nil {
				t.logger.Warn(what+" worker's first start failed", "worker", w.Name, "error", err)
			}
			<-sem
		})
	}
	for _, w := range p.Restart {
		start(w, "restarted", &res.Restarted)
	}
	t.parallel(p.Resume, func(name string) {
		if n := nodeOf(name); n != nil {
			if err := n.parent.run.RestartChild(ctx, name); err != nil {
				t.logger.Warn("resumed worker's start failed", "worker", name, "error", err)
			}
		}
	})
	res.Resumed = append(res.Resumed, p.Resume...)
	for _, w := range p.Add {
		start(w, "added", &res.Added)
	}
	wg.Wait()
	t.logger.Info("configuration reloaded", "supervisors_added", res.SupervisorsAdded, "supervisors_resumed", res.SupervisorsResumed,
		"supervisors_removed", res.SupervisorsRemoved, "supervisors_reconfigured", res.SupervisorsReconfigured,
		"added", res.Added, "removed", res.Removed, "restarted", res.Restarted, "resumed", res.Resumed, "unchanged", res.Unchanged)
	if len(errs) > 0 {
		return res, fmt.Errorf("reload: %w", errors.Join(errs...))
	}
	return res, nil
}

func names(ws []*config.Worker) []string {
	out := make([]string, len(ws))
	for i, w := range ws {
		out[i] = w.Name
	}
	return out
}

// parallel runs fn for every name, up to StartConcurrency at once, and
// returns when all are done.
func (t *Tree) parallel(names []string, fn func(name string)) {
	sem := make(chan struct{}, t.concurrency())
	var wg sync.WaitGroup
	for _, name := range names {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			fn(name)
		})
	}
	wg.Wait()
}
