// Package benchmarks is the benchmark harness of the host: crash-to-running
// restart latency (crashes spaced so that the warm spare is ready, and back
// to back), start-up time, memory per worker, the cost of the plugin
// binary's checksum, the control channel (status round trips over AMQP
// and HTTP, start+stop cycles, publish of a start to a healthy worker), and
// the workers' bus (messages per second through one worker plugin under the
// daemon, next to a plain amqp091-go program on the same broker, and
// through the embedded bus; the bus library's loops; the memory of a
// backlog). It lives under host/internal because it drives the daemon
// in-process and reads the supervision events, which only the host's
// internal packages offer.
//
// The control and AMQP bus benchmarks need a RabbitMQ broker (AMQP_URL,
// default amqp://guest:guest@127.0.0.1:5672/); without one they are
// reported as not run and the rest of the harness runs as usual.
//
// The benchmarks are ordinary Go tests that skip unless DYNWORKERS_BENCH=1,
// so `make test` does not run them. `make bench` (scripts/bench.sh) builds
// bin/, runs them without the race detector and writes docs/benchmarks.md
// (the path in DYNWORKERS_BENCH_OUT, relative to the repository root).
//
// The non-test files hold what the tests share: summary statistics, /proc
// readers, the machine description and the Markdown report.
package bench
