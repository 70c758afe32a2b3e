package monitor

import "time"

// Snapshot is what the host knows about itself at one moment: the figures
// that status, the Prometheus exporter, the Vumi metrics and the dashboard
// all show. A Monitor makes one per sampling interval (and on demand); a
// Snapshot is never changed after it was made, so readers may share it.
type Snapshot struct {
	// Time is when it was taken.
	Time        time.Time
	Host        HostStats
	Supervisors []SupervisorStats // tree order, the root first
	Workers     []WorkerStats     // tree order
}

// HostStats are the host process's own figures.
type HostStats struct {
	SystemID string
	Name     string
	Pid      int
	// Proc is the host process's /proc figures (zero if they could not be
	// read).
	Proc    ProcStats
	Started time.Time
	// WorkersByState counts the workers in each state; every state is
	// present, with 0 if none is in it.
	WorkersByState map[string]int
	// ControlHandled counts the control requests answered, ControlFailed
	// those answered with an error.
	ControlHandled uint64
	ControlFailed  uint64
}

// WorkerStats are one worker's figures.
type WorkerStats struct {
	Name       string
	Class      string
	Supervisor string // the path of its supervisor
	Source     string // hcl, control or hybrid
	State      string
	Pid        int       // 0 when no process runs
	StartedAt  time.Time // zero when not running
	Restarts   int
	LastExit   string
	LastExitAt time.Time
	// Healthy is false once a health check failed (until one passes) and
	// whenever the worker does not run.
	Healthy bool
	// Proc is the plugin process's /proc figures; nil when no process runs
	// or it could not be read.
	Proc *ProcStats
	// CPUPercent is the process's CPU use since the previous sample, in
	// percent of one core (0 on the first sample).
	CPUPercent float64
	// Metrics are the worker's own metrics (Env.Metric), from the
	// Registry: the running total of each sum, the last flushed
	// interval's avg, min, max and last (see MetricValue).
	Metrics []MetricValue
}

// SupervisorStats are one supervisor's figures, with the totals of its
// subtree (its workers and those of the supervisors below it), so that the
// cost of one project or campaign is read off its supervisor.
type SupervisorStats struct {
	Path             string
	Strategy         string
	State            string
	Intensity        int
	Period           time.Duration
	RestartsInPeriod int
	// Subtree totals.
	Workers  int    // workers in the subtree
	Running  int    // of which running
	RSSBytes uint64 // sum of their processes' RSS
	// CPUSeconds is the sum of the CPU times of the processes that run
	// now: it drops when one of them exits or is replaced, so it is a
	// gauge, not a counter.
	CPUSeconds float64
}
