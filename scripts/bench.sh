#!/usr/bin/env bash
# Runs the benchmark harness (host/internal/benchmarks) and writes
# docs/benchmarks.md. `make bench` runs it after `make build`; run by hand,
# it builds first. The benchmarks run without the race detector and take a
# few minutes; run nothing heavy next to them (the machine's cores are
# part of what they measure).
set -euo pipefail
cd "$(dirname "$0")/.."

# Under make (MAKELEVEL is set) the bench target's build prerequisite has
# just built bin/; otherwise build here, so the binaries match the tree.
if [ -z "${MAKELEVEL:-}" ]; then
	make --no-print-directory build
fi

GO="${GO:-go}"
DYNWORKERS_BENCH=1 DYNWORKERS_BENCH_OUT=docs/benchmarks.md \
	"$GO" test -count=1 -timeout 30m -run . -v ./host/internal/benchmarks
