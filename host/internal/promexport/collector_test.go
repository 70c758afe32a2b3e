package promexport

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"

	"github.com/dynworkers/dynworkers/host/internal/monitor"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func fixed(s *monitor.Snapshot) func() *monitor.Snapshot {
	return func() *monitor.Snapshot { return s }
}

// TestCollectorLint runs promlint, the linter behind promtool check
// metrics, on the collector's metrics: naming, units, _total on counters
// and help texts.
func TestCollectorLint(t *testing.T) {
	problems, err := testutil.CollectAndLint(NewCollector(fixed(testSnapshot())))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

// TestCollectorSeries checks the values and labels of a few series
// exactly, among them the escaped names.
func TestCollectorSeries(t *testing.T) {
	const want = `
# HELP dynworkers_host_info Always 1; names the host's system_id and host name.
# TYPE dynworkers_host_info gauge
dynworkers_host_info{host="web-1",system_id="prod"} 1
# HELP dynworkers_snapshot_timestamp_seconds Unix time at which the figures exported were sampled.
# TYPE dynworkers_snapshot_timestamp_seconds gauge
dynworkers_snapshot_timestamp_seconds 1.7673230455e+09
# HELP dynworkers_host_workers Number of workers of the host in each state.
# TYPE dynworkers_host_workers gauge
dynworkers_host_workers{state="backoff"} 1
dynworkers_host_workers{state="exited"} 0
dynworkers_host_workers{state="failed"} 0
dynworkers_host_workers{state="paused"} 1
dynworkers_host_workers{state="running"} 2
dynworkers_host_workers{state="starting"} 0
dynworkers_host_workers{state="stopped"} 1
dynworkers_host_workers{state="stopping"} 0
# HELP dynworkers_control_requests_failed_total Control requests answered with an error since the host started.
# TYPE dynworkers_control_requests_failed_total counter
dynworkers_control_requests_failed_total 3
# HELP dynworkers_worker_up 1 if the worker is in state running, else 0.
# TYPE dynworkers_worker_up gauge
dynworkers_worker_up{class="echo",supervisor="root",worker="bad\ufffdname"} 0
dynworkers_worker_up{class="echo",supervisor="root",worker="echo"} 1
dynworkers_worker_up{class="echo",supervisor="root/campagne été/the \"inner\" one",worker="stopped one"} 0
dynworkers_worker_up{class="echo",supervisor="root/campagne été/the \"inner\" one",worker="two\nlines"} 0
dynworkers_worker_up{class="greeter",supervisor="root/campagne été",worker="say \"hi\" \\ 日本"} 1
# HELP dynworkers_worker_rss_bytes Resident set size of the worker's plugin process.
# TYPE dynworkers_worker_rss_bytes gauge
dynworkers_worker_rss_bytes{class="echo",supervisor="root",worker="echo"} 2.097152e+07
dynworkers_worker_rss_bytes{class="greeter",supervisor="root/campagne été",worker="say \"hi\" \\ 日本"} 1.048576e+07
# HELP dynworkers_worker_uptime_seconds Time since the worker's plugin process started.
# TYPE dynworkers_worker_uptime_seconds gauge
dynworkers_worker_uptime_seconds{class="echo",supervisor="root",worker="echo"} 100
dynworkers_worker_uptime_seconds{class="greeter",supervisor="root/campagne été",worker="say \"hi\" \\ 日本"} 30
# HELP dynworkers_supervisor_up 1 if the supervisor is in state running, else 0.
# TYPE dynworkers_supervisor_up gauge
dynworkers_supervisor_up{supervisor="root"} 1
dynworkers_supervisor_up{supervisor="root/campagne été"} 1
dynworkers_supervisor_up{supervisor="root/campagne été/the \"inner\" one"} 0
# HELP dynworkers_supervisor_period_seconds Length of the period over which the supervisor counts restarts.
# TYPE dynworkers_supervisor_period_seconds gauge
dynworkers_supervisor_period_seconds{supervisor="root"} 5
dynworkers_supervisor_period_seconds{supervisor="root/campagne été"} 60
dynworkers_supervisor_period_seconds{supervisor="root/campagne été/the \"inner\" one"} 1.5
`
	// The literal above holds \ufffd as written in Go, not as the
	// exposition format would write it (it has no \u escape).
	wantText := strings.ReplaceAll(want, `\ufffd`, "\uFFFD")
	err := testutil.CollectAndCompare(NewCollector(fixed(testSnapshot())), strings.NewReader(wantText),
		"dynworkers_host_info", "dynworkers_snapshot_timestamp_seconds", "dynworkers_host_workers",
		"dynworkers_control_requests_failed_total", "dynworkers_worker_up", "dynworkers_worker_rss_bytes",
		"dynworkers_worker_uptime_seconds", "dynworkers_supervisor_up", "dynworkers_supervisor_period_seconds")
	if err != nil {
		t.Error(err)
	}
}

// TestCollectorGolden compares all the collector's metrics with
// testdata/collector.prom (go test -update rewrites it).
func TestCollectorGolden(t *testing.T) {
	c := NewCollector(fixed(testSnapshot()))
	path := filepath.Join("testdata", "collector.prom")
	if *update {
		// Not testutil.CollectAndFormat: given no names, it keeps none.
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(c)
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		enc := expfmt.NewEncoder(&got, expfmt.NewFormat(expfmt.TypeTextPlain))
		for _, mf := range mfs {
			if err := enc.Encode(mf); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(path, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if err := testutil.CollectAndCompare(c, bytes.NewReader(want)); err != nil {
		t.Error(err)
	}
}

// TestCollectorStateSets checks that each worker and supervisor has
// exactly one state set to 1, and a series for every known state.
func TestCollectorStateSets(t *testing.T) {
	snap := testSnapshot()
	reg := NewRegistry(fixed(snap))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		metric, key string
		known       []string
		entities    int
	}{
		{"dynworkers_worker_state", "worker", workerStates, len(snap.Workers)},
		{"dynworkers_supervisor_state", "supervisor", supervisorStates, len(snap.Supervisors)},
	} {
		ones := map[string]int{}
		series := map[string]int{}
		for _, mf := range mfs {
			if mf.GetName() != tc.metric {
				continue
			}
			for _, m := range mf.GetMetric() {
				var who string
				for _, lp := range m.GetLabel() {
					if lp.GetName() == tc.key {
						who = lp.GetValue()
					}
				}
				series[who]++
				if m.GetGauge().GetValue() == 1 {
					ones[who]++
				}
			}
		}
		if len(series) != tc.entities {
			t.Errorf("%s: %d %ss, want %d", tc.metric, len(series), tc.key, tc.entities)
		}
		for who, n := range series {
			if ones[who] != 1 {
				t.Errorf("%s{%s=%q}: %d states set, want 1", tc.metric, tc.key, who, ones[who])
			}
			// A worker in a state this package does not know has one more.
			if n != len(tc.known) && !(who == newlineWorker && n == len(tc.known)+1) {
				t.Errorf("%s{%s=%q}: %d series, want %d", tc.metric, tc.key, who, n, len(tc.known))
			}
		}
	}
}

// TestCollectorNoSnapshot checks that a source without a sample yet
// exports nothing rather than zeros.
func TestCollectorNoSnapshot(t *testing.T) {
	if n := testutil.CollectAndCount(NewCollector(fixed(nil))); n != 0 {
		t.Errorf("collected %d metrics from a nil snapshot, want 0", n)
	}
}

// TestCollectorCallsSourceOncePerCollect checks that one scrape sees one
// snapshot.
func TestCollectorCallsSourceOncePerCollect(t *testing.T) {
	calls := 0
	c := NewCollector(func() *monitor.Snapshot { calls++; return testSnapshot() })
	testutil.CollectAndCount(c)
	if calls != 1 {
		t.Errorf("source called %d times for one collection, want 1", calls)
	}
}

func TestWithExtra(t *testing.T) {
	known := []string{"a", "b"}
	for _, tc := range []struct {
		extra []string
		want  string
	}{
		{nil, "a b"},
		{[]string{"b", ""}, "a b"},
		{[]string{"c", "a", "d", "c"}, "a b c d"},
	} {
		if got := strings.Join(withExtra(known, tc.extra...), " "); got != tc.want {
			t.Errorf("withExtra(%q, %q) = %q, want %q", known, tc.extra, got, tc.want)
		}
	}
	if strings.Join(known, " ") != "a b" {
		t.Errorf("withExtra changed its known slice: %q", known)
	}
}
