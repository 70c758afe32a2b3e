// Package status assembles the host's status report (api.Status), the
// answer of the status operation over AMQP and HTTP, which the CLI and the
// dashboard show: the tree's supervisors and workers in tree order, the
// monitor's last sample (the host process, each worker's process, each
// supervisor's subtree totals), and each running worker's own Status()
// details, asked in parallel within a deadline and at a bounded rate (see
// Details), and scrubbed of the worker's sensitive config values before
// anyone sees them.
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
	// Details, if set, keeps the workers' Status() answers between
	// reports (see Details); nil asks every running worker at every
	// report.
	Details *Details
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
	byName := make(map[string]*monitor.WorkerStats, len(snap.Workers))
	for i := range snap.Workers {
		byName[snap.Workers[i].Name] = &snap.Workers[i]
	}
	configs := h.Details.redacted(infos)
	for i, wi := range infos {
		w := wi.Worker
		if configs != nil {
			w.Config = configs[i]
		} else {
			w.Config = wi.Spec.RedactedConfig()
		}
		if w.Pid != 0 {
			w.Metrics = metricsOf(snap, byName[w.Name], w.Pid)
		}
		rep.Workers = append(rep.Workers, w)
	}
	h.Details.fill(ctx, rep.Workers, infos)
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

// Ages of the answers Details keeps.
const (
	// DetailsFresh is how long a worker's answer is shown as it is.
	DetailsFresh = time.Second
	// DetailsMaxAge is how old an answer may be for a report to show it
	// without waiting when the worker can be asked at once: an answer
	// older than DetailsFresh but not DetailsMaxAge is shown, and the
	// worker is asked again after the reply, for the next report; an
	// older one makes the report ask and wait, unless the worker must wait
	// its turn (DetailsRate), when the old answer is shown with its age.
	DetailsMaxAge = 5 * time.Second
)

// How fast Details asks: at most DetailsBurst questions at once, then
// DetailsRate a second, spread evenly. With more running workers than
// DetailsBurst, a report asks the first at once and waits for them
// (within DetailsTimeout), and queues the others, which are then asked in
// turn in the background: a report never makes 1,000 processes answer at
// once on a few cores (some hundreds of milliseconds of the reply, and as
// much of whatever else the host does), and a host watched every second
// costs at most DetailsRate questions a second, whatever its size.
var (
	DetailsRate  = 200.0
	DetailsBurst = 16
)

// detailsPending is the details_error of a running worker that was never
// asked and waits its turn.
const detailsPending = "not asked yet: the host asks its workers in turn"

// Details keeps each worker process's last Status() answer, so that the
// reports of a host that is watched (a dashboard, `status -watch`, a
// monitoring system polling) do not each ask every worker, and bounds how
// fast it asks (DetailsRate, DetailsBurst). An answer is used for
// DetailsFresh as it is; after that the worker is asked again, and its
// answer used meanwhile (see DetailsMaxAge). A worker not yet asked is
// asked at once, and waited for within DetailsTimeout, while the burst
// allows; beyond it, it is queued and shows detailsPending until a later
// report. Reports made at once share one question per worker. A host
// nobody asks asks its workers nothing. The zero value is ready to use; a
// nil *Details keeps nothing and asks every running worker at every report.
type Details struct {
	mu      sync.Mutex
	workers map[*pluginproc.Process]*kept
	// queue are the workers waiting their turn, oldest first.
	queue []queued
	// tokens are the questions that may be asked now, as of tokensAt.
	tokens   float64
	tokensAt time.Time
	// sending reports whether the goroutine that asks the queue runs.
	sending bool
	// configs are the redacted configs of the workers' specs, which do not
	// change once decoded: redacting 1,000 configs was a third of a
	// report's CPU. Only the specs of the last report are kept.
	configs map[*config.Worker]map[string]any
	// query asks a worker; nil is workerDetails (tests replace it).
	query func(ctx context.Context, p *pluginproc.Process, cfg *config.Worker) ([]byte, string)
}

// kept is what Details keeps of one worker process.
type kept struct {
	last   *answer // the latest answer; nil before the first
	asking *answer // the question under way; nil when none is
	queued bool    // the worker waits its turn in Details.queue
}

// queued is a worker waiting its turn.
type queued struct {
	k   *kept
	p   *pluginproc.Process
	cfg *config.Worker
}

// answer is one worker process's Status() answer, or the question being
// asked of it (done not yet closed).
type answer struct {
	done    chan struct{} // closed once details and errText are set
	at      time.Time     // when the question was asked
	details []byte
	errText string
}

// fill asks every running worker of ws (infos are the same workers as the
// tree listed them) for its Status() details, or takes its kept answer,
// in parallel and within DetailsTimeout, and sets Details (scrubbed of the
// worker's sensitive config values) or DetailsError, and DetailsAt.
func (d *Details) fill(ctx context.Context, ws []api.Worker, infos []tree.WorkerInfo) {
	ctx, cancel := context.WithTimeout(ctx, DetailsTimeout)
	defer cancel()
	type wait struct {
		w *api.Worker
		a *answer
	}
	var waits []wait
	var wg sync.WaitGroup
	if d != nil {
		d.mu.Lock()
	}
	now := time.Now()
	running := make(map[*pluginproc.Process]bool, len(ws))
	for i := range ws {
		w, info := &ws[i], infos[i]
		p := info.Process()
		if p == nil || w.State != string(supervise.StateRunning) {
			continue
		}
		if d == nil {
			wg.Go(func() { w.Details, w.DetailsError = workerDetails(ctx, p, info.Spec) })
			continue
		}
		running[p] = true
		if a := d.answerOf(p, info.Spec, now); a != nil {
			waits = append(waits, wait{w, a})
		} else {
			w.DetailsError = detailsPending
		}
	}
	if d != nil {
		// What is kept of processes that no longer run goes; the queue
		// skips them when their turn comes.
		for p := range d.workers {
			if !running[p] {
				delete(d.workers, p)
			}
		}
		d.mu.Unlock()
	}
	for _, wt := range waits {
		select {
		case <-wt.a.done:
		case <-ctx.Done():
		}
		// An answer that came is shown, though the deadline has passed
		// waiting for another worker's.
		if wt.a.ready() {
			wt.w.Details, wt.w.DetailsError = wt.a.details, wt.a.errText
			wt.w.DetailsAt = new(wt.a.at.UTC())
		} else {
			wt.w.DetailsError = "the worker did not answer within " + DetailsTimeout.String()
		}
	}
	wg.Wait()
}

// redacted returns the redacted config of each of infos' specs, made once
// per spec and shared by the reports (which only read them); nil for a nil
// d.
func (d *Details) redacted(infos []tree.WorkerInfo) []map[string]any {
	if d == nil {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]map[string]any, len(infos))
	next := make(map[*config.Worker]map[string]any, len(infos))
	for i, wi := range infos {
		c, ok := d.configs[wi.Spec]
		if !ok {
			c = wi.Spec.RedactedConfig()
		}
		next[wi.Spec], out[i] = c, c
	}
	d.configs = next
	return out
}

// answerOf returns the answer of p to show now: the latest if it is young
// enough (asking p again if it is no longer fresh), else the one being
// asked for (asking p if nobody is and the burst allows, else queueing
// it); nil when p was never asked and waits its turn. d.mu is held.
func (d *Details) answerOf(p *pluginproc.Process, cfg *config.Worker, now time.Time) *answer {
	if d.workers == nil {
		d.workers = map[*pluginproc.Process]*kept{}
	}
	k := d.workers[p]
	if k == nil {
		k = &kept{}
		d.workers[p] = k
	}
	if k.last != nil && now.Sub(k.last.at) < DetailsFresh {
		return k.last
	}
	if k.asking == nil && !k.queued {
		if d.take(now) {
			k.asking = d.ask(k, p, cfg, now)
		} else {
			k.queued = true
			d.queue = append(d.queue, queued{k, p, cfg})
			d.startSending()
		}
	}
	switch {
	case k.last != nil && (now.Sub(k.last.at) < DetailsMaxAge || k.asking == nil):
		return k.last
	case k.asking != nil:
		return k.asking
	}
	return nil
}

// take takes one question from the bucket if there is one. d.mu is held.
func (d *Details) take(now time.Time) bool {
	d.refill(now)
	if d.tokens < 1 {
		return false
	}
	d.tokens--
	return true
}

// refill adds the questions earned since tokensAt, up to DetailsBurst.
// d.mu is held.
func (d *Details) refill(now time.Time) {
	if d.tokensAt.IsZero() {
		d.tokens = float64(DetailsBurst)
	} else if el := now.Sub(d.tokensAt); el > 0 {
		d.tokens = min(float64(DetailsBurst), d.tokens+el.Seconds()*DetailsRate)
	}
	d.tokensAt = now
}

// startSending starts the goroutine that asks the queued workers at
// DetailsRate, unless it runs. It ends when the queue is empty. d.mu is
// held.
func (d *Details) startSending() {
	if d.sending {
		return
	}
	d.sending = true
	go func() {
		for {
			d.mu.Lock()
			now := time.Now()
			for len(d.queue) > 0 {
				q := d.queue[0]
				if d.workers[q.p] != q.k {
					// No longer running: forgotten, not asked.
					d.queue = d.queue[1:]
					continue
				}
				if !d.take(now) {
					break
				}
				d.queue = d.queue[1:]
				q.k.queued = false
				if q.k.asking == nil {
					q.k.asking = d.ask(q.k, q.p, q.cfg, now)
				}
			}
			if len(d.queue) == 0 {
				d.queue = nil
				d.sending = false
				d.mu.Unlock()
				return
			}
			// Wake when a few questions have been earned, not for each:
			// a batch every 20 ms at most.
			wait := max(20*time.Millisecond, time.Duration((1-d.tokens)/DetailsRate*float64(time.Second)))
			d.mu.Unlock()
			time.Sleep(wait)
		}
	}()
}

// ask asks p for its details in the background; its answer becomes k's
// latest. d.mu is held.
func (d *Details) ask(k *kept, p *pluginproc.Process, cfg *config.Worker, now time.Time) *answer {
	a := &answer{done: make(chan struct{}), at: now}
	go func() {
		// The question has its own deadline, not the report's: a report
		// whose client went away does not spoil the answer for the next.
		ctx, cancel := context.WithTimeout(context.Background(), DetailsTimeout)
		defer cancel()
		query := d.query
		if query == nil {
			query = workerDetails
		}
		details, errText := query(ctx, p, cfg)
		d.mu.Lock()
		a.details, a.errText = details, errText
		k.last, k.asking = a, nil
		close(a.done)
		d.mu.Unlock()
	}()
	return a
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

// metricsOf returns the metrics of w, a worker of snap (nil: not in it),
// if they are those of process pid.
func metricsOf(snap *monitor.Snapshot, w *monitor.WorkerStats, pid int) *api.WorkerMetrics {
	if w == nil || w.Proc == nil || w.Pid != pid {
		return nil
	}
	return &api.WorkerMetrics{RSSBytes: w.Proc.RSSBytes, CPUSeconds: round(w.Proc.CPUSeconds, 3), CPUPercent: round(w.CPUPercent, 2),
		OpenFDs: w.Proc.FDs, Threads: w.Proc.Threads, UptimeSeconds: round(snap.Time.Sub(w.StartedAt).Seconds(), 3)}
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

// ready reports whether a has its answer.
func (a *answer) ready() bool {
	select {
	case <-a.done:
		return true
	default:
		return false
	}
}
