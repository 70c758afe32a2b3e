package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/dynworkers/dynworkers/host/internal/broker"
	"github.com/dynworkers/dynworkers/host/internal/catalog"
	"github.com/dynworkers/dynworkers/host/internal/config"
	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/host/internal/monitor"
	"github.com/dynworkers/dynworkers/host/internal/pluginproc"
	"github.com/dynworkers/dynworkers/host/internal/scrub"
	"github.com/dynworkers/dynworkers/host/internal/supervise"
	"github.com/dynworkers/dynworkers/internal/wire"
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
	// Everything the worker says is scrubbed of its sensitive values (and
	// of its owner's, for a hybrid's child) where it enters the host.
	scrubber := w.Scrubber()
	opts := pluginproc.Options{
		Path:           class.Binary.Path,
		Checksum:       class.Binary.SHA256,
		Exec:           d.exec,
		WorkerName:     w.Name,
		Class:          class.Name,
		ConfigJSON:     cfgJSON,
		SystemID:       d.cfg.SystemID,
		HostName:       d.cfg.Host.Name,
		StartTimeout:   w.StartTimeout,
		HealthInterval: w.HealthInterval,
		HealthTimeout:  w.HealthTimeout,
		Limits:         w.Limits,
		Logger:         logger,
		Scrubber:       scrubber,
		LogLimit:       pluginLogLimit(d.cfg.Host.PluginLog),
		Log:            d.workerLog(w.Name),
		Env:            d.cfg.Host.PluginEnvList(),
		Spares:         d.spares,
		ChildHost:      children,
	}
	sink := d.workerMetrics.Sink(monitor.WorkerPrefix(d.cfg.SystemID, d.cfg.Host.Name, w.Name))
	opts.MetricSink = sink
	if bridges := d.currentBridges(); bridges != nil {
		opts.BusHost = bridges.Process(broker.BridgeOptions{
			Logger: scrub.Logger(logger.With("worker", w.Name), scrubber),
			// Counted as the worker's own metric: dynworkers_worker_metric_total{metric="dead_lettered"}.
			OnDeadLetter: func(string) { _ = sink.Metric(DeadLetteredMetric, 1, []string{wire.AggSum}) },
		})
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

// DeadLetteredMetric is the worker metric (sum) the host adds 1 to for
// each message of the worker's consumers it dead-lettered: in Prometheus
// dynworkers_worker_metric_total{metric="dead_lettered"}, in Vumi's
// metrics <prefix>.dead_lettered.sum.
const DeadLetteredMetric = "dead_lettered"

// pluginLogLimit is the plugin log limit of the host's configuration,
// where 0 means unlimited.
func pluginLogLimit(c config.PluginLogConfig) pluginproc.LogLimit {
	unlimited := func(n int) int {
		if n == 0 {
			return -1
		}
		return n
	}
	return pluginproc.LogLimit{BytesPerSecond: unlimited(c.BytesPerSecond), LinesPerSecond: unlimited(c.LinesPerSecond), LineMax: c.LineMax}
}

// warmSpare keeps a warm spare of the binary of a worker a control message
// started: clients wait for control starts, so the next start of it (or a
// restart) only costs a Start RPC.
func (d *Daemon) warmSpare(w *config.Worker) {
	if class, err := d.Catalog().Lookup(w.Class); err == nil {
		d.spares.Warm(pluginproc.Options{Path: class.Binary.Path, Checksum: class.Binary.SHA256, Exec: d.exec,
			Env: d.cfg.Host.PluginEnvList(), Limits: w.Limits, Logger: d.logger.Named("worker")})
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
		return nil, control.InvalidWorkerConfig(name, class.Name, diags)
	}
	w := config.NewWorker(name, supervisor, class.Name, class.Schema, val)
	// Control messages cannot choose limits: a worker they start gets the
	// host's default limits, which its sender cannot lift.
	w.Limits = d.cfg.Host.WorkerLimits
	return w, nil
}
