package daemon

import (
	"context"
	"errors"
	"fmt"
	"github.com/dynworkers/dynworkers/host/internal/api"
	"slices"
	"strings"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/config"
	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/host/internal/state"
	"github.com/dynworkers/dynworkers/host/internal/supervise"
)

// The supervision tree: one supervise.Supervisor per supervisor, each but
// the root running as a child of its parent (supervise.AsChild), so that a
// supervisor that exceeds its restart intensity fails and its parent
// applies its own strategy to it, up to the root.

// supNode is one supervisor of the tree.
type supNode struct {
	cfg    *config.Supervisor // for a supervisor started at run time, one without children
	sup    *supervise.Supervisor
	parent *supNode // nil for the root
	source string   // api.SourceHCL or api.SourceControl
}

// Child-spec metadata that marks a supervisor child.
const (
	metaKind       = "kind"
	kindSupervisor = "supervisor"
)

// supervisorTimeout bounds the start and the stop of a supervisor child.
// Each of its own children is bounded by its own timeouts, so this only
// guards against a bug.
const supervisorTimeout = time.Hour

// supNodes returns the supervisors, depth first in declared order (those
// started at run time after the ones of HCL, in start order).
func (d *Daemon) supNodes() []*supNode {
	d.supMu.RLock()
	defer d.supMu.RUnlock()
	return slices.Clone(d.sups)
}

func (d *Daemon) root() *supNode {
	d.supMu.RLock()
	defer d.supMu.RUnlock()
	return d.sups[0]
}

// supervisorByPath finds a supervisor by its path ("root/campaign-a"), by
// its path without the root ("campaign-a"), by its name alone (names are
// unique in the host), or "" for the root.
func (d *Daemon) supervisorByPath(path string) (*supNode, bool) {
	path = strings.Trim(path, "/")
	sups := d.supNodes()
	if path == "" {
		return sups[0], true
	}
	for _, sn := range sups {
		if sn.cfg.Path == path || sn.cfg.Path == config.RootName+"/"+path {
			return sn, true
		}
	}
	if !strings.Contains(path, "/") {
		for _, sn := range sups {
			if sn.cfg.Name == path {
				return sn, true
			}
		}
	}
	return nil, false
}

// supIntensity converts a configured intensity, where 0 means that no
// restart is allowed, to supervise's, where 0 means the default.
func supIntensity(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

func (d *Daemon) newSupervisor(s *config.Supervisor, parent *supNode, source string) (*supNode, error) {
	sup, err := supervise.New(supervise.Spec{
		Name:      s.Path,
		Strategy:  supervise.Strategy(s.Strategy),
		Intensity: supIntensity(s.Intensity),
		Period:    s.Period,
		EventHook: d.onEvent,
	})
	if err != nil {
		return nil, fmt.Errorf("supervisor %q: %w", s.Path, err)
	}
	return &supNode{cfg: s, sup: sup, parent: parent, source: source}, nil
}

// build makes the supervisors of an HCL subtree, depth first, and
// registers its workers. Nothing starts: startAll adds the workers and the
// sub-supervisors to their parents.
func (d *Daemon) build(s *config.Supervisor, parent *supNode) error {
	sn, err := d.newSupervisor(s, parent, api.SourceHCL)
	if err != nil {
		return err
	}
	d.supMu.Lock()
	d.sups = append(d.sups, sn)
	d.supMu.Unlock()
	for _, n := range s.Children {
		if n.Worker != nil {
			d.reg.put(n.Worker.Name, &entry{cfg: n.Worker, source: api.SourceHCL, sup: sn})
		}
		if n.Supervisor != nil {
			if err := d.build(n.Supervisor, sn); err != nil {
				return err
			}
		}
	}
	return nil
}

// supChildSpec is the child spec of sub in its parent.
func supChildSpec(sub *supNode) supervise.ChildSpec {
	return supervise.ChildSpec{
		Name:            sub.cfg.Name,
		Service:         sub.sup.AsChild(),
		StartTimeout:    supervisorTimeout,
		ShutdownTimeout: supervisorTimeout,
		Meta:            map[string]string{metaKind: kindSupervisor, "path": sub.cfg.Path},
	}
}

func isSupervisorChild(cs supervise.ChildStatus) bool { return cs.Meta[metaKind] == kindSupervisor }

// Supervisors returns the status of every supervisor, in tree order.
func (d *Daemon) Supervisors() []api.Supervisor {
	var out []api.Supervisor
	for _, sn := range d.supNodes() {
		out = append(out, supervisorStatus(sn))
	}
	return out
}

func supervisorStatus(sn *supNode) api.Supervisor {
	info := sn.sup.Info()
	st := api.Supervisor{
		Name: sn.cfg.Name, Path: sn.cfg.Path, Source: sn.source,
		Strategy: string(info.Strategy), Intensity: info.Intensity, Period: info.Period.Seconds(),
		State: string(info.State), RestartsInPeriod: info.RestartsInPeriod, Since: info.Since,
		FailedAt: info.FailedAt,
	}
	if info.Failure != nil {
		st.Failure = info.Failure.Error()
	}
	if sn.parent != nil {
		st.Parent = sn.parent.cfg.Path
		if cs, ok := sn.parent.sup.Child(sn.cfg.Name); ok {
			st.Restarts = cs.Restarts
			if info.State == supervise.SupervisorStopped && cs.State == supervise.StateFailed {
				// It failed once too often for its parent's budget.
				st.State = string(supervise.SupervisorFailed)
			}
		}
	}
	return st
}

// revive makes sure every supervisor from the root down to sn runs: the
// first one that is down is started again (the root by Up, any other by a
// restart of it in its parent), which starts its whole subtree. It reports
// whether it started anything.
func (d *Daemon) revive(ctx context.Context, sn *supNode) (bool, error) {
	var chain []*supNode
	for n := sn; n != nil; n = n.parent {
		chain = append(chain, n)
	}
	slices.Reverse(chain)
	revived := false
	for _, n := range chain {
		if n.sup.Info().State == supervise.SupervisorRunning {
			continue
		}
		var err error
		if n.parent == nil {
			err = n.sup.Up(ctx)
		} else {
			err = n.parent.sup.RestartChild(ctx, n.cfg.Name)
		}
		if err != nil {
			return revived, fmt.Errorf("starting supervisor %q again: %w", n.cfg.Path, err)
		}
		revived = true
	}
	return revived, nil
}

// StartSupervisor starts a supervisor asked for by a control message, as a
// child of the parent it names, and persists it. A supervisor of that path
// with the same settings is left alone ("unchanged") or, if it is down,
// started again ("revived"); other settings are a conflict.
func (d *Daemon) StartSupervisor(ctx context.Context, spec control.SupervisorSpec) (api.SupervisorResult, error) {
	d.reg.opMu.Lock()
	defer d.reg.opMu.Unlock()

	parent, ok := d.supervisorByPath(spec.Parent)
	if !ok {
		return api.SupervisorResult{}, control.Errorf(control.CodeNotFound, "parent supervisor %q not found", spec.Parent)
	}
	if old := d.supervisorNamed(spec.Name); old != nil {
		return d.startExisting(ctx, old, spec, parent)
	}
	if parent.source == api.SourceHybrid {
		return api.SupervisorResult{}, control.Errorf(control.CodeConflict,
			"supervisor %q holds the children of hybrid worker %q, which manages them itself", parent.cfg.Path, parent.cfg.Name)
	}
	cfg, cerr := supervisorConfig(spec, parent)
	if cerr != nil {
		return api.SupervisorResult{}, cerr
	}
	if _, taken := d.reg.get(spec.Name); taken {
		return api.SupervisorResult{}, control.Errorf(control.CodeConflict, "the name %q is taken by a worker", spec.Name)
	}
	if _, taken := d.supervisorByPath(spec.Name); taken {
		return api.SupervisorResult{}, control.Errorf(control.CodeConflict, "the name %q is taken by another supervisor", spec.Name)
	}
	if st := parent.sup.Info().State; st != supervise.SupervisorRunning {
		return api.SupervisorResult{}, control.Errorf(control.CodeConflict,
			"parent supervisor %q is %s; start it again first (start_supervisor or restart_worker)", parent.cfg.Path, st)
	}
	rec := state.Supervisor{Name: cfg.Name, Parent: parent.cfg.Path, Strategy: cfg.Strategy, Intensity: cfg.Intensity,
		Period: cfg.Period.String(), CreatedAt: time.Now().UTC()}
	if err := d.persist(d.reg.dynamic, append(slices.Clone(d.reg.dynSups), rec)); err != nil {
		return api.SupervisorResult{}, err
	}
	sn, err := d.addSupervisor(ctx, cfg, parent)
	if err != nil {
		return api.SupervisorResult{}, err
	}
	return api.SupervisorResult{Supervisor: sn.cfg.Path, Action: "started", State: supervisorStatus(sn).State}, nil
}

// supervisorNamed returns the supervisor of that name (names are unique in
// the host), or nil.
func (d *Daemon) supervisorNamed(name string) *supNode {
	for _, sn := range d.supNodes() {
		if sn.cfg.Name == name {
			return sn
		}
	}
	return nil
}

// startExisting answers a start_supervisor of a supervisor that exists:
// the settings the request gives (and its parent, if given) must be the
// supervisor's; then a supervisor that is down is started again, with
// everything that is down above it, and one that runs is left alone.
func (d *Daemon) startExisting(ctx context.Context, old *supNode, spec control.SupervisorSpec, parent *supNode) (api.SupervisorResult, error) {
	info := old.sup.Info()
	var diffs []string
	if spec.Parent != "" && old.parent != parent {
		diffs = append(diffs, fmt.Sprintf("it runs under %q", old.parentPath()))
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
			"supervisor %q exists with other settings: %s", old.cfg.Path, strings.Join(diffs, ", "))
	}
	if old.source == api.SourceHybrid {
		return api.SupervisorResult{}, control.Errorf(control.CodeConflict,
			"supervisor %q holds the children of hybrid worker %q, which manages them itself", old.cfg.Path, old.cfg.Name)
	}
	revived, err := d.revive(ctx, old)
	if err != nil {
		return api.SupervisorResult{}, &control.Error{Code: control.CodeInternal, Message: err.Error()}
	}
	action := "unchanged"
	if revived {
		action = "revived"
	}
	return api.SupervisorResult{Supervisor: old.cfg.Path, Action: action, State: supervisorStatus(old).State}, nil
}

func (sn *supNode) parentPath() string {
	if sn.parent == nil {
		return ""
	}
	return sn.parent.cfg.Path
}

// supervisorConfig validates a start_supervisor request.
func supervisorConfig(spec control.SupervisorSpec, parent *supNode) (*config.Supervisor, *control.Error) {
	if err := config.ValidateName(spec.Name); err != nil {
		return nil, &control.Error{Code: control.CodeInvalidConfig, Message: fmt.Sprintf("supervisor_name: %v", err)}
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
	return &config.Supervisor{Name: spec.Name, Path: parent.cfg.Path + "/" + spec.Name, Strategy: string(st),
		Intensity: intensity, Period: period}, nil
}

// addSupervisor makes a supervisor started at run time and adds it to its
// parent.
func (d *Daemon) addSupervisor(ctx context.Context, cfg *config.Supervisor, parent *supNode) (*supNode, error) {
	sn, err := d.newSupervisor(cfg, parent, api.SourceControl)
	if err != nil {
		return nil, err
	}
	d.supMu.Lock()
	d.sups = append(d.sups, sn)
	d.supMu.Unlock()
	if err := parent.sup.Add(ctx, supChildSpec(sn)); err != nil {
		d.dropSupervisor(sn)
		return nil, fmt.Errorf("adding supervisor %q: %w", cfg.Path, err)
	}
	return sn, nil
}

// dropSupervisor forgets a supervisor that is no child of its parent any
// more, and ends its goroutine.
func (d *Daemon) dropSupervisor(sn *supNode) {
	d.supMu.Lock()
	d.sups = slices.DeleteFunc(d.sups, func(x *supNode) bool { return x == sn })
	d.supMu.Unlock()
	_ = sn.sup.Stop(context.Background())
}

// subtree returns sn and the supervisors below it, parents first.
func (d *Daemon) subtree(sn *supNode) []*supNode {
	out := []*supNode{sn}
	for _, x := range d.supNodes() {
		for p := x.parent; p != nil; p = p.parent {
			if p == sn {
				out = append(out, x)
				break
			}
		}
	}
	return out
}

// StopSupervisor stops a supervisor by control message. One from HCL is
// stopped with its subtree until the next reload or host restart (the root
// too: the host then runs no worker, but keeps answering). One started by a
// control message is removed with its subtree, its workers and
// supervisors, from the host and from the persisted state.
func (d *Daemon) StopSupervisor(ctx context.Context, path string) (api.SupervisorResult, error) {
	d.reg.opMu.Lock()
	defer d.reg.opMu.Unlock()
	sn, ok := d.supervisorByPath(path)
	if !ok || path == "" {
		return api.SupervisorResult{}, control.Errorf(control.CodeNotFound, "supervisor %q not found", path)
	}
	if sn.source == api.SourceHybrid {
		return api.SupervisorResult{}, control.Errorf(control.CodeConflict,
			"supervisor %q holds the children of hybrid worker %q; stop the worker instead", sn.cfg.Path, sn.cfg.Name)
	}
	if sn.source == api.SourceHCL {
		var err error
		if sn.parent == nil {
			err = sn.sup.Down(ctx)
		} else {
			err = sn.parent.sup.StopChild(ctx, sn.cfg.Name)
		}
		if err != nil {
			return api.SupervisorResult{}, fmt.Errorf("stopping supervisor %q: %w", sn.cfg.Path, err)
		}
		return api.SupervisorResult{Supervisor: sn.cfg.Path, Action: "stopped", State: supervisorStatus(sn).State}, nil
	}
	tree := d.subtree(sn)
	for _, x := range tree {
		if x.source == api.SourceHCL {
			return api.SupervisorResult{}, control.Errorf(control.CodeConflict,
				"supervisor %q has supervisor %q from HCL below it", sn.cfg.Path, x.cfg.Path)
		}
	}
	inTree := func(p string) bool {
		return slices.ContainsFunc(tree, func(x *supNode) bool { return x.cfg.Path == p })
	}
	var removed []string
	workers := slices.DeleteFunc(slices.Clone(d.reg.dynamic), func(w state.Worker) bool {
		if x, ok := d.supervisorByPath(w.Supervisor); ok && inTree(x.cfg.Path) {
			removed = append(removed, w.Name)
			return true
		}
		return false
	})
	sups := slices.DeleteFunc(slices.Clone(d.reg.dynSups), func(s state.Supervisor) bool {
		if inTree(s.Parent + "/" + s.Name) {
			removed = append(removed, s.Parent+"/"+s.Name)
			return true
		}
		return false
	})
	if err := d.persist(workers, sups); err != nil {
		return api.SupervisorResult{}, err
	}
	// Removing it from its parent stops the subtree, deepest first.
	if err := sn.parent.sup.Remove(ctx, sn.cfg.Name); err != nil && !errors.Is(err, supervise.ErrNotFound) {
		return api.SupervisorResult{}, fmt.Errorf("stopping supervisor %q: %w", sn.cfg.Path, err)
	}
	for _, x := range tree {
		d.dropSupervisor(x)
	}
	d.reg.mu.Lock()
	for name, e := range d.reg.workers {
		if slices.Contains(tree, e.sup) {
			delete(d.reg.workers, name)
		}
	}
	d.reg.mu.Unlock()
	return api.SupervisorResult{Supervisor: sn.cfg.Path, Action: "removed", State: string(supervise.SupervisorStopped), Removed: removed}, nil
}

// restoreSupervisors starts the supervisors persisted by earlier control
// messages, parents first. One that cannot be restored is logged and kept
// in the state file.
func (d *Daemon) restoreSupervisors(ctx context.Context) {
	for _, rec := range d.reg.dynSups {
		parent, ok := d.supervisorByPath(rec.Parent)
		if !ok {
			d.logger.Error("not restoring supervisor: its parent is gone; it stays in the state file", "supervisor", rec.Name, "parent", rec.Parent)
			continue
		}
		period, _ := time.ParseDuration(rec.Period) // checked by the state store
		intensity := rec.Intensity                  // explicit: 0 allows no restart
		if intensity == 0 {
			intensity = -1
		}
		cfg, cerr := supervisorConfig(control.SupervisorSpec{Name: rec.Name, Strategy: rec.Strategy, Intensity: intensity, Period: period}, parent)
		if cerr != nil {
			d.logger.Error("not restoring supervisor; it stays in the state file", "supervisor", rec.Name, "error", cerr.Message)
			continue
		}
		if _, taken := d.supervisorByPath(cfg.Path); taken {
			d.logger.Error("not restoring supervisor: HCL now configures one of that name", "supervisor", rec.Name)
			continue
		}
		if _, taken := d.reg.get(rec.Name); taken {
			d.logger.Error("not restoring supervisor: HCL now configures a worker of that name", "supervisor", rec.Name)
			continue
		}
		if _, err := d.addSupervisor(ctx, cfg, parent); err != nil {
			d.logger.Error("restoring supervisor", "supervisor", rec.Name, "error", err)
		}
	}
}
