package daemon

import (
	"context"
	"errors"
	"fmt"
	"github.com/dynworkers/dynworkers/host/internal/api"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/dynworkers/dynworkers/host/internal/catalog"
	"github.com/dynworkers/dynworkers/host/internal/config"
	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/host/internal/pluginproc"
	"github.com/dynworkers/dynworkers/host/internal/state"
	"github.com/dynworkers/dynworkers/host/internal/supervise"
)

// registry knows every worker of the host: where it came from, its spec and
// its supervisor. Control operations are serialised by opMu so that a
// persisted state always matches what runs.
type registry struct {
	opMu sync.Mutex // held for the whole of a mutating control operation

	mu      sync.RWMutex
	workers map[string]*entry
	store   *state.Store
	dynamic []state.Worker     // persisted dynamic workers, in start order
	dynSups []state.Supervisor // persisted dynamic supervisors, in start order
}

type entry struct {
	cfg    *config.Worker
	source string
	sup    *supNode
}

var _ control.Host = (*Daemon)(nil)

func (r *registry) get(name string) (*entry, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e, ok := r.workers[name]
	return e, ok
}

func (r *registry) put(name string, e *entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.workers == nil {
		r.workers = map[string]*entry{}
	}
	if e == nil {
		delete(r.workers, name)
		return
	}
	r.workers[name] = e
}

// resolveWorker validates a start request's class and config with the same
// code path as HCL (the class's schema through hcldec), and builds the
// worker it describes.
func (d *Daemon) resolveWorker(spec control.WorkerSpec, sn *supNode) (*config.Worker, *control.Error) {
	class, err := d.Catalog().Lookup(spec.Class)
	if err != nil {
		code := control.CodeUnknownClass
		if errors.Is(err, catalog.ErrClassConflict) {
			code = control.CodeConflict
		}
		return nil, &control.Error{Code: code, Message: err.Error()}
	}
	val, diags := config.DecodeWorkerConfigJSON(class.Schema, spec.Config, "worker_config")
	if diags.HasErrors() {
		return nil, configError(spec.Name, class.Name, diags)
	}
	return config.NewWorker(spec.Name, sn.cfg.Path, class.Name, class.Schema, val), nil
}

var quotedName = regexp.MustCompile(`"([a-z_][a-z0-9_]*)"`)

// configError turns config diagnostics into an invalid_config error whose
// details name the attribute at fault. The diagnostics never hold sensitive
// values (the config package scrubs them).
func configError(worker, class string, diags hcl.Diagnostics) *control.Error {
	e := &control.Error{Code: control.CodeInvalidConfig}
	var names []string
	for _, d := range diags.Errs() {
		var hd *hcl.Diagnostic
		if !errors.As(d, &hd) {
			continue
		}
		det := control.Detail{Summary: hd.Summary, Detail: hd.Detail}
		if m := quotedName.FindStringSubmatch(hd.Detail); m != nil {
			det.Attribute = m[1]
			names = append(names, m[1])
		}
		e.Details = append(e.Details, det)
	}
	e.Message = fmt.Sprintf("worker_config of worker %q (class %s) is invalid", worker, class)
	if len(names) > 0 {
		e.Message += ": " + strings.Join(slices.Compact(names), ", ")
	}
	return e
}

// StartWorker starts a worker asked for by a control message. It is
// idempotent: the same name and spec is a no-op. A different spec under a
// taken name is a conflict unless spec.Replace. The worker is persisted
// before it is started, so a start that was answered survives a crash of
// the host.
func (d *Daemon) StartWorker(ctx context.Context, spec control.WorkerSpec) (api.StartResult, error) {
	d.reg.opMu.Lock()
	defer d.reg.opMu.Unlock()

	if err := config.ValidateName(spec.Name); err != nil {
		return api.StartResult{}, &control.Error{Code: control.CodeInvalidConfig, Message: fmt.Sprintf("worker_name: %v", err)}
	}
	sn, ok := d.supervisorByPath(spec.Supervisor)
	if !ok {
		return api.StartResult{}, control.Errorf(control.CodeNotFound, "supervisor %q not found", spec.Supervisor)
	}
	w, cerr := d.resolveWorker(spec, sn)
	if cerr != nil {
		return api.StartResult{}, cerr
	}
	if sn.source == api.SourceHybrid {
		return api.StartResult{}, control.Errorf(control.CodeConflict,
			"supervisor %q holds the children of hybrid worker %q, which manages them itself", sn.cfg.Path, sn.cfg.Name)
	}
	if st := sn.sup.Info().State; st != supervise.SupervisorRunning {
		return api.StartResult{}, control.Errorf(control.CodeConflict,
			"supervisor %q is %s; start it again first (start_supervisor, or restart_worker on one of its workers)", sn.cfg.Path, st)
	}
	action := "started"
	if old, ok := d.reg.get(spec.Name); ok {
		switch {
		case old.source == api.SourceHCL:
			return api.StartResult{}, control.Errorf(control.CodeConflict,
				"worker %q is configured in HCL (%s); a control message cannot start another worker under its name", spec.Name, old.cfg.Range)
		case old.cfg.SpecHash() == w.SpecHash() && old.sup == sn:
			return d.startResult(spec.Name, "unchanged"), nil
		case !spec.Replace:
			return api.StartResult{}, control.Errorf(control.CodeConflict,
				"worker %q already runs with a different spec; send \"replace\": true to replace it", spec.Name)
		}
		action = "replaced"
	}
	cfgJSON, err := w.ConfigJSON()
	if err != nil {
		return api.StartResult{}, fmt.Errorf("encoding config of %q: %w", spec.Name, err)
	}
	rec := state.Worker{Name: spec.Name, Class: w.Class, Supervisor: sn.cfg.Path, Config: cfgJSON, CreatedAt: time.Now().UTC()}
	next := slices.DeleteFunc(slices.Clone(d.reg.dynamic), func(x state.Worker) bool { return x.Name == spec.Name })
	next = append(next, rec)
	if err := d.persist(next, d.reg.dynSups); err != nil {
		return api.StartResult{}, err
	}
	if action == "replaced" {
		old, _ := d.reg.get(spec.Name)
		if err := old.sup.sup.Remove(ctx, spec.Name); err != nil && !errors.Is(err, supervise.ErrNotFound) {
			d.logger.Error("removing the replaced worker", "worker", spec.Name, "error", err)
		}
	}
	d.reg.put(spec.Name, &entry{cfg: w, source: api.SourceControl, sup: sn})
	result, err := sn.sup.AddAsync(ctx, d.childSpec(w))
	if err != nil {
		return api.StartResult{}, fmt.Errorf("adding worker %q: %w", spec.Name, err)
	}
	select {
	case <-result: // the outcome shows in the state reported below
	case <-ctx.Done():
	}
	// Clients wait for control starts: keep a warm spare of this binary so
	// that the next start of it (or a restart) only costs a Start RPC.
	if class, err := d.Catalog().Lookup(w.Class); err == nil {
		d.spares.Warm(pluginproc.Options{Path: class.Binary.Path, Checksum: class.Binary.SHA256, Logger: d.logger.Named("worker")})
	}
	return d.startResult(spec.Name, action), nil
}

// persist saves the dynamic workers and supervisors and, once that
// succeeded, makes them the registry's.
func (d *Daemon) persist(workers []state.Worker, sups []state.Supervisor) error {
	if d.reg.store == nil {
		return errors.New("no state store")
	}
	if err := d.reg.store.Save(&state.State{Version: state.Version, Workers: workers, Supervisors: sups}); err != nil {
		return fmt.Errorf("persisting dynamic workers: %w", err)
	}
	d.reg.dynamic, d.reg.dynSups = workers, sups
	return nil
}

func (d *Daemon) startResult(name, action string) api.StartResult {
	r := api.StartResult{Worker: name, Action: action}
	if ws, ok := d.Worker(name); ok {
		r.Pid = ws.Pid
		r.State = ws.State
	}
	return r
}

// StopWorker stops a worker by control message. A dynamic worker is
// stopped and forgotten (removed from the persisted state first). A worker
// from HCL is stopped until the next reload or host restart.
func (d *Daemon) StopWorker(ctx context.Context, name string) error {
	d.reg.opMu.Lock()
	defer d.reg.opMu.Unlock()
	e, ok := d.reg.get(name)
	if !ok {
		return control.Errorf(control.CodeNotFound, "no worker named %q", name)
	}
	switch e.source {
	case api.SourceHCL:
		return e.sup.sup.StopChild(ctx, name)
	case api.SourceHybrid:
		return control.Errorf(control.CodeConflict,
			"worker %q is a child of hybrid worker %q, which manages it; stop %q instead", name, e.sup.cfg.Name, e.sup.cfg.Name)
	}
	next := slices.DeleteFunc(slices.Clone(d.reg.dynamic), func(x state.Worker) bool { return x.Name == name })
	if err := d.persist(next, d.reg.dynSups); err != nil {
		return err
	}
	d.reg.put(name, nil)
	if err := e.sup.sup.Remove(ctx, name); err != nil && !errors.Is(err, supervise.ErrNotFound) {
		return fmt.Errorf("stopping worker %q: %w", name, err)
	}
	return nil
}

// RestartWorker restarts a worker by hand, from any state, with a fresh
// restart budget. If its supervisor or one above it is down (failed, or
// stopped), the first of them that is down is started again with its whole
// subtree, which starts the worker afresh.
func (d *Daemon) RestartWorker(ctx context.Context, name string) error {
	e, ok := d.reg.get(name)
	if !ok {
		return control.Errorf(control.CodeNotFound, "no worker named %q", name)
	}
	revived, err := d.revive(ctx, e.sup)
	if err != nil {
		return &control.Error{Code: control.CodeInternal, Message: err.Error()}
	}
	if cs, ok := e.sup.sup.Child(name); revived && ok && cs.State == supervise.StateRunning {
		return nil
	}
	err = e.sup.sup.RestartChild(ctx, name)
	if errors.Is(err, supervise.ErrNotFound) {
		return control.Errorf(control.CodeNotFound, "no worker named %q", name)
	}
	if err != nil {
		// The worker is supervised and retried; say how its start went.
		return &control.Error{Code: control.CodeInternal, Message: fmt.Sprintf("worker %q restarted but its start failed: %v", name, err)}
	}
	return nil
}

// Status reports every worker, in tree order.
func (d *Daemon) Status(ctx context.Context) (api.Status, error) {
	snap := d.Snapshot()
	rep := api.Status{SystemID: d.cfg.SystemID, Host: d.cfg.Host.Name, Broker: d.brokerDescription(),
		Started: d.started, Process: new(processReport(snap)), Supervisors: d.Supervisors(), Workers: []api.Worker{}}
	for i := range rep.Supervisors {
		rep.Supervisors[i].Totals = supervisorTotals(snap, rep.Supervisors[i].Path)
	}
	for _, ws := range d.Workers() {
		wr := ws
		if ws.Pid != 0 {
			wr.Metrics = workerMetrics(snap, ws.Name, ws.Pid)
		}
		if e, ok := d.reg.get(ws.Name); ok {
			wr.Source = e.source
			wr.Config = e.cfg.RedactedConfig()
			if e.source == api.SourceHybrid {
				wr.Owner = e.sup.cfg.Name
			}
		}
		rep.Workers = append(rep.Workers, wr)
	}
	d.fillDetails(ctx, rep.Workers)
	return rep, nil
}

// Classes reports the plugin catalog.
func (d *Daemon) Classes(context.Context) (api.ClassList, error) {
	return ClassesReport(d.Catalog()), nil
}

// restoreDynamic starts the workers persisted by earlier control messages,
// in the order they were started. A worker that cannot be restored (its
// class is gone, its config no longer fits the schema, or HCL now uses its
// name) is logged and kept in the state file: nothing a client was told
// succeeded is dropped silently.
func (d *Daemon) restoreDynamic(ctx context.Context) int {
	// Control operations wait until the persisted workers are back, so a
	// start for a name being restored sees it.
	d.reg.opMu.Lock()
	defer d.reg.opMu.Unlock()
	d.restoreSupervisors(ctx)
	n := 0
	for _, rec := range d.reg.dynamic {
		if ctx.Err() != nil {
			break
		}
		if e, ok := d.reg.get(rec.Name); ok && e.source == api.SourceHCL {
			d.logger.Error("not restoring dynamic worker: HCL now configures a worker of that name", "worker", rec.Name)
			continue
		}
		sn, ok := d.supervisorByPath(rec.Supervisor)
		if !ok {
			d.logger.Error("not restoring dynamic worker: its supervisor is gone; it stays in the state file", "worker", rec.Name, "supervisor", rec.Supervisor)
			continue
		}
		w, cerr := d.resolveWorker(control.WorkerSpec{Name: rec.Name, Class: rec.Class, Config: rec.Config}, sn)
		if cerr != nil {
			d.logger.Error("not restoring dynamic worker; it stays in the state file", "worker", rec.Name, "error", cerr.Message)
			continue
		}
		d.reg.put(rec.Name, &entry{cfg: w, source: api.SourceControl, sup: sn})
		result, err := sn.sup.AddAsync(ctx, d.childSpec(w))
		if err != nil {
			d.logger.Error("restoring dynamic worker", "worker", rec.Name, "error", err)
			continue
		}
		n++
		select {
		case <-result:
		case <-ctx.Done():
		}
	}
	return n
}

// ClassesReport is the list_classes result: every class and every broken
// plugin file.
func ClassesReport(cat *catalog.Catalog) api.ClassList {
	out := api.ClassList{Classes: []api.Class{}, Broken: []api.BrokenFile{}}
	for _, c := range cat.Classes() {
		ci := api.Class{Name: c.Name, Aliases: c.Aliases, Description: c.Description, Version: c.Version,
			Binary: c.Binary.Path, SHA256: fmt.Sprintf("%x", c.Binary.SHA256), Schema: []api.Attribute{}}
		for _, a := range c.Schema {
			ci.Schema = append(ci.Schema, api.Attribute{Name: a.Name, Type: string(a.Type), Required: a.Required,
				Default: a.Default, Sensitive: a.Sensitive, Description: a.Description})
		}
		out.Classes = append(out.Classes, ci)
	}
	for _, p := range cat.Problems() {
		out.Broken = append(out.Broken, api.BrokenFile{Path: p.Path, Error: p.Err.Error()})
	}
	return out
}
