package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/dynworkers/dynworkers/bench"
	"github.com/dynworkers/dynworkers/host/internal/broker"
	"github.com/dynworkers/dynworkers/host/internal/broker/brokertest"
	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/host/internal/monitor"
	"github.com/dynworkers/dynworkers/host/internal/testplugins"
	"github.com/dynworkers/dynworkers/sdk"
	"github.com/dynworkers/dynworkers/sdk/sdktest"
)

// The benchmark of worker plugins on the embedded bus: the bus lives in
// the host process and nothing outside reaches it, so this benchmark runs
// the daemon in-process, here, rather than in the harness (bench/), which
// drives the host from outside. It skips unless DYNWORKERS_BENCH=1 (`make
// test` leaves it unset); scripts/bench.sh runs it before the harness,
// which puts the fragment it writes (bench.WriteFragment) in
// docs/benchmarks.md. Its twin over RabbitMQ is the harness's
// TestBusWorkerAMQP.

// The benchmark's parameters, those of TestBusWorkerAMQP in bench/.
const (
	workerWarmup           = 2000 // messages moved before the clock starts
	workerPrefetch         = sdk.DefaultPrefetch
	workerEmbeddedMessages = 50000 // measured messages per embedded run
	workerEmbeddedReps     = 3
	busBodyBytes           = 512
	benchHostTimeout       = 30 * time.Second
)

// startBenchHost runs the daemon in-process on its embedded bus with the
// echo plugin and the forward test plugin, logging at info level (as
// `serve` does) into a buffer shown on failure. The daemon is stopped at
// the test's end.
func startBenchHost(t *testing.T) *Daemon {
	t.Helper()
	built, err := testplugins.BuildDir("forward")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	plugins := filepath.Join(dir, "plugins")
	if err := os.Mkdir(plugins, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, src := range map[string]string{"forward": filepath.Join(built, "forward"), "echo": pluginBins["echo"]} {
		if err := os.Link(src, filepath.Join(plugins, name)); err != nil {
			t.Fatal(err)
		}
	}
	cfg := filepath.Join(dir, "host.hcl")
	src := "system_id = \"bench\"\nhost {\n  name       = \"bench\"\n  plugin_dir = \"plugins\"\n  state_dir  = \"var\"\n  http_addr  = \"127.0.0.1:0\"\n}\n"
	if err := os.WriteFile(cfg, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	logger := hclog.New(&hclog.LoggerOptions{Name: "dynworkers", Level: hclog.Info, Output: logs, JSONFormat: true})
	d, err := Load(context.Background(), Options{ConfigPath: cfg, Logger: logger})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-runErr:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(benchHostTimeout):
			t.Errorf("Run did not return within %v of cancel", benchHostTimeout)
		}
		if t.Failed() {
			t.Logf("host log:\n%s", logs.String())
		}
	})
	sdktest.Eventually(t, benchHostTimeout, func() bool { return d.Bus() != nil }, "the daemon made no bus")
	return d
}

// pluginWorker is a bench.BusWorker: a worker of class (a plugin of the
// bench host) under d, started as a dynamic worker for the run with the
// config cfg makes for its input queue and output routing key, and
// stopped after it. cpu, if set, receives the CPU time of the plugin
// process, read just before it is stopped.
func pluginWorker(d *Daemon, class string, cfg func(in, out string) (map[string]any, error), cpu *time.Duration) bench.BusWorker {
	const name = "bench-worker"
	return func(ctx context.Context, in, out string) (func() error, error) {
		c, err := cfg(in, out)
		if err != nil {
			return nil, err
		}
		raw, _ := json.Marshal(c)
		res, err := d.StartWorker(ctx, control.WorkerSpec{Name: name, Class: class, Config: raw})
		if err != nil {
			return nil, err
		}
		if res.State != "running" {
			_ = d.StopWorker(ctx, name)
			return nil, fmt.Errorf("the %s worker is %s after its start", class, res.State)
		}
		return func() error {
			if cpu != nil {
				*cpu = 0
				if ws, ok := d.Worker(name); ok && ws.Pid != 0 {
					if st, err := monitor.ReadProc(ws.Pid); err == nil {
						*cpu = time.Duration(st.CPUSeconds * float64(time.Second))
					}
				}
			}
			sctx, cancel := context.WithTimeout(context.Background(), benchHostTimeout)
			defer cancel()
			return d.StopWorker(sctx, name)
		}, nil
	}
}

// forwardWorker is the forward test plugin: in → out, nothing else.
func forwardWorker(d *Daemon, prefetch int, cpu *time.Duration) bench.BusWorker {
	return pluginWorker(d, "forward", func(in, out string) (map[string]any, error) {
		return map[string]any{"in": in, "out": out, "prefetch": prefetch}, nil
	}, cpu)
}

// echoWorker is the echo plugin: in must be "<transport_name>.inbound"
// and out "<transport_name>.outbound".
func echoWorker(d *Daemon, cpu *time.Duration) bench.BusWorker {
	return pluginWorker(d, "echo", func(in, out string) (map[string]any, error) {
		tn, ok := strings.CutSuffix(in, ".inbound")
		if !ok || out != tn+".outbound" {
			return nil, fmt.Errorf("echo consumes <tn>.inbound and publishes to <tn>.outbound, not %s and %s", in, out)
		}
		return map[string]any{"transport_name": tn}, nil
	}, cpu)
}

// runCPU is the CPU time of the broker and of this process at one moment.
type runCPU struct{ broker, self time.Duration }

func cpuNow() runCPU { return runCPU{bench.BrokerCPU(), processCPU()} }

// fill sets the run's CPU figures from the samples before and after it and
// the plugin's own.
func (c runCPU) fill(run *bench.ThroughputRun, after runCPU, plugin time.Duration) {
	total := run.Warmup + run.Messages
	if total == 0 {
		return
	}
	per := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(total) }
	run.CPU = &bench.RunCPU{
		BrokerUS:  per(max(after.broker-c.broker, 0)),
		ProcessUS: per(after.self - c.self),
		PluginUS:  per(plugin),
	}
}

// processCPU is this process's CPU time, user and system.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestBenchBusWorkerEmbedded measures the forward and echo workers under a
// daemon on its embedded bus, interleaved with the ordered pipeline loop
// on an embedded bus of its own (no plugin process: what the bus itself
// allows).
func TestBenchBusWorkerEmbedded(t *testing.T) {
	if os.Getenv("DYNWORKERS_BENCH") != "1" {
		t.Skip("benchmark: set DYNWORKERS_BENCH=1 to run (make bench does)")
	}
	d := startBenchHost(t)
	bus, ok := d.Bus().(*broker.EmbeddedBus)
	if !ok {
		t.Fatalf("the daemon's bus is %T, want the embedded bus", d.Bus())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	body := bench.BenchBody(busBodyBytes)
	var pluginCPU time.Duration
	var runs []bench.ThroughputRun
	for i := -1; i < workerEmbeddedReps; i++ {
		for _, w := range []string{bench.WorkerBusPipeline, bench.WorkerForward, bench.WorkerEcho} {
			n := workerEmbeddedMessages
			if i < 0 {
				n /= 10
			}
			tn := fmt.Sprintf("emb%d_%s", i+1, w)
			var run bench.ThroughputRun
			var err error
			pluginCPU = 0
			c0 := cpuNow()
			switch w {
			case bench.WorkerForward:
				run, err = brokertest.MeasureEmbeddedRate(ctx, bus, tn+".inbound", tn+".outbound", workerWarmup, n, body, w, forwardWorker(d, workerPrefetch, &pluginCPU))
			case bench.WorkerEcho:
				run, err = brokertest.MeasureEmbeddedRate(ctx, bus, tn+".inbound", tn+".outbound", workerWarmup, n, body, w, echoWorker(d, &pluginCPU))
			default:
				own := broker.NewEmbeddedBus()
				run, err = brokertest.MeasureEmbeddedRate(ctx, own, "in", "out", workerWarmup, n, body, w,
					brokertest.BusLoopWorker(own, brokertest.BusLoopOptions{Prefetch: workerPrefetch, Pipeline: true}))
				err = errors.Join(err, own.Close())
			}
			if err != nil {
				t.Fatalf("%s: %v", w, err)
			}
			if i < 0 {
				continue
			}
			c0.fill(&run, cpuNow(), pluginCPU)
			run.Mode, run.Prefetch = bench.ModeEmbedded, workerPrefetch
			runs = append(runs, run)
			t.Logf("worker throughput, embedded, %s: %.0f msg/s (%d in %v); CPU per message: host+harness %.0f µs, plugin %.0f µs",
				w, run.PerSecond(), run.Messages, run.Elapsed, run.CPU.ProcessUS, run.CPU.PluginUS)
		}
	}
	res := &bench.BusResult{WorkerEmbedded: &bench.BusWorkerEmbedded{Messages: workerEmbeddedMessages, Warmup: workerWarmup,
		Reps: workerEmbeddedReps, BodyBytes: busBodyBytes, Prefetch: workerPrefetch, Runs: runs}}
	if err := bench.WriteFragment("bus-worker-embedded", res); err != nil {
		t.Fatal(err)
	}
}
