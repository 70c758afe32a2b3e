// Package benchmarks is the benchmark harness of the host: crash-to-running
// restart latency, start-up time, memory per worker, and the cost of the
// plugin binary's checksum. It lives under host/internal because it drives
// the daemon in-process and reads the supervision events, which only the
// host's internal packages offer.
//
// The benchmarks are ordinary Go tests that skip unless DYNWORKERS_BENCH=1,
// so `make test` does not run them. `make bench` (scripts/bench.sh) builds
// bin/, runs them without the race detector and writes docs/benchmarks.md
// (the path in DYNWORKERS_BENCH_OUT, relative to the repository root).
//
// The non-test files hold what the tests share: summary statistics, /proc
// readers, the machine description and the Markdown report.
package benchmarks
