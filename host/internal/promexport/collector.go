package promexport

import (
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dynworkers/dynworkers/host/internal/monitor"
	"github.com/dynworkers/dynworkers/host/internal/supervise"
)

// Label names. A worker's series all carry worker, class and supervisor, so
// that they can be summed by class or by supervisor without a join.
var (
	workerLabels     = []string{"worker", "class", "supervisor"}
	supervisorLabels = []string{"supervisor"}
)

func newDesc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

// The descriptors, built once. Their help texts are short; doc.go says
// more about each.
var (
	descHostInfo = newDesc("dynworkers_host_info",
		"Always 1; names the host's system_id and host name.", "system_id", "host")
	descSnapshotTimestamp = newDesc("dynworkers_snapshot_timestamp_seconds",
		"Unix time at which the figures exported were sampled.")
	descHostWorkers = newDesc("dynworkers_host_workers",
		"Number of workers of the host in each state.", "state")
	descControlRequests = newDesc("dynworkers_control_requests_total",
		"Control requests answered by the host since it started.")
	descControlFailed = newDesc("dynworkers_control_requests_failed_total",
		"Control requests answered with an error since the host started.")

	descWorkerInfo = newDesc("dynworkers_worker_info",
		"Always 1; names where the worker was defined (hcl, control or hybrid).",
		append(slices.Clone(workerLabels), "source")...)
	descWorkerUp = newDesc("dynworkers_worker_up",
		"1 if the worker is in state running, else 0.", workerLabels...)
	descWorkerState = newDesc("dynworkers_worker_state",
		"1 for the worker's current state, 0 for every other state.",
		append(slices.Clone(workerLabels), "state")...)
	descWorkerHealthy = newDesc("dynworkers_worker_healthy",
		"1 if the worker runs and its last health check passed, else 0.", workerLabels...)
	descWorkerRestarts = newDesc("dynworkers_worker_restarts_total",
		"Automatic restarts of the worker since it was added or last restarted by hand.", workerLabels...)
	descWorkerRSS = newDesc("dynworkers_worker_rss_bytes",
		"Resident set size of the worker's plugin process.", workerLabels...)
	descWorkerCPU = newDesc("dynworkers_worker_cpu_seconds_total",
		"User and system CPU time used by the worker's plugin process.", workerLabels...)
	descWorkerFDs = newDesc("dynworkers_worker_open_fds",
		"Open file descriptors of the worker's plugin process.", workerLabels...)
	descWorkerThreads = newDesc("dynworkers_worker_threads",
		"Threads of the worker's plugin process.", workerLabels...)
	descWorkerUptime = newDesc("dynworkers_worker_uptime_seconds",
		"Time since the worker's plugin process started.", workerLabels...)

	descSupervisorInfo = newDesc("dynworkers_supervisor_info",
		"Always 1; names the supervisor's restart strategy.", "supervisor", "strategy")
	descSupervisorUp = newDesc("dynworkers_supervisor_up",
		"1 if the supervisor is in state running, else 0.", supervisorLabels...)
	descSupervisorState = newDesc("dynworkers_supervisor_state",
		"1 for the supervisor's current state, 0 for every other state.", "supervisor", "state")
	descSupervisorRestarts = newDesc("dynworkers_supervisor_restarts_in_period",
		"Restarts the supervisor counts against its intensity in the current period.", supervisorLabels...)
	descSupervisorIntensity = newDesc("dynworkers_supervisor_intensity",
		"Restarts the supervisor allows within one period before it fails.", supervisorLabels...)
	descSupervisorPeriod = newDesc("dynworkers_supervisor_period_seconds",
		"Length of the period over which the supervisor counts restarts.", supervisorLabels...)
	descSupervisorWorkers = newDesc("dynworkers_supervisor_workers",
		"Workers in the supervisor's subtree.", supervisorLabels...)
	descSupervisorRunning = newDesc("dynworkers_supervisor_running_workers",
		"Workers in the supervisor's subtree that are in state running.", supervisorLabels...)
	descSupervisorRSS = newDesc("dynworkers_supervisor_rss_bytes",
		"Sum of the resident set sizes of the plugin processes in the supervisor's subtree.", supervisorLabels...)
	descSupervisorCPU = newDesc("dynworkers_supervisor_cpu_seconds",
		"CPU time used so far by the plugin processes running now in the supervisor's subtree; drops when one exits.", supervisorLabels...)

	descWorkerMetricTotal = newDesc("dynworkers_worker_metric_total",
		"Sum of the values the worker reported with Env.Metric and the sum aggregator.",
		append(slices.Clone(workerLabels), "metric")...)
	descWorkerMetricAggregate = newDesc("dynworkers_worker_metric_aggregate",
		"Avg, min, max or last of the values the worker reported with Env.Metric in the last metrics interval that had any.",
		append(slices.Clone(workerLabels), "metric", "aggregator")...)

	allDescs = []*prometheus.Desc{
		descHostInfo, descSnapshotTimestamp, descHostWorkers, descControlRequests, descControlFailed,
		descWorkerInfo, descWorkerUp, descWorkerState, descWorkerHealthy, descWorkerRestarts,
		descWorkerRSS, descWorkerCPU, descWorkerFDs, descWorkerThreads, descWorkerUptime,
		descSupervisorInfo, descSupervisorUp, descSupervisorState, descSupervisorRestarts,
		descSupervisorIntensity, descSupervisorPeriod, descSupervisorWorkers, descSupervisorRunning,
		descSupervisorRSS, descSupervisorCPU, descWorkerMetricTotal, descWorkerMetricAggregate,
	}
)

// workerStates and supervisorStates are the values of the state label: the
// state sets always hold all of them, so that a series exists before a
// worker first enters a state (and alerts on it can fire).
var (
	workerStates     = stringsOf(supervise.States())
	supervisorStates = []string{
		string(supervise.SupervisorRunning), string(supervise.SupervisorStopping),
		string(supervise.SupervisorStopped), string(supervise.SupervisorFailed),
	}
)

func stringsOf[S ~string](ss []S) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = string(s)
	}
	return out
}

// Collector is a prometheus.Collector that exposes the host's monitoring
// snapshot: on each Collect it calls its source once and turns the snapshot
// it returns into constant metrics, so that a scrape always shows one
// consistent sample. The package documentation lists the metrics.
//
// A Collector is safe for concurrent use if its source is.
type Collector struct {
	src func() *monitor.Snapshot
}

var _ prometheus.Collector = (*Collector)(nil)

// NewCollector returns a Collector reading snapshots from src, which must
// not be nil. src is called once per Collect, from the scraping goroutine;
// it may return nil (no sample taken yet), and then the Collector exports
// nothing.
func NewCollector(src func() *monitor.Snapshot) *Collector {
	if src == nil {
		panic("promexport: NewCollector with a nil source")
	}
	return &Collector{src: src}
}

// Describe sends the descriptors of every metric the Collector may export.
// The set is fixed, so the registry checks each collected metric against it.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
}

// Collect calls the source and sends the snapshot's metrics.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	snap := c.src()
	if snap == nil {
		return
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}

	// Host.
	h := &snap.Host
	gauge(descHostInfo, 1, label(h.SystemID), label(h.Name))
	gauge(descSnapshotTimestamp, unixSeconds(snap.Time))
	for _, st := range withExtra(workerStates, slices.Sorted(maps.Keys(h.WorkersByState))...) {
		gauge(descHostWorkers, float64(h.WorkersByState[st]), label(st))
	}
	counter(descControlRequests, float64(h.ControlHandled))
	counter(descControlFailed, float64(h.ControlFailed))

	// Workers.
	for i := range snap.Workers {
		w := &snap.Workers[i]
		wl := []string{label(w.Name), label(w.Class), label(w.Supervisor)}
		gauge(descWorkerInfo, 1, append(wl, label(w.Source))...)
		gauge(descWorkerUp, boolValue(w.State == string(supervise.StateRunning)), wl...)
		for _, st := range withExtra(workerStates, w.State) {
			gauge(descWorkerState, boolValue(st == w.State), append(wl, label(st))...)
		}
		gauge(descWorkerHealthy, boolValue(w.Healthy), wl...)
		counter(descWorkerRestarts, float64(w.Restarts), wl...)
		if p := w.Proc; p != nil {
			gauge(descWorkerRSS, float64(p.RSSBytes), wl...)
			counter(descWorkerCPU, p.CPUSeconds, wl...)
			gauge(descWorkerFDs, float64(p.FDs), wl...)
			gauge(descWorkerThreads, float64(p.Threads), wl...)
			if up, ok := workerUptime(snap, w); ok {
				gauge(descWorkerUptime, up, wl...)
			}
		}
		for _, m := range w.Metrics {
			if m.Aggregator == monitor.AggSum {
				counter(descWorkerMetricTotal, m.Value, append(wl, label(m.Name))...)
			} else {
				gauge(descWorkerMetricAggregate, m.Value, append(wl, label(m.Name), label(m.Aggregator))...)
			}
		}
	}

	// Supervisors.
	for i := range snap.Supervisors {
		s := &snap.Supervisors[i]
		path := label(s.Path)
		gauge(descSupervisorInfo, 1, path, label(s.Strategy))
		gauge(descSupervisorUp, boolValue(s.State == string(supervise.SupervisorRunning)), path)
		for _, st := range withExtra(supervisorStates, s.State) {
			gauge(descSupervisorState, boolValue(st == s.State), path, label(st))
		}
		gauge(descSupervisorRestarts, float64(s.RestartsInPeriod), path)
		gauge(descSupervisorIntensity, float64(s.Intensity), path)
		gauge(descSupervisorPeriod, s.Period.Seconds(), path)
		gauge(descSupervisorWorkers, float64(s.Workers), path)
		gauge(descSupervisorRunning, float64(s.Running), path)
		gauge(descSupervisorRSS, float64(s.RSSBytes), path)
		gauge(descSupervisorCPU, s.CPUSeconds, path)
	}
}

// workerUptime is the age of w's process at the snapshot's time: from the
// process's start time in /proc, or, if that is unknown, from when the
// worker became running.
func workerUptime(snap *monitor.Snapshot, w *monitor.WorkerStats) (float64, bool) {
	if !w.Proc.StartTime.IsZero() {
		return w.Proc.Uptime(snap.Time).Seconds(), true
	}
	if !w.StartedAt.IsZero() && !snap.Time.Before(w.StartedAt) {
		return snap.Time.Sub(w.StartedAt).Seconds(), true
	}
	return 0, false
}

// withExtra returns known followed by those of extra that are neither in
// known nor empty, so that a state this package does not know of (one
// added to the supervisor later) is still exported rather than lost.
func withExtra(known []string, extra ...string) []string {
	out := known
	for _, e := range extra {
		if e != "" && !slices.Contains(out, e) {
			if len(out) == len(known) {
				out = slices.Clone(known)
			}
			out = append(out, e)
		}
	}
	return out
}

// label makes s a valid label value. Label values may hold any Unicode
// (the exposition format escapes quotes, backslashes and newlines), but
// must be valid UTF-8: MustNewConstMetric panics otherwise, and although
// the registry recovers a panicking collector, everything after the bad
// name would be missing from the scrape. Names come from configuration
// files and control messages, so invalid bytes are replaced with U+FFFD
// rather than trusted to be absent.
func label(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// unixSeconds is t as Unix seconds with a fraction. The whole seconds and
// the fraction are converted apart: t.UnixNano() is beyond float64's 53
// bits of precision, so converting it whole could move a .5 to .4999998.
func unixSeconds(t time.Time) float64 {
	return float64(t.Unix()) + float64(t.Nanosecond())/1e9
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
