// Package status assembles the host's status report (api.Status), the
// answer of the status operation over AMQP and HTTP, which the CLI and the
// dashboard show: the tree's supervisors and workers in tree order, the
// monitor's last sample (the host process, each worker's process, each
// supervisor's subtree totals), and each running worker's own Status()
// details, asked in parallel within a deadline and scrubbed of the
// worker's sensitive config values before anyone sees them.
package status

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/config"
	"github.com/dynworkers/dynworkers/host/internal/monitor"
	"github.com/dynworkers/dynworkers/host/internal/pluginproc"
	"github.com/dynworkers/dynworkers/host/internal/supervise"
	"github.com/dynworkers/dynworkers/host/internal/tree"
)

// Host is what the report says of the host itself.
type Host struct {
	SystemID, Name string
	// Broker describes the broker, its URL redacted.
	Broker  string
	Started time.Time
	// Spares is the host's pool of warm spares (nil: none).
	Spares *pluginproc.Spares
}

// Report assembles the status of the host h running t, with the figures
// of snap (see the package documentation). It takes at most DetailsTimeout
// more than listing the tree, however many workers hang.
func Report(ctx context.Context, h Host, t *tree.Tree, snap *monitor.Snapshot) api.Status {
	rep := api.Status{SystemID: h.SystemID, Host: h.Name, Broker: h.Broker, Started: h.Started,
		Process: new(processReport(snap)), Supervisors: t.Supervisors(), Workers: []api.Worker{}}
	for i := range rep.Supervisors {
		rep.Supervisors[i].Totals = supervisorTotals(snap, rep.Supervisors[i].Path)
	}
	infos := t.Workers()
	for _, wi := range infos {
		w := wi.WithConfig()
		if w.Pid != 0 {
			w.Metrics = workerMetrics(snap, w.Name, w.Pid)
		}
		rep.Workers = append(rep.Workers, w)
	}
	fillDetails(ctx, rep.Workers, infos)
	for _, sp := range h.Spares.Ready() {
		rep.Spares = append(rep.Spares, api.SparePool{Binary: sp.Path, Ready: len(sp.Pids), Pids: sp.Pids})
	}
	return rep
}

// DetailsTimeout bounds how long status waits for the workers' own Status()
// answers (sdk.StatusReporter). The workers are asked in parallel, so a
// status reply takes at most this long more than without details, however
// many workers hang; a worker that did not answer in time shows
// details_error instead.
var DetailsTimeout = 500 * time.Millisecond

// fillDetails asks every running worker of ws (infos are the same workers
// as the tree listed them) for its Status() details, in parallel and within
// DetailsTimeout, and sets Details (scrubbed of the worker's sensitive
// config values) or DetailsError.
func fillDetails(ctx context.Context, ws []api.Worker, infos []tree.WorkerInfo) {
	ctx, cancel := context.WithTimeout(ctx, DetailsTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for i := range ws {
		w, info := &ws[i], infos[i]
		p := info.Process()
		if p == nil || w.State != string(supervise.StateRunning) {
			continue
		}
		wg.Go(func() { w.Details, w.DetailsError = workerDetails(ctx, p, info.Spec) })
	}
	wg.Wait()
}

// workerDetails is one worker's answer to Status, scrubbed, or why there is
// none. An empty object (a worker that reports nothing) is no details.
func workerDetails(ctx context.Context, p *pluginproc.Process, cfg *config.Worker) ([]byte, string) {
	raw, err := p.Status(ctx)
	if err != nil {
		// The plugin's side gives up at the same deadline (gRPC carries
		// it), and its cancellation may arrive a moment before the host's
		// own timer fires: an error that close to the deadline is the
		// deadline's.
		if dl, ok := ctx.Deadline(); ctx.Err() != nil || ok && time.Until(dl) < 50*time.Millisecond {
			return nil, "the worker did not answer within " + DetailsTimeout.String()
		}
		// The error text comes from the plugin: scrub it too (the
		// process did already; this holds if it was started without).
		return nil, cfg.Scrubber().String(err.Error())
	}
	out, ok := cfg.Scrubber().JSON(raw)
	if !ok {
		return nil, "the worker sent invalid status details"
	}
	if string(out) == "{}" || string(out) == "null" {
		return nil, ""
	}
	return out, ""
}

// workerMetrics returns the metrics of a worker from a snapshot.
func workerMetrics(snap *monitor.Snapshot, name string, pid int) *api.WorkerMetrics {
	for _, w := range snap.Workers {
		if w.Name != name || w.Proc == nil || w.Pid != pid {
			continue
		}
		return &api.WorkerMetrics{RSSBytes: w.Proc.RSSBytes, CPUSeconds: round(w.Proc.CPUSeconds, 3), CPUPercent: round(w.CPUPercent, 2),
			OpenFDs: w.Proc.FDs, Threads: w.Proc.Threads, UptimeSeconds: round(snap.Time.Sub(w.StartedAt).Seconds(), 3)}
	}
	return nil
}

func supervisorTotals(snap *monitor.Snapshot, path string) *api.SupervisorTotals {
	for _, s := range snap.Supervisors {
		if s.Path == path {
			return &api.SupervisorTotals{Workers: s.Workers, Running: s.Running, RSSBytes: s.RSSBytes, CPUSeconds: round(s.CPUSeconds, 3)}
		}
	}
	return nil
}

func processReport(snap *monitor.Snapshot) api.Process {
	h := snap.Host
	return api.Process{Pid: h.Pid, RSSBytes: h.Proc.RSSBytes, CPUSeconds: round(h.Proc.CPUSeconds, 3), OpenFDs: h.Proc.FDs,
		Threads: h.Proc.Threads, UptimeSeconds: round(snap.Time.Sub(h.Started).Seconds(), 3), WorkersByState: h.WorkersByState,
		ControlHandled: h.ControlHandled, ControlFailed: h.ControlFailed, SampledAt: snap.Time}
}

// round rounds x to places decimals, so that the JSON of status carries
// 0.14, not the 0.13999999999999999 of a sum of CPU times or the
// nanoseconds of an uptime (the Prometheus exposition keeps the exact
// figures). CPU times are counted in clock ticks (10ms) and uptimes are
// shown in milliseconds at best: 3 decimals lose nothing of them; a CPU
// percentage keeps 2.
func round(x float64, places int) float64 {
	p := math.Pow10(places)
	return math.Round(x*p) / p
}
