package benchmarks

import (
	"strings"
	"testing"
	"time"
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
	r := &BusResult{AMQP: a, Embedded: &BusEmbedded{Messages: 200000, BodyBytes: 512, Prefetch: 100,
		Runs:    []ThroughputRun{run(ModeEmbedded, WorkerBusPipeline, 1234567)},
		Backlog: &Backlog{Messages: 100000, BodyBytes: 512, HeapBytes: 57600000}}}
	var b strings.Builder
	if err := RenderBusMarkdown(&b, r); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"| ≥ 70 % | 90 % (3,600 msg/s vs 4,000 msg/s) | yes |",
		"The target is met: with persistent messages",
		"| persistent | plain amqp091-go program | 4,000 msg/s | 3,000, 4,000, 5,000 | — |",
		"1,234,567 msg/s",
		"576 bytes (64 beyond the body)",
		"one run of 2,000 messages | 25 %",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	var nr strings.Builder
	if err := RenderBusMarkdown(&nr, &BusResult{AMQPNotRun: "no broker"}); err != nil || !strings.Contains(nr.String(), "not run: no broker") {
		t.Fatalf("not run: %v\n%s", err, nr.String())
	}
}
