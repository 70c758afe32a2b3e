#!/usr/bin/env bash
# Runs every native Go fuzz target of the module for a while each, one at a
# time: `go test -fuzz` takes one package and one target per run.
#
#   scripts/fuzz.sh [FUZZTIME]      # default 60s; make fuzz, make fuzz-smoke (3s)
#
# Targets are found, not listed here: every package with a `func FuzzX(f
# *testing.F)` in a test file, then `go test -list '^Fuzz'` names them. Set
# FUZZFLAGS for more flags (e.g. FUZZFLAGS="-parallel 2" on a shared
# machine). A failing input is written to the package's testdata/fuzz/FuzzX/
# by go test: commit it with the fix, and `go test` runs it from then on.
# The script runs every target, prints each one's execs, and exits 1 if any
# failed (a run that the engine itself ended with "context deadline
# exceeded" and no failing input is run once more first). Targets write temp files (the state file's fsyncs dominate its
# run on a disk), so TMPDIR is /dev/shm when there is one; FUZZ_TMPDIR
# overrides it.
set -uo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
fuzztime=${1:-60s}
read -r -a flags <<< "${FUZZFLAGS:-}"
tmpdir=${FUZZ_TMPDIR:-}
if [ -z "$tmpdir" ]; then
	tmpdir=${TMPDIR:-/tmp}
	if [ -d /dev/shm ] && [ -w /dev/shm ]; then
		tmpdir=/dev/shm
	fi
fi

dirs=$(grep -rlE --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*\(f \*testing\.F\)' \
	--exclude-dir=bin --exclude-dir=var --exclude-dir=.git . | xargs -r -n1 dirname | sort -u)
if [ -z "$dirs" ]; then
	echo "fuzz: no fuzz targets found" >&2
	exit 1
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
failed=() summary=()
for dir in $dirs; do
	if ! targets=$("$GO" test -list '^Fuzz' "$dir" 2>&1); then
		echo "$targets" >&2
		failed+=("$dir (go test -list)")
		continue
	fi
	for target in $(grep '^Fuzz' <<< "$targets"); do
		echo "== $target in $dir, $fuzztime"
		TMPDIR=$tmpdir "$GO" test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "${flags[@]}" "$dir" >"$log" 2>&1
		rc=$?
		# go's fuzzing engine sometimes ends a short run with "context
		# deadline exceeded" and no failing input (its coordinator timing
		# out on a slow worker, not a bug of the target): run it once more.
		# A real failure writes its input to testdata/fuzz and is not retried.
		if [ $rc -ne 0 ] && grep -q 'context deadline exceeded' "$log" && ! grep -q 'Failing input written' "$log"; then
			echo "   (the fuzzing engine timed out without a failing input; running it again)"
			TMPDIR=$tmpdir "$GO" test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "${flags[@]}" "$dir" >"$log" 2>&1
			rc=$?
		fi
		execs=$(grep -oE 'execs: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+')
		if [ $rc -ne 0 ]; then
			grep -v '^fuzz: elapsed' "$log"
			failed+=("$target in $dir")
			summary+=("$(printf '%-28s %-32s FAILED after %s execs' "$target" "$dir" "${execs:-0}")")
		else
			summary+=("$(printf '%-28s %-32s %10s execs' "$target" "$dir" "${execs:-0}")")
		fi
	done
done

echo
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
	echo "fuzz: failed:" >&2
	printf '  %s\n' "${failed[@]}" >&2
	exit 1
fi
