package broker_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/bench"
	"github.com/dynworkers/dynworkers/host/internal/broker"
	"github.com/dynworkers/dynworkers/host/internal/broker/brokertest"
)

// The benchmarks of the bus library: they drive broker.AMQPBus and
// broker.EmbeddedBus directly, which nothing outside the host reaches, so
// they live here rather than in the harness (bench/). Like the harness's,
// they skip unless DYNWORKERS_BENCH=1 (`make test` leaves it unset);
// scripts/bench.sh runs them first and the harness puts the fragments they
// write (bench.WriteFragment) in docs/benchmarks.md.

// The bus benchmarks' parameters.
const (
	busMessages   = 10000 // messages per AMQP run
	busReps       = 5     // interleaved runs of each worker per mode; the median counts
	busSequential = 2000  // messages of the run with one delivery handled at a time
	busBodyBytes  = 512
	busPrefetch   = 100
	busEmbedded   = 200000 // messages per embedded run
	busBacklog    = 100000 // messages of the memory measurement
)

// benchBusOptions bound the embedded bus far beyond the benchmarks'
// backlogs (busEmbedded messages are published before the worker starts),
// so that the bounds are checked on every message, as on the host, but
// drop nothing.
var benchBusOptions = broker.EmbeddedBusOptions{MaxLength: 1 << 30, MaxLengthBytes: 1 << 40, MaxTotalBytes: 1 << 40}

// benchGate skips the test unless the benchmarks are enabled.
func benchGate(t *testing.T) {
	t.Helper()
	if os.Getenv("DYNWORKERS_BENCH") != "1" {
		t.Skip("benchmark: set DYNWORKERS_BENCH=1 to run (make bench does)")
	}
}

// writeFragment hands r to the harness.
func writeFragment(t *testing.T, name string, r *bench.BusResult) {
	t.Helper()
	if err := bench.WriteFragment(name, r); err != nil {
		t.Fatal(err)
	}
}

// TestBenchBusAMQP measures messages per second through one worker (consume →
// handler → publish → ack) on RabbitMQ: a plain amqp091-go program and the
// AMQPBus loops, interleaved, for persistent and transient messages, and
// one bus worker that handles one delivery at a time. Without a broker it
// records that it did not run.
func TestBenchBusAMQP(t *testing.T) {
	benchGate(t)
	url := os.Getenv("AMQP_URL")
	if url == "" {
		url = brokertest.DefaultURL
	}
	if err := brokertest.Probe(url); err != nil {
		reason := fmt.Sprintf("no RabbitMQ broker answered at %s (%v)", broker.RedactURL(url), err)
		writeFragment(t, "bus-amqp", &bench.BusResult{AMQPNotRun: reason})
		t.Skip(reason)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	conn, err := broker.Dial(ctx, broker.Options{URL: url, ConnectionName: "dynworkers bench bus"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	id := benchID(t)
	in, out := id+".in", id+".out"
	body := bench.BenchBody(busBodyBytes)
	brokerCPU0, self0, t0 := bench.BrokerCPU(), processCPU(), time.Now()

	var runs []bench.ThroughputRun
	var sequential *bench.ThroughputRun
	for _, mode := range []string{bench.ModePersistent, bench.ModeTransient} {
		persistent := mode == bench.ModePersistent
		bus := broker.NewAMQPBus(conn, broker.AMQPBusOptions{Transient: !persistent})
		workers := []struct {
			name string
			w    bench.BusWorker
		}{
			{bench.WorkerPlain, bench.PlainAMQPWorker(url, broker.DefaultExchange, busPrefetch, persistent)},
			{bench.WorkerBusConcurrent, brokertest.BusLoopWorker(bus, brokertest.BusLoopOptions{Prefetch: busPrefetch, Concurrency: busPrefetch})},
			{bench.WorkerBusPipeline, brokertest.BusLoopWorker(bus, brokertest.BusLoopOptions{Prefetch: busPrefetch, Pipeline: true})},
		}
		// One unmeasured run of each warms the broker and the connection.
		for i := -1; i < busReps; i++ {
			for _, w := range workers {
				n := busMessages
				if i < 0 {
					n = busMessages / 10
				}
				run, err := bench.MeasureAMQPThroughput(ctx, url, broker.DefaultExchange, in, out, n, body, w.name, w.w)
				if err != nil {
					t.Fatalf("%s, %s: %v", mode, w.name, err)
				}
				if i < 0 {
					continue
				}
				run.Mode = mode
				runs = append(runs, run)
				t.Logf("bus throughput, %s, %s: %.0f msg/s (%d in %v)", mode, w.name, run.PerSecond(), run.Messages, run.Elapsed)
			}
		}
		if persistent {
			run, err := bench.MeasureAMQPThroughput(ctx, url, broker.DefaultExchange, in, out, busSequential, body, bench.WorkerBusSequential,
				brokertest.BusLoopWorker(bus, brokertest.BusLoopOptions{Prefetch: busPrefetch, Concurrency: 1}))
			if err != nil {
				t.Fatalf("%s, %s: %v", mode, bench.WorkerBusSequential, err)
			}
			run.Mode = mode
			sequential = &run
			t.Logf("bus throughput, %s, %s: %.0f msg/s (%d in %v)", mode, run.Worker, run.PerSecond(), run.Messages, run.Elapsed)
		}
		if err := bus.Close(); err != nil {
			t.Fatal(err)
		}
	}
	elapsed, brokerCPU, self := time.Since(t0), max(bench.BrokerCPU()-brokerCPU0, 0), processCPU()-self0
	res := bench.BusAMQP{
		Broker: broker.RedactURL(url), Messages: busMessages, Reps: busReps, BodyBytes: busBodyBytes, Prefetch: busPrefetch,
		Runs: runs, Sequential: sequential,
		Elapsed: elapsed, ElapsedMS: elapsed.Milliseconds(), BrokerCPU: brokerCPU, BrokerCPUMS: brokerCPU.Milliseconds(),
		ProcessCPU: self, ProcessCPUMS: self.Milliseconds(),
	}
	for _, mode := range []string{bench.ModePersistent, bench.ModeTransient} {
		plain := res.Median(mode, bench.WorkerPlain)
		for _, w := range []string{bench.WorkerBusConcurrent, bench.WorkerBusPipeline} {
			t.Logf("bus throughput, %s: %s %.0f msg/s = %.0f %% of plain amqp091-go (%.0f msg/s); target ≥ %.0f %%",
				mode, w, res.Median(mode, w), 100*res.Median(mode, w)/plain, plain, 100*bench.TargetBusRatio)
		}
	}
	writeFragment(t, "bus-amqp", &bench.BusResult{AMQP: &res})
}

// TestBenchBusEmbedded measures the embedded bus: messages per second through
// the same loops, and the heap a backlog of busBacklog messages takes.
func TestBenchBusEmbedded(t *testing.T) {
	benchGate(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	body := bench.BenchBody(busBodyBytes)
	var runs []bench.ThroughputRun
	for _, w := range []struct {
		name string
		o    brokertest.BusLoopOptions
	}{
		{bench.WorkerBusConcurrent, brokertest.BusLoopOptions{Prefetch: busPrefetch, Concurrency: busPrefetch}},
		{bench.WorkerBusPipeline, brokertest.BusLoopOptions{Prefetch: busPrefetch, Pipeline: true}},
		{bench.WorkerBusSequential, brokertest.BusLoopOptions{Prefetch: busPrefetch, Concurrency: 1}},
	} {
		bus := broker.NewEmbeddedBus(benchBusOptions)
		run, err := brokertest.MeasureEmbeddedThroughput(ctx, bus, "in", "out", busEmbedded, body, w.name, brokertest.BusLoopWorker(bus, w.o))
		_ = bus.Close()
		if err != nil {
			t.Fatalf("%s: %v", w.name, err)
		}
		run.Mode = bench.ModeEmbedded
		runs = append(runs, run)
		t.Logf("bus throughput, embedded, %s: %.0f msg/s (%d in %v)", w.name, run.PerSecond(), run.Messages, run.Elapsed)
	}

	backlog, err := measureBacklog(busBacklog, body)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("embedded bus backlog of %d messages of %d bytes: heap +%.1f MB, %.0f bytes per message (%.0f beyond the body)",
		backlog.Messages, backlog.BodyBytes, float64(backlog.HeapBytes)/1e6, backlog.PerMessage(), backlog.Overhead())
	writeFragment(t, "bus-embedded", &bench.BusResult{
		Embedded: &bench.BusEmbedded{Messages: busEmbedded, BodyBytes: busBodyBytes, Prefetch: busPrefetch, Runs: runs, Backlog: backlog},
	})
}

// measureBacklog publishes n copies of body to a queue of an embedded bus
// that nobody consumes, and returns how much the live heap grew.
func measureBacklog(n int, body []byte) (*bench.Backlog, error) {
	ctx := context.Background()
	bus := broker.NewEmbeddedBus(benchBusOptions)
	defer bus.Close()
	c, err := bus.Consume(ctx, "backlog", nil, 1)
	if err != nil {
		return nil, err
	}
	if err := c.Close(); err != nil {
		return nil, err
	}
	before := heapAlloc()
	for range n {
		if err := bus.Publish(ctx, "backlog", body, nil); err != nil {
			return nil, err
		}
	}
	after := heapAlloc()
	runtime.KeepAlive(bus)
	// The backlog is really there, and is delivered.
	c, err = bus.Consume(ctx, "backlog", nil, 1)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	select {
	case d := <-c.Deliveries():
		if len(d.Body) != len(body) {
			return nil, fmt.Errorf("backlog delivered a body of %d bytes", len(d.Body))
		}
	case <-time.After(time.Second):
		return nil, errors.New("the backlog is not delivered")
	}
	return &bench.Backlog{Messages: n, BodyBytes: len(body), HeapBytes: int64(after) - int64(before)}, nil
}

// processCPU is this process's CPU time, user and system.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// heapAlloc returns the live heap after a full collection.
func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// benchID is a prefix of queue names unique to this run: "bench-" and 12
// hex digits.
func benchID(t *testing.T) string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "bench-" + hex.EncodeToString(b)
}
