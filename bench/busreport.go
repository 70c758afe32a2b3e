package bench

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"
)

// Targets of the workers' bus (issue 14's).
const (
	// TargetBusRatio: messages per second through the forward worker on
	// the AMQP bus at the main prefetch, at least this share of a plain
	// amqp091-go program's rate on the same broker in the same run.
	TargetBusRatio = 0.90
	// TargetEchoRatio: the same for the echo application.
	TargetEchoRatio = 0.80
	// TargetEmbeddedEcho: messages per second through the echo
	// application on the embedded bus.
	TargetEmbeddedEcho = 20000
)

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
	// WorkerForward is a worker plugin under the daemon, through the Host
	// service, that forwards each message as it is (the test plugin
	// forward): the whole path a worker's messages take, with no work of
	// the worker's own, as the plain program does none.
	WorkerForward = "worker_forward"
	// WorkerEcho is the echo plugin under the daemon: a Vumi application
	// that decodes each user message, replies to it (encoding the reply)
	// and counts it with a metric.
	WorkerEcho = "worker_echo"
)

// BusResult is what the bus benchmarks measured. It is rendered by
// RenderBusMarkdown, section 9 of docs/benchmarks.md.
type BusResult struct {
	// AMQPNotRun, if set, says why the AMQP part did not run (no broker).
	AMQPNotRun string       `json:"amqp_not_run,omitempty"`
	AMQP       *BusAMQP     `json:"amqp,omitempty"`
	Embedded   *BusEmbedded `json:"embedded,omitempty"`
	// WorkerNotRun, if set, says why the worker benchmark over RabbitMQ
	// did not run (no broker).
	WorkerNotRun   string             `json:"worker_not_run,omitempty"`
	Worker         *BusWorkerAMQP     `json:"worker,omitempty"`
	WorkerEmbedded *BusWorkerEmbedded `json:"worker_embedded,omitempty"`
}

// RunCPU is the CPU time a throughput run took, per message moved
// (warm-up included), in microseconds.
type RunCPU struct {
	// BrokerUS: the RabbitMQ broker on this machine (0 if elsewhere).
	BrokerUS float64 `json:"broker_us"`
	// ProcessUS: the host process (worker runs over RabbitMQ: a separate
	// process, read in /proc; embedded: the daemon in the test process),
	// the plain program or bus loop, and the harness.
	ProcessUS float64 `json:"process_us"`
	// PluginUS: the worker's plugin process (worker runs).
	PluginUS float64 `json:"plugin_us,omitempty"`
}

// BusWorkerAMQP is the throughput through one worker plugin under the
// daemon on RabbitMQ, with the plain amqp091-go program's in the same run.
type BusWorkerAMQP struct {
	Broker    string `json:"broker"`
	Messages  int    `json:"messages_per_run"`
	Warmup    int    `json:"warmup_per_run"`
	BodyBytes int    `json:"body_bytes"`
	// Prefetch is the prefetch of the main comparison, Reps runs of each
	// worker; PrefetchHigh that of the second, RepsHigh runs of the plain
	// program and the forward worker.
	Prefetch     int `json:"prefetch"`
	Reps         int `json:"runs_per_worker"`
	PrefetchHigh int `json:"prefetch_high"`
	RepsHigh     int `json:"runs_per_worker_high"`
	// Runs are the measured runs (persistent) in the order they ran:
	// WorkerPlain, WorkerForward and WorkerEcho at Prefetch, WorkerPlain
	// and WorkerForward at PrefetchHigh, interleaved.
	Runs        []ThroughputRun `json:"runs"`
	Elapsed     time.Duration   `json:"-"`
	ElapsedMS   int64           `json:"elapsed_ms"`
	BrokerCPU   time.Duration   `json:"-"`
	BrokerCPUMS int64           `json:"local_broker_cpu_ms"`
}

// runsOf returns worker's runs at prefetch, in run order.
func runsOf(runs []ThroughputRun, worker string, prefetch int) []ThroughputRun {
	var out []ThroughputRun
	for _, r := range runs {
		if r.Worker == worker && r.Prefetch == prefetch {
			out = append(out, r)
		}
	}
	return out
}

// Rates returns the rates of worker's runs at prefetch, in run order.
func (b *BusWorkerAMQP) Rates(worker string, prefetch int) []float64 {
	var rs []float64
	for _, r := range runsOf(b.Runs, worker, prefetch) {
		rs = append(rs, r.PerSecond())
	}
	return rs
}

// Median returns the median rate of worker at prefetch (nearest rank); 0
// for none.
func (b *BusWorkerAMQP) Median(worker string, prefetch int) float64 {
	return medianOf(b.Rates(worker, prefetch))
}

// Ratio is worker's median rate over the plain program's, at prefetch.
func (b *BusWorkerAMQP) Ratio(worker string, prefetch int) float64 {
	plain := b.Median(WorkerPlain, prefetch)
	if plain == 0 {
		return 0
	}
	return b.Median(worker, prefetch) / plain
}

// Met tells whether the forward worker, which does what the plain program
// does, meets TargetBusRatio at the main prefetch.
func (b *BusWorkerAMQP) Met() bool { return b.Ratio(WorkerForward, b.Prefetch) >= TargetBusRatio }

// EchoMet tells whether the echo application meets TargetEchoRatio at the
// main prefetch.
func (b *BusWorkerAMQP) EchoMet() bool { return b.Ratio(WorkerEcho, b.Prefetch) >= TargetEchoRatio }

// MedianCPU returns the median CPU per message of worker's runs at
// prefetch.
func (b *BusWorkerAMQP) MedianCPU(worker string, prefetch int) RunCPU {
	return medianCPU(runsOf(b.Runs, worker, prefetch))
}

func medianOf(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	return Percentile(v, 50)
}

func medianCPU(runs []ThroughputRun) RunCPU {
	var br, pr, pl []float64
	for _, r := range runs {
		if r.CPU != nil {
			br, pr, pl = append(br, r.CPU.BrokerUS), append(pr, r.CPU.ProcessUS), append(pl, r.CPU.PluginUS)
		}
	}
	return RunCPU{BrokerUS: medianOf(br), ProcessUS: medianOf(pr), PluginUS: medianOf(pl)}
}

// BusWorkerEmbedded is the throughput through one worker plugin under the
// daemon on its embedded bus, with an in-process loop's on the embedded
// bus in the same run.
type BusWorkerEmbedded struct {
	Messages  int `json:"messages_per_run"`
	Warmup    int `json:"warmup_per_run"`
	Reps      int `json:"runs_per_worker"`
	BodyBytes int `json:"body_bytes"`
	Prefetch  int `json:"prefetch"`
	// Runs: WorkerBusPipeline, WorkerForward and WorkerEcho, interleaved.
	Runs []ThroughputRun `json:"runs"`
}

// Median returns the median rate of worker.
// EchoMet tells whether the echo application meets TargetEmbeddedEcho.
func (b *BusWorkerEmbedded) EchoMet() bool { return b.Median(WorkerEcho) >= TargetEmbeddedEcho }

func (b *BusWorkerEmbedded) Median(worker string) float64 {
	return medianOf((&BusAMQP{Runs: b.Runs}).Rates(ModeEmbedded, worker))
}

// MedianCPU returns the median CPU per message of worker's runs.
func (b *BusWorkerEmbedded) MedianCPU(worker string) RunCPU {
	return medianCPU(runsOf(b.Runs, worker, b.Prefetch))
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
	case WorkerForward:
		return "worker plugin `forward` under the host"
	case WorkerEcho:
		return "worker plugin `echo` under the host"
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
	case r.Worker != nil:
		w := r.Worker
		row := func(worker string, prefetch int) string {
			return fmt.Sprintf("%s (%s vs %s)", pct(w.Ratio(worker, prefetch)), rate(w.Median(worker, prefetch)), rate(w.Median(WorkerPlain, prefetch)))
		}
		p("| workers' bus: messages/s through one worker plugin under the host over RabbitMQ (consume → handler → publish; the `forward` test plugin) vs a plain amqp091-go program, persistent, prefetch %d, median of %d | ≥ %s | %s | %s |\n",
			w.Prefetch, w.Reps, pct(TargetBusRatio), row(WorkerForward, w.Prefetch), yesNo(w.Met()))
		if len(w.Rates(WorkerForward, w.PrefetchHigh)) > 0 {
			p("| the same at prefetch %d, median of %d | — | %s | — |\n", w.PrefetchHigh, w.RepsHigh, row(WorkerForward, w.PrefetchHigh))
		}
		if len(w.Rates(WorkerEcho, w.Prefetch)) > 0 {
			p("| the same with the `echo` plugin (a Vumi application: decodes, replies, counts), prefetch %d | ≥ %s | %s | %s |\n",
				w.Prefetch, pct(TargetEchoRatio), row(WorkerEcho, w.Prefetch), yesNo(w.EchoMet()))
		}
	case r.WorkerNotRun != "":
		p("| workers' bus: one worker plugin over RabbitMQ vs a plain amqp091-go program | ≥ %s | not run: %s | not run |\n", pct(TargetBusRatio), r.WorkerNotRun)
	}
	switch {
	case r.AMQP != nil:
		a := r.AMQP
		w, ratio, _ := a.Met()
		p("| workers' bus without the plugin process (the host's bus library alone, %s) vs the plain program, persistent, prefetch %d, median of %d | — | %s (%s vs %s) | — |\n",
			workerName(w), a.Prefetch, a.Reps, pct(ratio), rate(a.Median(ModePersistent, w)), rate(a.Median(ModePersistent, WorkerPlain)))
	case r.AMQPNotRun != "":
		p("| workers' bus library over RabbitMQ vs a plain amqp091-go program | — | not run: %s | — |\n", r.AMQPNotRun)
	}
	if e := r.WorkerEmbedded; e != nil {
		p("| workers' bus, embedded: messages/s through one worker plugin under the host, `forward` / `echo`, median of %d | `echo` ≥ %s | %s / %s | %s |\n",
			e.Reps, rate(TargetEmbeddedEcho), rate(e.Median(WorkerForward)), rate(e.Median(WorkerEcho)), yesNo(e.EchoMet()))
	}
	if e := r.Embedded; e != nil {
		for _, run := range e.Runs {
			if run.Worker == WorkerBusPipeline {
				p("| workers' bus, embedded, without the plugin process (%s) | — | %s | — |\n", workerName(run.Worker), rate(run.PerSecond()))
			}
		}
		if b := e.Backlog; b != nil {
			p("| embedded bus: memory of a backlog of %s messages (body %d bytes): heap per queued message | — | %s bytes (%s beyond the body; %s in all) | — |\n",
				thousands(int64(b.Messages)), b.BodyBytes, trimFloat(b.PerMessage(), 0), trimFloat(b.Overhead(), 0), mb(b.HeapBytes))
		}
	}
}

// cpuCell formats a run's CPU per message: broker / benchmark process /
// plugin.
func cpuCell(c RunCPU, broker bool) string {
	us := func(v float64) string { return trimFloat(v, 0) + " µs" }
	plugin := "—"
	if c.PluginUS > 0 {
		plugin = us(c.PluginUS)
	}
	if !broker {
		return us(c.ProcessUS) + " / " + plugin
	}
	b := "—"
	if c.BrokerUS > 0 {
		b = us(c.BrokerUS)
	}
	return b + " / " + us(c.ProcessUS) + " / " + plugin
}

func ratesList(rs []float64) string {
	var list []string
	for _, v := range rs {
		list = append(list, thousands(int64(v+0.5)))
	}
	return joinComma(list)
}

// RenderBusSection writes section 9 of docs/benchmarks.md, the workers'
// bus.
func RenderBusSection(p func(string, ...any), r *BusResult) {
	p("## 9. Workers' bus\n\n")
	p("Messages per second through one worker — consume from a queue, handle, publish to another queue, ack the input once ")
	p("the output is confirmed — on the bus the host offers workers (DESIGN §7), with persistent messages over RabbitMQ ")
	p("(the bus's default) and on the embedded bus; and the memory of a backlog. The issue's target: through one worker, at ")
	p("least %s of the rate of a plain amqp091-go program doing the same consume → publish on the same broker in the same run. ", pct(TargetBusRatio))
	p("Every run preloads the input queue (durable, on exchange `vumi`) with Vumi user messages in JSON, starts the worker, ")
	p("and takes the time until the output queue holds every message (asking the broker every %s), then checks that the ", target(pollInterval))
	p("input queue is empty and the output holds exactly the messages sent; the workers run interleaved, so that each ")
	p("meets the same conditions, and the median counts.\n\n")
	renderWorkerSection(p, r)
	renderBusLibrary(p, r)
}

// renderWorkerSection writes the worker plugins' part of section 9.
func renderWorkerSection(p func(string, ...any), r *BusResult) {
	p("### Through a worker plugin\n\n")
	w := r.Worker
	if w == nil {
		reason := r.WorkerNotRun
		if reason == "" {
			reason = "the worker benchmark did not run"
		}
		p("Over RabbitMQ: not run: %s. Set `AMQP_URL` or start a broker (`scripts/ensure-rabbitmq.sh`) and run `make bench` again.\n\n", reason)
	} else {
		p("`dynworkers serve` (the built binary, run by the harness) with an `amqp` block on the broker at `%s`; for each run the ", w.Broker)
		p("harness starts the worker under test as a dynamic worker (`POST /v1/workers`, what a control message does) and stops it ")
		p("after (`DELETE /v1/workers/{name}`), and feeds and reads its queues over AMQP with amqp091-go. Bodies of %d bytes; %s messages per run, timed from the moment the output queue holds the first %s ",
			w.BodyBytes, thousands(int64(w.Messages)), thousands(int64(w.Warmup)))
		p("(the worker's start and its first messages are not measured); %d interleaved rounds after an unmeasured warm-up round. The workers:\n\n", w.Reps)
		p("- **%s**: one channel consuming with the prefetch, one in confirm mode publishing; one goroutine publishes each ", workerName(WorkerPlain))
		p("delivery with `PublishWithDeferredConfirm` and hands the confirmation to a second, which waits for the ")
		p("confirmations in order and acks each input once its output is confirmed. The fastest safe loop amqp091-go offers without batching acks.\n")
		p("- **%s** (`host/internal/testplugins/forward`): its handler publishes each message, body and headers unchanged, ", workerName(WorkerForward))
		p("with `env.Publish(ctx, …)`, ctx being the handler's. The whole path of a worker's messages (the plugin process, the ")
		p("SDK, the Host service over gRPC, the host's AMQP bus) with no work of its own, as the plain program does none: the ")
		p("target is judged on it.\n")
		p("- **%s** (`plugins/echo`, the first-party Vumi echo application with `transport_name` set, consuming ", workerName(WorkerEcho))
		p("`<transport_name>.inbound` and replying on `<transport_name>.outbound`): each message is decoded and validated as a ")
		p("Vumi user message, its reply built, encoded and published, and an `echoed` metric reported. It takes the SDK's ")
		p("default prefetch, %d.\n\n", w.Prefetch)
		p("| worker | prefetch | median | runs (msg/s) | share of plain | CPU per message: broker / benchmark process / plugin |\n|---|---|---|---|---|---|\n")
		for _, row := range []struct {
			worker   string
			prefetch int
		}{{WorkerPlain, w.Prefetch}, {WorkerForward, w.Prefetch}, {WorkerEcho, w.Prefetch}, {WorkerPlain, w.PrefetchHigh}, {WorkerForward, w.PrefetchHigh}} {
			rs := w.Rates(row.worker, row.prefetch)
			if len(rs) == 0 {
				continue
			}
			share := "—"
			if row.worker != WorkerPlain {
				share = pct(w.Ratio(row.worker, row.prefetch))
			}
			p("| %s | %d | %s | %s | %s | %s |\n", workerName(row.worker), row.prefetch, rate(w.Median(row.worker, row.prefetch)),
				ratesList(rs), share, cpuCell(w.MedianCPU(row.worker, row.prefetch), true))
		}
		p("\n")
		verdict := "met"
		if !w.Met() {
			verdict = "missed"
		}
		p("The target is %s: one worker moves %s of what the plain program moves at prefetch %d (%s against %s), against %s. ",
			verdict, pct(w.Ratio(WorkerForward, w.Prefetch)), w.Prefetch, rate(w.Median(WorkerForward, w.Prefetch)),
			rate(w.Median(WorkerPlain, w.Prefetch)), pct(TargetBusRatio))
		if len(w.Rates(WorkerForward, w.PrefetchHigh)) > 0 {
			p("At prefetch %d the plain program moves %s and the worker %s: %s. ", w.PrefetchHigh, rate(w.Median(WorkerPlain, w.PrefetchHigh)),
				rate(w.Median(WorkerForward, w.PrefetchHigh)), pct(w.Ratio(WorkerForward, w.PrefetchHigh)))
		}
		if len(w.Rates(WorkerEcho, w.Prefetch)) > 0 {
			pc, ec := w.MedianCPU(WorkerForward, w.Prefetch), w.MedianCPU(WorkerEcho, w.Prefetch)
			p("The echo application reaches %s: it spends %s µs of CPU per message in its plugin process against %s µs for forward, ",
				pct(w.Ratio(WorkerEcho, w.Prefetch)), trimFloat(ec.PluginUS, 0), trimFloat(pc.PluginUS, 0))
			p("the difference being its own work: decoding and validating each Vumi message, building and encoding its reply ")
			p("(`sdk/vumi`'s codec), work the plain program does not do. ")
			echoVerdict := "met"
			if !w.EchoMet() {
				echoVerdict = "missed"
			}
			p("Its target, %s of the plain program, is %s.", pct(TargetEchoRatio), echoVerdict)
		}
		p("\n\n")
		pl, fw := w.MedianCPU(WorkerPlain, w.Prefetch), w.MedianCPU(WorkerForward, w.Prefetch)
		p("Where the time goes. The broker, the host process and the harness's (together: the host, or the plain program, and the harness; read in `/proc` and with getrusage) and the ")
		p("plugin share this machine's CPUs, and the broker does most of the work: per message (warm-up and preloading ")
		p("included) it used %s µs of CPU with the plain program, %s µs with forward. The plain program costs its process %s µs ",
			trimFloat(pl.BrokerUS, 0), trimFloat(fw.BrokerUS, 0), trimFloat(pl.ProcessUS, 0))
		p("per message (amqp091-go's frames, a write system call per publish and per ack); the worker costs the host %s µs and ",
			trimFloat(fw.ProcessUS, 0))
		p("its plugin %s µs: the same AMQP work, plus stream messages to the plugin with the deliveries and from it with ", trimFloat(fw.PluginUS, 0))
		p("the publishes and acks (a batch of the deliveries ready at once, up to a quarter of the prefetch, in one message each ")
		p("way), each encoded, written, read and decoded, and the goroutines they wake on both sides. ")
		p("The rate is bound by the CPU the three processes share: what the worker's path costs beyond the plain program is ")
		p("taken from the broker. With only prefetch messages in flight, the rate is also bound by each message's round ")
		p("trip: a worker's message makes two more hops between processes (host → plugin → host) than the plain program's, ")
		p("with the goroutine wake-ups they cost on a loaded machine, and RabbitMQ hands deliveries over one at a time, so ")
		p("few batches form; a larger prefetch hides the hops (the prefetch %d row).\n\n", w.PrefetchHigh)
		p("How a worker keeps up: its handler runs one delivery at a time, in order, and a publish made with the handler's ")
		p("context is *deferred*. When the handler returns, the SDK sends its publishes and the delivery's ack after them in ")
		p("one message on a stream per plugin process (the Host service's `Outbox`), without waiting for an answer. The host ")
		p("handles the stream in order: it ")
		p("sends the publish to the broker without waiting for the confirmation (`PublishAsync`), and holds the ack back — ")
		p("per consumer, in order, at most prefetch of them, since the broker delivers no more than prefetch messages not ")
		p("acked on it — until the confirmations of the publishes made while the worker had the delivery have come; a failed ")
		p("one turns the ack into a requeue, so the input comes again rather than its output being lost (at least once). ")
		p("Up to prefetch messages are thus in flight at the broker, as in the plain program, and none costs a round trip ")
		p("between plugin and host. Publishing and acking with a call each that waits for the broker's confirmation, as the ")
		p("SDK did before, is the bus loop that handles one delivery at a time")
		if a := r.AMQP; a != nil && a.Sequential != nil {
			p(" (%s, %s of the plain program at prefetch %d; see below)", rate(a.Sequential.PerSecond()),
				pct(a.Sequential.PerSecond()/a.Median(a.Sequential.Mode, WorkerPlain)), a.Prefetch)
		}
		p(", plus two gRPC round trips per message.\n\n")
	}
	if e := r.WorkerEmbedded; e != nil {
		p("**Embedded bus.** The daemon without an `amqp` block, its embedded bus fed and read in-process through `Daemon.Bus` ")
		p("(nothing outside the host reaches the embedded bus, so this benchmark runs the daemon in-process: it is a test of ")
		p("`host/internal/daemon`, `TestBenchBusWorkerEmbedded`, run by scripts/bench.sh before the harness) ")
		p("(%s messages of %d bytes per run after %s of warm-up, prefetch %d, a sink consumer of the output queue acking each; ",
			thousands(int64(e.Messages)), e.BodyBytes, thousands(int64(e.Warmup)), e.Prefetch)
		p("interleaved rounds: %d), next to the ordered pipeline loop on an embedded bus of its own, in process, which is what ", e.Reps)
		p("the bus itself allows:\n\n")
		p("| worker | median | runs (msg/s) | CPU per message: benchmark process / plugin |\n|---|---|---|---|\n")
		for _, wk := range []string{WorkerBusPipeline, WorkerForward, WorkerEcho} {
			var rs []float64
			for _, run := range runsOf(e.Runs, wk, e.Prefetch) {
				rs = append(rs, run.PerSecond())
			}
			if len(rs) == 0 {
				continue
			}
			p("| %s | %s | %s | %s |\n", workerName(wk), rate(e.Median(wk)), ratesList(rs), cpuCell(e.MedianCPU(wk), false))
		}
		p("\nWithout a broker, the plugin process and its stream are the whole cost: a forwarding worker moves %s, ", rate(e.Median(WorkerForward)))
		embVerdict := "met"
		if !e.EchoMet() {
			embVerdict = "missed"
		}
		p("the echo application %s (target %s: %s); what its plugin spends per message beyond forward's is its Vumi work.\n\n",
			rate(e.Median(WorkerEcho)), rate(TargetEmbeddedEcho), embVerdict)
	}
}

// renderBusLibrary writes the part of section 9 on the bus alone: loops
// on the host's bus library, without the plugin process.
func renderBusLibrary(p func(string, ...any), r *BusResult) {
	p("### The bus alone\n\n")
	p("Loops on the host's bus library (`host/internal/broker`), without the plugin process and its gRPC hop: what the ")
	p("bus itself allows. Nothing outside the host reaches the library, so these are tests of the broker package ")
	p("(`TestBenchBusAMQP`, `TestBenchBusEmbedded` in `host/internal/broker`, with the loops of `brokertest`), run by ")
	p("scripts/bench.sh before the harness, which reads their figures.\n\n")
	if r.AMQP == nil {
		reason := r.AMQPNotRun
		if reason == "" {
			reason = "the AMQP bus benchmark did not run"
		}
		p("Over RabbitMQ: not run: %s.\n\n", reason)
	} else {
		a := r.AMQP
		p("The workers, each on a connection of its own to the broker at `%s`, prefetch %d, bodies of %d bytes, ",
			a.Broker, a.Prefetch, a.BodyBytes)
		p("%s messages per run; every worker runs %d times, interleaved with the others (plus one unmeasured warm-up run each), ",
			thousands(int64(a.Messages)), a.Reps)
		p("and the median counts:\n\n")
		p("- **%s**: as above, with this prefetch and the bus's delivery mode.\n", workerName(WorkerPlain))
		p("- **%s**: `AMQPBus.Consume`, then %d goroutines each taking a delivery, `Publish` (which returns once the broker ", workerName(WorkerBusConcurrent), a.Prefetch)
		p("confirmed), `Ack`. The outputs' order may differ from the inputs'.\n")
		p("- **%s**: one goroutine takes each delivery and calls `PublishAsync`, a second waits for the confirmations in order ", workerName(WorkerBusPipeline))
		p("and acks: the plain program's shape on the bus, and what the host does for a worker's deferred publishes; order kept.\n\n")
		p("| mode | worker | median | runs (msg/s) | share of plain |\n|---|---|---|---|---|\n")
		for _, mode := range []string{ModePersistent, ModeTransient} {
			for _, w := range []string{WorkerPlain, WorkerBusConcurrent, WorkerBusPipeline} {
				rs := a.Rates(mode, w)
				if len(rs) == 0 {
					continue
				}
				share := "—"
				if w != WorkerPlain {
					share = pct(a.Ratio(mode, w))
				}
				p("| %s | %s | %s | %s | %s |\n", mode, workerName(w), rate(a.Median(mode, w)), ratesList(rs), share)
			}
		}
		if s := a.Sequential; s != nil {
			p("| %s | %s | %s | one run of %s messages | %s |\n", s.Mode, workerName(s.Worker), rate(s.PerSecond()),
				thousands(int64(s.Messages)), pct(s.PerSecond()/a.Median(s.Mode, WorkerPlain)))
		}
		p("\n")
		w, ratio, _ := a.Met()
		p("With persistent messages the best loop on the bus moves %s of what the plain program moves ", pct(ratio))
		p("(%s; %s: %s); with transient messages %s and %s. ", workerName(w), workerName(other(w)),
			pct(a.Ratio(ModePersistent, other(w))),
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
			p("**Memory under a backlog.** A backlog of %s messages of %d bytes in one queue of the embedded bus, nobody consuming, grows the live heap ",
				thousands(int64(b.Messages)), b.BodyBytes)
			p("(`runtime.MemStats.HeapAlloc` after `runtime.GC`) by %s: %s bytes per message, %s beyond the body. ",
				mb(b.HeapBytes), trimFloat(b.PerMessage(), 0), trimFloat(b.Overhead(), 0))
			p("The body is copied once by `Publish` (rounded up to Go's allocation size class); the queue keeps each message as a ")
			p("64-byte record in blocks of 127 (8 KiB), so the backlog costs no more than its records and bodies and its memory is ")
			p("returned as it is consumed. With RabbitMQ the backlog is the broker's: the host holds at most prefetch deliveries per ")
			p("consumer, and a worker's acks held back for confirmations are bounded by the same prefetch.\n\n")
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
