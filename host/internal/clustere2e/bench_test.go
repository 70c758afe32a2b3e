package clustere2e

import (
	"fmt"
	"os"
	"sort"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/bench"
)

// The cluster benchmarks of make bench (see bench/cluster.go, which
// renders them into docs/benchmarks.md): they skip unless
// DYNWORKERS_BENCH=1, so make test does not run them.

func benchOnly(t *testing.T) {
	t.Helper()
	if os.Getenv("DYNWORKERS_BENCH") != "1" {
		t.Skip("benchmark: set DYNWORKERS_BENCH=1 to run (make bench does)")
	}
}

// Failover time: kill -9 of one host of three → every worker it ran
// running on a survivor, with lease TTLs of 3 s and 10 s (the default).
func TestBenchClusterFailover(t *testing.T) {
	benchOnly(t)
	res := &bench.ClusterResult{}
	for _, tc := range []struct {
		ttl  time.Duration
		runs int
	}{{3 * time.Second, 3}, {10 * time.Second, 2}} {
		f := bench.ClusterFailover{TTLMS: tc.ttl.Milliseconds(), Hosts: 3, Workers: 30}
		for i := range tc.runs {
			t.Run(fmt.Sprintf("ttl=%s/run=%d", tc.ttl, i), func(t *testing.T) {
				took, moved := failoverOnce(t, tc.ttl, 30)
				t.Logf("TTL %s: %d workers moved in %s", tc.ttl, moved, took.Round(time.Millisecond))
				f.TookMS = append(f.TookMS, took.Milliseconds())
				f.Moved = append(f.Moved, moved)
			})
		}
		if t.Failed() {
			return
		}
		res.Failover = append(res.Failover, f)
	}
	if err := bench.WriteClusterFragment("failover", res); err != nil {
		t.Fatal(err)
	}
}

// failoverOnce runs three hosts with n workers, kills the one that runs
// the most, and returns the time until all of them run elsewhere.
func failoverOnce(t *testing.T, d time.Duration, n int) (time.Duration, int) {
	c := threeHosts(t, d)
	ws := names("w", n)
	c.startAll(ws)
	p := c.placement()
	var victim *host
	for _, h := range c.live() {
		if victim == nil || len(p.on(h.name)) > len(p.on(victim.name)) {
			victim = h
		}
	}
	moved := p.on(victim.name)
	killed := victim.kill9()
	done := c.waitRunning(t, d+60*time.Second, "every worker of the killed host running elsewhere", moved)
	c.assertOnce(c.placement(), ws)
	return done.Sub(killed), len(moved)
}

// Placement rate (100 starts through .any with replies, three hosts) and
// etcd writes per start (etcd's revision delta over the starts).
func TestBenchClusterPlacement(t *testing.T) {
	benchOnly(t)
	c := threeHosts(t, 10*time.Second)
	// The system at rest: how fast the revision grows without starts.
	idle := 3 * time.Second
	r0 := c.revision()
	time.Sleep(idle)
	idleRevs := c.revision() - r0

	const n = 100
	ws := names("p", n)
	before := c.revision()
	began := time.Now()
	chs := make([]<-chan reply, n)
	for i, name := range ws {
		chs[i] = c.PublishStart(name)
	}
	var last time.Time
	for i, name := range ws {
		r := c.await(chs[i], waitTimeout, "start of "+name)
		if st := r.start(); !r.OK || st.Action != "started" || st.State != "running" {
			t.Fatalf("start of %s: %s", name, r)
		}
		if r.at.After(last) {
			last = r.at
		}
	}
	elapsed := last.Sub(began)
	// Count the writes once every host's load says so.
	waitFor(t, waitTimeout, "the hosts' loads sum to the starts", func() (bool, string) {
		v, err := c.hosts[0].view()
		if err != nil {
			return false, err.Error()
		}
		sum := 0
		for _, h := range v.Hosts {
			sum += h.Load
		}
		return sum == n, fmt.Sprintf("loads sum to %d", sum)
	})
	revs := c.revision() - before

	// One at a time.
	var seq []int64
	for _, name := range names("s", 20) {
		at := time.Now()
		r := c.await(c.PublishStart(name), waitTimeout, "start of "+name)
		if st := r.start(); !r.OK || st.Action != "started" {
			t.Fatalf("start of %s: %s", name, r)
		}
		seq = append(seq, r.at.Sub(at).Microseconds())
	}
	sort.Slice(seq, func(i, j int) bool { return seq[i] < seq[j] })
	pl := &bench.ClusterPlacement{
		Hosts: 3, Starts: n, ElapsedMS: elapsed.Milliseconds(), PerSecond: float64(n) / elapsed.Seconds(),
		SequentialUS: seq, Revisions: revs, WritesPerStart: float64(revs) / n,
		IdleRevisions: idleRevs, IdleMS: idle.Milliseconds(),
	}
	t.Logf("%d starts in %s: %.1f/s; %d revisions (%.1f per start); idle: %d in %s; one at a time p50 %dµs",
		n, elapsed.Round(time.Millisecond), pl.PerSecond, revs, pl.WritesPerStart, idleRevs, idle, seq[len(seq)/2])
	if err := bench.WriteClusterFragment("placement", &bench.ClusterResult{Placement: pl}); err != nil {
		t.Fatal(err)
	}
}
