package monitor

import (
	"context"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Defaults of Options.
const (
	DefaultInterval          = 5 * time.Second
	DefaultHeartbeatInterval = 10 * time.Second
)

// StateRunning is the State of a worker whose process runs (the
// supervisor's "running"): it counts in SupervisorStats.Running and makes
// the Vumi datapoint up 1.
const StateRunning = "running"

// freshFor is how old a snapshot Snapshot returns may be.
const freshFor = time.Second

// Options configure a Monitor. The host's daemon fills them; the Monitor
// knows nothing of supervisors, plugin processes or brokers but what these
// functions give it.
type Options struct {
	// SystemID and Host name the host in metric names
	// (dynworkers.<system_id>.<host>) and heartbeats.
	SystemID string
	Host     string
	// Started is when the host started, for its uptime.
	Started time.Time
	// Interval is how often Run samples and publishes the metrics;
	// 0 means DefaultInterval.
	Interval time.Duration
	// HeartbeatInterval is how often Run publishes heartbeats; 0 means
	// DefaultHeartbeatInterval. They go out with the sample closest to
	// each interval's end, so it is best a multiple of Interval.
	HeartbeatInterval time.Duration
	// States are the worker states, each counted in
	// HostStats.WorkersByState even when no worker is in it.
	States []string
	// List returns the workers and the supervisors, in tree order,
	// without process figures: the Monitor fills each worker's Proc,
	// CPUPercent and Metrics, and each supervisor's subtree totals
	// (Workers, Running, RSSBytes, CPUSeconds). A worker's Supervisor is
	// its supervisor's Path; a supervisor's subtree is those whose path is
	// its own or starts with it and "/". Required.
	List func() ([]WorkerStats, []SupervisorStats)
	// Publish sends bodies (JSON, one message each, in order) on exchange
	// with routing key key, and returns once they are sent (confirmed, on
	// a broker). It must not wait for a broker that is away: a sample it
	// cannot send is dropped (and debug-logged), never queued. The
	// heartbeats of all workers come in one call, so that they can be
	// sent before any confirmation is awaited. nil publishes nothing.
	Publish func(ctx context.Context, exchange, key string, bodies ...[]byte) error
	// Control returns the control requests answered so far and those
	// answered with an error; nil counts none.
	Control func() (handled, failed uint64)
	// Registry holds the workers' own metrics; nil makes one
	// (NewRegistry(0)). Run flushes it every Interval and removes the
	// metrics of workers that List no longer returns.
	Registry *Registry
	// Logger receives the Monitor's logs; nil discards them.
	Logger hclog.Logger
}

// Monitor samples the host and its workers, keeps the latest Snapshot,
// and publishes Vumi metrics and heartbeats (DESIGN.md §6).
//
// Lifecycle: New → Run (until its context ends) in one goroutine;
// Snapshot and Registry from any goroutine, before, during and after Run.
type Monitor struct {
	opts   Options
	reg    *Registry
	logger hclog.Logger

	mu      sync.Mutex // serialises samples; guards sampler, prevCPU and figs
	sampler *Sampler
	prevCPU map[int]cpuMark // by pid; only the pids of the last full sample
	// figs are the workers' figures of the last full sample, by pid, which
	// the samples Snapshot takes in between reuse.
	figs map[int]procFigures
	snap atomic.Pointer[Snapshot]

	// Run's goroutine only.
	lastHeartbeat time.Time
	dropped       uint64 // Registry.Dropped at the last flush
}

type cpuMark struct {
	cpu float64
	at  time.Time
}

// procFigures are a worker process's figures in a sample.
type procFigures struct {
	proc       ProcStats
	cpuPercent float64
}

// New returns a Monitor; it samples nothing until Run or Snapshot.
func New(opts Options) *Monitor {
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.HeartbeatInterval <= 0 {
		opts.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if opts.List == nil {
		opts.List = func() ([]WorkerStats, []SupervisorStats) { return nil, nil }
	}
	m := &Monitor{opts: opts, reg: opts.Registry, logger: opts.Logger, sampler: NewSampler(), prevCPU: map[int]cpuMark{}}
	if m.reg == nil {
		m.reg = NewRegistry(0)
	}
	if m.logger == nil {
		m.logger = hclog.NewNullLogger()
	}
	return m
}

// Registry returns the registry of the workers' own metrics.
func (m *Monitor) Registry() *Registry { return m.reg }

// Snapshot returns the latest sample, taking a new one if the latest is
// more than a second old (so that status right after a change shows it).
// Such a sample lists the tree and reads the host process anew, but keeps
// the figures of the worker processes that Run's last sample read (at
// most Interval old) and reads only those of the processes that started
// since: status asked for every second would otherwise read /proc for
// every worker each time, some tens of milliseconds with 1,000 workers.
func (m *Monitor) Snapshot() *Snapshot {
	if s := m.snap.Load(); s != nil && time.Since(s.Time) < freshFor {
		return s
	}
	s, _ := m.sampleWith(false)
	return s
}

// Run samples every Interval until ctx ends, the first time at once: it
// flushes the Registry, takes a Snapshot, publishes the Vumi metrics and,
// when one is due, the heartbeats, then forgets the metrics of the workers
// that are gone.
func (m *Monitor) Run(ctx context.Context) {
	t := time.NewTicker(m.opts.Interval)
	defer t.Stop()
	for {
		m.tick(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// tick is one round of Run.
func (m *Monitor) tick(ctx context.Context) {
	// The flush comes first, so that the snapshot shows the interval just
	// ended, and the pruning after it, so that the last values of a
	// worker that is gone are still published.
	workerDPs := m.reg.Flush()
	if d := m.reg.Dropped(); d > m.dropped {
		m.logger.Warn("worker metrics: values left out of the Vumi datapoints (a worker reported more values than it may keep as points in one interval)",
			"values", d-m.dropped, "max_points_per_worker", MaxRawPoints)
		m.dropped = d
	}
	snap, listed := m.sample()
	live := make(map[string]bool, len(snap.Workers))
	for _, w := range snap.Workers {
		live[m.workerPrefix(w.Name)] = true
	}
	if n := m.reg.Prune(func(p string) bool { return live[p] }, listed); n > 0 {
		m.logger.Debug("removed the metrics of workers that are gone", "workers", n)
	}
	if m.opts.Publish == nil {
		return
	}
	m.publishMetrics(ctx, snap, workerDPs)
	if snap.Time.Sub(m.lastHeartbeat) >= m.opts.HeartbeatInterval-m.opts.Interval/2 {
		m.lastHeartbeat = snap.Time
		m.publishHeartbeats(ctx, snap)
	}
}

func (m *Monitor) workerPrefix(name string) string {
	return WorkerPrefix(m.opts.SystemID, m.opts.Host, name)
}

// sample takes a snapshot, reading every process, and keeps it. It
// returns the snapshot and the time it began to list the workers.
func (m *Monitor) sample() (*Snapshot, time.Time) { return m.sampleWith(true) }

// sampleWith is sample; unless full, it reads only the worker processes
// that the last full sample did not (see Snapshot).
func (m *Monitor) sampleWith(full bool) (*Snapshot, time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	listed := time.Now()
	workers, sups := m.opts.List()
	now := time.Now()
	snap := &Snapshot{Time: now, Workers: workers, Supervisors: sups}
	h := &snap.Host
	h.SystemID, h.Name, h.Pid, h.Started = m.opts.SystemID, m.opts.Host, os.Getpid(), m.opts.Started
	if st, err := m.sampler.Read(h.Pid); err == nil {
		h.Proc = st
	}
	if m.opts.Control != nil {
		h.ControlHandled, h.ControlFailed = m.opts.Control()
	}
	h.WorkersByState = make(map[string]int, len(m.opts.States))
	for _, st := range m.opts.States {
		h.WorkersByState[st] = 0
	}
	// prevCPU is made anew each time with only the pids read now, so that
	// it holds no more than the workers that run, whatever ran before.
	prev := m.prevCPU
	if full {
		m.prevCPU = make(map[int]cpuMark, len(workers))
		m.figs = make(map[int]procFigures, len(workers))
	}
	for i := range workers {
		w := &workers[i]
		w.Proc, w.CPUPercent = nil, 0
		if f, ok := m.figs[w.Pid]; ok && !full {
			w.Proc, w.CPUPercent = &f.proc, f.cpuPercent
		} else if w.Pid > 0 {
			if st, err := m.sampler.Read(w.Pid); err == nil {
				w.Proc = &st
				if p, ok := prev[st.Pid]; ok && now.After(p.at) && st.CPUSeconds >= p.cpu {
					w.CPUPercent = 100 * (st.CPUSeconds - p.cpu) / now.Sub(p.at).Seconds()
				}
				if full {
					m.prevCPU[st.Pid] = cpuMark{st.CPUSeconds, now}
					m.figs[st.Pid] = procFigures{st, w.CPUPercent}
				}
			}
		}
		w.Metrics = m.reg.Values(m.workerPrefix(w.Name))
		h.WorkersByState[w.State]++
	}
	m.supervisorTotals(snap)
	m.snap.Store(snap)
	return snap, listed
}

// supervisorTotals fills each supervisor's subtree totals: a worker counts
// in its supervisor and in every supervisor above it, found by cutting
// its supervisor's path at each "/".
func (m *Monitor) supervisorTotals(snap *Snapshot) {
	byPath := make(map[string]*SupervisorStats, len(snap.Supervisors))
	for i := range snap.Supervisors {
		s := &snap.Supervisors[i]
		s.Workers, s.Running, s.RSSBytes, s.CPUSeconds = 0, 0, 0, 0
		byPath[s.Path] = s
	}
	for i := range snap.Workers {
		w := &snap.Workers[i]
		path := w.Supervisor
		for {
			if s := byPath[path]; s != nil {
				s.Workers++
				if w.State == StateRunning {
					s.Running++
				}
				if w.Proc != nil {
					s.RSSBytes += w.Proc.RSSBytes
					s.CPUSeconds += w.Proc.CPUSeconds
				}
			}
			i := strings.LastIndexByte(path, '/')
			if i < 0 {
				break
			}
			path = path[:i]
		}
	}
}

// Tracked is the number of processes the Monitor keeps figures of between
// samples (for their CPU percentage): those of the last sample only.
func (m *Monitor) Tracked() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.prevCPU)
}
