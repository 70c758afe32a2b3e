package bench

import "time"

// Targets from the issues' performance sections (issue 15: scale on one
// host).
const (
	// TargetRestartP50 bounds the median crash-to-running restart latency,
	// of spaced crashes and of back-to-back crashes (a crash loop) alike.
	TargetRestartP50 = 10 * time.Millisecond
	// TargetRestartSpacedP99 bounds the p99 of spaced crashes.
	TargetRestartSpacedP99 = 20 * time.Millisecond
	// TargetStartup100 bounds the median start-up time of 100 workers.
	TargetStartup100 = 800 * time.Millisecond
	// TargetStartup1000 bounds the start-up time of 1,000 workers.
	TargetStartup1000 = 10 * time.Second
	// TargetBareRatio bounds the host's start-up of 100 workers as a
	// multiple of 100 bare go-plugin spawns + first RPC of the same binary
	// at the host's default start_concurrency.
	TargetBareRatio = 1.5
	// TargetControlStartP50 bounds the median time from the publication of
	// a start over AMQP to the new worker running (the issue: answering
	// Health; from outside, its reply, sent once the worker runs).
	TargetControlStartP50 = 10 * time.Millisecond
	// TargetIdleCPU bounds the host's CPU use with 1,000 idle workers, in
	// percent of one core.
	TargetIdleCPU = 2.0
	// TargetIdleRSS bounds the host's RSS with 1,000 idle workers, in KiB.
	TargetIdleRSS = 150 * 1000 * 1000 / 1024
	// FrozenBound is how soon a host must kill a frozen plugin process
	// with the default health settings (health_interval 5 s,
	// health_timeout 2 s, 3 failures; docs/operator-guide.md, "Health
	// checks"): interval × failures + timeout, plus the first missed
	// beat's delivery slack (a quarter of the interval, at most 250 ms).
	FrozenBound = 5*time.Second*3 + 2*time.Second + 250*time.Millisecond
	// FrozenKillMargin is the time the guide allows after FrozenBound for
	// the kill and the reaping.
	FrozenKillMargin = 500 * time.Millisecond
	// FrozenLow is the soonest the silence allows the kill: frozen just
	// after a beat, the first silence that counts ends an interval and a
	// timeout later, the last two intervals after it, less an interval
	// for the grid's alignment.
	FrozenLow = 5*time.Second*2 + 2*time.Second - 5*time.Second
	// TargetStatus bounds a status reply (HTTP and AMQP) with 1,000
	// workers.
	TargetStatus = 50 * time.Millisecond
)

// Results is everything one run of the harness measured; it is rendered to
// docs/benchmarks.md, raw numbers included.
type Results struct {
	Date        time.Time `json:"date"`
	Command     string    `json:"command"`
	GoTest      string    `json:"go_test"`
	Machine     Machine   `json:"machine"`
	HostVersion string    `json:"host_version"`
	// Duration is how long the whole of `make bench` took, builds
	// excluded (scripts/bench.sh passes its start in EnvBenchStart); 0 if
	// unknown.
	Duration time.Duration `json:"-"`
	// CPUStart is sampled when the run begins; Background compares it with
	// the end of the run.
	CPUStart   CPUSample  `json:"-"`
	Background Background `json:"background"`

	Binary *BinaryResult `json:"binary"`
	// Bare is 100 spawns of the plugin with plain go-plugin + first RPC:
	// the floor of the start-up.
	Bare *BareResult `json:"bare_go_plugin"`
	// Supervisord is the same binary under supervisord, side by side.
	Supervisord *SupervisordResult `json:"supervisord"`
	// Scale is the 1,000-worker test and the scale limits.
	Scale *ScaleResult `json:"scale"`
	// Restart kills each new instance about 1 ms after it started: back to
	// back crashes, a crash loop.
	Restart *RestartResult `json:"restart"`
	// RestartSpaced kills each instance only once the host's warm spare of
	// the binary is ready again.
	RestartSpaced *RestartResult  `json:"restart_spaced"`
	Startup       []StartupResult `json:"startup"`
	Memory        *MemoryResult   `json:"memory"`
	// Control is the control channel over AMQP and HTTP; NotRun says why
	// it was not measured (no broker).
	Control *ControlResult `json:"control"`
	// Bus is the workers' bus: throughput through one worker and the
	// memory of a backlog (BusResults); nil if its benchmarks did not run.
	Bus *BusResult `json:"bus,omitempty"`
	// Cluster is cluster mode: failover, placement rate, etcd writes
	// (ReadClusterFragments); nil if its benchmarks did not run.
	Cluster *ClusterResult `json:"cluster,omitempty"`
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

// Crash spacings of the restart benchmark.
const (
	// SpacingBackToBack kills each new instance as soon as it has been up
	// longer than reset_after (1 ms).
	SpacingBackToBack = "back_to_back"
	// SpacingSpareReady kills each instance once the host's next warm spare
	// of the binary is ready (seen in /proc), plus SpareMargin.
	SpacingSpareReady = "spare_ready"
)

// RestartResult is the crash-to-running latency of one worker that is
// SIGKILLed again and again, split at the lifecycle events the host
// publishes on vumi.events (their `time` fields, the host's clock, which
// on one machine is the harness's).
type RestartResult struct {
	// Spacing says when each kill comes: SpacingBackToBack or
	// SpacingSpareReady.
	Spacing string `json:"spacing"`
	Crashes int    `json:"crashes"`
	Warmup  int    `json:"warmup_crashes"`

	// Total: kill → worker_started of the new instance (its Start RPC
	// answered: the worker runs).
	Total Summary `json:"kill_to_started"`
	// Detect: kill → worker_exited.
	Detect Summary `json:"kill_to_exited"`
	// Start: worker_exited → worker_started (launch or warm spare,
	// handshake, Start RPC).
	Start Summary `json:"exited_to_started"`
	// Notify: worker_started → its event received by the harness over
	// AMQP: what a user watching vumi.events waits on top of Total.
	Notify Summary `json:"started_to_event_received"`

	TotalUS  []int64 `json:"kill_to_started_us"`
	DetectUS []int64 `json:"kill_to_exited_us"`
	StartUS  []int64 `json:"exited_to_started_us"`
	NotifyUS []int64 `json:"started_to_event_received_us"`

	// SpareWait (spaced crashes only): the new instance's worker_started
	// → the next warm spare was seen ready in /proc. The kill came
	// SpareMargin after that.
	SpareWait   Summary       `json:"started_to_spare_ready"`
	SpareWaitUS []int64       `json:"started_to_spare_ready_us,omitempty"`
	SpareMargin time.Duration `json:"-"`
	// FromSpare (spaced crashes only) counts the measured restarts whose
	// new instance is one of the spares there before the kill (the host
	// may keep several of a binary that crash-loops).
	FromSpare int `json:"restarts_into_the_ready_spare"`

	// StaleSockets counts the unix socket files the killed plugins left
	// behind in their socket directory.
	StaleSockets int `json:"stale_sockets"`
}

// ControlResult is the control channel: round trips of the status
// operation over AMQP and HTTP, start+stop cycles over AMQP, and the time
// from the publication of a start to its reply.
type ControlResult struct {
	// NotRun, if set, says why the control benchmarks did not run.
	NotRun string `json:"not_run,omitempty"`

	// Broker is the broker's URL with the password hidden.
	Broker string `json:"broker,omitempty"`
	// Status: status round trips, over AMQP and over HTTP, one and several
	// in flight.
	Status []RoundTrips `json:"status,omitempty"`
	// Cycles: start then stop of a fresh worker, each waiting for its reply.
	Cycles *Cycles `json:"start_stop_cycles,omitempty"`
	// StartHealth: publish of a start → its reply (the worker runs).
	StartHealth *StartHealth `json:"start_to_healthy,omitempty"`
	// Elapsed is how long the control benchmarks ran; BrokerCPU is the CPU
	// time a broker on this machine used meanwhile (0 if it runs elsewhere).
	Elapsed     time.Duration `json:"-"`
	BrokerCPU   time.Duration `json:"-"`
	ElapsedMS   int64         `json:"elapsed_ms,omitempty"`
	BrokerCPUMS int64         `json:"local_broker_cpu_ms,omitempty"`
	// SparesLaunched counts plugin processes other than workers seen at
	// the end: warm spares (none expected, since no worker failed).
	SparesLaunched int `json:"spares_at_end"`
}

// RoundTrips is N requests over one transport with InFlight outstanding at
// any time (each of InFlight clients sends its next request once it has the
// reply to the previous one).
type RoundTrips struct {
	Transport string        `json:"transport"` // "amqp" or "http"
	Request   string        `json:"request"`
	N         int           `json:"n"`
	Warmup    int           `json:"warmup"`
	InFlight  int           `json:"in_flight"`
	Elapsed   time.Duration `json:"-"`
	ElapsedUS int64         `json:"elapsed_us"`
	Latency   Summary       `json:"latency"`
	LatencyUS []int64       `json:"latency_us"`
}

// PerSecond is the throughput: requests answered per second of the run.
func (r RoundTrips) PerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.N) / r.Elapsed.Seconds()
}

// Cycles is start+stop cycles of a fresh worker over AMQP.
type Cycles struct {
	N         int           `json:"n"`
	Elapsed   time.Duration `json:"-"`
	ElapsedUS int64         `json:"elapsed_us"`
	// Cycle: publish of the start → reply to the stop received.
	Cycle   Summary `json:"cycle"`
	Start   Summary `json:"start_reply"`
	Stop    Summary `json:"stop_reply"`
	CycleUS []int64 `json:"cycle_us"`
	StartUS []int64 `json:"start_reply_us"`
	StopUS  []int64 `json:"stop_reply_us"`
}

// PerSecond is the number of cycles per second of the run.
func (c Cycles) PerSecond() float64 {
	if c.Elapsed <= 0 {
		return 0
	}
	return float64(c.N) / c.Elapsed.Seconds()
}

// StartHealth is the time from the publication of a start over AMQP to
// its reply (sent once the worker runs), split at the lifecycle events of
// vumi.events.
type StartHealth struct {
	N int `json:"n"`
	// Total: publish → the start's reply received.
	Total Summary `json:"publish_to_reply"`
	// Dispatch: publish → worker_starting (delivery, decoding, validation
	// with the class's schema, the state file written and synced).
	Dispatch Summary `json:"publish_to_starting"`
	// Start: worker_starting → worker_started (the plugin process launched
	// and its Start RPC answered).
	Start Summary `json:"starting_to_started"`
	// Health: worker_started → the reply received (the reply written,
	// published with a confirm, and delivered).
	Health     Summary `json:"started_to_reply"`
	TotalUS    []int64 `json:"publish_to_reply_us"`
	DispatchUS []int64 `json:"publish_to_starting_us"`
	StartUS    []int64 `json:"starting_to_started_us"`
	HealthUS   []int64 `json:"started_to_reply_us"`
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

// BareResult is the floor the host's start-up is compared with: Spawns
// plugin processes of the same binary started with plain go-plugin (the
// project's handshake and plugin set, no SecureConfig, nothing of the
// host's) and their first RPC answered, at several concurrencies.
type BareResult struct {
	Spawns int       `json:"spawns"`
	Runs   []BareRun `json:"runs"`
}

// BareRun is one concurrency of the bare baseline, over several runs.
type BareRun struct {
	Concurrency int `json:"concurrency"`
	// Totals: first exec → the last first RPC answered, one per run.
	Totals  []time.Duration `json:"-"`
	TotalUS []int64         `json:"total_us"`
	// Each: one spawn's exec → its first RPC answered, over all runs.
	Each        []time.Duration `json:"-"`
	EachSummary Summary         `json:"each"`
}

// Floor returns the bare run with the smallest median total, the floor
// the host's start-up is compared with, and false if there is none.
func (b *BareResult) Floor() (BareRun, bool) {
	if b == nil || len(b.Runs) == 0 {
		return BareRun{}, false
	}
	best := b.Runs[0]
	for _, r := range b.Runs[1:] {
		if Median(r.Totals) < Median(best.Totals) {
			best = r
		}
	}
	return best, true
}

// At returns the bare run at concurrency c.
func (b *BareResult) At(c int) (BareRun, bool) {
	if b == nil {
		return BareRun{}, false
	}
	for _, r := range b.Runs {
		if r.Concurrency == c {
			return r, true
		}
	}
	return BareRun{}, false
}

// SupervisordResult is the same plugin binary run standalone under
// supervisord (go-plugin's magic cookie set, so it serves and idles), in
// the same run: crash → RUNNING again, start and stop of Programs
// programs, and memory. For supervisord, RUNNING (with startsecs=0) means
// the program was spawned; its time is that of the log line saying so.
type SupervisordResult struct {
	// NotRun, if set, says why supervisord was not measured.
	NotRun  string `json:"not_run,omitempty"`
	Version string `json:"version,omitempty"`
	// Found says whether supervisord was on PATH or installed by the run.
	Found string `json:"found,omitempty"`

	Crashes int `json:"crashes,omitempty"`
	Warmup  int `json:"warmup_crashes,omitempty"`
	// Restart: SIGKILL of the program → its "entered RUNNING state" log
	// line (millisecond resolution).
	Restart   Summary `json:"kill_to_running"`
	RestartUS []int64 `json:"kill_to_running_us,omitempty"`

	Programs int `json:"programs,omitempty"`
	// Start: exec of supervisord → the last of Programs programs entered
	// RUNNING, one per run; Stop: SIGTERM → supervisord exited, its
	// programs stopped.
	Start   []time.Duration `json:"-"`
	Stop    []time.Duration `json:"-"`
	StartUS []int64         `json:"start_us,omitempty"`
	StopUS  []int64         `json:"stop_us,omitempty"`

	// Mem1 and MemN: supervisord's own memory with 1 and with Programs
	// programs running; ProgramPSS: each program's PSS in KiB.
	Mem1       Mem     `json:"supervisord_1_program"`
	MemN       Mem     `json:"supervisord_n_programs"`
	ProgramPSS []int64 `json:"program_pss_kib,omitempty"`
}

// PerProgram is supervisord's own PSS growth per program, in KiB.
func (s *SupervisordResult) PerProgram() float64 {
	if s.Programs <= 1 {
		return 0
	}
	return float64(s.MemN.PSS-s.Mem1.PSS) / float64(s.Programs-1)
}

// PerProgramRSS is supervisord's own RSS growth per program, in KiB.
func (s *SupervisordResult) PerProgramRSS() float64 {
	if s.Programs <= 1 {
		return 0
	}
	return float64(s.MemN.RSS-s.Mem1.RSS) / float64(s.Programs-1)
}

// ScaleResult is the 1,000-worker test: a host of ScaleRun.Workers idle
// workers sampled (Full), next to a smaller one (Base) for the cost per
// worker; 50 random workers killed; a clean stop; the host's limits.
type ScaleResult struct {
	// NotRun, if set, says why the scale test did not run.
	NotRun string    `json:"not_run,omitempty"`
	Base   *ScaleRun `json:"base,omitempty"`
	Full   *ScaleRun `json:"full,omitempty"`

	// Kills workers' processes were SIGKILLed at once; KillToRunning is
	// kill → each one's worker_started; Untouched counts the others found
	// in the same process, never restarted, with no event.
	Kills           int     `json:"kills"`
	KillToRunning   Summary `json:"kill_to_started"`
	KillToRunningUS []int64 `json:"kill_to_started_us,omitempty"`
	Back            int     `json:"killed_running_again"`
	Untouched       int     `json:"neighbours_untouched"`

	// Frozen: after the kills one other worker's process is frozen with
	// SIGSTOP. Its health beats stop, and the host must kill it within
	// FrozenBound (FrozenToExited: SIGSTOP → its worker_exited, whose
	// error is FrozenError) and start it again (FrozenBack), with no event
	// of any other worker meanwhile (FrozenNeighbourEvents).
	FrozenToExited        time.Duration `json:"-"`
	FrozenToExitedMS      int64         `json:"frozen_to_exited_ms"`
	FrozenError           string        `json:"frozen_error"`
	FrozenBack            bool          `json:"frozen_running_again"`
	FrozenNeighbourEvents int           `json:"frozen_neighbour_events"`

	// Shutdown: SIGTERM → the host exited 0; what was left after it.
	Shutdown      time.Duration `json:"-"`
	ShutdownMS    int64         `json:"shutdown_ms"`
	LeftProcesses int           `json:"processes_left"`
	LeftSockets   int           `json:"sockets_left"`

	Limits HostLimits `json:"limits"`
}

// ScaleRun is one host of idle hello workers in the scale test.
type ScaleRun struct {
	Workers       int           `json:"workers"`
	ExecToRunning time.Duration `json:"exec_to_running_ns"`
	HostStartup   time.Duration `json:"host_startup_ns"`

	// Idle sample: the host's and all plugins' CPU time over Idle.
	Idle         time.Duration `json:"-"`
	HostCPU      time.Duration `json:"-"`
	PluginsCPU   time.Duration `json:"-"`
	IdleS        float64       `json:"idle_seconds"`
	HostCPUMS    int64         `json:"host_cpu_ms"`
	PluginsCPUMS int64         `json:"plugins_cpu_ms"`

	// HostRSSKiB is the largest VmRSS read during the idle sample; the
	// rest is read after it.
	HostRSSKiB      int64 `json:"host_vmrss_max_kib"`
	HostPSSKiB      int64 `json:"host_pss_kib"`
	HostFDs         int   `json:"host_fds"`
	HostThreads     int   `json:"host_threads"`
	Goroutines      int   `json:"host_goroutines"`
	PluginPSSKiB    int64 `json:"plugin_pss_median_kib"`
	PluginPSSSumKiB int64 `json:"plugin_pss_sum_kib"`
	PluginThreads   int64 `json:"plugin_threads_median"`

	// Status round trips, one at a time.
	StatusHTTP   Summary `json:"status_http"`
	StatusAMQP   Summary `json:"status_amqp"`
	StatusHTTPUS []int64 `json:"status_http_us"`
	StatusAMQPUS []int64 `json:"status_amqp_us"`
}

// CPUPercent is the host's idle CPU use in percent of one core.
func (r *ScaleRun) CPUPercent() float64 {
	if r == nil || r.Idle <= 0 {
		return 0
	}
	return 100 * r.HostCPU.Seconds() / r.Idle.Seconds()
}

// HostLimits are the limits that bound the number of workers on a host:
// the host process's (from /proc/<pid>/limits: soft, hard; -1 unlimited)
// and the kernel's.
type HostLimits struct {
	NoFile      [2]int64 `json:"nofile_soft_hard"`
	NProc       [2]int64 `json:"nproc_soft_hard"`
	PidMax      int64    `json:"pid_max"`
	ThreadsMax  int64    `json:"threads_max"`
	MemTotalKiB int64    `json:"mem_total_kib"`
}
