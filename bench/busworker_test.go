package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/sdk"
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
	workerPrefetchHigh = 100
	workerRepsHigh     = 3
	// busBodyBytes is the size of the messages of the bus benchmarks.
	busBodyBytes = 512
	// busExchange is the exchange of the workers' bus (the host's
	// default, amqp { exchange }).
	busExchange = "vumi"
)

// workerConfig is a host without workers: the harness starts the echo
// worker for each run (POST /v1/workers) and stops it after.
const workerConfig = `system_id = %q
host {
  name       = "bench"
  plugin_dir = %q
  state_dir  = "var"
  http_addr  = "127.0.0.1:0"
}
%s`

// startWorkerHost runs `dynworkers serve` with the echo and forward
// plugins on RabbitMQ, and returns it and its HTTP API. The host is
// stopped at the test's end.
func startWorkerHost(t *testing.T, f *fixture, sys, amqpURL string) (*hostProc, *httpAPI) {
	t.Helper()
	amqpBlock := fmt.Sprintf("amqp {\n  url = %q\n}\n", amqpURL)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "host.hcl")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, workerConfig, sys, f.busPluginDir, amqpBlock), 0o644); err != nil {
		t.Fatal(err)
	}
	h := startHost(t, f.host, dir, cfg)
	h.waitRunning(0)
	t.Cleanup(func() { h.stop(nil) })
	return h, newHTTPAPI(h.apiURL(), 1)
}

// pluginWorker is a BusWorker: a worker of class (a plugin of
// busPluginDir) under the host, started over HTTP as a dynamic worker for
// the run (POST /v1/workers) with the config cfg makes for its input queue
// and output routing key, and stopped after it (DELETE). cpu, if set,
// receives the CPU time of the plugin process, read in /proc just before
// it is stopped.
func pluginWorker(api *httpAPI, class string, cfg func(in, out string) (map[string]any, error), cpu *time.Duration) BusWorker {
	const name = "bench-worker"
	return func(ctx context.Context, in, out string) (func() error, error) {
		c, err := cfg(in, out)
		if err != nil {
			return nil, err
		}
		body, _ := json.Marshal(map[string]any{"name": name, "class": class, "config": c})
		rep, err := api.do(http.MethodPost, "/v1/workers", body)
		if err != nil {
			return nil, fmt.Errorf("starting the %s worker: %w", class, err)
		}
		sr, err := checkStarted(rep)
		if err != nil {
			_, _ = api.do(http.MethodDelete, "/v1/workers/"+url.PathEscape(name), nil)
			return nil, err
		}
		return func() error {
			if cpu != nil {
				*cpu, _ = ProcCPU(sr.Pid)
			}
			_, err := api.do(http.MethodDelete, "/v1/workers/"+url.PathEscape(name), nil)
			return err
		}, nil
	}
}

// forwardWorker is the forward test plugin: in → out, nothing else.
func forwardWorker(api *httpAPI, prefetch int, cpu *time.Duration) BusWorker {
	return pluginWorker(api, "forward", func(in, out string) (map[string]any, error) {
		return map[string]any{"in": in, "out": out, "prefetch": prefetch}, nil
	}, cpu)
}

// echoWorker is the echo plugin: in must be "<transport_name>.inbound"
// and out "<transport_name>.outbound".
func echoWorker(api *httpAPI, cpu *time.Duration) BusWorker {
	return pluginWorker(api, "echo", func(in, out string) (map[string]any, error) {
		tn, ok := strings.CutSuffix(in, ".inbound")
		if !ok || out != tn+".outbound" {
			return nil, fmt.Errorf("echo consumes <tn>.inbound and publishes to <tn>.outbound, not %s and %s", in, out)
		}
		return map[string]any{"transport_name": tn}, nil
	}, cpu)
}

// runCPU measures the CPU time of the broker, and of the host process and
// this one together, around a run.
type runCPU struct{ broker, self time.Duration }

func cpuNow(host int) runCPU {
	hostCPU, _ := ProcCPU(host)
	return runCPU{BrokerCPU(), processCPU() + hostCPU}
}

// processCPU is this process's CPU time, user and system.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

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
// plugin under `dynworkers serve` on RabbitMQ (the forward test plugin, which
// does what the plain program does, and the echo plugin, a Vumi
// application), side by side with the plain amqp091-go program,
// interleaved, on the same broker: the target is the worker at
// ≥ 70 % of the plain program. Without a broker it records that it did
// not run.
func TestBusWorkerAMQP(t *testing.T) {
	f := setup(t)
	amqpURL := needBroker(t, func(reason string) {
		recordBus(func(r *BusResult) { r.WorkerNotRun = reason })
	})
	socketDir(t)
	sys := benchID(t)
	tn := sys + "_tn"
	admin := newAMQPAdmin(t, amqpURL)
	admin.deleteAtCleanup(append(controlQueues(sys, "bench"), tn+".inbound", tn+".outbound", tn+".event")...)
	h, api := startWorkerHost(t, f, sys, amqpURL)
	url := amqpURL

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
		{WorkerPlain, workerPrefetch, workerReps, PlainAMQPWorker(url, busExchange, workerPrefetch, true)},
		{WorkerForward, workerPrefetch, workerReps, forwardWorker(api, workerPrefetch, &pluginCPU)},
		{WorkerEcho, workerPrefetch, workerReps, echoWorker(api, &pluginCPU)},
		{WorkerPlain, workerPrefetchHigh, workerRepsHigh, PlainAMQPWorker(url, busExchange, workerPrefetchHigh, true)},
		{WorkerForward, workerPrefetchHigh, workerRepsHigh, forwardWorker(api, workerPrefetchHigh, &pluginCPU)},
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
			c0 := cpuNow(h.pid())
			run, err := MeasureAMQPRate(ctx, url, busExchange, tn+".inbound", tn+".outbound", warm, n, body, w.name, w.w)
			if err != nil {
				t.Fatalf("%s, prefetch %d: %v", w.name, w.prefetch, err)
			}
			if i < 0 {
				continue
			}
			c0.fill(&run, cpuNow(h.pid()), pluginCPU)
			run.Mode, run.Prefetch = ModePersistent, w.prefetch
			runs = append(runs, run)
			t.Logf("worker throughput, %s, prefetch %d: %.0f msg/s (%d in %v after %d); CPU per message: broker %.0f µs, host+harness %.0f µs, plugin %.0f µs",
				w.name, w.prefetch, run.PerSecond(), run.Messages, run.Elapsed, run.Warmup, run.CPU.BrokerUS, run.CPU.ProcessUS, run.CPU.PluginUS)
		}
	}
	elapsed := time.Since(t0)
	res := &BusWorkerAMQP{
		Broker: redactURL(url), Messages: workerMessages, Warmup: workerWarmup, Reps: workerReps, RepsHigh: workerRepsHigh,
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
