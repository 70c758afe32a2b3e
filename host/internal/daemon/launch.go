package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"

	"github.com/dynworkers/dynworkers/host/internal/broker"
	"github.com/dynworkers/dynworkers/host/internal/catalog"
	"github.com/dynworkers/dynworkers/host/internal/config"
	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/host/internal/monitor"
	"github.com/dynworkers/dynworkers/host/internal/pluginproc"
	"github.com/dynworkers/dynworkers/host/internal/supervise"
)

// launch starts one incarnation of a worker in a fresh plugin process,
// taken from the host's warm spares when they hold one of the binary. It
// resolves the class in the catalog at each start, so the binary and
// checksum used are the ones recorded at that moment. It is the tree's
// Options.Launch.
func (d *Daemon) launch(ctx context.Context, w *config.Worker, children pluginproc.ChildHost) (supervise.Instance, error) {
	class, err := d.Catalog().Lookup(w.Class)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", supervise.ErrPermanent, err)
	}
	cfgJSON, err := w.ConfigJSON()
	if err != nil {
		return nil, fmt.Errorf("%w: encoding config: %w", supervise.ErrPermanent, err)
	}
	logger := d.logger.Named("worker")
	opts := pluginproc.Options{
		Path:           class.Binary.Path,
		Checksum:       class.Binary.SHA256,
		WorkerName:     w.Name,
		Class:          class.Name,
		ConfigJSON:     cfgJSON,
		SystemID:       d.cfg.SystemID,
		HostName:       d.cfg.Host.Name,
		StartTimeout:   w.StartTimeout,
		HealthInterval: w.HealthInterval,
		HealthTimeout:  w.HealthTimeout,
		Logger:         logger,
		Spares:         d.spares,
		ChildHost:      children,
		MetricSink:     d.workerMetrics.Sink(monitor.WorkerPrefix(d.cfg.SystemID, d.cfg.Host.Name, w.Name)),
	}
	if bus := d.currentBus(); bus != nil {
		opts.BusHost = broker.NewHostBridge(bus, logger.With("worker", w.Name))
	}
	p, err := pluginproc.Start(ctx, opts)
	if err != nil {
		if pluginproc.IsPermanent(err) {
			return nil, fmt.Errorf("%w: %w", supervise.ErrPermanent, err)
		}
		return nil, err
	}
	return p, nil
}

// warmSpare keeps a warm spare of the binary of a worker a control message
// started: clients wait for control starts, so the next start of it (or a
// restart) only costs a Start RPC.
func (d *Daemon) warmSpare(w *config.Worker) {
	if class, err := d.Catalog().Lookup(w.Class); err == nil {
		d.spares.Warm(pluginproc.Options{Path: class.Binary.Path, Checksum: class.Binary.SHA256, Logger: d.logger.Named("worker")})
	}
}

// resolve validates a class and config with the same code path as HCL (the
// class's schema through hcldec) and builds the worker they describe, under
// the supervisor of that path. It is the tree's Options.Resolve.
func (d *Daemon) resolve(name, className string, cfg json.RawMessage, supervisor string) (*config.Worker, *control.Error) {
	class, err := d.Catalog().Lookup(className)
	if err != nil {
		code := control.CodeUnknownClass
		if errors.Is(err, catalog.ErrClassConflict) {
			code = control.CodeConflict
		}
		return nil, &control.Error{Code: code, Message: err.Error()}
	}
	val, diags := config.DecodeWorkerConfigJSON(class.Schema, cfg, "worker_config")
	if diags.HasErrors() {
		return nil, configError(name, class.Name, diags)
	}
	return config.NewWorker(name, supervisor, class.Name, class.Schema, val), nil
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
