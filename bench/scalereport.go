package bench

import (
	"fmt"
	"math"
	"strconv"
	"time"
)

// The report's parts for issue 15 (scale on one host): the bare go-plugin
// floor of the start-up (in section 3), supervisord side by side (section
// 11), the 1,000-worker test (section 12) and the scale limits (section
// 13), with their rows in the summary.

// Parameters of the benchmarks that the report describes (the tests
// live in _test.go files, the report is built without them).
const (
	// bareRuns is how many measured runs each concurrency of the bare
	// go-plugin baseline gets.
	bareRuns = 5
	// supervisordSettle is how long the programs run before the memory is
	// read and their pids are checked again (a fixed idle period, as in
	// TestMemory).
	supervisordSettle = 3 * time.Second
	// scaleSettle is how long a host runs idle after `host running`
	// before its idle sample begins (a fixed period, not a
	// synchronisation): what follows the start-up is not idle cost.
	scaleSettle = 10 * time.Second
	// scaleRSSEvery is how often the host's VmRSS is read during the idle
	// sample; the largest reading is reported.
	scaleRSSEvery = 5 * time.Second
)

// minutes formats a long duration: "12 min 5 s".
func minutes(d time.Duration) string {
	d = d.Round(time.Second)
	if d < time.Minute {
		return secs(d)
	}
	return fmt.Sprintf("%d min %d s", int(d.Minutes()), int(d.Seconds())%60)
}

// times formats a ratio: "1.34×".
func times(v float64) string {
	if v >= 10 {
		return trimFloat(v, 0) + "×"
	}
	return trimFloat(v, 2) + "×"
}

// renderBare writes the bare go-plugin floor at the end of section 3 and
// the host's start-up of 100 workers (hostMed) as a multiple of it.
func renderBare(p func(string, ...any), b *BareResult, hostMed time.Duration, nproc int) {
	floor, ok := b.Floor()
	if !ok {
		return
	}
	p("**The floor: bare go-plugin.** In the same run the harness spawns the same hello-worker binary %d times with plain ", b.Spawns)
	p("go-plugin, as a program embedding it without the host would (the project's handshake and plugin set from `internal/wire`, gRPC, ")
	p("no SecureConfig, a null logger, no socket directory, cgroup, log or state of its own), and makes the first RPC (`Describe`) on each; ")
	p("all %d processes keep running until the last has answered, then are killed and reaped. Each concurrency is run %d times after ", b.Spawns, bareRuns)
	p("an unmeasured one.\n\n")
	p("| spawns in flight | first exec → last first RPC answered, median | min | max | one spawn (exec → first RPC), p50 | p99 |\n|---|---|---|---|---|---|\n")
	for _, r := range b.Runs {
		p("| %d | %s | %s | %s | %s | %s |\n", r.Concurrency, ms(Median(r.Totals)), ms(slicesMin(r.Totals)), ms(Max(r.Totals)),
			ms(r.EachSummary.P50), ms(r.EachSummary.P99))
	}
	fm := Median(floor.Totals)
	ratio := float64(hostMed) / float64(fm)
	p("\nThe floor is the fastest of them, %s with %d in flight. The host's exec → `host running` of 100 workers (%s, median above; ", ms(fm), floor.Concurrency, secs(hostMed))
	p("it includes the host's own start, config and catalog, which the bare spawns do not have) is %s that: ", times(ratio))
	if ratio <= TargetBareRatio {
		p("the goal of at most %s× is met.", trimFloat(TargetBareRatio, 1))
	} else {
		p("the goal of at most %s× is missed.", trimFloat(TargetBareRatio, 1))
	}
	if seq, ok := b.At(1); ok {
		p(" One after another a bare spawn + first RPC takes %s (p50)", ms(seq.EachSummary.P50))
		p(", so %d spawns take %s in sequence on %d cores.", b.Spawns, ms(Median(seq.Totals)), nproc)
	}
	p("\n\n")
}

func slicesMin(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	m := ds[0]
	for _, d := range ds[1:] {
		m = min(m, d)
	}
	return m
}

// renderSupervisordSummary writes supervisord's rows of the summary.
func renderSupervisordSummary(p func(string, ...any), r *Results) {
	sv := r.Supervisord
	if sv == nil {
		return
	}
	if sv.NotRun != "" {
		p("| supervisord side by side (section 11) | — | not run: %s | not run |\n", sv.NotRun)
		return
	}
	p("| crash → running again, p50: dynworkers (spaced / back to back) vs supervisord %s | — | %s / %s vs %s (supervisord takes %s× as long as a spaced crash) | — |\n",
		sv.Version, ms(r.RestartSpaced.Total.P50), ms(r.Restart.Total.P50), ms(sv.Restart.P50), trimFloat(float64(sv.Restart.P50)/float64(r.RestartSpaced.Total.P50), 0))
	if s100, ok := r.startup(100, 0); ok {
		hs, ss := Median(s100.ExecToRunning()), Median(sv.Start)
		p("| start of 100: dynworkers vs supervisord (exec → all running, medians) | — | %s vs %s (ratio %s) | — |\n", secs(hs), secs(ss), times(float64(ss)/float64(hs)))
		hd, sd := Median(s100.Shutdown()), Median(sv.Stop)
		p("| stop of 100: dynworkers vs supervisord (SIGTERM → exit, medians) | — | %s vs %s (ratio %s) | — |\n", secs(hd), secs(sd), times(float64(sd)/float64(hd)))
	}
	if sc := r.Scale; sc != nil && sc.Base != nil && sc.Full != nil {
		p("| memory per supervised program: dynworkers' host growth vs supervisord's (PSS) | — | %s vs %s per program | — |\n",
			kib(perWorker(sc, func(s *ScaleRun) float64 { return float64(s.HostPSSKiB) })), kib(sv.PerProgram()))
	}
}

// kib formats a number of KiB: "412 KiB", "2.3 MiB".
func kib(v float64) string {
	if math.Abs(v) >= 1024 {
		return trimFloat(v/1024, 1) + " MiB"
	}
	return trimFloat(v, 0) + " KiB"
}

// renderSupervisord writes section 11.
func renderSupervisord(p func(string, ...any), r *Results) {
	sv := r.Supervisord
	p("## 11. Side by side with supervisord\n\n")
	if sv.NotRun != "" {
		p("Not run: %s. Install Debian's package `supervisor` (or run `make bench` as root, which installs it) and run it again.\n\n", sv.NotRun)
		return
	}
	p("supervisord (%s, %s) runs the same hello-worker binary (the harness's copy) in the same run on the same machine. ", sv.Version, sv.Found)
	p("Run standalone, the plugin gets go-plugin's magic cookie in its environment, so it serves (prints its handshake line, listens on a unix ")
	p("socket) and idles with no host connected; the harness checks that every program stays up (same pid after %s). ", target(supervisordSettle))
	p("Each program has `autorestart=true`, `startsecs=0`, its output read and dropped (`stdout_logfile=NONE`, the lightest setting for ")
	p("supervisord), `stopsignal=TERM`. supervisord runs in the foreground with a config, unix socket and log of its own.\n\n")
	p("**What \"running\" means for each, honestly.** For supervisord with `startsecs=0`, RUNNING is entered once the program was spawned ")
	p("(fork and exec done), whether or not it serves; its time is the `success: … entered RUNNING state` line of supervisord's log (UTC, ")
	p("millisecond resolution), which the harness reads every 5 ms from the file, so that it never wakes supervisord up (its main loop ")
	p("waits up to a second in its poll, and a request on its socket would end that wait early). For dynworkers, running is ")
	p("`worker_started`: the plugin has made its go-plugin handshake, the host is connected and the worker's `Start` RPC has answered — ")
	p("more work than supervisord's RUNNING. `supervisorctl status` checks the state and pids after each measure, never during one.\n\n")
	p("| | dynworkers | supervisord | supervisord / dynworkers |\n|---|---|---|---|\n")
	sp := r.RestartSpaced
	p("| crash (SIGKILL) → running again, p50 (dynworkers: spaced crashes, %d; supervisord: %d) | %s | %s | %s |\n",
		sp.Crashes, sv.Crashes, ms(sp.Total.P50), ms(sv.Restart.P50), times(float64(sv.Restart.P50)/float64(sp.Total.P50)))
	p("| crash → running again, p90 | %s | %s | %s |\n", ms(sp.Total.P90), ms(sv.Restart.P90), times(float64(sv.Restart.P90)/float64(sp.Total.P90)))
	if s100, ok := r.startup(100, 0); ok {
		hs, ss := Median(s100.ExecToRunning()), Median(sv.Start)
		p("| start of 100 (exec → all 100 running), median of %d / %d runs | %s | %s | %s |\n", len(s100.Runs), len(sv.Start), secs(hs), secs(ss), times(float64(ss)/float64(hs)))
		hd, sd := Median(s100.Shutdown()), Median(sv.Stop)
		p("| stop of 100 (SIGTERM → exit, all stopped), median | %s | %s | %s |\n", secs(hd), secs(sd), times(float64(sd)/float64(hd)))
	}
	var hostPer float64
	sc := r.Scale
	if sc != nil && sc.Base != nil && sc.Full != nil {
		hostPer = perWorker(sc, func(s *ScaleRun) float64 { return float64(s.HostPSSKiB) })
		p("| the supervisor's own memory per program (PSS growth; dynworkers: between %d and %d workers, section 13; supervisord: between 1 and %d programs) | %s | %s | %s |\n",
			sc.Base.Workers, sc.Full.Workers, sv.Programs, kib(hostPer), kib(sv.PerProgram()), ratioOrDash(sv.PerProgram(), hostPer))
		hostRSS := perWorker(sc, func(s *ScaleRun) float64 { return float64(s.HostRSSKiB) })
		p("| the supervisor's own memory per program, RSS growth | %s | %s | %s |\n", kib(hostRSS), kib(sv.PerProgramRSS()), ratioOrDash(sv.PerProgramRSS(), hostRSS))
	}
	p("| the supervisor itself (PSS; dynworkers with %d idle workers, section 4; supervisord with %d programs) | %s | %s | %s |\n",
		r.Memory.Workers, sv.Programs, mib(r.Memory.Host.PSS), mib(sv.MemN.PSS), ratioOrDash(float64(sv.MemN.PSS), float64(r.Memory.Host.PSS)))
	p("| a supervised program (PSS, median) | %s | %s | %s |\n\n", mib(Median(r.Memory.PSS())), mib(Median(sv.ProgramPSS)),
		ratioOrDash(float64(Median(sv.ProgramPSS)), float64(Median(r.Memory.PSS()))))
	p("A killed program is RUNNING again under supervisord after %s (median; max %s of %d): it acts on the death when its main ", ms(sv.Restart.P50), ms(sv.Restart.Max), sv.Crashes)
	p("loop's poll next returns, and its RUNNING is only spawned. dynworkers has the worker running — handshake made, `Start` answered — after %s. ", ms(sp.Total.P50))
	p("A program under supervisord is a little smaller because no host is connected to it (no gRPC connection, no `Start`).\n\n")
}

func ratioOrDash(a, b float64) string {
	if b <= 0 || a <= 0 {
		return "—"
	}
	return times(a / b)
}

// perWorker is the growth of v per worker between the scale test's two
// hosts.
func perWorker(sc *ScaleResult, v func(*ScaleRun) float64) float64 {
	n := float64(sc.Full.Workers - sc.Base.Workers)
	if n <= 0 {
		return 0
	}
	return (v(sc.Full) - v(sc.Base)) / n
}

// renderScaleSummary writes the 1,000-worker test's rows of the summary.
func renderScaleSummary(p func(string, ...any), sc *ScaleResult) {
	if sc.NotRun != "" {
		p("| 1,000 workers (section 12) | — | not run: %s | not run |\n", sc.NotRun)
		return
	}
	f := sc.Full
	p("| start-up of %d workers, exec → `host running`, one run | ≤ %s | %s | %s |\n", f.Workers, target(TargetStartup1000), secs(f.ExecToRunning), yesNo(f.ExecToRunning <= TargetStartup1000))
	p("| host CPU with %d idle workers over %s, %% of one core | ≤ %s %% | %s %% | %s |\n", f.Workers, secs(f.Idle), trimFloat(TargetIdleCPU, 0),
		trimFloat(f.CPUPercent(), 2), yesNo(f.CPUPercent() <= TargetIdleCPU))
	p("| host RSS with %d idle workers (largest VmRSS read) | ≤ 150 MB | %s | %s |\n", f.Workers, mb(f.HostRSSKiB*1024), yesNo(f.HostRSSKiB <= TargetIdleRSS))
	p("| `status` reply with %d workers over HTTP, p50 of %d (max) | ≤ %s | %s (%s) | %s |\n", f.Workers, f.StatusHTTP.N, target(TargetStatus),
		ms(f.StatusHTTP.P50), ms(f.StatusHTTP.Max), yesNo(f.StatusHTTP.P50 <= TargetStatus))
	p("| `status` reply with %d workers over AMQP, p50 of %d (max) | ≤ %s | %s (%s) | %s |\n", f.Workers, f.StatusAMQP.N, target(TargetStatus),
		ms(f.StatusAMQP.P50), ms(f.StatusAMQP.Max), yesNo(f.StatusAMQP.P50 <= TargetStatus))
	p("| %d of %d workers SIGKILLed: all running again in new processes, the %d others untouched | all | %d back (last after %s), %d untouched | %s |\n",
		sc.Kills, f.Workers, f.Workers-sc.Kills, sc.Back, ms(sc.KillToRunning.Max), sc.Untouched, yesNo(sc.Back == sc.Kills && sc.Untouched == f.Workers-sc.Kills))
	p("| a frozen worker (SIGSTOP) among %d: killed by its silent health beats within the bound, started again, no event of another worker | ≤ %s (+%s for the kill) | %s, %s, %d other events | %s |\n",
		f.Workers, secs(FrozenBound), ms(FrozenKillMargin), secs(sc.FrozenToExited), runningAgain(sc.FrozenBack), sc.FrozenNeighbourEvents, yesNo(sc.frozenMet()))
	p("| clean stop of %d workers: exit 0, no plugin process, no socket left | clean | %s, %d processes, %d sockets left | %s |\n",
		f.Workers, secs(sc.Shutdown), sc.LeftProcesses, sc.LeftSockets, yesNo(sc.LeftProcesses == 0 && sc.LeftSockets == 0))
}

// frozenMet reports whether the frozen worker was killed within the bound
// (and no sooner than the silence allows), came back, and disturbed no
// other worker.
func (sc *ScaleResult) frozenMet() bool {
	return sc.FrozenBack && sc.FrozenNeighbourEvents == 0 && sc.FrozenToExited >= FrozenLow && sc.FrozenToExited <= FrozenBound+FrozenKillMargin
}

func runningAgain(back bool) string {
	if back {
		return "running again"
	}
	return "not running again"
}

// renderScale writes sections 12 and 13.
func renderScale(p func(string, ...any), r *Results) {
	sc := r.Scale
	p("## 12. 1,000 workers\n\n")
	if sc.NotRun != "" {
		p("Not run: %s. The test reads status over AMQP and the workers' events on `vumi.events`: start a broker ", sc.NotRun)
		p("(`scripts/ensure-rabbitmq.sh`) and run `make bench` again.\n\n## 13. Scale limits\n\nNot run (section 12).\n\n")
		return
	}
	b, f := sc.Base, sc.Full
	p("`TestScale1000`: `dynworkers serve` with %d hello workers (`interval = \"1h\"`, so idle) from its config, under a `one_for_one` ", f.Workers)
	p("root supervisor whose restart budget allows the kills below, on an `amqp` block (status over AMQP, events on `vumi.events`), default ")
	p("`start_concurrency`, health checks and metrics as configured by default. After `host running` it idles %s (not measured), then the ", target(scaleSettle))
	p("harness samples it for %s: the host's CPU time (utime + stime from `/proc/<pid>/stat`), its VmRSS every %s (the largest is kept), ", secs(f.Idle), target(scaleRSSEvery))
	p("then its PSS, open fds, threads and `go_goroutines` from its `/metrics`, every plugin's PSS and threads, and %d `status` round trips ", f.StatusHTTP.N)
	p("one at a time over HTTP (`GET /v1/status`) and over AMQP (each checked to show all %d running). A host of %d workers is run and ", f.Workers, b.Workers)
	p("sampled the same way first (%s), for the cost per worker of section 13.\n\n", secs(b.Idle))
	p("| | %d workers | %d workers |\n|---|---|---|\n", b.Workers, f.Workers)
	p("| exec → `host running` (one run) | %s | %s |\n", secs(b.ExecToRunning), secs(f.ExecToRunning))
	p("| host CPU while idle, %% of one core | %s %% | %s %% |\n", trimFloat(b.CPUPercent(), 2), trimFloat(f.CPUPercent(), 2))
	p("| all plugins' CPU while idle, %% of one core | %s %% | %s %% |\n", trimFloat(cpuPercent(b.PluginsCPU, b.Idle), 2), trimFloat(cpuPercent(f.PluginsCPU, f.Idle), 2))
	p("| host VmRSS, largest read | %s | %s |\n| host PSS | %s | %s |\n", mib(b.HostRSSKiB), mib(f.HostRSSKiB), mib(b.HostPSSKiB), mib(f.HostPSSKiB))
	p("| host open fds | %d | %d |\n| host goroutines | %d | %d |\n| host threads | %d | %d |\n", b.HostFDs, f.HostFDs, b.Goroutines, f.Goroutines, b.HostThreads, f.HostThreads)
	p("| plugin PSS, median / sum | %s / %s | %s / %s |\n", mib(b.PluginPSSKiB), mib(b.PluginPSSSumKiB), mib(f.PluginPSSKiB), mib(f.PluginPSSSumKiB))
	p("| plugin threads, median | %d | %d |\n", b.PluginThreads, f.PluginThreads)
	p("| `status` over HTTP, p50 / max | %s / %s | %s / %s |\n", ms(b.StatusHTTP.P50), ms(b.StatusHTTP.Max), ms(f.StatusHTTP.P50), ms(f.StatusHTTP.Max))
	p("| `status` over AMQP, p50 / max | %s / %s | %s / %s |\n\n", ms(b.StatusAMQP.P50), ms(b.StatusAMQP.Max), ms(f.StatusAMQP.P50), ms(f.StatusAMQP.Max))
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "missed"
	}
	p("Against the targets: start-up %s (≤ %s, %s), idle CPU %s %% of a core (≤ %s %%, %s), RSS %s (≤ 150 MB, %s), status %s over HTTP and %s over AMQP (≤ %s, %s).\n\n",
		secs(f.ExecToRunning), target(TargetStartup1000), verdict(f.ExecToRunning <= TargetStartup1000),
		trimFloat(f.CPUPercent(), 2), trimFloat(TargetIdleCPU, 0), verdict(f.CPUPercent() <= TargetIdleCPU),
		mb(f.HostRSSKiB*1024), verdict(f.HostRSSKiB <= TargetIdleRSS),
		ms(f.StatusHTTP.P50), ms(f.StatusAMQP.P50), target(TargetStatus), verdict(f.StatusHTTP.P50 <= TargetStatus && f.StatusAMQP.P50 <= TargetStatus))
	p("**Crash isolation at scale.** The harness then SIGKILLs the processes of %d workers chosen at random, all at once. ", sc.Kills)
	p("Each must run again in a new process (its `worker_started` with a new pid on `vumi.events`; status shows it running, restarted once); ")
	p("the other %d must keep their process (same pid and start time in `/proc`), show no restart and have no event at all after the kills. ", f.Workers-sc.Kills)
	p("Kill → `worker_started` of each replacement: p50 %s, last %s; %d neighbours untouched.\n\n", ms(sc.KillToRunning.P50), ms(sc.KillToRunning.Max), sc.Untouched)
	p("**A frozen worker at scale.** Then the harness freezes one of the untouched workers' processes with SIGSTOP. Its health ")
	p("beats stop (the SDK pushes one every `health_interval`), and the host counts each silent interval as a failed health check: with ")
	p("the default settings (`health_interval` 5 s, `health_timeout` 2 s, 3 failures) it must kill the process within 5 s × 3 + 2 s plus ")
	p("the first beat's delivery slack of 250 ms, %s, plus up to %s for the kill and the reaping (docs/operator-guide.md, \"Health checks\"), ", secs(FrozenBound), ms(FrozenKillMargin))
	p("and no sooner than the silence allows (%s), then start the worker again, with no event of any other worker meanwhile. ", secs(FrozenLow))
	p("SIGSTOP → `worker_exited`: %s (%s); %s; %d events of other workers. Its `worker_exited` error: `%s`.\n\n",
		secs(sc.FrozenToExited), verdict(sc.frozenMet()), runningAgain(sc.FrozenBack), sc.FrozenNeighbourEvents, sc.FrozenError)
	p("**Clean stop.** SIGTERM → exit 0 took %s. Then no process anywhere may still carry the host's pid in its `%s` ", secs(sc.Shutdown), "DYNWORKERS_PARENT_PID")
	p("(a plugin of this host, wherever it was reparented) — %d found — and no unix socket may be left in the `TMPDIR` the harness gave the host — %d found.\n\n",
		sc.LeftProcesses, sc.LeftSockets)

	renderLimits(p, sc)
}

func cpuPercent(cpu, over time.Duration) float64 {
	if over <= 0 {
		return 0
	}
	return 100 * cpu.Seconds() / over.Seconds()
}

// renderLimits writes section 13: what grows with the workers, per worker,
// and how many workers each limit allows.
func renderLimits(p func(string, ...any), sc *ScaleResult) {
	b, f, l := sc.Base, sc.Full, sc.Limits
	n := f.Workers - b.Workers
	p("## 13. Scale limits\n\n")
	p("Generated from section 12: the cost per worker is the difference between the host of %d workers and the one of %d, ", f.Workers, b.Workers)
	p("divided by %d; what does not grow (threads, the host's fixed memory) drops out. Limits are the host process's ", n)
	p("(`/proc/<pid>/limits`; Go raises its soft limit of open files to the hard limit at start) and the kernel's.\n\n")
	fds := perWorker(sc, func(s *ScaleRun) float64 { return float64(s.HostFDs) })
	gor := perWorker(sc, func(s *ScaleRun) float64 { return float64(s.Goroutines) })
	rss := perWorker(sc, func(s *ScaleRun) float64 { return float64(s.HostRSSKiB) })
	pss := perWorker(sc, func(s *ScaleRun) float64 { return float64(s.HostPSSKiB) })
	cpu := perWorker(sc, func(s *ScaleRun) float64 { return s.CPUPercent() })
	hthr := perWorker(sc, func(s *ScaleRun) float64 { return float64(s.HostThreads) })
	pthr := float64(f.PluginThreads)
	p("| what grows with the workers | per worker | at %d workers |\n|---|---|---|\n", f.Workers)
	p("| host open file descriptors | %s | %d |\n", trimFloat(fds, 1), f.HostFDs)
	p("| host goroutines | %s | %d |\n", trimFloat(gor, 1), f.Goroutines)
	p("| host RSS (largest VmRSS read) | %s | %s |\n", kib(rss), mib(f.HostRSSKiB))
	p("| host PSS | %s | %s |\n", kib(pss), mib(f.HostPSSKiB))
	p("| host idle CPU, %% of one core | %s %% | %s %% |\n", strconv.FormatFloat(cpu, 'g', 2, 64), trimFloat(f.CPUPercent(), 2))
	p("| host threads | %s | %d |\n", trimFloat(hthr, 3), f.HostThreads)
	p("| plugin process PSS (median) | %s | %s (sum) |\n", mib(f.PluginPSSKiB), mib(f.PluginPSSSumKiB))
	p("| plugin idle CPU, %% of one core | %s %% | %s %% |\n", strconv.FormatFloat(cpuPercent(f.PluginsCPU, f.Idle)/float64(f.Workers), 'g', 2, 64), trimFloat(cpuPercent(f.PluginsCPU, f.Idle), 2))
	p("| threads (and so pids) per plugin process (median) | %d | %d |\n\n", f.PluginThreads, f.PluginThreads*int64(f.Workers))

	allow := func(limit, fixed, per float64) string {
		if limit < 0 {
			return "no limit"
		}
		if per <= 0 {
			return "not bound by it"
		}
		return fmt.Sprintf("about %s", groupThousands(int64((limit-fixed)/per)))
	}
	fdFixed := float64(f.HostFDs) - fds*float64(f.Workers)
	perWorkerPids := pthr + max(hthr, 0)
	memPer := float64(f.PluginPSSKiB) + pss
	p("| limit | value | workers it allows |\n|---|---|---|\n")
	p("| open files of the host (`ulimit -n`, soft / hard) | %s / %s | %s (%s fds per worker) |\n", limitString(l.NoFile[0]), limitString(l.NoFile[1]),
		allow(float64(l.NoFile[0]), fdFixed, fds), trimFloat(fds, 1))
	p("| `kernel.pid_max` (every thread takes a pid) | %s | %s, shared with the rest of the machine (%s threads per worker) |\n", groupThousands(l.PidMax),
		allow(float64(l.PidMax), 0, perWorkerPids), trimFloat(perWorkerPids, 1))
	p("| `kernel.threads-max` | %s | %s, shared likewise |\n", groupThousands(l.ThreadsMax), allow(float64(l.ThreadsMax), 0, perWorkerPids))
	p("| processes of the host's user (`ulimit -u`, soft / hard; counts threads; root is exempt) | %s / %s | %s |\n", limitString(l.NProc[0]), limitString(l.NProc[1]),
		allow(float64(l.NProc[0]), 0, perWorkerPids))
	p("| memory (MemTotal) | %s | %s (%s per worker: plugin PSS + host PSS growth), before anything else runs |\n", mib(l.MemTotalKiB),
		allow(float64(l.MemTotalKiB), float64(f.HostPSSKiB)-pss*float64(f.Workers), memPer), kib(memPer))
	if cpu > 0 {
		cpuFixed := max(f.CPUPercent()-cpu*float64(f.Workers), 0)
		p("| the host's idle CPU | one core | %s before the host alone uses a whole core doing nothing; %s within the %s %% target |\n",
			allow(100, cpuFixed, cpu), allow(TargetIdleCPU, cpuFixed, cpu), trimFloat(TargetIdleCPU, 0))
	}
	p("\nThe lowest of these is the host's ceiling on this machine; memory and the kernel's pid space are shared with everything else on it.\n\n")
}

func limitString(v int64) string {
	if v < 0 {
		return "unlimited"
	}
	return groupThousands(v)
}

// groupThousands writes 1048576 as "1,048,576".
func groupThousands(v int64) string {
	s := strconv.FormatInt(v, 10)
	neg := v < 0
	if neg {
		s = s[1:]
	}
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}
