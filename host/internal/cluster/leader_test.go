package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// putWorker writes a worker record directly (as Store.Start does).
func (tc *testCluster) putWorker(name string) {
	tc.t.Helper()
	v, _ := json.Marshal(WorkerRecord{Name: name, Class: "echo", Supervisor: "root", Config: json.RawMessage(`{}`), SpecHash: "h", Generation: 1})
	if _, err := tc.client.Put(tc.ctx, tc.keys.Worker(name), string(v)); err != nil {
		tc.t.Fatal(err)
	}
}

func perHost(s *Snapshot) map[string]int {
	out := map[string]int{}
	for _, r := range s.Running {
		out[r.Host]++
	}
	return out
}

// TestLeadPlacesAndFailsOver: 30 workers on 3 equal hosts come out
// 10/10/10; when one host's lease expires its 10 move to the other two.
func TestLeadPlacesAndFailsOver(t *testing.T) {
	tc := newTestCluster(t)
	tc.addHost("h1", 0, 10)
	tc.addHost("h2", 0, 10)
	h3 := tc.addHost("h3", 0, 2)
	lr := tc.startLeader("h1")
	st := NewStore(tc.client, tc.cache, "h2", nil)
	var wg sync.WaitGroup
	for i := range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(tc.ctx, wait)
			defer cancel()
			res, err := st.Start(ctx, StartRequest{Name: fmt.Sprintf("w%02d", i), Spec: spec("h")})
			if err != nil || res.State != "running" {
				t.Errorf("start w%02d: %+v %v", i, res, err)
			}
		}()
	}
	wg.Wait()
	s := tc.waitFor("30 running", func(s *Snapshot) bool { return len(s.Running) == 30 })
	if per := perHost(s); per["h1"] != 10 || per["h2"] != 10 || per["h3"] != 10 {
		t.Fatalf("spread %v, want 10/10/10", per)
	}
	if n := strings.Count(lr.log.String(), "placed cluster worker"); n != 30 {
		t.Errorf("the leader logged %d placements, want 30", n)
	}
	if strings.Contains(lr.log.String(), `"queue"`) || strings.Contains(lr.log.String(), "{}") {
		t.Errorf("the leader's log holds config: %s", lr.log)
	}
	onH3 := s.AssignedTo("h3")

	// h3 dies: its lease (TTL 2 s) expires, its running keys go with it.
	start := time.Now()
	h3.kill()
	s = tc.waitFor("h3's workers to run on h1 and h2", func(s *Snapshot) bool {
		per := perHost(s)
		return len(s.Running) == 30 && per["h3"] == 0
	})
	t.Logf("failover of 10 workers took %v (lease TTL 2 s)", time.Since(start).Round(time.Millisecond))
	if per := perHost(s); per["h1"] != 15 || per["h2"] != 15 {
		t.Errorf("spread after failover %v, want 15/15", per)
	}
	for _, n := range onH3 {
		if a := s.Assign[n]; a.Reason != ReasonFailover || a.Moves != 1 || a.From != "h3" {
			t.Errorf("%s: assignment %+v, want failover from h3, 1 move", n, a)
		}
	}
}

// TestLeadDrainsOneAtATime: a drained host's workers move one by one: at
// no snapshot is more than one drain move unfinished.
func TestLeadDrainsOneAtATime(t *testing.T) {
	tc := newTestCluster(t)
	tc.addHost("h1", 0, 10)
	tc.startLeader("h1")
	for i := range 6 {
		tc.putWorker(fmt.Sprintf("w%d", i))
	}
	tc.waitFor("6 running on h1", func(s *Snapshot) bool { return perHost(s)["h1"] == 6 })
	tc.addHost("h2", 0, 10)
	tc.addHost("h3", 0, 10)

	// Watch every revision (not just the cache's coalesced snapshots).
	wctx, wcancel := context.WithCancel(tc.ctx)
	defer wcancel()
	var maxInFlight int
	var seen atomic.Int64
	watchDone := make(chan struct{})
	mirror := NewCache(tc.client, tc.keys.Prefix, nil)
	s0 := tc.cache.Snapshot().clone()
	wc := tc.client.Watch(wctx, tc.keys.Prefix, clientv3.WithPrefix(), clientv3.WithRev(s0.Rev+1))
	go func() {
		defer close(watchDone)
		s := s0
		for resp := range wc {
			// One response may carry several revisions (a loaded
			// machine coalesces them): count after each revision.
			for i, ev := range resp.Events {
				mirror.apply(s, ev.Kv, ev.Type == clientv3.EventTypeDelete)
				if i+1 < len(resp.Events) && resp.Events[i+1].Kv.ModRevision == ev.Kv.ModRevision {
					continue // the rest of this revision's transaction
				}
				n := 0
				for name, a := range s.Assign {
					if a.Reason != ReasonDrain {
						continue
					}
					if r, ok := s.Running[name]; !ok || r.Host != a.Host || r.State == "starting" {
						n++
					}
				}
				maxInFlight = max(maxInFlight, n)
			}
			seen.Store(resp.Header.Revision)
		}
	}()

	st := NewStore(tc.client, tc.cache, "h2", nil)
	if _, err := st.Drain(tc.ctx, "h1", true); err != nil {
		t.Fatal(err)
	}
	s := tc.waitFor("all to leave h1", func(s *Snapshot) bool {
		per := perHost(s)
		return per["h1"] == 0 && per["h2"]+per["h3"] == 6
	})
	deadline := time.Now().Add(wait)
	for seen.Load() < s.Rev && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // the watcher catches up
	}
	wcancel()
	<-watchDone
	if ctxErr := tc.ctx.Err(); ctxErr != nil {
		t.Fatal(ctxErr)
	}
	if maxInFlight != 1 {
		t.Errorf("at most %d drain moves were in flight at once, want 1", maxInFlight)
	}
	if per := perHost(s); per["h2"] != 3 || per["h3"] != 3 {
		t.Errorf("spread after drain %v, want 3/3", per)
	}
	for name, a := range s.Assign {
		if a.Reason != ReasonDrain || a.From != "h1" || a.Moves != 1 {
			t.Errorf("%s: %+v", name, a)
		}
	}
}

// TestLeadOneLeader: two campaigners; only the first places; when its
// session ends the second takes over.
func TestLeadOneLeader(t *testing.T) {
	tc := newTestCluster(t)
	tc.addHost("h1", 0, 10)
	l1 := tc.startLeader("L1")
	tc.waitFor("L1 to lead", func(s *Snapshot) bool { return s.Leader() == "L1" })
	l2 := tc.startLeader("L2")
	tc.waitFor("L2 to campaign", func(s *Snapshot) bool { return len(s.elections) == 2 })
	for i := range 5 {
		tc.putWorker(fmt.Sprintf("a%d", i))
	}
	tc.waitFor("5 running", func(s *Snapshot) bool { return len(s.Running) == 5 })
	if n := strings.Count(l1.log.String(), "placed cluster worker"); n != 5 {
		t.Errorf("L1 placed %d, want 5", n)
	}
	if n := strings.Count(l2.log.String(), "placed cluster worker"); n != 0 {
		t.Errorf("L2 placed %d while not leader", n)
	}

	// L1's session ends (its host died): L2 leads and places.
	if _, err := tc.client.Revoke(tc.ctx, l1.session.Lease()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-l1.done:
		if err == nil || !strings.Contains(err.Error(), "session") {
			t.Errorf("L1's Lead returned %v, want a session error", err)
		}
		l1.done <- err // for the cleanup
	case <-time.After(wait):
		t.Fatal("L1's Lead did not return when its session ended")
	}
	tc.waitFor("L2 to lead", func(s *Snapshot) bool { return s.Leader() == "L2" })
	tc.putWorker("b")
	tc.waitFor("b running", func(s *Snapshot) bool { _, ok := s.Running["b"]; return ok })
	if n := strings.Count(l2.log.String(), "placed cluster worker"); n != 1 {
		t.Errorf("L2 placed %d, want 1", n)
	}
}

// TestDeposedLeaderCannotWrite: a leader's write, guarded by its election
// key's create revision, fails once it is deposed, though its snapshot is
// otherwise current.
func TestDeposedLeaderCannotWrite(t *testing.T) {
	tc := newTestCluster(t)
	tc.addHost("h1", 0, 10)
	tc.putWorker("w")
	sess, err := concurrency.NewSession(tc.client, concurrency.WithTTL(5))
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	el := concurrency.NewElection(sess, tc.keys.Election())
	if err := el.Campaign(tc.ctx, "old"); err != nil {
		t.Fatal(err)
	}
	l := &leader{client: tc.client, keys: tc.keys, key: el.Key(), rev: el.Rev(), log: nopLogger()}
	if err := el.Resign(tc.ctx); err != nil {
		t.Fatal(err)
	}
	// A new leader campaigns with another session.
	sess2, err := concurrency.NewSession(tc.client, concurrency.WithTTL(5))
	if err != nil {
		t.Fatal(err)
	}
	defer sess2.Close()
	el2 := concurrency.NewElection(sess2, tc.keys.Election())
	if err := el2.Campaign(tc.ctx, "new"); err != nil {
		t.Fatal(err)
	}
	s, _ := tc.cache.WaitRev(tc.ctx, el2.Rev())
	rev, err := l.applyMove(tc.ctx, s, Move{Worker: "w", To: "h1", Reason: ReasonPlaced}, time.Now())
	if err != errDeposed || rev != 0 {
		t.Fatalf("deposed leader's write: rev %d, err %v; want errDeposed", rev, err)
	}
	if g, _ := tc.client.Get(tc.ctx, tc.keys.Assign("w")); len(g.Kvs) != 0 {
		t.Fatal("the deposed leader's assignment was written")
	}

	// The current leader's write of the same move succeeds; a second one
	// from the now stale snapshot fails its compare without error.
	l2 := &leader{client: tc.client, keys: tc.keys, key: el2.Key(), rev: el2.Rev(), log: nopLogger()}
	if rev, err := l2.applyMove(tc.ctx, s, Move{Worker: "w", To: "h1", Reason: ReasonPlaced}, time.Now()); err != nil || rev == 0 {
		t.Fatalf("leader's write: %d %v", rev, err)
	}
	if rev, err := l2.applyMove(tc.ctx, s, Move{Worker: "w", To: "h1", Reason: ReasonPlaced}, time.Now()); err != nil || rev != 0 {
		t.Fatalf("stale write: %d %v, want a failed compare", rev, err)
	}
}

func nopLogger() hclog.Logger { return hclog.NewNullLogger() }

// TestLeadSurvivesEtcdRestart: etcd restarts (quicker than the leases'
// TTLs): nothing moves, the leader goes on placing, and a start made
// while etcd was down completes once it is back.
func TestLeadSurvivesEtcdRestart(t *testing.T) {
	tc := newTestCluster(t)
	tc.addHost("h1", 0, 10)
	tc.addHost("h2", 0, 10)
	lr := tc.startLeader("h1")
	for i := range 4 {
		tc.putWorker(fmt.Sprintf("w%d", i))
	}
	before := tc.waitFor("4 running", func(s *Snapshot) bool { return len(s.Running) == 4 })

	tc.srv.Kill()
	st := NewStore(tc.client, tc.cache, "h2", nil)
	type outcome struct {
		res any
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		ctx, cancel := context.WithTimeout(tc.ctx, wait)
		defer cancel()
		res, err := st.Start(ctx, StartRequest{Name: "late", Spec: spec("h")})
		if err == nil && res.State != "running" {
			err = fmt.Errorf("state %s", res.State)
		}
		done <- outcome{res, err}
	}()
	tc.srv.Restart()
	select {
	case o := <-done:
		if o.err != nil {
			t.Fatalf("start across the etcd restart: %+v %v", o.res, o.err)
		}
	case <-time.After(wait + 5*time.Second):
		t.Fatal("the start did not end")
	}
	s := tc.waitFor("5 running", func(s *Snapshot) bool { return len(s.Running) == 5 })
	for name, r := range before.Running {
		if got := s.Running[name]; got.Host != r.Host || got.CreateRev != r.CreateRev {
			t.Errorf("%s moved or restarted across the etcd restart: %+v → %+v", name, r, got)
		}
	}
	select {
	case err := <-lr.done:
		t.Fatalf("the leader stopped: %v", err)
	default:
	}
}
