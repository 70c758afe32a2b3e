package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// EnvBenchDir names the directory through which the benchmarks that live
// beside what they measure hand their figures to the harness. The bus
// library and the embedded bus are reached by nothing outside the host, so
// their benchmarks are tests of host/internal/broker/brokertest and
// host/internal/daemon; each writes a fragment, a BusResult with only its
// own part set, to <dir>/<name>.json (WriteFragment), and the harness,
// run after them by scripts/bench.sh with the same directory, merges every
// fragment into the report (ReadFragments). Unset: fragments are neither
// written nor read, and the report says those parts did not run.
const EnvBenchDir = "DYNWORKERS_BENCH_DIR"

// WriteFragment writes r to $DYNWORKERS_BENCH_DIR/<name>.json; without the
// variable it does nothing.
func WriteFragment(name string, r *BusResult) error {
	dir := os.Getenv(EnvBenchDir)
	if dir == "" {
		return nil
	}
	b, err := json.MarshalIndent(r, "", " ")
	if err != nil {
		return fmt.Errorf("encoding the %s fragment: %w", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".json"), b, 0o644); err != nil {
		return fmt.Errorf("writing the %s fragment: %w", name, err)
	}
	return nil
}

// ReadFragments merges the fragments of dir into r: each part a fragment
// sets replaces r's. The parts' durations, kept in the JSON as whole
// microseconds or milliseconds, are restored from them.
func ReadFragments(dir string, r *BusResult) error {
	paths, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return err
	}
	sort.Strings(paths)
	for _, p := range paths {
		if isClusterFragment(p) {
			continue // ReadClusterFragments
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("reading fragment: %w", err)
		}
		var f BusResult
		if err := json.Unmarshal(b, &f); err != nil {
			return fmt.Errorf("decoding fragment %s: %w", p, err)
		}
		restoreDurations(&f)
		if f.AMQPNotRun != "" {
			r.AMQPNotRun = f.AMQPNotRun
		}
		if f.AMQP != nil {
			r.AMQP = f.AMQP
		}
		if f.Embedded != nil {
			r.Embedded = f.Embedded
		}
		if f.WorkerEmbedded != nil {
			r.WorkerEmbedded = f.WorkerEmbedded
		}
		if f.Worker != nil || f.WorkerNotRun != "" {
			return fmt.Errorf("fragment %s: the worker benchmark over RabbitMQ is the harness's own", p)
		}
	}
	return nil
}

// restoreDurations sets the durations a fragment's JSON leaves out
// (json:"-") from the whole units it keeps.
func restoreDurations(f *BusResult) {
	runs := func(rs []ThroughputRun) {
		for i := range rs {
			rs[i].Elapsed = time.Duration(rs[i].ElapsedUS) * time.Microsecond
		}
	}
	if a := f.AMQP; a != nil {
		runs(a.Runs)
		if a.Sequential != nil {
			a.Sequential.Elapsed = time.Duration(a.Sequential.ElapsedUS) * time.Microsecond
		}
		a.Elapsed = time.Duration(a.ElapsedMS) * time.Millisecond
		a.BrokerCPU = time.Duration(a.BrokerCPUMS) * time.Millisecond
		a.ProcessCPU = time.Duration(a.ProcessCPUMS) * time.Millisecond
	}
	if e := f.Embedded; e != nil {
		runs(e.Runs)
	}
	if w := f.WorkerEmbedded; w != nil {
		runs(w.Runs)
	}
}
