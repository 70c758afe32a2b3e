package bench

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// These tests check the harness's own helpers; unlike the benchmarks they
// always run, and quickly.

func TestSummarize(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- { // 1..100 ms, unsorted
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	s := Summarize(ds)
	want := Summary{N: 100, Min: time.Millisecond, P50: 50 * time.Millisecond, P90: 90 * time.Millisecond,
		P99: 99 * time.Millisecond, Max: 100 * time.Millisecond, Mean: 50500 * time.Microsecond}
	if s != want {
		t.Errorf("Summarize = %+v, want %+v", s, want)
	}
	if ds[0] != 100*time.Millisecond {
		t.Error("Summarize sorted its argument")
	}
	if got := Summarize(nil); got != (Summary{}) {
		t.Errorf("Summarize(nil) = %+v", got)
	}
	if got := Median([]int64{5, 1, 3, 2}); got != 2 {
		t.Errorf("Median of 4 = %d, want the lower middle 2", got)
	}
	if got := Median([]time.Duration{3, 1, 2, 5, 4}); got != 3 {
		t.Errorf("Median of 5 = %d, want 3", got)
	}
}

// The /proc helpers against real processes: a child is found, identified
// and seen gone; this process's sockets, memory and CPU are read.
func TestProcHelpers(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	id, err := Identify(cmd.Process.Pid)
	if err != nil || id.StartTicks == 0 || !id.Alive() {
		t.Fatalf("Identify = %+v, %v; alive %v", id, err, id.Alive())
	}
	if kids := ChildrenOf(os.Getpid()); !slices.Contains(kids, id) {
		t.Errorf("ChildrenOf(this process) = %v, want %v among them", kids, id)
	}
	if later := (Proc{Pid: id.Pid, StartTicks: id.StartTicks + 100}); later.Alive() {
		t.Error("a process with another start time is taken for the child")
	}
	before, err := SocketCount(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if n, err := SocketCount(os.Getpid()); err != nil || n != before+1 {
		t.Errorf("SocketCount with a listener = %d, %v; want %d", n, err, before+1)
	}
	if rss, err := ReadVmRSS(os.Getpid()); err != nil || rss < 1024 {
		t.Errorf("ReadVmRSS = %d KiB, %v", rss, err)
	}
	if m, err := ReadMem(os.Getpid()); err != nil || m.RSS < 1024 || m.PSS <= 0 || m.PSSAnon <= 0 {
		t.Errorf("ReadMem = %+v, %v", m, err)
	}
	if c := ReadCPU(); c.Busy <= 0 || c.Own <= 0 {
		t.Errorf("ReadCPU = %+v", c)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	if !id.WaitGone(10 * time.Second) {
		t.Fatal("the killed child is not gone within 10s")
	}
	if id.Alive() {
		t.Error("a zombie is taken for alive")
	}
}

func TestParseKiB(t *testing.T) {
	in := "55d1a0000000-7ffd2b5fe000 ---p 00000000 00:00 0 [rollup]\nRss:               14828 kB\nPss:                2343 kB\nPss_Anon:           1500 kB\n"
	m, err := parseKiB(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if m["Rss"] != 14828 || m["Pss"] != 2343 || m["Pss_Anon"] != 1500 || len(m) != 3 {
		t.Errorf("parseKiB = %v", m)
	}
}

func TestRenderMarkdown(t *testing.T) {
	ms := func(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }
	samples := []time.Duration{ms(17), ms(18), ms(22)}
	r := &Results{
		Date: time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC), Command: benchCommand, GoTest: goTestLine,
		Machine: Machine{NProc: 2, CPU: "test CPU", MemTotal: "2097152 kB"}, HostVersion: "dynworkers test",
		Background: Background{Elapsed: 30 * time.Second, Other: 1500 * time.Millisecond},
		Binary: &BinaryResult{PluginBytes: 13e6, HostBytes: 22e6, Checksum: Summarize([]time.Duration{ms(9)}),
			ExecToHandshake: Summarize([]time.Duration{ms(5)}), ChecksumUS: []int64{9000}},
		Restart: &RestartResult{Crashes: 3, Total: Summarize(samples), Detect: Summarize([]time.Duration{ms(1)}),
			Start: Summarize([]time.Duration{ms(16)}), Notify: Summarize([]time.Duration{ms(0.4)}), TotalUS: Micros(samples)},
		RestartSpaced: &RestartResult{Spacing: SpacingSpareReady, Crashes: 3, Total: Summarize([]time.Duration{ms(2), ms(2.5), ms(4)}),
			Detect: Summarize([]time.Duration{ms(1)}), Start: Summarize([]time.Duration{ms(0.9)}), Notify: Summarize([]time.Duration{ms(0.3)}),
			SpareWait: Summarize([]time.Duration{ms(12)}), SpareMargin: 2 * time.Millisecond, FromSpare: 3},
		Control: &ControlResult{Broker: "amqp://guest:xxxxx@127.0.0.1:5672/",
			Status: []RoundTrips{
				{Transport: "amqp", N: 500, Warmup: 20, InFlight: 1, Elapsed: time.Second, Latency: Summarize([]time.Duration{ms(2)})},
				{Transport: "amqp", N: 500, Warmup: 20, InFlight: 8, Elapsed: 250 * time.Millisecond, Latency: Summarize([]time.Duration{ms(4)})},
				{Transport: "http", N: 500, Warmup: 20, InFlight: 1, Elapsed: 100 * time.Millisecond, Latency: Summarize([]time.Duration{ms(0.2)})},
				{Transport: "http", N: 500, Warmup: 20, InFlight: 8, Elapsed: 50 * time.Millisecond, Latency: Summarize([]time.Duration{ms(0.8)})},
			},
			Cycles: &Cycles{N: 100, Elapsed: 2 * time.Second, Cycle: Summarize([]time.Duration{ms(20)}), Start: Summarize([]time.Duration{ms(15)}),
				Stop: Summarize([]time.Duration{ms(5)})},
			StartHealth: &StartHealth{N: 100, Total: Summarize([]time.Duration{ms(16)}), Dispatch: Summarize([]time.Duration{ms(2)}),
				Start: Summarize([]time.Duration{ms(13.5)}), Health: Summarize([]time.Duration{ms(0.5)})},
			Elapsed: 10 * time.Second, BrokerCPU: 2 * time.Second},
		Startup: []StartupResult{
			{Workers: 1, Runs: []StartupRun{{ExecToRunning: ms(30), HostStartup: ms(16), Shutdown: ms(3)}}},
			{Workers: 100, Runs: []StartupRun{{ExecToRunning: ms(900), HostStartup: ms(880), Shutdown: ms(160)}}},
			{Workers: 100, StartConcurrency: 1, Runs: []StartupRun{{ExecToRunning: ms(1660), HostStartup: ms(1640), Shutdown: ms(160)}}},
		},
		Memory: &MemoryResult{Workers: 2, Idle: 5 * time.Second, HostVmRSS: 37000, PluginBytes: 13e6, Host: Mem{PSS: 30000},
			Plugins: []Mem{{Pid: 1, RSS: 14800, PSS: 2300, PSSAnon: 1500, PSSFile: 800}, {Pid: 2, RSS: 14900, PSS: 2400}}},
		Bare: &BareResult{Spawns: 100, Runs: []BareRun{
			{Concurrency: 1, Totals: []time.Duration{ms(700), ms(720)}, EachSummary: Summarize([]time.Duration{ms(7)})},
			{Concurrency: 4, Totals: []time.Duration{ms(600), ms(620)}, EachSummary: Summarize([]time.Duration{ms(20)})},
		}},
		Supervisord: &SupervisordResult{Version: "4.2.5", Found: "found on PATH", Crashes: 20, Programs: 100,
			Restart: Summarize([]time.Duration{ms(1000), ms(1010), ms(2000)}), Start: []time.Duration{ms(1800)}, Stop: []time.Duration{ms(4000)},
			Mem1: Mem{PSS: 26000, RSS: 30000}, MemN: Mem{PSS: 27980, RSS: 32970}, ProgramPSS: []int64{2000, 2100}},
		Scale: &ScaleResult{Kills: 50, Back: 50, Untouched: 950, KillToRunning: Summarize([]time.Duration{ms(100), ms(300)}), Shutdown: 9 * time.Second,
			FrozenToExited: ms(16900), FrozenBack: true, FrozenError: "health check failed 3 times in a row (last: no health beat for 7s (health_interval 5s + health_timeout 2s)): killed by SIGKILL",
			Base: &ScaleRun{Workers: 100, ExecToRunning: ms(700), Idle: 30 * time.Second, HostCPU: 150 * time.Millisecond, PluginsCPU: time.Second,
				HostRSSKiB: 40000, HostPSSKiB: 39000, HostFDs: 712, HostThreads: 10, Goroutines: 2500, PluginPSSKiB: 2400, PluginThreads: 7},
			Full: &ScaleRun{Workers: 1000, ExecToRunning: 8 * time.Second, Idle: 60 * time.Second, HostCPU: 600 * time.Millisecond, PluginsCPU: 20 * time.Second,
				HostRSSKiB: 130000, HostPSSKiB: 129000, HostFDs: 7012, HostThreads: 10, Goroutines: 25000, PluginPSSKiB: 2400, PluginThreads: 7,
				StatusHTTP: Summarize([]time.Duration{ms(30)}), StatusAMQP: Summarize([]time.Duration{ms(60)})},
			Limits: HostLimits{NoFile: [2]int64{1048576, 1048576}, NProc: [2]int64{-1, -1}, PidMax: 4194304, ThreadsMax: 200000, MemTotalKiB: 2097152}},
	}
	var b bytes.Buffer
	if err := RenderMarkdown(&b, r); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"| crash-to-running restart, crashes spaced (warm spare ready), p50 of 3 crashes | ≤ 10 ms | 2.50 ms | yes |",
		"| crash-to-running restart, crashes spaced, p99 | ≤ 20 ms | 4.00 ms | yes |",
		"| crash-to-running restart, back-to-back crashes (a crash loop), p50 of 3 crashes | ≤ 10 ms | 18.0 ms | **no** |",
		"| control channel: publish of a start over AMQP → its reply (worker running, `Start` answered), p50 of 100 | ≤ 10 ms | 16.0 ms | **no** |",
		"| control channel: `status` round trips over AMQP, 8 in flight | — | 2000/s (p50 4.00 ms) | — |",
		"| control channel: start+stop cycles over AMQP | — | 50.0/s (p50 20.0 ms) | — |",
		"## 8. Control channel: publish of a start → its reply",
		"| start-up of 100 workers, exec → `host running`, median of 1 runs | ≤ 800 ms | 0.90 s | **no** |",
		// The floor is the faster bare run (4 in flight, median 600 ms).
		"| start-up of 100 workers as a multiple of 100 bare go-plugin spawns + first RPC (0.60 s, 4 in flight, section 3) | ≤ 1.5× | 1.50× | yes |",
		"| start-up of 1000 workers, exec → `host running`, one run | ≤ 10 s | 8.00 s | yes |",
		"| host CPU with 1000 idle workers over 60.00 s, % of one core | ≤ 2 % | 1.00 % | yes |",
		"| host RSS with 1000 idle workers (largest VmRSS read) | ≤ 150 MB | 133.1 MB | yes |",
		"| `status` reply with 1000 workers over AMQP, p50 of 1 (max) | ≤ 50 ms | 60.0 ms (60.0 ms) | **no** |",
		"| 50 of 1000 workers SIGKILLed: all running again in new processes, the 950 others untouched | all | 50 back (last after 300 ms), 950 untouched | yes |",
		"| clean stop of 1000 workers: exit 0, no plugin process, no socket left | clean | 9.00 s, 0 processes, 0 sockets left | yes |",
		"| a frozen worker (SIGSTOP) among 1000: killed by its silent health beats within the bound, started again, no event of another worker | ≤ 17.25 s (+500 ms for the kill) | 16.90 s, running again, 0 other events | yes |",
		"SIGSTOP → `worker_exited`: 16.90 s (met); running again; 0 events of other workers.",
		"| crash → running again, p50: dynworkers (spaced / back to back) vs supervisord 4.2.5 | — | 2.50 ms / 18.0 ms vs 1.01 s (supervisord takes 404× as long as a spaced crash) | — |",
		"| start of 100: dynworkers vs supervisord (exec → all running, medians) | — | 0.90 s vs 1.80 s (ratio 2.00×) | — |",
		// supervisord: (27980-26000)/99 = 20 KiB per program; the host: (129000-39000)/900 = 100 KiB.
		"| memory per supervised program: dynworkers' host growth vs supervisord's (PSS) | — | 100 KiB vs 20 KiB per program | — |",
		"## 11. Side by side with supervisord",
		// (32970-30000)/99 = 30 KiB; the host: (130000-40000)/900 = 100 KiB.
		"| the supervisor's own memory per program, RSS growth | 100 KiB | 30 KiB | 0.30× |",
		"## 12. 1,000 workers",
		"## 13. Scale limits",
		// (7012-712)/900 = 7 fds per worker; 1048576 less the 12 fixed, over 7.
		"| host open file descriptors | 7.0 | 7012 |",
		"| open files of the host (`ulimit -n`, soft / hard) | 1,048,576 / 1,048,576 | about 149,794 (7.0 fds per worker) |",
		"| processes of the host's user (`ulimit -u`, soft / hard; counts threads; root is exempt) | unlimited / unlimited | no limit |",
		`"kill_to_started_us": [17000,18000,22000]`,
		"The target is met",
		"above the 10 ms of the target: the target is missed for crash loops (spaced crashes: 2.50 ms, section 1)",
		"| memory | 2.0 GiB |",
		"**Note:** other processes used 5 % of one core",
		"| 1.50 s in 30.00 s (5.0 % of one core); hypervisor steal 0.00 s |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	for _, bad := range []string{"%!", "<nil>", "NaN", "Inf"} {
		if strings.Contains(out, bad) {
			t.Errorf("report contains %q:\n%s", bad, out)
		}
	}

	// Without a broker the control benchmarks and the scale test are
	// reported as not run; without supervisord, its comparison.
	r.Control = &ControlResult{NotRun: "no RabbitMQ broker answered at amqp://127.0.0.1:5672/ (refused)"}
	r.Scale = &ScaleResult{NotRun: "no RabbitMQ broker answered at amqp://127.0.0.1:5672/ (refused)"}
	r.Supervisord = &SupervisordResult{NotRun: "supervisord is not installed and the harness is not root"}
	b.Reset()
	if err := RenderMarkdown(&b, r); err != nil {
		t.Fatal(err)
	}
	out = b.String()
	for _, want := range []string{
		"| ≤ 10 ms | not run: no RabbitMQ broker answered at amqp://127.0.0.1:5672/ (refused) | not run |",
		"| 1,000 workers (section 12) | — | not run: no RabbitMQ broker answered at amqp://127.0.0.1:5672/ (refused) | not run |",
		"| supervisord side by side (section 11) | — | not run: supervisord is not installed and the harness is not root | not run |",
		"## 11. Side by side with supervisord\n\nNot run: supervisord is not installed",
		"## 6. Control channel\n\nNot run: no RabbitMQ broker",
		`"not_run": "no RabbitMQ broker answered`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report without a broker lacks %q:\n%s", want, out)
		}
	}
	for _, bad := range []string{"%!", "<nil>", "## 7.", "NaN", "Inf"} {
		if strings.Contains(out, bad) {
			t.Errorf("report without a broker contains %q", bad)
		}
	}
}

func TestSlowerShare(t *testing.T) {
	if got := slowerShare([]int64{19000, 21000, 25000, 20000}, 20*time.Millisecond); got != "50 %" {
		t.Errorf("slowerShare = %q, want 50 %%", got)
	}
}
