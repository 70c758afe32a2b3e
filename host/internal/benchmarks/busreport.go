package benchmarks

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"
)

// TargetBusRatio is the target for the workers' bus: messages per
// second through one worker on the AMQP bus, at least this share of a plain
// amqp091-go program's rate on the same broker in the same run.
const TargetBusRatio = 0.70

// Modes of a throughput run.
const (
	// ModePersistent: delivery mode 2 over RabbitMQ, the bus's default.
	ModePersistent = "persistent"
	// ModeTransient: delivery mode 1 over RabbitMQ (AMQPBusOptions.Transient).
	ModeTransient = "transient"
	// ModeEmbedded: the embedded bus, in process.
	ModeEmbedded = "embedded"
)

// Workers of the throughput runs.
const (
	// WorkerPlain is PlainAMQPWorker.
	WorkerPlain = "plain_amqp091"
	// WorkerBusConcurrent is a BusLoop with Concurrency = prefetch.
	WorkerBusConcurrent = "bus_concurrent"
	// WorkerBusPipeline is a BusLoop with Pipeline.
	WorkerBusPipeline = "bus_pipeline"
	// WorkerBusSequential is a BusLoop with Concurrency 1.
	WorkerBusSequential = "bus_sequential"
)

// BusResult is what the bus benchmarks measured. It is rendered by
// RenderBusMarkdown, section 9 of docs/benchmarks.md.
type BusResult struct {
	// AMQPNotRun, if set, says why the AMQP part did not run (no broker).
	AMQPNotRun string       `json:"amqp_not_run,omitempty"`
	AMQP       *BusAMQP     `json:"amqp,omitempty"`
	Embedded   *BusEmbedded `json:"embedded,omitempty"`
}

// BusAMQP is the throughput through one worker over RabbitMQ.
type BusAMQP struct {
	Broker    string `json:"broker"`
	Messages  int    `json:"messages_per_run"`
	Reps      int    `json:"runs_per_worker"`
	BodyBytes int    `json:"body_bytes"`
	Prefetch  int    `json:"prefetch"`
	// Runs are the measured runs in the order they ran.
	Runs []ThroughputRun `json:"runs"`
	// Sequential is one run of a bus worker handling one delivery at a
	// time (persistent).
	Sequential  *ThroughputRun `json:"sequential,omitempty"`
	Elapsed     time.Duration  `json:"-"`
	ElapsedMS   int64          `json:"elapsed_ms"`
	BrokerCPU   time.Duration  `json:"-"`
	BrokerCPUMS int64          `json:"local_broker_cpu_ms"`
	// ProcessCPU is the CPU time of the benchmark process meanwhile: the
	// workers and the harness.
	ProcessCPU   time.Duration `json:"-"`
	ProcessCPUMS int64         `json:"process_cpu_ms"`
}

// Rates returns the rates of the runs of worker in mode, in run order.
func (b *BusAMQP) Rates(mode, worker string) []float64 {
	var rs []float64
	for _, r := range b.Runs {
		if r.Mode == mode && r.Worker == worker {
			rs = append(rs, r.PerSecond())
		}
	}
	return rs
}

// Median returns the median rate of worker in mode (nearest rank); 0 for
// none.
func (b *BusAMQP) Median(mode, worker string) float64 {
	rs := b.Rates(mode, worker)
	if len(rs) == 0 {
		return 0
	}
	slices.Sort(rs)
	return Percentile(rs, 50)
}

// Ratio is the median rate of worker in mode over the plain program's.
func (b *BusAMQP) Ratio(mode, worker string) float64 {
	plain := b.Median(mode, WorkerPlain)
	if plain == 0 {
		return 0
	}
	return b.Median(mode, worker) / plain
}

// Met tells whether the best bus worker of the persistent mode (the bus's
// default) meets TargetBusRatio.
func (b *BusAMQP) Met() (worker string, ratio float64, ok bool) {
	for _, w := range []string{WorkerBusConcurrent, WorkerBusPipeline} {
		if r := b.Ratio(ModePersistent, w); r > ratio {
			worker, ratio = w, r
		}
	}
	return worker, ratio, ratio >= TargetBusRatio
}

// BusEmbedded is the embedded bus: throughput and the memory of a backlog.
type BusEmbedded struct {
	Messages  int             `json:"messages_per_run"`
	BodyBytes int             `json:"body_bytes"`
	Prefetch  int             `json:"prefetch"`
	Runs      []ThroughputRun `json:"runs"`
	Backlog   *Backlog        `json:"backlog"`
}

// Backlog is the live heap taken by Messages queued messages of BodyBytes.
type Backlog struct {
	Messages  int   `json:"messages"`
	BodyBytes int   `json:"body_bytes"`
	HeapBytes int64 `json:"heap_bytes"`
}

// PerMessage is the heap per queued message.
func (b Backlog) PerMessage() float64 { return float64(b.HeapBytes) / float64(b.Messages) }

// Overhead is the heap per queued message beyond its body.
func (b Backlog) Overhead() float64 { return b.PerMessage() - float64(b.BodyBytes) }

var (
	busMu      sync.Mutex
	busResults = &BusResult{}
)

func recordBus(f func(r *BusResult)) {
	busMu.Lock()
	defer busMu.Unlock()
	f(busResults)
}

// BusResults returns what the bus benchmarks of this run recorded.
func BusResults() *BusResult {
	busMu.Lock()
	defer busMu.Unlock()
	return busResults
}

// rate formats messages per second: "4,213 msg/s".
func rate(v float64) string { return thousands(int64(v+0.5)) + " msg/s" }

func thousands(v int64) string {
	s := fmt.Sprint(v)
	var b []byte
	for i, c := range []byte(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			b = append(b, ',')
		}
		b = append(b, c)
	}
	return string(b)
}

func pct(v float64) string { return trimFloat(100*v, 0) + " %" }

// workerName is how the report names a worker.
func workerName(w string) string {
	switch w {
	case WorkerPlain:
		return "plain amqp091-go program"
	case WorkerBusConcurrent:
		return "bus, concurrent handlers"
	case WorkerBusPipeline:
		return "bus, ordered pipeline (`PublishAsync`)"
	case WorkerBusSequential:
		return "bus, one delivery at a time"
	}
	return w
}

// other is the other bus worker of the comparison.
func other(w string) string {
	if w == WorkerBusPipeline {
		return WorkerBusConcurrent
	}
	return WorkerBusPipeline
}

// RenderBusSummary writes the summary table's rows of the bus benchmarks.
func RenderBusSummary(p func(string, ...any), r *BusResult) {
	switch {
	case r.AMQP != nil:
		a := r.AMQP
		w, ratio, ok := a.Met()
		p("| workers' bus: messages/s through one worker over RabbitMQ vs a plain amqp091-go program, persistent, median of %d (%s) | ≥ %s | %s (%s vs %s) | %s |\n",
			a.Reps, workerName(w), pct(TargetBusRatio), pct(ratio), rate(a.Median(ModePersistent, w)), rate(a.Median(ModePersistent, WorkerPlain)), yesNo(ok))
	case r.AMQPNotRun != "":
		p("| workers' bus over RabbitMQ vs a plain amqp091-go program | ≥ %s | not run: %s | not run |\n", pct(TargetBusRatio), r.AMQPNotRun)
	}
	if e := r.Embedded; e != nil {
		for _, run := range e.Runs {
			if run.Worker == WorkerBusPipeline {
				p("| workers' bus, embedded: messages/s through one worker (%s) | — | %s | — |\n", workerName(run.Worker), rate(run.PerSecond()))
			}
		}
		if b := e.Backlog; b != nil {
			p("| embedded bus: heap per queued message, backlog of %s (body %d bytes) | — | %s bytes (%s beyond the body) | — |\n",
				thousands(int64(b.Messages)), b.BodyBytes, trimFloat(b.PerMessage(), 0), trimFloat(b.Overhead(), 0))
		}
	}
}

// RenderBusSection writes section 9 of docs/benchmarks.md, the workers'
// bus.
func RenderBusSection(p func(string, ...any), r *BusResult) {
	p("## 9. Workers' bus\n\n")
	p("Messages per second through one worker — consume from a queue, handle (an echo: the output is the input), publish ")
	p("to another queue, ack the input once the output is published — on the bus the host offers workers ")
	p("(`host/internal/broker`, DESIGN §7), without the plugin process and its gRPC hop, which are measured separately. ")
	p("The harness (`host/internal/benchmarks/bus.go`) declares both queues durable on exchange `vumi`, preloads the input ")
	p("queue, starts the worker and takes the time until the output queue holds every message (asking the broker every %s), ", target(pollInterval))
	p("then checks that the input queue is empty and the output holds exactly the messages sent.\n\n")
	if r.AMQP == nil {
		reason := r.AMQPNotRun
		if reason == "" {
			reason = "the AMQP bus benchmark did not run"
		}
		p("Over RabbitMQ: not run: %s. Set `AMQP_URL` or start a broker (`scripts/ensure-rabbitmq.sh`) and run `make bench` again.\n\n", reason)
	} else {
		a := r.AMQP
		p("The workers, each on a connection of its own to the broker at `%s`, prefetch %d, bodies of %d bytes (a Vumi user message in JSON), ",
			a.Broker, a.Prefetch, a.BodyBytes)
		p("%s messages per run; every worker runs %d times, interleaved with the others (plus one unmeasured warm-up run each), ",
			thousands(int64(a.Messages)), a.Reps)
		p("and the median counts:\n\n")
		p("- **%s**: one channel consuming, one in confirm mode publishing (as RabbitMQ advises); one goroutine publishes each ", workerName(WorkerPlain))
		p("delivery with `PublishWithDeferredConfirm` and hands the confirmation to a second, which waits for the confirmations ")
		p("in order and acks each input once its output is confirmed. The same delivery mode as the bus. This is the fastest ")
		p("safe loop amqp091-go offers without batching acks.\n")
		p("- **%s**: `AMQPBus.Consume`, then %d goroutines each taking a delivery, `Publish` (which returns once the broker ", workerName(WorkerBusConcurrent), a.Prefetch)
		p("confirmed), `Ack`. The outputs' order may differ from the inputs'.\n")
		p("- **%s**: one goroutine takes each delivery and calls `PublishAsync`, a second waits for the confirmations in order ", workerName(WorkerBusPipeline))
		p("and acks: the plain program's shape on the bus; order kept.\n\n")
		p("| mode | worker | median | runs (msg/s) | share of plain |\n|---|---|---|---|---|\n")
		for _, mode := range []string{ModePersistent, ModeTransient} {
			for _, w := range []string{WorkerPlain, WorkerBusConcurrent, WorkerBusPipeline} {
				rs := a.Rates(mode, w)
				if len(rs) == 0 {
					continue
				}
				var list []string
				for _, v := range rs {
					list = append(list, thousands(int64(v+0.5)))
				}
				share := "—"
				if w != WorkerPlain {
					share = pct(a.Ratio(mode, w))
				}
				p("| %s | %s | %s | %s | %s |\n", mode, workerName(w), rate(a.Median(mode, w)), joinComma(list), share)
			}
		}
		if s := a.Sequential; s != nil {
			p("| %s | %s | %s | one run of %s messages | %s |\n", s.Mode, workerName(s.Worker), rate(s.PerSecond()),
				thousands(int64(s.Messages)), pct(s.PerSecond()/a.Median(s.Mode, WorkerPlain)))
		}
		p("\n")
		w, ratio, ok := a.Met()
		verdict := "met"
		if !ok {
			verdict = "missed"
		}
		p("The target is %s: with persistent messages (the bus's default) a worker on the bus moves %s of what the plain program ",
			verdict, pct(ratio))
		p("moves (%s; %s: %s), against %s; with transient messages %s and %s. ", workerName(w), workerName(other(w)),
			pct(a.Ratio(ModePersistent, other(w))), pct(TargetBusRatio),
			pct(a.Ratio(ModeTransient, WorkerBusConcurrent)), pct(a.Ratio(ModeTransient, WorkerBusPipeline)))
		if a.BrokerCPU > 0 && a.Elapsed > 0 {
			p("The broker does most of the work: on this machine it used %s of CPU in the %s of these runs (%s %% of one core, ",
				secs(a.BrokerCPU), secs(a.Elapsed), trimFloat(100*a.BrokerCPU.Seconds()/a.Elapsed.Seconds(), 0))
			if a.ProcessCPU > 0 {
				p("preloading included), the benchmark process, with the workers and the harness, %s. ", secs(a.ProcessCPU))
			} else {
				p("preloading included). ")
			}
		}
		p("Runs vary from one to the next with the broker's state (its message store, its garbage collection) about as much ")
		p("as between the workers; the interleaving gives each worker the same conditions. ")
		if s := a.Sequential; s != nil {
			p("A worker that handles one delivery at a time, waiting for each confirmation before the next, is bound by the ")
			p("confirm latency instead: %s, %s of the plain program. A worker must keep several messages in flight, either ", rate(s.PerSecond()), pct(s.PerSecond()/a.Median(s.Mode, WorkerPlain)))
			p("with concurrent handlers or in order with `PublishAsync`, to reach the broker's rate.")
		}
		p("\n\n")
		p("Durability: with `Publish` or the confirmation of `PublishAsync` awaited before the input's ack, a message is always in ")
		p("at least one of the two durable queues, as persistent; a host or broker that dies in between makes the input come ")
		p("again (`Redelivered`), not the output disappear.\n\n")
	}
	if e := r.Embedded; e != nil {
		p("**Embedded bus** (`broker.NewEmbeddedBus`, in process): the same loops, %s messages of %d bytes per run, prefetch %d, ",
			thousands(int64(e.Messages)), e.BodyBytes, e.Prefetch)
		p("timed until a sink consumer of the output queue (prefetch 1000, acking each) has them all; one run each.\n\n")
		p("| worker | msg/s |\n|---|---|\n")
		for _, run := range e.Runs {
			p("| %s | %s |\n", workerName(run.Worker), rate(run.PerSecond()))
		}
		p("\n")
		if b := e.Backlog; b != nil {
			p("A backlog of %s messages of %d bytes in one queue of the embedded bus, nobody consuming, grows the live heap ",
				thousands(int64(b.Messages)), b.BodyBytes)
			p("(`runtime.MemStats.HeapAlloc` after `runtime.GC`) by %s: %s bytes per message, %s beyond the body. ",
				mb(b.HeapBytes), trimFloat(b.PerMessage(), 0), trimFloat(b.Overhead(), 0))
			p("The body is copied once by `Publish` (rounded up to Go's allocation size class); the queue keeps each message as a ")
			p("64-byte record in blocks of 127 (8 KiB), so the backlog costs no more than its records and bodies and its memory is ")
			p("returned as it is consumed. With RabbitMQ the backlog is the broker's: the host holds at most prefetch deliveries per consumer.\n\n")
		}
	}
}

func joinComma(s []string) string {
	var b bytes.Buffer
	for i, v := range s {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(v)
	}
	return b.String()
}

// RenderBusMarkdown writes the bus benchmarks alone: the summary rows under
// a table header, then section 9.
func RenderBusMarkdown(w io.Writer, r *BusResult) error {
	var b bytes.Buffer
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("| benchmark | target | measured | met |\n|---|---|---|---|\n")
	RenderBusSummary(p, r)
	p("\n")
	RenderBusSection(p, r)
	_, err := w.Write(b.Bytes())
	return err
}
