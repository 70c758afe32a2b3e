package tree

import (
	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/config"
	"github.com/dynworkers/dynworkers/host/internal/pluginproc"
	"github.com/dynworkers/dynworkers/host/internal/supervise"
)

// WorkerInfo is one worker as the tree sees it: its status as the API shows
// it, and what the daemon needs besides. The API's Config is left empty:
// redacting it costs more than the rest of the listing, and the monitor,
// which lists every few seconds, does not need it (see WithConfig).
type WorkerInfo struct {
	api.Worker
	// Instance is the running incarnation, nil when none runs.
	Instance supervise.Instance
	// Spec is the worker's configuration, sensitive values in clear: for
	// the host's own use only.
	Spec *config.Worker
}

// WithConfig returns the worker's API status with its config, sensitive
// values redacted.
func (w WorkerInfo) WithConfig() api.Worker {
	out := w.Worker
	out.Config = w.Spec.RedactedConfig()
	return out
}

// Process returns the worker's plugin process, nil when none runs.
func (w WorkerInfo) Process() *pluginproc.Process { return ProcessOf(w.Instance) }

// ProcessOf returns the plugin process of a worker instance as found in
// supervise events and status, or nil if inst is none (e.g. a supervisor).
func ProcessOf(inst supervise.Instance) *pluginproc.Process {
	p, _ := supervise.Unwrap(inst).(*pluginproc.Process)
	return p
}

// Workers returns every worker, in tree order: depth first, each
// supervisor's children in declared (then start) order, a hybrid's
// children right after it.
func (t *Tree) Workers() []WorkerInfo {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []WorkerInfo
	var visit func(*node)
	visit = func(n *node) {
		for _, c := range n.children {
			if c.kind == kindSupervisor {
				visit(c)
				continue
			}
			if wi, ok := workerInfoLocked(c); ok {
				out = append(out, wi)
			}
			visit(c) // its hybrid children
		}
	}
	if t.root != nil {
		visit(t.root)
	}
	return out
}

// Worker returns the named worker.
func (t *Tree) Worker(name string) (WorkerInfo, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.nodes[name]
	if n == nil || n.kind != kindWorker {
		return WorkerInfo{}, false
	}
	return workerInfoLocked(n)
}

// workerInfoLocked describes worker n from its supervisor's status. A
// worker whose supervise child is not there (being replaced, or a hybrid's
// child between its registration and its Add) is left out.
func workerInfoLocked(n *node) (WorkerInfo, bool) {
	run := n.runner()
	if run == nil {
		return WorkerInfo{}, false
	}
	cs, ok := run.Child(n.name)
	if !ok {
		return WorkerInfo{}, false
	}
	w := api.Worker{
		Name:       n.name,
		Supervisor: n.supPath(),
		Class:      n.worker.Class,
		State:      string(cs.State),
		Since:      cs.Since,
		StartedAt:  cs.StartedAt,
		Restarts:   cs.Restarts,
		LastExitAt: cs.LastExitAt,
		Source:     n.source,
	}
	if p := ProcessOf(cs.Instance); p != nil {
		w.Pid = p.Pid()
	}
	if cs.LastExit != nil {
		w.LastExit = cs.LastExit.Error()
		w.LastExitReason = api.ExitReason(cs.LastExit)
	}
	if n.source == api.SourceHybrid {
		w.Owner = n.parent.name
	}
	return WorkerInfo{Worker: w, Instance: cs.Instance, Spec: n.worker}, true
}

// Supervisors returns every supervisor, in tree order; the supervisor of a
// hybrid's children (source hybrid) comes where its owner is.
func (t *Tree) Supervisors() []api.Supervisor {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []api.Supervisor
	var visit func(*node)
	visit = func(n *node) {
		out = append(out, supervisorStatusLocked(n))
		for _, c := range n.children {
			switch {
			case c.kind == kindSupervisor:
				visit(c)
			case c.fam != nil && c.fam.Current() != nil:
				out = append(out, familyStatus(c, c.fam.Current()))
			}
		}
	}
	if t.root != nil {
		visit(t.root)
	}
	return out
}

func supervisorStatusLocked(n *node) api.Supervisor {
	info := n.run.Info()
	st := api.Supervisor{
		Name: n.name, Path: n.sup.Path, Source: n.source,
		Strategy: string(info.Strategy), Intensity: info.Intensity, Period: info.Period.Seconds(),
		State: string(info.State), RestartsInPeriod: info.RestartsInPeriod, Since: info.Since,
		FailedAt: info.FailedAt,
	}
	if info.Failure != nil {
		st.Failure = info.Failure.Error()
	}
	if n.parent != nil {
		st.Parent = n.parent.sup.Path
		if cs, ok := n.parent.run.Child(n.name); ok {
			st.Restarts = cs.Restarts
			if info.State == supervise.SupervisorStopped && cs.State == supervise.StateFailed {
				// It failed once too often for its parent's budget.
				st.State = string(supervise.SupervisorFailed)
			}
		}
	}
	return st
}

// familyStatus describes the supervisor of a hybrid's children.
func familyStatus(owner *node, run *supervise.Supervisor) api.Supervisor {
	info := run.Info()
	st := api.Supervisor{
		Name: owner.name, Path: owner.familyPath(), Parent: owner.supPath(), Source: api.SourceHybrid,
		Strategy: string(info.Strategy), Intensity: info.Intensity, Period: info.Period.Seconds(),
		State: string(info.State), RestartsInPeriod: info.RestartsInPeriod, Since: info.Since, FailedAt: info.FailedAt,
	}
	if info.Failure != nil {
		st.Failure = info.Failure.Error()
	}
	return st
}
