package daemon

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/dynworkers/dynworkers/host/internal/catalog"
	"github.com/dynworkers/dynworkers/host/internal/config"
	"github.com/dynworkers/dynworkers/host/internal/monitor"
	"github.com/dynworkers/dynworkers/host/internal/pluginproc"
	"github.com/dynworkers/dynworkers/host/internal/supervise"
)

// pluginService starts a worker in a fresh plugin process for every
// (re)start, taken from the host's warm spares when they hold one of the
// binary. It resolves its class in the catalog at each start, so the binary
// and checksum used are the ones recorded at that moment.
type pluginService struct {
	w        *config.Worker
	catalog  func() *catalog.Catalog // the daemon's current catalog
	systemID string
	hostName string
	logger   hclog.Logger
	spares   *pluginproc.Spares
	d        *Daemon
}

var _ supervise.Service = (*pluginService)(nil)

func (s *pluginService) Start(ctx context.Context) (supervise.Instance, error) {
	class, err := s.catalog().Lookup(s.w.Class)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", supervise.ErrPermanent, err)
	}
	cfgJSON, err := s.w.ConfigJSON()
	if err != nil {
		return nil, fmt.Errorf("%w: encoding config: %w", supervise.ErrPermanent, err)
	}
	var children *childHost
	if e, ok := s.d.reg.get(s.w.Name); ok {
		children = newChildHost(s.d, s.w, e.sup)
	}
	opts := pluginproc.Options{
		Path:           class.Binary.Path,
		Checksum:       class.Binary.SHA256,
		WorkerName:     s.w.Name,
		Class:          class.Name,
		ConfigJSON:     cfgJSON,
		SystemID:       s.systemID,
		HostName:       s.hostName,
		StartTimeout:   s.w.StartTimeout,
		HealthInterval: s.w.HealthInterval,
		HealthTimeout:  s.w.HealthTimeout,
		Logger:         s.logger,
		Spares:         s.spares,
	}
	if children != nil {
		opts.ChildHost = children
	}
	if bus := s.d.currentBus(); bus != nil {
		opts.BusHost = newBusHost(bus, s.logger.With("worker", s.w.Name))
	}
	opts.MetricSink = newMetricSink(s.d.workerMetrics, monitor.WorkerPrefix(s.systemID, s.hostName, s.w.Name))
	p, err := pluginproc.Start(ctx, opts)
	if err != nil {
		if children != nil {
			children.close() // children started during a failed Start
		}
		if pluginproc.IsPermanent(err) {
			return nil, fmt.Errorf("%w: %w", supervise.ErrPermanent, err)
		}
		return nil, err
	}
	if children == nil {
		return p, nil
	}
	children.started(p)
	return newWorkerInstance(p, children), nil
}

func (d *Daemon) childSpec(w *config.Worker) supervise.ChildSpec {
	rt, err := supervise.ParseRestartType(w.Restart)
	if err != nil {
		rt = supervise.Permanent // config has validated it already
	}
	return supervise.ChildSpec{
		Name: w.Name,
		Service: &pluginService{
			w:        w,
			catalog:  d.Catalog,
			systemID: d.cfg.SystemID,
			hostName: d.cfg.Host.Name,
			logger:   d.logger.Named("worker"),
			spares:   d.spares,
			d:        d,
		},
		Restart:         rt,
		StartTimeout:    w.StartTimeout,
		ShutdownTimeout: w.ShutdownTimeout,
		Backoff: supervise.Backoff{
			Initial:    w.Backoff.Initial,
			Max:        w.Backoff.Max,
			ResetAfter: w.Backoff.ResetAfter,
		},
		Meta: map[string]string{"class": w.Class, "path": w.Path},
	}
}

// WorkerStatus is what the host knows about one worker.
type WorkerStatus struct {
	Name       string    `json:"name"`
	Supervisor string    `json:"supervisor"`
	Class      string    `json:"class"`
	State      string    `json:"state"`
	Pid        int       `json:"pid,omitempty"`
	Since      time.Time `json:"since"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	Restarts   int       `json:"restarts"`
	LastExit   string    `json:"last_exit,omitempty"`
	LastExitAt time.Time `json:"last_exit_at,omitzero"`
}

func workerStatus(sup string, cs supervise.ChildStatus) WorkerStatus {
	ws := WorkerStatus{
		Name:       cs.Name,
		Supervisor: sup,
		Class:      cs.Meta["class"],
		State:      string(cs.State),
		Since:      cs.Since,
		StartedAt:  cs.StartedAt,
		Restarts:   cs.Restarts,
		LastExitAt: cs.LastExitAt,
	}
	if p := ProcessOf(cs.Instance); p != nil {
		ws.Pid = p.Pid()
	}
	if cs.LastExit != nil {
		ws.LastExit = cs.LastExit.Error()
	}
	return ws
}
