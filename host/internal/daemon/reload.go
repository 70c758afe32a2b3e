package daemon

import (
	"context"
	"errors"
	"fmt"
	"github.com/dynworkers/dynworkers/host/internal/api"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"

	"github.com/dynworkers/dynworkers/host/internal/config"
	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/host/internal/supervise"
)

// Reload re-reads the HCL configuration and rescans the plugin directory,
// then applies the difference to the HCL workers: it starts what was added,
// stops what was removed, restarts what changed (by spec hash) and leaves
// the rest alone, same process. HCL workers stopped by a control message
// are started again. Dynamic workers are not touched. A configuration with
// errors changes nothing: the error carries every diagnostic.
//
// Supervisors are diffed by path: a new one is started (after its parent's
// existing children: a reload appends), a removed one is stopped with its
// subtree, and one whose strategy, intensity or period changed is
// reconfigured in place without restarting its children. A reload that
// would remove a supervisor holding workers or supervisors started by
// control messages is refused.
func (d *Daemon) Reload(ctx context.Context) (api.ReloadResult, error) {
	d.reg.opMu.Lock()
	defer d.reg.opMu.Unlock()

	file, diags := config.Parse(d.opts.ConfigPath)
	if file == nil {
		return api.ReloadResult{}, reloadError(diags)
	}
	cat, err := ScanCatalog(ctx, file.Host, d.logger)
	if err != nil {
		return api.ReloadResult{}, &control.Error{Code: control.CodeInvalidConfig, Message: "reload: " + err.Error()}
	}
	cfg, more := file.Decode(cat)
	diags = append(diags, more...)
	if diags.HasErrors() || cfg == nil {
		return api.ReloadResult{}, reloadError(diags)
	}
	// Plan everything before changing anything. Supervisors by path: the
	// existing node, or a new one for a path the host does not have.
	nodes := map[string]*supNode{}
	var newSups []*supNode
	var reconfigure []*supNode
	var resumeSups []*supNode // stopped by stop_supervisor, parents first
	for _, sn := range d.supNodes() {
		nodes[sn.cfg.Path] = sn
	}
	var planErr error
	walkSupervisors(cfg.Root, func(s *config.Supervisor) {
		if sn, ok := nodes[s.Path]; ok {
			if sn.source != api.SourceHCL && planErr == nil {
				planErr = control.Errorf(control.CodeConflict,
					"reload: the configuration adds supervisor %q, but one of that path was started by a control message; stop it first", s.Path)
			}
			if !sameSettings(sn, s) {
				reconfigure = append(reconfigure, &supNode{cfg: s, sup: sn.sup, parent: sn.parent, source: api.SourceHCL})
			}
			if stoppedByRequest(sn) {
				resumeSups = append(resumeSups, sn)
			}
			return
		}
		parentPath := s.Path[:strings.LastIndex(s.Path, "/")]
		sn := &supNode{cfg: s, parent: nodes[parentPath], source: api.SourceHCL}
		nodes[s.Path] = sn
		newSups = append(newSups, sn)
	})
	if planErr != nil {
		return api.ReloadResult{}, planErr
	}
	var goneSups []*supNode // deepest first
	for _, sn := range slices.Backward(d.supNodes()) {
		if sn.source == api.SourceHCL && findSupervisor(cfg.Root, sn.cfg.Path) == nil {
			for _, x := range d.subtree(sn) {
				if x.source == api.SourceControl { // (a hybrid's children go with the hybrid)
					return api.ReloadResult{}, control.Errorf(control.CodeConflict,
						"reload: supervisor %q is gone from the configuration, but supervisor %q started by a control message runs under it; stop it first", sn.cfg.Path, x.cfg.Path)
				}
			}
			for _, w := range d.reg.dynamic {
				if x, ok := d.supervisorByPath(w.Supervisor); ok && slices.Contains(d.subtree(sn), x) {
					return api.ReloadResult{}, control.Errorf(control.CodeConflict,
						"reload: supervisor %q is gone from the configuration, but worker %q started by a control message runs under it; stop it first", sn.cfg.Path, w.Name)
				}
			}
			goneSups = append(goneSups, sn)
		}
	}

	type change struct {
		w  *config.Worker
		sn *supNode
	}
	wanted := map[string]change{}
	var order []string
	walkSupervisors(cfg.Root, func(s *config.Supervisor) {
		for _, n := range s.Children {
			if n.Worker != nil {
				wanted[n.Worker.Name] = change{n.Worker, nodes[s.Path]}
				order = append(order, n.Worker.Name)
			}
		}
	})
	res := api.ReloadResult{Added: []string{}, Removed: []string{}, Restarted: []string{}, Resumed: []string{}}
	var add, restart []change
	var remove, resume []string
	d.reg.mu.RLock()
	for _, name := range order {
		c := wanted[name]
		old, ok := d.reg.workers[name]
		switch {
		case !ok:
			add = append(add, c)
		case old.source != api.SourceHCL:
			d.reg.mu.RUnlock()
			return api.ReloadResult{}, control.Errorf(control.CodeConflict,
				"reload: the configuration adds worker %q, but a worker of that name was started by a control message; stop it first", name)
		case old.cfg.SpecHash() != c.w.SpecHash() || old.sup != c.sn:
			restart = append(restart, c)
		default:
			if cs, ok := c.sn.sup.Child(name); ok && cs.State == supervise.StateStopped && c.sn.sup.Info().State == supervise.SupervisorRunning {
				resume = append(resume, name)
			} else {
				res.Unchanged++
			}
		}
	}
	for name, e := range d.reg.workers {
		if _, ok := wanted[name]; !ok && e.source == api.SourceHCL {
			remove = append(remove, name)
		}
	}
	d.reg.mu.RUnlock()
	slices.Sort(remove)
	res.Ignored = ignoredChanges(d.cfg, cfg)

	// Apply: the new catalog first, so that new starts use rescanned
	// binaries; then removals of workers (by name: deterministic) and of
	// supervisors (deepest first), reconfigurations, new supervisors
	// (parents first), restarts, resumptions, additions.
	d.catalog.Store(cat)
	var errs []error
	for _, name := range remove {
		e, _ := d.reg.get(name)
		if err := e.sup.sup.Remove(ctx, name); err != nil && !errors.Is(err, supervise.ErrNotFound) {
			errs = append(errs, fmt.Errorf("removing %q: %w", name, err))
		}
		d.reg.put(name, nil)
		res.Removed = append(res.Removed, name)
	}
	for _, sn := range goneSups {
		if err := sn.parent.sup.Remove(ctx, sn.cfg.Name); err != nil && !errors.Is(err, supervise.ErrNotFound) {
			errs = append(errs, fmt.Errorf("removing supervisor %q: %w", sn.cfg.Path, err))
		}
		d.dropSupervisor(sn)
		res.SupervisorsRemoved = append(res.SupervisorsRemoved, sn.cfg.Path)
	}
	for _, r := range reconfigure {
		if err := r.sup.Reconfigure(ctx, supervise.Strategy(r.cfg.Strategy), supIntensity(r.cfg.Intensity), r.cfg.Period); err != nil {
			errs = append(errs, fmt.Errorf("reconfiguring supervisor %q: %w", r.cfg.Path, err))
			continue
		}
		res.SupervisorsReconfigured = append(res.SupervisorsReconfigured, r.cfg.Path)
	}
	for _, sn := range resumeSups {
		var err error
		if sn.parent == nil {
			err = sn.sup.Up(ctx)
		} else {
			err = sn.parent.sup.RestartChild(ctx, sn.cfg.Name)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("starting supervisor %q again: %w", sn.cfg.Path, err))
			continue
		}
		res.SupervisorsResumed = append(res.SupervisorsResumed, sn.cfg.Path)
	}
	for _, sn := range newSups {
		made, err := d.newSupervisor(sn.cfg, sn.parent, api.SourceHCL)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		sn.sup = made.sup
		d.supMu.Lock()
		d.sups = append(d.sups, sn)
		d.supMu.Unlock()
		err = sn.parent.sup.Add(ctx, supChildSpec(sn))
		if errors.Is(err, supervise.ErrSupervisorDown) {
			// Its parent is down: it starts with it. A supervisor is
			// made running, so take it down to match.
			if err = sn.sup.Down(ctx); err == nil {
				err = sn.parent.sup.Register(ctx, supChildSpec(sn))
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("adding supervisor %q: %w", sn.cfg.Path, err))
		}
		res.SupervisorsAdded = append(res.SupervisorsAdded, sn.cfg.Path)
	}
	for _, c := range restart {
		old, _ := d.reg.get(c.w.Name)
		// (ErrStopped: its old supervisor was removed above, and it with it.)
		if err := old.sup.sup.Remove(ctx, c.w.Name); err != nil && !errors.Is(err, supervise.ErrNotFound) && !errors.Is(err, supervise.ErrStopped) {
			errs = append(errs, fmt.Errorf("stopping %q for its new spec: %w", c.w.Name, err))
			continue
		}
		d.reg.put(c.w.Name, &entry{cfg: c.w, source: api.SourceHCL, sup: c.sn})
		if err := d.addWorker(ctx, c.sn, c.w); err != nil {
			d.logger.Warn("restarted worker's first start failed", "worker", c.w.Name, "error", err)
		}
		res.Restarted = append(res.Restarted, c.w.Name)
	}
	for _, name := range resume {
		e, _ := d.reg.get(name)
		if err := e.sup.sup.RestartChild(ctx, name); err != nil {
			d.logger.Warn("resumed worker's start failed", "worker", name, "error", err)
		}
		res.Resumed = append(res.Resumed, name)
	}
	for _, c := range add {
		d.reg.put(c.w.Name, &entry{cfg: c.w, source: api.SourceHCL, sup: c.sn})
		if err := d.addWorker(ctx, c.sn, c.w); err != nil {
			d.logger.Warn("added worker's first start failed", "worker", c.w.Name, "error", err)
		}
		res.Added = append(res.Added, c.w.Name)
	}
	d.logger.Info("configuration reloaded", "supervisors_added", res.SupervisorsAdded, "supervisors_resumed", res.SupervisorsResumed,
		"supervisors_removed", res.SupervisorsRemoved, "supervisors_reconfigured", res.SupervisorsReconfigured,
		"added", res.Added, "removed", res.Removed,
		"restarted", res.Restarted, "resumed", res.Resumed, "unchanged", res.Unchanged, "ignored", res.Ignored)
	if len(errs) > 0 {
		return res, fmt.Errorf("reload: %w", errors.Join(errs...))
	}
	return res, nil
}

// reloadError turns configuration diagnostics into the reload's error.
func reloadError(diags hcl.Diagnostics) *control.Error {
	e := &control.Error{Code: control.CodeInvalidConfig, Message: "the configuration has errors; nothing was changed"}
	for _, d := range diags.Errs() {
		var hd *hcl.Diagnostic
		if !errors.As(d, &hd) {
			continue
		}
		det := control.Detail{Summary: hd.Summary, Detail: hd.Detail}
		if hd.Subject != nil {
			det.Summary = fmt.Sprintf("%s: %s", hd.Subject.String(), hd.Summary)
		}
		e.Details = append(e.Details, det)
	}
	return e
}

// stoppedByRequest reports whether sn was stopped by stop_supervisor: the
// root is down but not failed, or another is stopped in its running parent.
func stoppedByRequest(sn *supNode) bool {
	if sn.parent == nil {
		return sn.sup.Info().State == supervise.SupervisorStopped
	}
	cs, ok := sn.parent.sup.Child(sn.cfg.Name)
	return ok && cs.State == supervise.StateStopped && sn.parent.sup.Info().State == supervise.SupervisorRunning
}

// sameSettings reports whether sn runs with the settings of s.
func sameSettings(sn *supNode, s *config.Supervisor) bool {
	info := sn.sup.Info()
	return string(info.Strategy) == s.Strategy && info.Intensity == s.Intensity && info.Period == s.Period
}

func walkSupervisors(s *config.Supervisor, fn func(*config.Supervisor)) {
	fn(s)
	for _, n := range s.Children {
		if n.Supervisor != nil {
			walkSupervisors(n.Supervisor, fn)
		}
	}
}

func findSupervisor(root *config.Supervisor, path string) *config.Supervisor {
	var found *config.Supervisor
	walkSupervisors(root, func(s *config.Supervisor) {
		if s.Path == path {
			found = s
		}
	})
	return found
}

// ignoredChanges lists the host-level settings that differ between a and b;
// they apply at the next start of the host.
func ignoredChanges(a, b *config.Config) []string {
	var out []string
	if a.SystemID != b.SystemID {
		out = append(out, "system_id")
	}
	if a.Host != b.Host {
		out = append(out, "host")
	}
	if (a.AMQP == nil) != (b.AMQP == nil) || (a.AMQP != nil && a.AMQP.URL != b.AMQP.URL) {
		out = append(out, "amqp")
	}
	return out
}

// addWorker adds an HCL worker to its supervisor and starts it; if the
// supervisor is down (failed or stopped) the worker is only registered, and
// starts when the supervisor does.
func (d *Daemon) addWorker(ctx context.Context, sn *supNode, w *config.Worker) error {
	err := sn.sup.Add(ctx, d.childSpec(w))
	if errors.Is(err, supervise.ErrSupervisorDown) {
		return sn.sup.Register(ctx, d.childSpec(w))
	}
	return err
}
