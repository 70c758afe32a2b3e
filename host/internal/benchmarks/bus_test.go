package benchmarks

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/broker"
	"github.com/dynworkers/dynworkers/host/internal/broker/brokertest"
)

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

// busGate skips the test unless the benchmarks are enabled. The bus
// benchmarks need no binaries, so they do not use setup.
func busGate(t *testing.T) {
	t.Helper()
	if os.Getenv(EnvBench) != "1" {
		t.Skipf("benchmark: set %s=1 to run (make bench does)", EnvBench)
	}
}

// TestBusAMQP measures messages per second through one worker (consume →
// handler → publish → ack) on RabbitMQ: a plain amqp091-go program and the
// AMQPBus loops, interleaved, for persistent and transient messages, and
// one bus worker that handles one delivery at a time. Without a broker it
// records that it did not run.
func TestBusAMQP(t *testing.T) {
	busGate(t)
	url := brokerURL()
	if err := brokertest.Probe(url); err != nil {
		reason := fmt.Sprintf("no RabbitMQ broker answered at %s (%v)", broker.RedactURL(url), err)
		recordBus(func(r *BusResult) { r.AMQPNotRun = reason })
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
	body := BenchBody(busBodyBytes)
	brokerCPU0, self0, t0 := BrokerCPU(), processCPU(), time.Now()

	var runs []ThroughputRun
	var sequential *ThroughputRun
	for _, mode := range []string{ModePersistent, ModeTransient} {
		persistent := mode == ModePersistent
		bus := broker.NewAMQPBus(conn, broker.AMQPBusOptions{Transient: !persistent})
		workers := []struct {
			name string
			w    BusWorker
		}{
			{WorkerPlain, PlainAMQPWorker(url, broker.DefaultExchange, busPrefetch, persistent)},
			{WorkerBusConcurrent, BusLoopWorker(bus, BusLoopOptions{Prefetch: busPrefetch, Concurrency: busPrefetch})},
			{WorkerBusPipeline, BusLoopWorker(bus, BusLoopOptions{Prefetch: busPrefetch, Pipeline: true})},
		}
		// One unmeasured run of each warms the broker and the connection.
		for i := -1; i < busReps; i++ {
			for _, w := range workers {
				n := busMessages
				if i < 0 {
					n = busMessages / 10
				}
				run, err := MeasureAMQPThroughput(ctx, url, broker.DefaultExchange, in, out, n, body, w.name, w.w)
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
			run, err := MeasureAMQPThroughput(ctx, url, broker.DefaultExchange, in, out, busSequential, body, WorkerBusSequential,
				BusLoopWorker(bus, BusLoopOptions{Prefetch: busPrefetch, Concurrency: 1}))
			if err != nil {
				t.Fatalf("%s, %s: %v", mode, WorkerBusSequential, err)
			}
			run.Mode = mode
			sequential = &run
			t.Logf("bus throughput, %s, %s: %.0f msg/s (%d in %v)", mode, run.Worker, run.PerSecond(), run.Messages, run.Elapsed)
		}
		if err := bus.Close(); err != nil {
			t.Fatal(err)
		}
	}
	elapsed, brokerCPU, self := time.Since(t0), max(BrokerCPU()-brokerCPU0, 0), processCPU()-self0
	res := BusAMQP{
		Broker: broker.RedactURL(url), Messages: busMessages, Reps: busReps, BodyBytes: busBodyBytes, Prefetch: busPrefetch,
		Runs: runs, Sequential: sequential,
		Elapsed: elapsed, ElapsedMS: elapsed.Milliseconds(), BrokerCPU: brokerCPU, BrokerCPUMS: brokerCPU.Milliseconds(),
		ProcessCPU: self, ProcessCPUMS: self.Milliseconds(),
	}
	for _, mode := range []string{ModePersistent, ModeTransient} {
		plain := res.Median(mode, WorkerPlain)
		for _, w := range []string{WorkerBusConcurrent, WorkerBusPipeline} {
			t.Logf("bus throughput, %s: %s %.0f msg/s = %.0f %% of plain amqp091-go (%.0f msg/s); target ≥ %.0f %%",
				mode, w, res.Median(mode, w), 100*res.Median(mode, w)/plain, plain, 100*TargetBusRatio)
		}
	}
	recordBus(func(r *BusResult) { r.AMQP = &res })
}

// TestBusEmbedded measures the embedded bus: messages per second through
// the same loops, and the heap a backlog of busBacklog messages takes.
func TestBusEmbedded(t *testing.T) {
	busGate(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	body := BenchBody(busBodyBytes)
	var runs []ThroughputRun
	for _, w := range []struct {
		name string
		o    BusLoopOptions
	}{
		{WorkerBusConcurrent, BusLoopOptions{Prefetch: busPrefetch, Concurrency: busPrefetch}},
		{WorkerBusPipeline, BusLoopOptions{Prefetch: busPrefetch, Pipeline: true}},
		{WorkerBusSequential, BusLoopOptions{Prefetch: busPrefetch, Concurrency: 1}},
	} {
		bus := broker.NewEmbeddedBus()
		run, err := MeasureEmbeddedThroughput(ctx, bus, "in", "out", busEmbedded, body, w.name, BusLoopWorker(bus, w.o))
		_ = bus.Close()
		if err != nil {
			t.Fatalf("%s: %v", w.name, err)
		}
		run.Mode = ModeEmbedded
		runs = append(runs, run)
		t.Logf("bus throughput, embedded, %s: %.0f msg/s (%d in %v)", w.name, run.PerSecond(), run.Messages, run.Elapsed)
	}

	backlog, err := measureBacklog(busBacklog, body)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("embedded bus backlog of %d messages of %d bytes: heap +%s, %.0f bytes per message (%.0f beyond the body)",
		backlog.Messages, backlog.BodyBytes, mb(backlog.HeapBytes), backlog.PerMessage(), backlog.Overhead())
	recordBus(func(r *BusResult) {
		r.Embedded = &BusEmbedded{Messages: busEmbedded, BodyBytes: busBodyBytes, Prefetch: busPrefetch, Runs: runs, Backlog: backlog}
	})
	// The report of both bus benchmarks (TestBusAMQP ran before this one).
	var b strings.Builder
	if err := RenderBusMarkdown(&b, BusResults()); err != nil {
		t.Fatal(err)
	}
	t.Logf("bus benchmarks, as docs/benchmarks.md renders them:\n%s", b.String())
}

// measureBacklog publishes n copies of body to a queue of an embedded bus
// that nobody consumes, and returns how much the live heap grew.
func measureBacklog(n int, body []byte) (*Backlog, error) {
	ctx := context.Background()
	bus := broker.NewEmbeddedBus()
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
		return nil, fmt.Errorf("the backlog is not delivered")
	}
	return &Backlog{Messages: n, BodyBytes: len(body), HeapBytes: int64(after) - int64(before)}, nil
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
