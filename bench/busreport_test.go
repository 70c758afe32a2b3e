package bench

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/sdk/vumi"
)

func TestRenderBus(t *testing.T) {
	run := func(mode, worker string, perSec float64) ThroughputRun {
		d := time.Duration(float64(time.Second) * 10000 / perSec)
		return ThroughputRun{Worker: worker, Mode: mode, Messages: 10000, Elapsed: d}
	}
	a := &BusAMQP{Broker: "amqp://guest:xxxxx@127.0.0.1:5672/", Messages: 10000, Reps: 3, BodyBytes: 512, Prefetch: 100,
		Elapsed: 60 * time.Second, BrokerCPU: 70 * time.Second}
	for _, m := range []string{ModePersistent, ModeTransient} {
		for i, v := range []float64{3000, 4000, 5000} {
			a.Runs = append(a.Runs, run(m, WorkerPlain, v), run(m, WorkerBusConcurrent, v*0.9), run(m, WorkerBusPipeline, v*0.6+float64(i)))
		}
	}
	seq := run(ModePersistent, WorkerBusSequential, 1000)
	seq.Messages = 2000
	seq.Elapsed = 2 * time.Second
	a.Sequential = &seq
	if w, ratio, ok := a.Met(); w != WorkerBusConcurrent || ratio < 0.89 || ratio > 0.91 || !ok {
		t.Fatalf("Met = %s %v %v", w, ratio, ok)
	}
	wk := &BusWorkerAMQP{Broker: "amqp://guest:xxxxx@127.0.0.1:5672/", Messages: 20000, Warmup: 2000, BodyBytes: 512,
		Prefetch: 20, Reps: 3, PrefetchHigh: 100, RepsHigh: 2}
	wrun := func(worker string, prefetch int, perSec float64, cpu RunCPU) ThroughputRun {
		r := run(ModePersistent, worker, perSec)
		r.Prefetch, r.CPU = prefetch, &cpu
		return r
	}
	for _, v := range []float64{3000, 2800, 3200} {
		wk.Runs = append(wk.Runs,
			wrun(WorkerPlain, 20, v, RunCPU{BrokerUS: 450, ProcessUS: 120}),
			wrun(WorkerForward, 20, v*0.75, RunCPU{BrokerUS: 480, ProcessUS: 200, PluginUS: 80}),
			wrun(WorkerEcho, 20, v*0.5, RunCPU{BrokerUS: 500, ProcessUS: 230, PluginUS: 230}))
	}
	for _, v := range []float64{4000, 4200} {
		wk.Runs = append(wk.Runs, wrun(WorkerPlain, 100, v, RunCPU{}), wrun(WorkerForward, 100, v*0.6, RunCPU{}))
	}
	if wk.Met() || wk.EchoMet() || int(wk.Median(WorkerForward, 20)+0.5) != 2250 || int(wk.Median(WorkerPlain, 100)+0.5) != 4000 {
		t.Fatalf("Met %v, medians %v %v", wk.Met(), wk.Median(WorkerForward, 20), wk.Median(WorkerPlain, 100))
	}
	emb := func(worker string, perSec float64) ThroughputRun {
		r := run(ModeEmbedded, worker, perSec)
		r.Prefetch, r.CPU = 20, &RunCPU{ProcessUS: 30, PluginUS: 25}
		return r
	}
	r := &BusResult{AMQP: a, Worker: wk,
		WorkerEmbedded: &BusWorkerEmbedded{Messages: 50000, Warmup: 2000, Reps: 1, BodyBytes: 512, Prefetch: 20,
			Runs: []ThroughputRun{emb(WorkerBusPipeline, 600000), emb(WorkerForward, 25000), emb(WorkerEcho, 5500)}},
		Embedded: &BusEmbedded{Messages: 200000, BodyBytes: 512, Prefetch: 100,
			Runs:    []ThroughputRun{run(ModeEmbedded, WorkerBusPipeline, 1234567)},
			Backlog: &Backlog{Messages: 100000, BodyBytes: 512, HeapBytes: 57600000}}}
	var b strings.Builder
	if err := RenderBusMarkdown(&b, r); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if f := os.Getenv("BENCH_RENDER_DUMP"); f != "" {
		_ = os.WriteFile(f, []byte(out), 0o644)
	}
	for _, want := range []string{
		"prefetch 20, median of 3 | ≥ 90 % | 75 % (2,250 msg/s vs 3,000 msg/s) | **no** |",
		"| the same at prefetch 100, median of 2 | — | 60 % (2,400 msg/s vs 4,000 msg/s) | — |",
		"| the same with the `echo` plugin (a Vumi application: decodes, replies, counts), prefetch 20 | ≥ 80 % | 50 % (1,500 msg/s vs 3,000 msg/s) | **no** |",
		"Its target, 80 % of the plain program, is missed.",
		"| worker plugin `forward` under the host | 20 | 2,250 msg/s | 2,250, 2,100, 2,400 | 75 % | 480 µs / 200 µs / 80 µs |",
		"| plain amqp091-go program | 20 | 3,000 msg/s | 3,000, 2,800, 3,200 | — | 450 µs / 120 µs / — |",
		"The target is missed: one worker moves 75 %",
		"| worker plugin `echo` under the host | 5,500 msg/s | 5,500 | 30 µs / 25 µs |",
		"| `echo` ≥ 20,000 msg/s | 25,000 msg/s / 5,500 msg/s | **no** |",
		"the echo application 5,500 msg/s (target 20,000 msg/s: missed)",
		"without the plugin process (the host's bus library alone, bus, concurrent handlers) vs the plain program, persistent, prefetch 100, median of 3 | — | 90 % (3,600 msg/s vs 4,000 msg/s) | — |",
		"With persistent messages the best loop on the bus moves 90 %",
		"| persistent | plain amqp091-go program | 4,000 msg/s | 3,000, 4,000, 5,000 | — |",
		"1,234,567 msg/s",
		"576 bytes (64 beyond the body; 57.6 MB in all)",
		"one run of 2,000 messages | 25 %",
		"(1,000 msg/s, 25 % of the plain program at prefetch 100; see below)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	var nr strings.Builder
	if err := RenderBusMarkdown(&nr, &BusResult{AMQPNotRun: "no broker", WorkerNotRun: "no broker either"}); err != nil ||
		!strings.Contains(nr.String(), "not run: no broker") || !strings.Contains(nr.String(), "| ≥ 90 % | not run: no broker either | not run |") {
		t.Fatalf("not run: %v\n%s", err, nr.String())
	}
}

// BenchBody is a valid Vumi user message of the size asked for, so that
// the echo worker answers it rather than dropping it.
func TestBenchBodyIsAVumiMessage(t *testing.T) {
	for _, n := range []int{0, 512, 4096} {
		b := BenchBody(n)
		if n >= 400 && len(b) != n {
			t.Errorf("BenchBody(%d) is %d bytes", n, len(b))
		}
		m, err := vumi.ParseUserMessage(b)
		if err != nil {
			t.Fatalf("BenchBody(%d): %v", n, err)
		}
		if err := m.Reply(m.Content.String, true).Validate(); err != nil {
			t.Fatalf("BenchBody(%d): the reply: %v", n, err)
		}
	}
}
