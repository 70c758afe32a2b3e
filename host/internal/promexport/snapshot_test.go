package promexport

import (
	"time"

	"github.com/dynworkers/dynworkers/host/internal/monitor"
)

// Names that the exposition format must escape or carry as they are:
// spaces, double quotes, a backslash, a newline and non-ASCII letters, and
// one that is not valid UTF-8.
const (
	quotedWorker  = `say "hi" \ 日本`
	newlineWorker = "two\nlines"
	invalidWorker = "bad\xffname"
	campaignPath  = "root/campagne été"
	innerPath     = `root/campagne été/the "inner" one`
)

// testTime has a fraction of a second, to check that the snapshot
// timestamp keeps it.
var testTime = time.Date(2026, 1, 2, 3, 4, 5, 500_000_000, time.UTC)

// testSnapshot returns a snapshot of a host with three supervisors nested
// in one another and five workers: two with a process (one of whose start
// time is unknown) and metrics of their own, one stopped, one in backoff
// whose name is not valid UTF-8, and one in a state this package does not
// know.
func testSnapshot() *monitor.Snapshot {
	return &monitor.Snapshot{
		Time: testTime,
		Host: monitor.HostStats{
			SystemID: "prod",
			Name:     "web-1",
			Pid:      100,
			Proc:     monitor.ProcStats{Pid: 100, RSSBytes: 50 << 20, CPUSeconds: 12.5, FDs: 20, Threads: 9},
			Started:  testTime.Add(-time.Hour),
			WorkersByState: map[string]int{
				"starting": 0, "running": 2, "backoff": 1, "stopping": 0,
				"stopped": 1, "exited": 0, "failed": 0, "paused": 1,
			},
			ControlHandled: 42,
			ControlFailed:  3,
		},
		Supervisors: []monitor.SupervisorStats{
			{
				Path: "root", Strategy: "one_for_one", State: "running",
				Intensity: 3, Period: 5 * time.Second, RestartsInPeriod: 1,
				Workers: 5, Running: 2, RSSBytes: 30 << 20, CPUSeconds: 4.25,
			},
			{
				Path: campaignPath, Strategy: "rest_for_one", State: "running",
				Intensity: 10, Period: time.Minute, RestartsInPeriod: 0,
				Workers: 3, Running: 1, RSSBytes: 10 << 20, CPUSeconds: 0.75,
			},
			{
				Path: innerPath, Strategy: "one_for_all", State: "failed",
				Intensity: 1, Period: 1500 * time.Millisecond, RestartsInPeriod: 2,
				Workers: 2, Running: 0,
			},
		},
		Workers: []monitor.WorkerStats{
			{
				Name: "echo", Class: "echo", Supervisor: "root", Source: "hcl", State: "running",
				Pid: 201, StartedAt: testTime.Add(-90 * time.Second), Restarts: 2, Healthy: true,
				Proc: &monitor.ProcStats{
					Pid: 201, State: 'S', RSSBytes: 20 << 20, CPUSeconds: 3.5, FDs: 12, Threads: 7,
					StartTime: testTime.Add(-100 * time.Second),
				},
				Metrics: []monitor.MetricValue{
					{Name: "echoed", Aggregator: "sum", Value: 1234},
					{Name: "latency.submit", Aggregator: "avg", Value: 0.25},
					{Name: "latency.submit", Aggregator: "max", Value: 1.5},
				},
			},
			{
				Name: quotedWorker, Class: "greeter", Supervisor: campaignPath, Source: "control", State: "running",
				Pid: 202, StartedAt: testTime.Add(-30 * time.Second), Restarts: 0, Healthy: false,
				// The start time could not be read: uptime comes from StartedAt.
				Proc:    &monitor.ProcStats{Pid: 202, State: 'R', RSSBytes: 10 << 20, CPUSeconds: 0.75, FDs: 8, Threads: 5},
				Metrics: []monitor.MetricValue{{Name: "queue_depth", Aggregator: "last", Value: 7}},
			},
			{
				Name: "stopped one", Class: "echo", Supervisor: innerPath, Source: "hybrid", State: "stopped",
				Restarts: 4, LastExit: "exit status 1", LastExitAt: testTime.Add(-time.Hour),
			},
			{
				Name: invalidWorker, Class: "echo", Supervisor: "root", Source: "hcl", State: "backoff",
				Restarts: 7,
			},
			{
				Name: newlineWorker, Class: "echo", Supervisor: innerPath, Source: "hcl", State: "paused",
				Restarts: 1,
			},
		},
	}
}
