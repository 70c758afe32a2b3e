#!/usr/bin/env bash
# Runs the benchmarks and writes docs/benchmarks.md. `make bench` runs it
# after `make build`; run by hand, it builds first. The benchmarks run
# without the race detector and take a few minutes; run nothing heavy next
# to them (the machine's cores are part of what they measure).
#
# Two steps: the benchmarks of what nothing outside the host reaches (the
# bus library, the embedded bus: tests of host/internal/broker and
# host/internal/daemon named TestBench*) write their figures as JSON
# fragments to a temporary directory; then the harness (bench/), which
# drives the built binaries from outside, runs its own and writes the
# report with the fragments merged in. See bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."

# Under make (MAKELEVEL is set) the bench target's build prerequisite has
# just built bin/; otherwise build here, so the binaries match the tree.
if [ -z "${MAKELEVEL:-}" ]; then
	make --no-print-directory build
fi

GO="${GO:-go}"
export GO
dir="$(mktemp -d)"
# The report says how long the benchmarks took (builds excluded).
DYNWORKERS_BENCH_START="$(date +%s)"
export DYNWORKERS_BENCH_START
trap 'rm -rf "$dir"' EXIT
# -p 1: one package at a time, so that the two do not share the cores.
DYNWORKERS_BENCH=1 DYNWORKERS_BENCH_DIR="$dir" \
	"$GO" test -p 1 -count=1 -timeout 30m -run '^TestBench' -v ./host/internal/broker ./host/internal/daemon ./host/internal/clustere2e
DYNWORKERS_BENCH=1 DYNWORKERS_BENCH_DIR="$dir" DYNWORKERS_BENCH_OUT=docs/benchmarks.md \
	"$GO" test -count=1 -timeout 30m -run . -v ./bench
