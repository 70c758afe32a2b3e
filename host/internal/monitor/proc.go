package monitor

import (
	"time"
)

// ProcStats is one sample of a process's resource use, read from /proc.
type ProcStats struct {
	Pid int
	// PPid is the pid of the parent process.
	PPid int
	// State is the one-letter state from /proc/<pid>/stat, that of the
	// main thread: R (running), S (sleeping), D (uninterruptible wait),
	// Z (zombie: exited, not yet reaped), T (stopped) and so on.
	State byte
	// RSSBytes is the resident set size: pages in RAM × the page size.
	RSSBytes uint64
	// CPUSeconds is user plus system CPU time used so far, all threads.
	CPUSeconds float64
	// FDs is the number of open file descriptors. For the calling process
	// itself it leaves out the descriptor the count is made with.
	FDs int
	// Threads is the number of threads.
	Threads int
	// StartTime is when the process started, to clock-tick precision
	// (10 ms), on the boot time's scale (whole seconds). It is zero if the
	// boot time could not be read. Together with Pid it tells a process
	// from a later one that is given the same pid.
	StartTime time.Time
}

// Uptime returns how long the process has been running at now, or 0 if its
// start time is unknown.
func (s ProcStats) Uptime(now time.Time) time.Duration {
	if s.StartTime.IsZero() || now.Before(s.StartTime) {
		return 0
	}
	return now.Sub(s.StartTime)
}

// Names of the per-process figures that ProcDatapoints reports, the ones
// DESIGN.md §6 lists per worker (restarts comes from the supervisor).
const (
	MetricRSSBytes      = "rss_bytes"
	MetricCPUSeconds    = "cpu_seconds"
	MetricOpenFDs       = "open_fds"
	MetricThreads       = "threads"
	MetricUptimeSeconds = "uptime_seconds"
)

// ProcDatapoints returns st as Vumi datapoints named <prefix>.<figure>,
// each with the aggregator avg and one point at now (see the package doc
// for why process figures keep their plain names). uptime_seconds is left
// out when the start time is unknown.
func ProcDatapoints(prefix string, st ProcStats, now time.Time) []Datapoint {
	avg := []string{AggAvg}
	dp := func(name string, v float64) Datapoint {
		return Datapoint{Name: joinName(prefix, name), Aggregators: avg, Points: []Point{{Time: now, Value: v}}}
	}
	out := []Datapoint{
		dp(MetricRSSBytes, float64(st.RSSBytes)),
		dp(MetricCPUSeconds, st.CPUSeconds),
		dp(MetricOpenFDs, float64(st.FDs)),
		dp(MetricThreads, float64(st.Threads)),
	}
	if !st.StartTime.IsZero() {
		out = append(out, dp(MetricUptimeSeconds, st.Uptime(now).Seconds()))
	}
	return out
}
