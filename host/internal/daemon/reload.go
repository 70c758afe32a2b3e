package daemon

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/hashicorp/hcl/v2"

	"github.com/dynworkers/dynworkers/host/internal/config"
	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/host/internal/supervise"
)

// ReloadResult says what a reload changed.
type ReloadResult struct {
	Added     []string `json:"added"`     // HCL workers new in the configuration, started
	Removed   []string `json:"removed"`   // HCL workers gone from it, stopped
	Restarted []string `json:"restarted"` // HCL workers whose spec changed, restarted with the new one
	Resumed   []string `json:"resumed"`   // HCL workers stopped by a control message, started again
	Unchanged int      `json:"unchanged"` // HCL workers left alone (same process)
	// Ignored lists settings that changed but only take effect when the
	// host restarts (host block, amqp block, system_id).
	Ignored []string `json:"ignored,omitempty"`
}

// Reload re-reads the HCL configuration and rescans the plugin directory,
// then applies the difference to the HCL workers: it starts what was added,
// stops what was removed, restarts what changed (by spec hash) and leaves
// the rest alone, same process. HCL workers stopped by a control message
// are started again. Dynamic workers are not touched. A configuration with
// errors changes nothing: the error carries every diagnostic.
//
// This version cannot change the supervisor tree while running (adding,
// removing or reconfiguring supervisors): such a reload is refused, and a
// restart of the host applies it.
func (d *Daemon) Reload(ctx context.Context) (any, error) {
	d.reg.opMu.Lock()
	defer d.reg.opMu.Unlock()

	file, diags := config.Parse(d.opts.ConfigPath)
	if file == nil {
		return nil, reloadError(diags)
	}
	cat, err := ScanCatalog(ctx, file.Host, d.logger)
	if err != nil {
		return nil, &control.Error{Code: control.CodeInvalidConfig, Message: "reload: " + err.Error()}
	}
	cfg, more := file.Decode(cat)
	diags = append(diags, more...)
	if diags.HasErrors() || cfg == nil {
		return nil, reloadError(diags)
	}
	if err := sameSupervisors(d.cfg.Root, cfg.Root); err != nil {
		return nil, &control.Error{Code: control.CodeInvalidConfig,
			Message: fmt.Sprintf("reload: %v; restart the host to change supervisors", err)}
	}

	// Plan everything before changing anything.
	type change struct {
		w  *config.Worker
		sn *supNode
	}
	wanted := map[string]change{}
	var order []string
	for _, sn := range d.supNodes() {
		if sn.source != SourceHCL {
			continue
		}
		nsup := findSupervisor(cfg.Root, sn.cfg.Path)
		for _, n := range nsup.Children {
			if n.Worker != nil {
				wanted[n.Worker.Name] = change{n.Worker, sn}
				order = append(order, n.Worker.Name)
			}
		}
	}
	res := ReloadResult{Added: []string{}, Removed: []string{}, Restarted: []string{}, Resumed: []string{}}
	var add, restart []change
	var remove, resume []string
	d.reg.mu.RLock()
	for _, name := range order {
		c := wanted[name]
		old, ok := d.reg.workers[name]
		switch {
		case !ok:
			add = append(add, c)
		case old.source != SourceHCL:
			d.reg.mu.RUnlock()
			return nil, control.Errorf(control.CodeConflict,
				"reload: the configuration adds worker %q, but a worker of that name was started by a control message; stop it first", name)
		case old.cfg.SpecHash() != c.w.SpecHash() || old.sup != c.sn:
			restart = append(restart, c)
		default:
			if cs, ok := c.sn.sup.Child(name); ok && cs.State == supervise.StateStopped {
				resume = append(resume, name)
			} else {
				res.Unchanged++
			}
		}
	}
	for name, e := range d.reg.workers {
		if _, ok := wanted[name]; !ok && e.source == SourceHCL {
			remove = append(remove, name)
		}
	}
	d.reg.mu.RUnlock()
	slices.Sort(remove)
	res.Ignored = ignoredChanges(d.cfg, cfg)

	// Apply: the new catalog first, so that new starts use rescanned
	// binaries; then removals (in reverse of the old declared order would
	// be nicer; by name is deterministic), restarts, resumptions, additions.
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
	for _, c := range restart {
		old, _ := d.reg.get(c.w.Name)
		if err := old.sup.sup.Remove(ctx, c.w.Name); err != nil && !errors.Is(err, supervise.ErrNotFound) {
			errs = append(errs, fmt.Errorf("stopping %q for its new spec: %w", c.w.Name, err))
			continue
		}
		d.reg.put(c.w.Name, &entry{cfg: c.w, source: SourceHCL, sup: c.sn})
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
		d.reg.put(c.w.Name, &entry{cfg: c.w, source: SourceHCL, sup: c.sn})
		if err := d.addWorker(ctx, c.sn, c.w); err != nil {
			d.logger.Warn("added worker's first start failed", "worker", c.w.Name, "error", err)
		}
		res.Added = append(res.Added, c.w.Name)
	}
	d.logger.Info("configuration reloaded", "added", res.Added, "removed", res.Removed,
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

// sameSupervisors reports how the supervisor tree b differs from a, if it
// does: the same paths in the same order with the same settings.
func sameSupervisors(a, b *config.Supervisor) error {
	var pa, pb []*config.Supervisor
	walkSupervisors(a, func(s *config.Supervisor) { pa = append(pa, s) })
	walkSupervisors(b, func(s *config.Supervisor) { pb = append(pb, s) })
	if len(pa) != len(pb) {
		return fmt.Errorf("the configuration has %d supervisors instead of %d", len(pb), len(pa))
	}
	for i := range pa {
		x, y := pa[i], pb[i]
		if x.Path != y.Path {
			return fmt.Errorf("supervisor %q became %q", x.Path, y.Path)
		}
		if x.Strategy != y.Strategy || x.Intensity != y.Intensity || x.Period != y.Period {
			return fmt.Errorf("supervisor %q changed its strategy, intensity or period", x.Path)
		}
	}
	return nil
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
