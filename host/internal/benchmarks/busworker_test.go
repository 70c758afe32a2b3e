package benchmarks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/dynworkers/dynworkers/host/internal/broker"
	"github.com/dynworkers/dynworkers/host/internal/broker/brokertest"
	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/host/internal/daemon"
	"github.com/dynworkers/dynworkers/host/internal/monitor"
	"github.com/dynworkers/dynworkers/sdk"
	"github.com/dynworkers/dynworkers/sdk/sdktest"
)

// The worker benchmarks' parameters.
const (
	workerMessages = 20000 // measured messages per AMQP run
	workerWarmup   = 2000  // messages moved before the clock starts
	workerReps     = 5     // interleaved runs of each worker at workerPrefetch; the median counts
	// workerPrefetch is the SDK's default prefetch, which the echo worker
	// takes; the plain program and the forward worker run with the same.
	workerPrefetch = sdk.DefaultPrefetch
	// workerPrefetchHigh is a second prefetch for the plain program and
	// the forward worker, workerRepsHigh runs each, interleaved with the
	// others.
	workerPrefetchHigh     = 100
	workerRepsHigh         = 3
	workerEmbeddedMessages = 50000 // measured messages per embedded run
	workerEmbeddedReps     = 3
)

// workerConfig is a host without workers: the harness starts the echo
// worker for each run (StartWorker) and stops it after.
const workerConfig = `system_id = %q
host {
  name       = "bench"
  plugin_dir = %q
  state_dir  = "var"
  http_addr  = "127.0.0.1:0"
}
%s`

// startWorkerHost runs the daemon in-process with the echo plugin, on
// RabbitMQ (amqpURL set) or the embedded bus. The daemon is stopped at the
// test's end.
func startWorkerHost(t *testing.T, f *fixture, sys, amqpURL string) *daemon.Daemon {
	t.Helper()
	amqpBlock := ""
	if amqpURL != "" {
		amqpBlock = fmt.Sprintf("amqp {\n  url = %q\n}\n", amqpURL)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "host.hcl")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, workerConfig, sys, f.busPluginDir, amqpBlock), 0o644); err != nil {
		t.Fatal(err)
	}
	logs := &tailBuffer{max: 64 << 10}
	logger := hclog.New(&hclog.LoggerOptions{Name: "dynworkers", Level: hclog.Info, Output: logs, JSONFormat: true})
	d, err := daemon.Load(context.Background(), daemon.Options{ConfigPath: cfg, Logger: logger})
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
		case <-time.After(eventTimeout):
			t.Errorf("Run did not return within %v of cancel", eventTimeout)
		}
		if t.Failed() {
			t.Logf("host log (tail):\n%s", logs.String())
		}
	})
	wctx, wcancel := context.WithTimeout(context.Background(), eventTimeout)
	defer wcancel()
	if amqpURL != "" {
		if err := d.WaitBroker(wctx); err != nil {
			t.Fatalf("host did not connect to the broker: %v", err)
		}
	}
	sdktest.Eventually(t, eventTimeout, func() bool { return d.Bus() != nil }, "the daemon made no bus")
	return d
}

// pluginWorker is a BusWorker: a worker of class (a plugin of
// busPluginDir) under d, started as a dynamic worker for the run with the
// config cfg makes for its input queue and output routing key, and
// stopped after it. cpu, if set, receives the CPU time of the plugin
// process, read just before it is stopped.
func pluginWorker(d *daemon.Daemon, class string, cfg func(in, out string) (map[string]any, error), cpu *time.Duration) BusWorker {
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
						*cpu = seconds(st.CPUSeconds)
					}
				}
			}
			sctx, cancel := context.WithTimeout(context.Background(), eventTimeout)
			defer cancel()
			return d.StopWorker(sctx, name)
		}, nil
	}
}

// forwardWorker is the forward test plugin: in → out, nothing else.
func forwardWorker(d *daemon.Daemon, prefetch int, cpu *time.Duration) BusWorker {
	return pluginWorker(d, "forward", func(in, out string) (map[string]any, error) {
		return map[string]any{"in": in, "out": out, "prefetch": prefetch}, nil
	}, cpu)
}

// echoWorker is the echo plugin: in must be "<transport_name>.inbound"
// and out "<transport_name>.outbound".
func echoWorker(d *daemon.Daemon, cpu *time.Duration) BusWorker {
	return pluginWorker(d, "echo", func(in, out string) (map[string]any, error) {
		tn, ok := strings.CutSuffix(in, ".inbound")
		if !ok || out != tn+".outbound" {
			return nil, fmt.Errorf("echo consumes <tn>.inbound and publishes to <tn>.outbound, not %s and %s", in, out)
		}
		return map[string]any{"transport_name": tn}, nil
	}, cpu)
}

// runCPU measures the CPU time of the broker and of this process around a
// run.
type runCPU struct{ broker, self time.Duration }

func cpuNow() runCPU { return runCPU{BrokerCPU(), processCPU()} }

// fill sets the run's CPU figures from the samples before and after it and
// the plugin's own.
func (c runCPU) fill(run *ThroughputRun, after runCPU, plugin time.Duration) {
	total := run.Warmup + run.Messages
	if total == 0 {
		return
	}
	per := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(total) }
	run.CPU = &RunCPU{
		BrokerUS:  per(max(after.broker-c.broker, 0)),
		ProcessUS: per(after.self - c.self),
		PluginUS:  per(plugin),
	}
}

// TestBusWorkerAMQP measures messages per second through one real worker
// plugin under a real daemon on RabbitMQ (the forward test plugin, which
// does what the plain program does, and the echo plugin, a Vumi
// application), side by side with the plain amqp091-go program,
// interleaved, on the same broker: the target is the worker at
// ≥ 70 % of the plain program. Without a broker it records that it did
// not run.
func TestBusWorkerAMQP(t *testing.T) {
	f := setup(t)
	url := brokerURL()
	if err := brokertest.Probe(url); err != nil {
		reason := fmt.Sprintf("no RabbitMQ broker answered at %s (%v)", broker.RedactURL(url), err)
		recordBus(func(r *BusResult) { r.WorkerNotRun = reason })
		t.Skip(reason)
	}
	socketDir(t)
	sys := benchID(t)
	tn := sys + "_tn"
	admin := brokertest.NewAdmin(t)
	admin.DeleteAtCleanup([]string{tn + ".inbound", tn + ".outbound", tn + ".event",
		control.HostQueue(sys, "bench"), control.AnyQueue(sys)}, nil)
	d := startWorkerHost(t, f, sys, url)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	body := BenchBody(busBodyBytes)
	var pluginCPU time.Duration
	workers := []struct {
		name     string
		prefetch int
		reps     int
		w        BusWorker
	}{
		{WorkerPlain, workerPrefetch, workerReps, PlainAMQPWorker(url, broker.DefaultExchange, workerPrefetch, true)},
		{WorkerForward, workerPrefetch, workerReps, forwardWorker(d, workerPrefetch, &pluginCPU)},
		{WorkerEcho, workerPrefetch, workerReps, echoWorker(d, &pluginCPU)},
		{WorkerPlain, workerPrefetchHigh, workerRepsHigh, PlainAMQPWorker(url, broker.DefaultExchange, workerPrefetchHigh, true)},
		{WorkerForward, workerPrefetchHigh, workerRepsHigh, forwardWorker(d, workerPrefetchHigh, &pluginCPU)},
	}
	brokerCPU0, t0 := BrokerCPU(), time.Now()
	var runs []ThroughputRun
	// One unmeasured run of each warms the broker, the connections and
	// the host's warm spare of the plugin.
	for i := -1; i < workerReps; i++ {
		for _, w := range workers {
			if i >= w.reps {
				continue
			}
			warm, n := workerWarmup, workerMessages
			if i < 0 {
				n = workerMessages / 10
			}
			pluginCPU = 0
			c0 := cpuNow()
			run, err := MeasureAMQPRate(ctx, url, broker.DefaultExchange, tn+".inbound", tn+".outbound", warm, n, body, w.name, w.w)
			if err != nil {
				t.Fatalf("%s, prefetch %d: %v", w.name, w.prefetch, err)
			}
			if i < 0 {
				continue
			}
			c0.fill(&run, cpuNow(), pluginCPU)
			run.Mode, run.Prefetch = ModePersistent, w.prefetch
			runs = append(runs, run)
			t.Logf("worker throughput, %s, prefetch %d: %.0f msg/s (%d in %v after %d); CPU per message: broker %.0f µs, host+harness %.0f µs, plugin %.0f µs",
				w.name, w.prefetch, run.PerSecond(), run.Messages, run.Elapsed, run.Warmup, run.CPU.BrokerUS, run.CPU.ProcessUS, run.CPU.PluginUS)
		}
	}
	elapsed := time.Since(t0)
	res := &BusWorkerAMQP{
		Broker: broker.RedactURL(url), Messages: workerMessages, Warmup: workerWarmup, Reps: workerReps, RepsHigh: workerRepsHigh,
		BodyBytes: busBodyBytes, Prefetch: workerPrefetch, PrefetchHigh: workerPrefetchHigh, Runs: runs,
		Elapsed: elapsed, ElapsedMS: elapsed.Milliseconds(),
	}
	res.BrokerCPU = max(BrokerCPU()-brokerCPU0, 0)
	res.BrokerCPUMS = res.BrokerCPU.Milliseconds()
	for _, w := range []struct {
		name     string
		prefetch int
	}{{WorkerForward, workerPrefetch}, {WorkerEcho, workerPrefetch}, {WorkerForward, workerPrefetchHigh}} {
		t.Logf("worker throughput, prefetch %d: %s %.0f msg/s = %.0f %% of plain amqp091-go (%.0f msg/s); target ≥ %.0f %%",
			w.prefetch, w.name, res.Median(w.name, w.prefetch), 100*res.Ratio(w.name, w.prefetch), res.Median(WorkerPlain, w.prefetch), 100*TargetBusRatio)
	}
	recordBus(func(r *BusResult) { r.Worker = res })
}

// TestBusWorkerEmbedded measures the forward and echo workers under a
// daemon on its embedded bus, interleaved with the ordered pipeline loop
// on an embedded bus of its own (no plugin process: what the bus itself
// allows).
func TestBusWorkerEmbedded(t *testing.T) {
	f := setup(t)
	socketDir(t)
	sys := benchID(t)
	d := startWorkerHost(t, f, sys, "")
	bus, ok := d.Bus().(*broker.EmbeddedBus)
	if !ok {
		t.Fatalf("the daemon's bus is %T, want the embedded bus", d.Bus())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	body := BenchBody(busBodyBytes)
	var pluginCPU time.Duration
	var runs []ThroughputRun
	for i := -1; i < workerEmbeddedReps; i++ {
		for _, w := range []string{WorkerBusPipeline, WorkerForward, WorkerEcho} {
			n := workerEmbeddedMessages
			if i < 0 {
				n /= 10
			}
			tn := fmt.Sprintf("emb%d_%s", i+1, w)
			var run ThroughputRun
			var err error
			pluginCPU = 0
			c0 := cpuNow()
			switch w {
			case WorkerForward:
				run, err = MeasureEmbeddedRate(ctx, bus, tn+".inbound", tn+".outbound", workerWarmup, n, body, w, forwardWorker(d, workerPrefetch, &pluginCPU))
			case WorkerEcho:
				run, err = MeasureEmbeddedRate(ctx, bus, tn+".inbound", tn+".outbound", workerWarmup, n, body, w, echoWorker(d, &pluginCPU))
			default:
				own := broker.NewEmbeddedBus()
				run, err = MeasureEmbeddedRate(ctx, own, "in", "out", workerWarmup, n, body, w,
					BusLoopWorker(own, BusLoopOptions{Prefetch: workerPrefetch, Pipeline: true}))
				err = errors.Join(err, own.Close())
			}
			if err != nil {
				t.Fatalf("%s: %v", w, err)
			}
			if i < 0 {
				continue
			}
			c0.fill(&run, cpuNow(), pluginCPU)
			run.Mode, run.Prefetch = ModeEmbedded, workerPrefetch
			runs = append(runs, run)
			t.Logf("worker throughput, embedded, %s: %.0f msg/s (%d in %v); CPU per message: host+harness %.0f µs, plugin %.0f µs",
				w, run.PerSecond(), run.Messages, run.Elapsed, run.CPU.ProcessUS, run.CPU.PluginUS)
		}
	}
	recordBus(func(r *BusResult) {
		r.WorkerEmbedded = &BusWorkerEmbedded{Messages: workerEmbeddedMessages, Warmup: workerWarmup,
			Reps: workerEmbeddedReps, BodyBytes: busBodyBytes, Prefetch: workerPrefetch, Runs: runs}
	})
}
