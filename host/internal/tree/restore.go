package tree

import (
	"context"
	"slices"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/host/internal/state"
)

// restore starts the supervisors (parents first) and then the workers
// persisted by earlier control messages, in the order they were started.
// One that cannot be restored (its parent or class is gone, its config no
// longer fits the schema, HCL now uses its name) is logged and kept in the
// state file: nothing a client was told succeeded is dropped silently.
// Each is restored under the lock of its name, so a control operation on
// it waits for it.
func (t *Tree) restore(ctx context.Context) int {
	// What the state file held when the host started: control messages
	// (over HTTP, which is up already) may add, replace or remove records
	// meanwhile, and those are theirs to start or stop.
	if t.opts.State == nil {
		return 0
	}
	for _, rec := range t.opts.State.Supervisors {
		if ctx.Err() != nil {
			return 0
		}
		unlock, err := t.locks.lock(ctx, rec.Name)
		if err != nil {
			return 0
		}
		t.mu.Lock()
		current := slices.Contains(t.dynS, rec)
		t.mu.Unlock()
		if current {
			t.restoreSupervisor(ctx, rec.Name, rec.Parent, rec.Strategy, rec.Intensity, rec.Period)
		}
		unlock()
	}
	n := 0
	for _, rec := range t.opts.State.Workers {
		unlock, err := t.locks.lock(ctx, rec.Name)
		if err != nil {
			break
		}
		t.mu.Lock()
		current := slices.ContainsFunc(t.dynW, func(w state.Worker) bool {
			return w.Name == rec.Name && w.CreatedAt.Equal(rec.CreatedAt)
		})
		t.mu.Unlock()
		if current && t.restoreWorker(ctx, rec.Name, rec.Class, rec.Supervisor, rec.Config) {
			n++
		}
		unlock()
	}
	return n
}

func (t *Tree) restoreSupervisor(ctx context.Context, name, parentPath, strategy string, intensity int, periodText string) {
	t.mu.Lock()
	parent := t.findSupervisorLocked(parentPath)
	taken := t.nodes[name]
	t.mu.Unlock()
	if parent == nil {
		t.logger.Error("not restoring supervisor: its parent is gone; it stays in the state file", "supervisor", name, "parent", parentPath)
		return
	}
	if taken != nil {
		if taken.source == api.SourceControl && taken.kind == kindSupervisor {
			t.logger.Info("not restoring supervisor: a control message started it meanwhile", "supervisor", name)
			return
		}
		t.logger.Error("not restoring supervisor: HCL now configures a worker or supervisor of that name; it stays in the state file", "supervisor", name)
		return
	}
	period, _ := time.ParseDuration(periodText) // checked by the state store
	if intensity == 0 {
		intensity = -1 // explicit: 0 allows no restart
	}
	cfg, cerr := supervisorConfig(control.SupervisorSpec{Name: name, Strategy: strategy, Intensity: intensity, Period: period}, parent)
	if cerr != nil {
		t.logger.Error("not restoring supervisor; it stays in the state file", "supervisor", name, "error", cerr.Message)
		return
	}
	if _, err := t.addSupervisor(ctx, cfg, parent, api.SourceControl); err != nil {
		t.logger.Error("restoring supervisor", "supervisor", name, "error", err)
	}
}

func (t *Tree) restoreWorker(ctx context.Context, name, class, supPath string, cfgJSON []byte) bool {
	t.mu.Lock()
	sn := t.findSupervisorLocked(supPath)
	old := t.nodes[name]
	t.mu.Unlock()
	if old != nil {
		if old.source == api.SourceControl {
			// Started by a control message that came while the host was
			// still restoring: that start wins, and persisted itself.
			t.logger.Info("not restoring dynamic worker: a control message started it meanwhile", "worker", name)
			return false
		}
		t.logger.Error("not restoring dynamic worker: HCL now configures a worker or supervisor of that name; it stays in the state file", "worker", name)
		return false
	}
	if sn == nil {
		t.logger.Error("not restoring dynamic worker: its supervisor is gone; it stays in the state file", "worker", name, "supervisor", supPath)
		return false
	}
	w, cerr := t.opts.Resolve(name, class, cfgJSON, sn.sup.Path)
	if cerr != nil {
		t.logger.Error("not restoring dynamic worker; it stays in the state file", "worker", name, "error", cerr.Message)
		return false
	}
	n := &node{name: name, kind: kindWorker, source: api.SourceControl, parent: sn, worker: w}
	if err := t.register(n); err != nil {
		t.logger.Error("restoring dynamic worker", "worker", name, "error", err)
		return false
	}
	result, err := sn.run.AddAsync(ctx, t.workerSpec(n))
	if err != nil {
		t.logger.Error("restoring dynamic worker", "worker", name, "error", err)
		t.mu.Lock()
		t.unregisterLocked(n)
		t.mu.Unlock()
		return false
	}
	select {
	case <-result:
	case <-ctx.Done():
	}
	return true
}
