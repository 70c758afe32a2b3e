package benchmarks

import "time"

// Targets from the performance section.
const (
	// TargetRestartP50 bounds the median crash-to-running restart latency.
	TargetRestartP50 = 10 * time.Millisecond
	// TargetStartup100 bounds the median start-up time of 100 workers.
	TargetStartup100 = 1500 * time.Millisecond
)

// Results is everything one run of the harness measured; it is rendered to
// docs/benchmarks.md, raw numbers included.
type Results struct {
	Date        time.Time `json:"date"`
	Command     string    `json:"command"`
	GoTest      string    `json:"go_test"`
	Machine     Machine   `json:"machine"`
	HostVersion string    `json:"host_version"`
	// CPUStart is sampled when the run begins; Background compares it with
	// the end of the run.
	CPUStart   CPUSample  `json:"-"`
	Background Background `json:"background"`

	Binary  *BinaryResult   `json:"binary"`
	Restart *RestartResult  `json:"restart"`
	Startup []StartupResult `json:"startup"`
	Memory  *MemoryResult   `json:"memory"`
}

// BinaryResult is the plugin binary's size, the time its sha256 takes (what
// go-plugin's SecureConfig.Check does at every start) and the time from exec
// to the go-plugin handshake line.
type BinaryResult struct {
	PluginBytes int64 `json:"plugin_bytes"`
	HostBytes   int64 `json:"host_bytes"`

	Checksum   Summary `json:"checksum"`
	ChecksumUS []int64 `json:"checksum_us"`

	ExecToHandshake   Summary `json:"exec_to_handshake"`
	ExecToHandshakeUS []int64 `json:"exec_to_handshake_us"`
}

// RestartResult is the crash-to-running latency of one worker that is
// SIGKILLed again and again, split at the supervision events.
type RestartResult struct {
	Crashes int `json:"crashes"`
	Warmup  int `json:"warmup_crashes"`

	// Total: kill → the new instance answered Health.
	Total Summary `json:"kill_to_healthy"`
	// Detect: kill → ChildExited.
	Detect Summary `json:"kill_to_exited"`
	// Start: ChildExited → ChildStarted (launch, handshake, Start RPC).
	Start Summary `json:"exited_to_started"`
	// Health: ChildStarted → Health answered OK.
	Health Summary `json:"started_to_healthy"`

	TotalUS  []int64 `json:"kill_to_healthy_us"`
	DetectUS []int64 `json:"kill_to_exited_us"`
	StartUS  []int64 `json:"exited_to_started_us"`
	HealthUS []int64 `json:"started_to_healthy_us"`

	// StaleSockets counts the unix socket files the killed plugins left
	// behind in their socket directory.
	StaleSockets int `json:"stale_sockets"`
}

// StartupResult is one start-up configuration, measured over several runs.
type StartupResult struct {
	Workers          int          `json:"workers"`
	StartConcurrency int          `json:"start_concurrency"` // 0: the default
	Runs             []StartupRun `json:"runs"`
}

// StartupRun is one measured run of `dynworkers serve`.
type StartupRun struct {
	// ExecToRunning: exec → the "host running" log line was read.
	ExecToRunning time.Duration `json:"exec_to_running_ns"`
	// HostStartup is the "startup" field of that line: the host's own
	// measure of starting the workers, without process start, config and
	// catalog.
	HostStartup time.Duration `json:"host_startup_ns"`
	// Shutdown: SIGTERM → the host exited (all workers stopped).
	Shutdown time.Duration `json:"shutdown_ns"`
}

func (r StartupResult) pick(f func(StartupRun) time.Duration) []time.Duration {
	out := make([]time.Duration, len(r.Runs))
	for i, run := range r.Runs {
		out[i] = f(run)
	}
	return out
}

// ExecToRunning returns each run's exec → running time.
func (r StartupResult) ExecToRunning() []time.Duration {
	return r.pick(func(s StartupRun) time.Duration { return s.ExecToRunning })
}

// HostStartup returns each run's host-reported start-up time.
func (r StartupResult) HostStartup() []time.Duration {
	return r.pick(func(s StartupRun) time.Duration { return s.HostStartup })
}

// Shutdown returns each run's shutdown time.
func (r StartupResult) Shutdown() []time.Duration {
	return r.pick(func(s StartupRun) time.Duration { return s.Shutdown })
}

// MemoryResult is the memory of a host running idle workers.
type MemoryResult struct {
	Workers     int           `json:"workers"`
	Idle        time.Duration `json:"-"`
	IdleSeconds float64       `json:"idle_seconds"`
	HostVmRSS   int64         `json:"host_vmrss_kib"`
	Host        Mem           `json:"host"`
	Plugins     []Mem         `json:"plugins"`
	PluginBytes int64         `json:"plugin_binary_bytes"`
}

func (m MemoryResult) pick(f func(Mem) int64) []int64 {
	out := make([]int64, len(m.Plugins))
	for i, p := range m.Plugins {
		out[i] = f(p)
	}
	return out
}

// RSS returns each plugin's RSS in KiB.
func (m MemoryResult) RSS() []int64 { return m.pick(func(p Mem) int64 { return p.RSS }) }

// PSS returns each plugin's PSS in KiB.
func (m MemoryResult) PSS() []int64 { return m.pick(func(p Mem) int64 { return p.PSS }) }

// PSSAnon returns each plugin's anonymous PSS in KiB.
func (m MemoryResult) PSSAnon() []int64 { return m.pick(func(p Mem) int64 { return p.PSSAnon }) }

// PSSFile returns each plugin's file-backed PSS in KiB.
func (m MemoryResult) PSSFile() []int64 { return m.pick(func(p Mem) int64 { return p.PSSFile }) }

func sum(vs []int64) int64 {
	var s int64
	for _, v := range vs {
		s += v
	}
	return s
}
