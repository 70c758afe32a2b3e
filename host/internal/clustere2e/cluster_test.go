package clustere2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/host/internal/state"
)

// ttl is the lease TTL of the tests that time a failover.
const ttl = 3 * time.Second

// threeHosts starts h1, h2, h3 with lease TTL d and waits until they are
// one cluster with a leader.
func threeHosts(t *testing.T, d time.Duration) *cluster {
	c := newCluster(t, d)
	for _, n := range []string{"h1", "h2", "h3"} {
		c.addHost(n, hostOpts{})
	}
	c.waitReady()
	return c
}

// assertOnce fails the test unless each of names runs exactly once in p
// (and nothing else does), each pid a live child of its host.
func (c *cluster) assertOnce(p placement, names []string) {
	c.t.Helper()
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
		switch ws := p[n]; len(ws) {
		case 0:
			c.t.Errorf("%s runs nowhere", n)
		case 1:
		default:
			c.t.Errorf("%s runs %d times: %v", n, len(ws), ws)
		}
	}
	for n := range p {
		if !want[n] {
			c.t.Errorf("%s runs, but was not started: %v", n, p[n])
		}
	}
	// /proc: each host's children are exactly its workers (warm_spares =
	// 0: a host runs no spare plugin process).
	byHost := map[string]map[int]bool{}
	for _, ws := range p {
		for _, w := range ws {
			if byHost[w.host] == nil {
				byHost[w.host] = map[int]bool{}
			}
			byHost[w.host][w.pid] = true
		}
	}
	total := 0
	for _, h := range c.live() {
		if h.plain {
			continue
		}
		kids := procChildren(h.pid())
		total += len(kids)
		for pid := range byHost[h.name] {
			if !kids[pid] {
				c.t.Errorf("host %s: status says pid %d runs, /proc has no such child of %d", h.name, pid, h.pid())
			}
		}
		if len(kids) != len(byHost[h.name]) {
			c.t.Errorf("host %s has %d child processes, its status %d workers", h.name, len(kids), len(byHost[h.name]))
		}
	}
	if total != len(names) {
		c.t.Errorf("%d worker processes in /proc, want %d", total, len(names))
	}
}

// Must hold: three hosts; 30 workers started through .any with 3 retries
// each of every start: exactly 30 instances run, spread within ±2 of even.
func TestThirtyStartsWithRetriesRunOnceEach(t *testing.T) {
	c := threeHosts(t, ttl)
	s := c.startSampler()
	ws := names("w", 30)
	// Each start four times back to back (a client that re-sends after a
	// lost reply, as fast as it can): the copies are taken by any host.
	chs := map[string][]<-chan reply{}
	for _, n := range ws {
		for range 4 {
			chs[n] = append(chs[n], c.PublishStart(n))
		}
	}
	hostOf := map[string]string{}
	for _, n := range ws {
		actions := map[string]int{}
		for i, ch := range chs[n] {
			r := c.await(ch, waitTimeout, fmt.Sprintf("copy %d of the start of %s", i, n))
			st := r.start()
			if !r.OK {
				t.Errorf("copy %d of the start of %s: %s", i, n, r)
				continue
			}
			actions[st.Action]++
			if st.State != "running" || st.Host == "" {
				t.Errorf("copy %d of the start of %s: %s, want running on a host", i, n, r)
			}
			if h, ok := hostOf[n]; ok && h != st.Host {
				t.Errorf("the replies of %s name two hosts: %s and %s", n, h, st.Host)
			}
			hostOf[n] = st.Host
		}
		if actions["started"] != 1 || actions["unchanged"] != 3 {
			t.Errorf("the four starts of %s were answered %v, want 1 started and 3 unchanged", n, actions)
		}
	}
	p := c.placement()
	c.assertOnce(p, ws)
	for _, n := range ws {
		if len(p[n]) == 1 && p[n][0].host != hostOf[n] {
			t.Errorf("%s runs on %s, its replies said %s", n, p[n][0].host, hostOf[n])
		}
	}
	per := p.perHost()
	t.Logf("workers per host: %v", per)
	for _, h := range []string{"h1", "h2", "h3"} {
		if per[h] < 8 || per[h] > 12 {
			t.Errorf("host %s runs %d workers, want 10 ± 2 (all: %v)", h, per[h], per)
		}
	}
	// The view agrees: 30 cluster workers, each placed where it runs.
	v, err := c.hosts[0].view()
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Workers) != 30 {
		t.Errorf("the cluster view lists %d workers, want 30", len(v.Workers))
	}
	for _, w := range v.Workers {
		if w.Host != hostOf[w.Name] || w.RunningOn != hostOf[w.Name] || w.State != "running" {
			t.Errorf("view: %+v, want placed and running on %s", w, hostOf[w.Name])
		}
	}
	s.assertNoDuplicate(t)
}

// Must hold: kill -9 of one host: all its cluster workers run on the other
// two within TTL + 5 s; at no sampled moment does any worker name have two
// live processes. Once a host that is not the leader, once the leader (a
// new leader is elected when its lease expires, and places its workers).
func TestKill9FailsOverWithinTTLPlus5s(t *testing.T) {
	for _, leader := range []bool{false, true} {
		t.Run(fmt.Sprintf("leader=%v", leader), func(t *testing.T) { kill9Failover(t, leader) })
	}
}

func kill9Failover(t *testing.T, leader bool) {
	c := threeHosts(t, ttl)
	s := c.startSampler()
	ws := names("w", 30)
	c.startAll(ws)
	p := c.placement()
	c.assertOnce(p, ws)
	v, err := c.hosts[0].view()
	if err != nil {
		t.Fatal(err)
	}
	var victim *host
	for _, h := range c.hosts {
		if (h.name == v.Leader) == leader {
			victim = h
			break
		}
	}
	moved := p.on(victim.name)
	if len(moved) == 0 {
		t.Fatalf("%s runs no worker: %v", victim.name, p.perHost())
	}
	killed := victim.kill9()
	s.waitGone(t, victim.name, 10*time.Second)
	done := c.waitRunning(t, ttl+5*time.Second+2*time.Second, "every worker of the killed host running on a survivor", moved)
	took := done.Sub(killed)
	t.Logf("kill -9 of %s (leader: %v, %d workers) → all running elsewhere: %s (TTL %s)", victim.name, leader, len(moved), took, ttl)
	if took > ttl+5*time.Second {
		t.Errorf("failover took %s, more than TTL + 5 s = %s", took, ttl+5*time.Second)
	}
	c.assertOnce(c.placement(), ws)
	// The moves are counted, and a survivor leads.
	from := c.live()[0]
	v, err = from.view()
	if err != nil {
		t.Fatal(err)
	}
	if v.Leader == "" || v.Leader == victim.name {
		t.Errorf("view: leader %q after %s was killed", v.Leader, victim.name)
	}
	for _, w := range v.Workers {
		if contains(moved, w.Name) && w.Moves < 1 {
			t.Errorf("view: %s moved from %s but shows %d moves", w.Name, victim.name, w.Moves)
		}
	}
	s.assertNoDuplicate(t)
}

// A host shut down cleanly (SIGTERM) hands its cluster workers over at
// once: they run on the others well before the lease's TTL (10 s here)
// could have expired, and never twice.
func TestCleanShutdownHandsOverAtOnce(t *testing.T) {
	const longTTL = 10 * time.Second
	c := threeHosts(t, longTTL)
	s := c.startSampler()
	ws := names("w", 30)
	c.startAll(ws)
	p := c.placement()
	victim := c.hosts[1]
	moved := p.on(victim.name)
	if err := victim.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	select {
	case <-victim.done:
	case <-time.After(waitTimeout):
		t.Fatalf("%s did not exit after SIGTERM", victim.name)
	}
	victim.killed.Store(true)
	if victim.rc != 0 {
		t.Errorf("%s exited with status %d after SIGTERM, want 0", victim.name, victim.rc)
	}
	done := c.waitRunning(t, longTTL, "every worker of the stopped host running on a survivor", moved)
	took := done.Sub(stopped)
	t.Logf("SIGTERM of %s (%d workers) → all running elsewhere: %s (TTL %s)", victim.name, len(moved), took, longTTL)
	if took > longTTL/2 {
		t.Errorf("the handover took %s: as long as waiting for the lease (TTL %s)", took, longTTL)
	}
	c.assertOnce(c.placement(), ws)
	s.assertNoDuplicate(t)
}

// Must hold: a host cut off from etcd (its connection black-holed by its
// proxy) stops its cluster workers before the survivors start them.
func TestHostCutOffFromEtcdStopsBeforeSurvivorsStart(t *testing.T) {
	c := threeHosts(t, ttl)
	s := c.startSampler()
	ws := names("w", 30)
	c.startAll(ws)
	p := c.placement()
	c.assertOnce(p, ws)
	cut := c.hosts[2] // h3
	moved := p.on(cut.name)
	if len(moved) == 0 {
		t.Fatalf("%s runs no worker: %v", cut.name, p.perHost())
	}
	cut.proxy.Block()
	blocked := time.Now()
	// The cut host fences: its cluster workers stop (it is still alive,
	// its status says so).
	waitFor(t, ttl+10*time.Second, "the cut host stopped its cluster workers", func() (bool, string) {
		ws, err := cut.clusterWorkers()
		if err != nil {
			return false, err.Error()
		}
		return len(ws) == 0, fmt.Sprintf("still running: %v", sortedKeys(ws))
	})
	waitFor(t, ttl+10*time.Second, "every worker of the cut host running on a survivor", func() (bool, string) {
		q, err := c.tryPlacement()
		if err != nil {
			return false, err.Error()
		}
		var missing []string
		for _, n := range moved {
			found := false
			for _, w := range q[n] {
				found = found || w.host != cut.name
			}
			if !found {
				missing = append(missing, n)
			}
		}
		return len(missing) == 0, fmt.Sprintf("not on a survivor: %v", missing)
	})
	// The status that showed them on survivors may be newer than the
	// sampler's last sample: wait until it has seen them there too.
	waitFor(t, 10*time.Second, "the sampler saw every moved worker on a survivor", func() (bool, string) {
		var missing []string
		for _, n := range moved {
			if !slices.ContainsFunc(s.of(n), func(pr proc) bool { return pr.host != cut.name }) {
				missing = append(missing, n)
			}
		}
		return len(missing) == 0, fmt.Sprintf("not sampled on a survivor: %v", missing)
	})
	// For each name: the cut host's process was gone (in /proc) before
	// the first process of a survivor was seen.
	var lastGone, firstNew time.Time
	for _, n := range moved {
		var old, nw []proc
		for _, pr := range s.of(n) {
			if pr.host == cut.name {
				old = append(old, pr)
			} else {
				nw = append(nw, pr)
			}
		}
		if len(old) == 0 || len(nw) == 0 {
			t.Errorf("%s: processes seen on %s %v, on survivors %v", n, cut.name, old, nw)
			continue
		}
		for _, o := range old {
			if o.gone.IsZero() {
				t.Errorf("%s: %s still alive", n, o.String())
				continue
			}
			if o.gone.After(lastGone) {
				lastGone = o.gone
			}
			for _, x := range nw {
				if !x.first.After(o.gone) {
					t.Errorf("%s: %s seen at %s, before %s was gone at %s", n, x.String(), x.first.Format("15:04:05.000"), o.String(), o.gone.Format("15:04:05.000"))
				}
			}
		}
		for _, x := range nw {
			if firstNew.IsZero() || x.first.Before(firstNew) {
				firstNew = x.first
			}
		}
	}
	t.Logf("cut at 0; the cut host's last worker gone at %s; the first survivor's process seen at %s (TTL %s)",
		lastGone.Sub(blocked).Round(time.Millisecond), firstNew.Sub(blocked).Round(time.Millisecond), ttl)
	if !lastGone.Before(firstNew) {
		t.Errorf("the cut host's last worker was gone at %s after the cut, after the first survivor's start at %s",
			lastGone.Sub(blocked), firstNew.Sub(blocked))
	}
	// Back on etcd, the host rejoins and starts none of its old workers
	// again.
	cut.proxy.Unblock()
	c.waitReady()
	// Watch it (the sampler runs) for a while after it rejoined.
	time.Sleep(2 * ttl)
	c.assertOnce(c.placement(), ws)
	s.assertNoDuplicate(t)
}

// Must hold: drain of a host with 10 workers: all move, none is down
// longer than one restart, none runs twice; after undrain the host takes
// new workers again.
func TestDrainMovesTenWorkersOneByOne(t *testing.T) {
	c := newCluster(t, ttl)
	h1 := c.addHost("h1", hostOpts{})
	c.waitReady()
	s := c.startSampler()
	ws := names("d", 10)
	c.startAll(ws) // h1 is the only host: all ten run there
	if on := c.placement().on("h1"); len(on) != 10 {
		t.Fatalf("h1 runs %v, want the ten", on)
	}
	// Hosts that join later get no worker (no rebalance).
	c.addHost("h2", hostOpts{})
	c.addHost("h3", hostOpts{})
	c.waitReady()
	if on := c.placement().on("h1"); len(on) != 10 {
		t.Fatalf("after h2 and h3 joined, h1 runs %v, want the ten", on)
	}
	r := c.request(c.hostKey("h2"), map[string]any{"operation": control.OpDrain, "host": "h1"})
	var dr api.DrainResult
	_ = json.Unmarshal(r.Result, &dr)
	if !r.OK || dr.Host != "h1" || dr.Action != "draining" {
		t.Fatalf("drain h1: %s, want draining", r)
	}
	drained := time.Now()
	waitFor(t, 60*time.Second, "the ten workers moved off h1", func() (bool, string) {
		q, err := c.tryPlacement()
		if err != nil {
			return false, err.Error()
		}
		off := 0
		for _, n := range ws {
			if len(q[n]) == 1 && q[n][0].host != "h1" {
				off++
			}
		}
		return off == 10, fmt.Sprintf("%d moved, h1 runs %v", off, q.on("h1"))
	})
	t.Logf("drain of 10 workers took %s", time.Since(drained).Round(time.Millisecond))
	c.assertOnce(c.placement(), ws)
	// Per worker: the new process runs within one restart of the old one's
	// death. The moves are one at a time: at most one is down at once
	// (give or take a sample).
	const maxGap = 3 * time.Second
	// The status that showed the last move may be newer than the
	// sampler's last sample: wait until it has seen each move's end.
	waitFor(t, 10*time.Second, "the sampler saw every move end", func() (bool, string) {
		for _, n := range ws {
			ps := s.of(n)
			if len(ps) < 2 || ps[0].gone.IsZero() || ps[len(ps)-1].running.IsZero() {
				return false, fmt.Sprintf("%s: %v", n, ps)
			}
		}
		return true, ""
	})
	type down struct{ from, to time.Time }
	var downs []down
	for _, n := range ws {
		ps := s.of(n)
		if len(ps) != 2 || ps[0].host != "h1" || ps[1].host == "h1" {
			t.Errorf("%s: processes %v, want one on h1 then one elsewhere", n, ps)
			continue
		}
		old, nw := ps[0], ps[1]
		if old.gone.IsZero() || nw.running.IsZero() {
			t.Errorf("%s: old gone at %v, new running at %v", n, old.gone, nw.running)
			continue
		}
		gap := nw.running.Sub(old.gone)
		t.Logf("%s: %s → %s, down %s", n, old.host, nw.host, gap.Round(time.Millisecond))
		if gap > maxGap {
			t.Errorf("%s was down %s while it moved, more than %s", n, gap, maxGap)
		}
		downs = append(downs, down{old.gone, nw.running})
	}
	// How many were down at once, at each moment one went down (as the
	// sampler saw them: a move quicker than a sample may show as two).
	// Moved all at once they would be ten.
	most := 0
	for _, d := range downs {
		at := 0
		for _, e := range downs {
			if !e.from.After(d.from) && e.to.After(d.from) {
				at++
			}
		}
		most = max(most, at)
	}
	t.Logf("at most %d of the drained host's workers were down at once (as sampled)", most)
	if most > 3 {
		t.Errorf("up to %d workers of the drained host were down at once, want them moved one at a time", most)
	}
	// Drained: new starts go elsewhere.
	more := names("m", 4)
	c.startAll(more)
	if on := c.placement().on("h1"); len(on) != 0 {
		t.Errorf("the drained h1 got %v", on)
	}
	v, err := h1.view()
	if err != nil {
		t.Fatal(err)
	}
	for _, hh := range v.Hosts {
		if hh.Name == "h1" && !hh.Draining {
			t.Errorf("view: h1 %+v, want draining", hh)
		}
	}
	// Undrained, h1 (the emptiest) takes the next starts.
	r = c.request(c.anyKey(), map[string]any{"operation": control.OpUndrain, "host": "h1"})
	_ = json.Unmarshal(r.Result, &dr)
	if !r.OK || dr.Action != "undrained" {
		t.Fatalf("undrain h1: %s, want undrained", r)
	}
	last := names("u", 3)
	c.startAll(last)
	p := c.placement()
	for _, n := range last {
		if len(p[n]) != 1 || p[n][0].host != "h1" {
			t.Errorf("after undrain, %s runs on %v, want h1 (it has the fewest workers)", n, p[n])
		}
	}
	c.assertOnce(p, append(append(append([]string{}, ws...), more...), last...))
	s.assertNoDuplicate(t)
}

// Must hold: etcd restarted under load: the hosts reconnect; no worker
// stopped, none duplicated; later starts succeed. The lease TTL is 10 s
// here (the default): the restart must be shorter than the fence
// threshold (0.6·TTL), which on a loaded machine 3 s would not leave.
func TestEtcdRestartUnderLoadStopsNothing(t *testing.T) {
	const longTTL = 10 * time.Second
	c := threeHosts(t, longTTL)
	s := c.startSampler()
	ws := names("w", 30)
	c.startAll(ws)
	before := c.placement()
	c.assertOnce(before, ws)

	// Starts keep flowing while etcd goes down and comes back.
	var wg sync.WaitGroup
	var mu sync.Mutex
	var inflight []string
	stopLoad := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stopLoad:
				return
			case <-time.After(100 * time.Millisecond):
			}
			n := fmt.Sprintf("l%03d", i)
			c.send(c.anyKey(), startReq(n)) // the reply is not awaited: it may be an error while etcd is away
			mu.Lock()
			inflight = append(inflight, n)
			mu.Unlock()
		}
	}()
	time.Sleep(time.Second) // some starts before the kill
	c.etcd.Kill()
	down := time.Now()
	c.etcd.Restart()
	t.Logf("etcd was down for %s", time.Since(down).Round(time.Millisecond))
	time.Sleep(2 * time.Second) // and some after
	close(stopLoad)
	wg.Wait()
	c.waitReady()

	// Every worker that ran runs still, with the same process.
	after := c.placement()
	for _, n := range ws {
		if len(after[n]) != 1 || after[n][0] != before[n][0] {
			t.Errorf("%s ran as %v, now %v: stopped or moved by the etcd restart", n, before[n], after[n])
		}
	}
	// Every start sent meanwhile, sent again, ends running once.
	mu.Lock()
	sent := append([]string{}, inflight...)
	mu.Unlock()
	for _, n := range sent {
		r := c.request(c.anyKey(), startReq(n))
		st := r.start()
		if !r.OK || (st.Action != "started" && st.Action != "unchanged") || st.State != "running" {
			t.Errorf("start of %s again after the restart: %s", n, r)
		}
	}
	later := names("z", 5)
	c.startAll(later)
	c.assertOnce(c.placement(), append(append(append([]string{}, ws...), sent...), later...))
	s.assertNoDuplicate(t)
}

// Must hold: a host without a cluster block on the same broker (and
// system_id) behaves exactly as today: a start sent to its own routing key
// runs there and is kept in its workers.json; its status has no cluster
// fields; cluster operations are a conflict there; etcd never hears of it.
func TestHostWithoutClusterBlockIsUnchanged(t *testing.T) {
	c := newCluster(t, ttl)
	c.addHost("h1", hostOpts{})
	c.addHost("h2", hostOpts{})
	plain := c.addHost("p", hostOpts{plain: true})
	c.waitReady()
	s := c.startSampler()

	r := c.request(c.hostKey("p"), startReq("local"))
	st := r.start()
	if !r.OK || st.Action != "started" || st.State != "running" || st.Host != "" || st.Pending != "" {
		t.Fatalf("start on the plain host: %s, want started and running, without cluster fields", r)
	}
	status, err := plain.status()
	if err != nil {
		t.Fatal(err)
	}
	var w *api.Worker
	for i := range status.Workers {
		if status.Workers[i].Name == "local" {
			w = &status.Workers[i]
		}
	}
	if w == nil || w.Source != api.SourceControl || w.State != "running" || w.Pid != st.Pid {
		t.Fatalf("the plain host's status has %+v, want local running from control with pid %d", w, st.Pid)
	}
	raw, err := plain.statusRaw()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"system_id": true, "host": true, "broker": true, "started": true, "process": true, "supervisors": true, "workers": true}
	for k := range raw {
		if !want[k] {
			t.Errorf("the plain host's status has the field %q (%s)", k, raw[k])
		}
	}
	b, err := os.ReadFile(filepath.Join(plain.dir, "var", state.FileName))
	if err != nil {
		t.Fatalf("the plain host's state file: %v", err)
	}
	if !strings.Contains(string(b), `"local"`) {
		t.Errorf("the plain host's %s does not hold the worker:\n%s", state.FileName, b)
	}
	// Cluster operations are a conflict on it.
	r = c.request(c.hostKey("p"), map[string]any{"operation": control.OpClusterStatus})
	if r.OK || r.Error == nil || r.Error.Code != control.CodeConflict {
		t.Errorf("cluster_status on the plain host: %s, want a conflict", r)
	}
	// etcd knows nothing of it: not a host, not a worker.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kvs, err := c.etcdc.Get(ctx, c.prefix(), clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range kvs.Kvs {
		k := string(kv.Key)
		if strings.HasSuffix(k, "/p") || strings.HasSuffix(k, "/local") {
			t.Errorf("etcd holds %s = %s", k, kv.Value)
		}
	}
	v, err := c.hosts[0].view()
	if err != nil {
		t.Fatal(err)
	}
	for _, hh := range v.Hosts {
		if hh.Name == "p" {
			t.Errorf("the cluster view lists the plain host: %+v", hh)
		}
	}
	// Killed and started again, it starts the worker again from its
	// state file, as today.
	plain.kill9()
	again := plain.restart()
	waitFor(t, 30*time.Second, "the plain host runs its worker again after a restart", func() (bool, string) {
		st, err := again.status()
		if err != nil {
			return false, err.Error()
		}
		for _, w := range st.Workers {
			if w.Name == "local" && w.State == "running" {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%+v", st.Workers)
	})
	s.assertNoDuplicate(t)
}

func contains(xs []string, x string) bool {
	i := sort.SearchStrings(xs, x)
	return i < len(xs) && xs[i] == x
}

// Placement respects capacity (max_workers) and label constraints: a
// worker no host fits is answered pending, with the reason, and runs as
// soon as a host has room.
func TestCapacityAndConstraints(t *testing.T) {
	c := newCluster(t, ttl)
	c.addHost("h1", hostOpts{maxWorkers: 2, labels: map[string]string{"zone": "a"}})
	c.addHost("h2", hostOpts{maxWorkers: 2, labels: map[string]string{"zone": "b"}})
	c.waitReady()
	s := c.startSampler()
	zoned := func(name string) map[string]any {
		r := startReq(name)
		r["constraints"] = map[string]string{"zone": "b"}
		return r
	}
	for _, n := range []string{"b1", "b2"} {
		r := c.request(c.anyKey(), zoned(n))
		if st := r.start(); !r.OK || st.Action != "started" || st.Host != "h2" || st.State != "running" {
			t.Fatalf("start of %s with zone = b: %s, want started on h2", n, r)
		}
	}
	// h2 is full: a third zone-b worker fits nowhere.
	r := c.request(c.anyKey(), zoned("b3"))
	if st := r.start(); !r.OK || st.State != "pending" || st.Pending == "" || st.Host != "" {
		t.Fatalf("start of b3 with zone = b on a full h2: %s, want pending with a reason", r)
	} else {
		t.Logf("b3 pending: %s", st.Pending)
	}
	// Unconstrained ones go where there is room: h1 only.
	for _, n := range []string{"a1", "a2"} {
		r := c.request(c.anyKey(), startReq(n))
		if st := r.start(); !r.OK || st.Host != "h1" || st.State != "running" {
			t.Fatalf("start of %s: %s, want running on h1 (h2 is full)", n, r)
		}
	}
	r = c.request(c.anyKey(), startReq("a3"))
	if st := r.start(); !r.OK || st.State != "pending" {
		t.Fatalf("start of a3 with both hosts full: %s, want pending", r)
	}
	v, err := c.hosts[0].view()
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range v.Workers {
		if (w.Name == "b3" || w.Name == "a3") && (w.State != "pending" || w.Pending == "") {
			t.Errorf("view: %+v, want pending with a reason", w)
		}
	}
	// Room on h2: b3 runs there (a3 may take the room instead: both fit
	// h2; one of them runs).
	r = c.request(c.anyKey(), map[string]any{"operation": control.OpStopWorker, "worker_name": "b1"})
	if !r.OK {
		t.Fatalf("stop of b1: %s", r)
	}
	waitFor(t, 30*time.Second, "a pending worker placed on h2 once it had room", func() (bool, string) {
		q, err := c.tryPlacement()
		if err != nil {
			return false, err.Error()
		}
		on := q.on("h2")
		return len(on) == 2 && (contains(on, "b3") || contains(on, "a3")), fmt.Sprintf("h2 runs %v", on)
	})
	p := c.placement()
	if on := p.on("h1"); len(on) != 2 {
		t.Errorf("h1 runs %v, want 2 (its max_workers)", on)
	}
	if len(p["b1"]) != 0 {
		t.Errorf("b1 runs after its stop: %v", p["b1"])
	}
	s.assertNoDuplicate(t)
}
