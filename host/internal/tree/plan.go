package tree

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/config"
	"github.com/dynworkers/dynworkers/host/internal/control"
)

// Running is what a reload compares the configuration with: every
// supervisor and worker the host has, whatever its source.
type Running struct {
	Supervisors []RunningSupervisor // parents before their children
	Workers     []RunningWorker
}

// RunningSupervisor is one supervisor of Running.
type RunningSupervisor struct {
	Name, Path, Parent string // Parent is "" for the root
	Source             string
	Strategy           string
	Intensity          int // as configured: 0 allows no restart
	Period             time.Duration
	// StoppedByRequest is set for a supervisor that stop_supervisor took
	// down (the root down but not failed, another stopped in its running
	// parent): a reload starts it again.
	StoppedByRequest bool
}

// RunningWorker is one worker of Running.
type RunningWorker struct {
	Name       string
	Supervisor string // the path of its supervisor
	Source     string
	Owner      string // the hybrid that started it, for api.SourceHybrid
	SpecHash   string
	// StoppedByRequest is set for an HCL worker that stop_worker stopped
	// (in a running supervisor): a reload starts it again.
	StoppedByRequest bool
}

// Plan is what a reload changes, worked out before anything changes.
type Plan struct {
	// RemoveWorkers are HCL workers gone from the configuration, by name.
	RemoveWorkers []string
	// RemoveSupervisors are HCL supervisors gone from the configuration,
	// deepest first; each goes with its whole subtree.
	RemoveSupervisors []string
	// Reconfigure are supervisors whose strategy, intensity or period
	// changed: applied in place, their children keep running.
	Reconfigure []*config.Supervisor
	// ResumeSupervisors are HCL supervisors stopped by stop_supervisor,
	// parents first.
	ResumeSupervisors []string
	// AddSupervisors are new supervisors, parents first.
	AddSupervisors []*config.Supervisor
	// Restart are HCL workers whose spec or supervisor changed, in
	// declared order; Resume, HCL workers stopped by stop_worker; Add, new
	// HCL workers, in declared order.
	Restart []*config.Worker
	Resume  []string
	Add     []*config.Worker
	// Unchanged counts the HCL workers left alone.
	Unchanged int
}

// Names returns every name the plan touches: the workers and supervisors
// it adds, removes, restarts, resumes or reconfigures, and every name in
// the subtrees it removes (from running).
func (p Plan) Names(running Running) []string {
	var out []string
	out = append(out, p.RemoveWorkers...)
	out = append(out, p.Resume...)
	for _, w := range p.Restart {
		out = append(out, w.Name)
	}
	for _, w := range p.Add {
		out = append(out, w.Name)
	}
	for _, s := range p.Reconfigure {
		out = append(out, s.Name)
	}
	for _, s := range p.AddSupervisors {
		out = append(out, s.Name)
	}
	for _, path := range append(slices.Clone(p.RemoveSupervisors), p.ResumeSupervisors...) {
		for _, s := range running.Supervisors {
			if under(s.Path, path) {
				out = append(out, s.Name)
			}
		}
		for _, w := range running.Workers {
			if under(w.Supervisor, path) {
				out = append(out, w.Name)
			}
		}
	}
	return slices.Compact(slices.Sorted(slices.Values(out)))
}

// under reports whether path is root or below it.
func under(path, root string) bool {
	return path == root || strings.HasPrefix(path, root+"/")
}

// plan works out the reload from running to the configuration wanted. It
// changes nothing and calls nothing: every case is a table test. It fails
// with a conflict (and then nothing may change) when the configuration
// takes a name or a path that a control message, a hybrid or the cluster
// holds, or removes a supervisor under which control-started workers or
// supervisors, or cluster workers, run. Workers of the cluster (source
// api.SourceCluster), like control-started ones, are never in a plan: a
// reload leaves them running.
func plan(running Running, wanted *config.Supervisor) (Plan, error) {
	var p Plan
	sups := map[string]RunningSupervisor{}
	for _, s := range running.Supervisors {
		sups[s.Path] = s
	}
	workers := map[string]RunningWorker{}
	for _, w := range running.Workers {
		workers[w.Name] = w
	}
	wantSups := map[string]bool{}
	var err error
	walk(wanted, func(s *config.Supervisor) {
		wantSups[s.Path] = true
		if err != nil {
			return
		}
		old, ok := sups[s.Path]
		if !ok {
			if w, taken := workers[s.Name]; taken {
				err = control.Errorf(control.CodeConflict,
					"reload: the configuration adds supervisor %q, but the name %q is taken by worker %q (%s)", s.Path, s.Name, w.Name, w.Source)
				return
			}
			for _, o := range running.Supervisors {
				if o.Name == s.Name {
					err = control.Errorf(control.CodeConflict,
						"reload: the configuration adds supervisor %q, but supervisor %q has that name", s.Path, o.Path)
					return
				}
			}
			p.AddSupervisors = append(p.AddSupervisors, s)
			return
		}
		if old.Source != api.SourceHCL {
			err = control.Errorf(control.CodeConflict,
				"reload: the configuration adds supervisor %q, but one of that path was started by a control message; stop it first", s.Path)
			return
		}
		if old.Strategy != s.Strategy || old.Intensity != s.Intensity || old.Period != s.Period {
			p.Reconfigure = append(p.Reconfigure, s)
		}
		if old.StoppedByRequest {
			p.ResumeSupervisors = append(p.ResumeSupervisors, s.Path)
		}
	})
	if err != nil {
		return Plan{}, err
	}
	for _, s := range slices.Backward(running.Supervisors) {
		if s.Source != api.SourceHCL || wantSups[s.Path] {
			continue
		}
		for _, o := range running.Supervisors {
			if o.Source == api.SourceControl && under(o.Path, s.Path) {
				return Plan{}, control.Errorf(control.CodeConflict,
					"reload: supervisor %q is gone from the configuration, but supervisor %q started by a control message runs under it; stop it first", s.Path, o.Path)
			}
		}
		for _, w := range running.Workers {
			if w.Source == api.SourceControl && under(w.Supervisor, s.Path) {
				return Plan{}, control.Errorf(control.CodeConflict,
					"reload: supervisor %q is gone from the configuration, but worker %q started by a control message runs under it; stop it first", s.Path, w.Name)
			}
			if w.Source == api.SourceCluster && under(w.Supervisor, s.Path) {
				return Plan{}, control.Errorf(control.CodeConflict,
					"reload: supervisor %q is gone from the configuration, but cluster worker %q runs under it; drain this host (or stop the worker through the cluster) first", s.Path, w.Name)
			}
		}
		// A parent removed already takes this one with it.
		if !slices.ContainsFunc(p.RemoveSupervisors, func(r string) bool { return under(s.Path, r) }) {
			p.RemoveSupervisors = append(p.RemoveSupervisors, s.Path)
		}
	}
	// RemoveSupervisors was filled deepest first but may list a child
	// before finding its parent: keep only the topmost of each subtree.
	p.RemoveSupervisors = slices.DeleteFunc(p.RemoveSupervisors, func(path string) bool {
		return slices.ContainsFunc(p.RemoveSupervisors, func(r string) bool { return r != path && under(path, r) })
	})
	removed := func(path string) bool {
		return slices.ContainsFunc(p.RemoveSupervisors, func(r string) bool { return under(path, r) })
	}

	wantWorkers := map[string]bool{}
	walk(wanted, func(s *config.Supervisor) {
		for _, n := range s.Children {
			w := n.Worker
			if w == nil || err != nil {
				continue
			}
			wantWorkers[w.Name] = true
			old, ok := workers[w.Name]
			switch {
			case !ok:
				for _, o := range running.Supervisors {
					if o.Name == w.Name && !removed(o.Path) {
						err = control.Errorf(control.CodeConflict,
							"reload: the configuration adds worker %q, but supervisor %q has that name", w.Name, o.Path)
						return
					}
				}
				p.Add = append(p.Add, w)
			case old.Source == api.SourceHybrid:
				err = control.Errorf(control.CodeConflict,
					"reload: the configuration adds worker %q, but hybrid worker %q runs a child of that name", w.Name, old.Owner)
			case old.Source == api.SourceCluster:
				err = control.Errorf(control.CodeConflict,
					"reload: the configuration adds worker %q, but cluster worker %q runs on this host; stop it through the cluster first", w.Name, w.Name)
			case old.Source != api.SourceHCL:
				err = control.Errorf(control.CodeConflict,
					"reload: the configuration adds worker %q, but a worker of that name was started by a control message; stop it first", w.Name)
			case old.SpecHash != w.SpecHash() || old.Supervisor != s.Path:
				p.Restart = append(p.Restart, w)
			case old.StoppedByRequest && !removed(old.Supervisor):
				p.Resume = append(p.Resume, w.Name)
			default:
				p.Unchanged++
			}
		}
	})
	if err != nil {
		return Plan{}, err
	}
	for _, w := range running.Workers {
		if w.Source == api.SourceHCL && !wantWorkers[w.Name] {
			p.RemoveWorkers = append(p.RemoveWorkers, w.Name)
		}
	}
	slices.Sort(p.RemoveWorkers)
	return p, nil
}

func walk(s *config.Supervisor, fn func(*config.Supervisor)) {
	fn(s)
	for _, n := range s.Children {
		if n.Supervisor != nil {
			walk(n.Supervisor, fn)
		}
	}
}

// String summarises a plan, for logs and test failures.
func (p Plan) String() string {
	names := func(ws []*config.Worker) []string {
		out := make([]string, len(ws))
		for i, w := range ws {
			out[i] = w.Name
		}
		return out
	}
	paths := func(ss []*config.Supervisor) []string {
		out := make([]string, len(ss))
		for i, s := range ss {
			out[i] = s.Path
		}
		return out
	}
	return fmt.Sprintf("remove%v removeSups%v reconfigure%v resumeSups%v addSups%v restart%v resume%v add%v unchanged=%d",
		p.RemoveWorkers, p.RemoveSupervisors, paths(p.Reconfigure), p.ResumeSupervisors, paths(p.AddSupervisors),
		names(p.Restart), p.Resume, names(p.Add), p.Unchanged)
}
