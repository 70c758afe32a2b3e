// Package bench is the benchmark harness of the host. It measures what a
// user sees: it runs the built binaries (`bin/dynworkers serve` with a
// generated HCL config, `bin/plugins/*`) and drives them from outside, over
// HTTP (/v1/status, /v1/workers), over AMQP (control requests to
// vumi.control with reply_to, lifecycle events from vumi.events) and
// through /proc (github.com/prometheus/procfs). It imports no host package:
// it lives outside host/, where Go's internal rule keeps it. It does import
// internal/wire (the go-plugin handshake and plugin set the host and the
// SDK share), to spawn the plugin as plain go-plugin would.
//
// The benchmarks are crash-to-running restart latency (crashes spaced so
// that the warm spare is ready, and back to back), start-up time, memory
// per worker, the cost of the plugin binary's checksum, the control
// channel (status round trips over AMQP and HTTP, start+stop cycles,
// publish of a start to its reply), the workers' bus (messages per
// second through one worker plugin under the host, next to a plain
// amqp091-go program on the same broker), the floor of the start-up (the
// same plugin spawned with plain go-plugin, through internal/wire's
// handshake and plugin set), the same plugin under supervisord side by
// side, and a host of 1,000 workers (idle cost, status, 50 killed, a clean
// stop) from which the report's scale limits are computed.
//
// What nothing outside the host reaches is measured beside it: the bus
// library's loops and the embedded bus (TestBenchBusAMQP and
// TestBenchBusEmbedded in host/internal/broker, with the loops of
// host/internal/broker/brokertest) and worker plugins on the embedded bus
// (TestBenchBusWorkerEmbedded in host/internal/daemon). Those tests write
// their figures as JSON fragments (WriteFragment) to $DYNWORKERS_BENCH_DIR,
// and the harness merges them into its report (ReadFragments). This
// package also holds what they share with the harness: the AMQP throughput
// measure, the plain amqp091-go program, and the result types.
//
// The control, restart and AMQP bus benchmarks need a RabbitMQ broker
// (AMQP_URL, default amqp://guest:guest@127.0.0.1:5672/). Without one, the
// control and bus benchmarks are reported as not run; the restart
// benchmarks, which read their events from vumi.events, fail, and no report
// is written.
//
// The benchmarks are ordinary Go tests that skip unless DYNWORKERS_BENCH=1,
// so `make test` does not run them. `make bench` (scripts/bench.sh) builds
// bin/, runs the TestBench* tests of broker and daemon, then this harness,
// without the race detector, and writes docs/benchmarks.md (the path in
// DYNWORKERS_BENCH_OUT, relative to the repository root).
package bench
