package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/control"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func controlCode(err error) control.Code {
	var ce *control.Error
	if errors.As(err, &ce) {
		return ce.Code
	}
	return ""
}

// TestStartUniqueUnderConcurrency: ten hosts' stores start one name at
// once: exactly one "started", the rest "unchanged", one etcd write in all;
// with ten different specs: one "started", nine conflicts.
func TestStartUniqueUnderConcurrency(t *testing.T) {
	tc := newTestCluster(t)
	run := func(name string, hash func(i int) string) (actions map[string]int, codes map[control.Code]int) {
		actions, codes = map[string]int{}, map[control.Code]int{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for i := range 10 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				st := NewStore(tc.client, tc.cache, fmt.Sprintf("host%d", i), nil)
				ctx, cancel := context.WithTimeout(tc.ctx, 500*time.Millisecond)
				defer cancel()
				res, err := st.Start(ctx, StartRequest{Name: name, Spec: spec(hash(i))})
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					codes[controlCode(err)]++
					if controlCode(err) == "" {
						t.Errorf("start: %v", err)
					}
					return
				}
				actions[res.Action]++
				if res.State != "pending" || res.Pending != "no live host" {
					t.Errorf("result %+v, want pending: no live host", res)
				}
			}()
		}
		wg.Wait()
		return actions, codes
	}

	before := tc.rev()
	actions, codes := run("same", func(int) string { return "h1" })
	if actions["started"] != 1 || actions["unchanged"] != 9 || len(codes) != 0 {
		t.Errorf("same spec ×10: actions %v, errors %v; want 1 started, 9 unchanged", actions, codes)
	}
	if writes := tc.rev() - before; writes != 1 {
		t.Errorf("etcd writes for ten starts of one spec: %d, want 1", writes)
	}

	actions, codes = run("differ", func(i int) string { return fmt.Sprintf("h%d", i) })
	if actions["started"] != 1 || codes[control.CodeConflict] != 9 {
		t.Errorf("ten specs: actions %v, errors %v; want 1 started, 9 conflicts", actions, codes)
	}
}

func TestStartValidation(t *testing.T) {
	tc := newTestCluster(t)
	st := NewStore(tc.client, tc.cache, "h", nil)
	many := map[string]string{}
	for i := range 33 {
		many[fmt.Sprintf("k%d", i)] = "v"
	}
	long := strings.Repeat("x", 257)
	cases := map[string]struct {
		name  string
		c     map[string]string
		field string
	}{
		"empty name":  {"", nil, "worker_name"},
		"33 labels":   {"w", many, "constraints"},
		"empty key":   {"w", map[string]string{"": "a"}, "constraints"},
		"empty value": {"w", map[string]string{"zone": ""}, "constraints"},
		"long key":    {"w", map[string]string{long: "a"}, "constraints"},
		"long value":  {"w", map[string]string{"zone": long}, "constraints"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := st.Start(tc.ctx, StartRequest{Name: c.name, Spec: spec("h"), Constraints: c.c})
			var ce *control.Error
			if !errors.As(err, &ce) || ce.Code != control.CodeInvalidConfig || len(ce.Details) == 0 || ce.Details[0].Attribute != c.field {
				t.Fatalf("err = %#v, want invalid_config naming %s", err, c.field)
			}
			if !strings.Contains(ce.Message, c.field) {
				t.Errorf("message %q does not name %s", ce.Message, c.field)
			}
		})
	}
	r, err := tc.client.Get(tc.ctx, tc.keys.Prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || r.Count != 0 {
		t.Fatalf("bad starts wrote %d keys (err %v)", r.Count, err)
	}
	// 32 labels of 256 bytes are fine.
	ok := map[string]string{}
	for i := range 32 {
		ok[fmt.Sprintf("%0256d", i)] = strings.Repeat("v", 256)
	}
	if err := ValidateConstraints(ok); err != nil {
		t.Errorf("32 labels of 256 bytes: %v", err)
	}
}

// TestStartOutcomes: started (waits until it runs), unchanged, conflict,
// replaced, pending with a reason, a permanent failure on the host.
func TestStartOutcomes(t *testing.T) {
	tc := newTestCluster(t)
	tc.startLeader("h1")
	tc.addHost("h1", 0, 10, "zone=b")
	st := NewStore(tc.client, tc.cache, "h1", nil)
	ctx, cancel := context.WithTimeout(tc.ctx, wait)
	defer cancel()

	res, err := st.Start(ctx, StartRequest{Name: "w", Spec: spec("h1"), Constraints: map[string]string{"zone": "b"}})
	if err != nil || res.Action != "started" || res.Host != "h1" || res.State != "running" || res.Pid == 0 || res.Worker != "w" {
		t.Fatalf("first start: %+v, %v", res, err)
	}
	res, err = st.Start(ctx, StartRequest{Name: "w", Spec: spec("h1"), Constraints: map[string]string{"zone": "b"}})
	if err != nil || res.Action != "unchanged" || res.Host != "h1" || res.State != "running" {
		t.Fatalf("same start again: %+v, %v", res, err)
	}
	// Another spec, or other constraints: conflict, nothing changes.
	for _, req := range []StartRequest{
		{Name: "w", Spec: spec("h2"), Constraints: map[string]string{"zone": "b"}},
		{Name: "w", Spec: spec("h1")},
	} {
		before := tc.rev()
		_, err = st.Start(ctx, req)
		if controlCode(err) != control.CodeConflict || !strings.Contains(err.Error(), `"replace": true`) || !strings.Contains(err.Error(), `"w"`) {
			t.Fatalf("different spec: err = %v, want a conflict naming the worker and replace", err)
		}
		if tc.rev() != before {
			t.Error("a conflicting start wrote to etcd")
		}
	}
	old := tc.cache.Snapshot().Workers["w"]
	res, err = st.Start(ctx, StartRequest{Name: "w", Spec: spec("h2"), Constraints: map[string]string{"zone": "b"}, Replace: true})
	if err != nil || res.Action != "replaced" || res.State != "running" || res.Host != "h1" {
		t.Fatalf("replace: %+v, %v", res, err)
	}
	s := tc.cache.Snapshot()
	if w := s.Workers["w"]; w.SpecHash != "h2" || !w.Created.Equal(old.Created) || w.Generation != old.Generation {
		t.Errorf("replaced record %+v; want hash h2 and the old created/generation", w)
	}
	if r := s.Running["w"]; r.SpecHash != "h2" {
		t.Errorf("running %+v, want the new spec", r)
	}

	// No host has zone=a: pending with the reason once ctx ends.
	// It says so at once, not at the deadline.
	began := time.Now()
	res, err = st.Start(ctx, StartRequest{Name: "p", Spec: spec("h"), Constraints: map[string]string{"zone": "a"}})
	if err != nil || res.Action != "started" || res.State != "pending" || res.Pending != "no live host has labels zone=a" {
		t.Fatalf("unplaceable start: %+v, %v", res, err)
	}
	if d := time.Since(began); d > wait/2 {
		t.Errorf("the pending answer took %v", d)
	}

	// The host rejects the config for good: the start's error is the
	// host's, and nothing stays in workers/.
	bad := spec("hb")
	bad.Class = "bad"
	_, err = st.Start(ctx, StartRequest{Name: "b", Spec: bad})
	if controlCode(err) != control.CodeInvalidConfig || !strings.Contains(err.Error(), "rejected by the plugin") {
		t.Fatalf("permanent failure: err = %v, want the host's invalid_config", err)
	}
	if _, ok := tc.cache.Snapshot().Workers["b"]; ok {
		t.Error("the record of a permanently failed start stays")
	}
}

func TestStartSealsSensitive(t *testing.T) {
	tc := newTestCluster(t)
	sealer, _ := NewSealer(testKey(3))
	st := NewStore(tc.client, tc.cache, "h", sealer)
	sp := spec("h")
	sp.Config = json.RawMessage(`{"queue":"q","password":"hunter2"}`)
	sp.Sensitive = []string{"password"}
	ctx, cancel := context.WithTimeout(tc.ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := st.Start(ctx, StartRequest{Name: "s", Spec: sp}); err != nil {
		t.Fatal(err)
	}
	r, err := tc.client.Get(tc.ctx, tc.keys.Worker("s"))
	if err != nil || len(r.Kvs) != 1 {
		t.Fatal(err)
	}
	if strings.Contains(string(r.Kvs[0].Value), "hunter2") {
		t.Fatalf("etcd holds the secret in clear: %s", r.Kvs[0].Value)
	}
	var rec WorkerRecord
	_ = json.Unmarshal(r.Kvs[0].Value, &rec)
	opened, err := sealer.Open(rec.Config, rec.Sealed)
	if err != nil || !strings.Contains(string(opened), `"password":"hunter2"`) {
		t.Fatalf("open: %s, %v", opened, err)
	}
}

func TestStopAndRestart(t *testing.T) {
	tc := newTestCluster(t)
	tc.startLeader("h1")
	tc.addHost("h1", 0, 10)
	st := NewStore(tc.client, tc.cache, "h1", nil)
	ctx, cancel := context.WithTimeout(tc.ctx, wait)
	defer cancel()
	if res, err := st.Start(ctx, StartRequest{Name: "w", Spec: spec("h")}); err != nil || res.State != "running" {
		t.Fatalf("start: %+v %v", res, err)
	}
	if ok, err := st.Has(ctx, "w"); !ok || err != nil {
		t.Fatalf("Has(w) = %v, %v", ok, err)
	}
	if ok, err := st.Has(ctx, "nope"); ok || err != nil {
		t.Fatalf("Has(nope) = %v, %v", ok, err)
	}

	found, err := st.Restart(ctx, "w")
	if !found || err != nil {
		t.Fatalf("restart: %v, %v", found, err)
	}
	s := tc.cache.Snapshot()
	if r := s.Running["w"]; r.Generation != 2 || r.State != "running" || r.Restarts != 1 {
		t.Fatalf("after restart running = %+v, want generation 2", r)
	}
	if found, err := st.Restart(ctx, "nope"); found || err != nil {
		t.Fatalf("restart of an unknown worker: %v, %v", found, err)
	}

	res, found, err := st.Stop(ctx, "w")
	if !found || err != nil || res.Worker != "w" || res.Action != "stopped" {
		t.Fatalf("stop: %+v %v %v", res, found, err)
	}
	s = tc.cache.Snapshot()
	if _, ok := s.Running["w"]; ok {
		t.Fatal("stop returned while running/w is held")
	}
	if _, ok := s.Workers["w"]; ok {
		t.Fatal("the record stays after stop")
	}
	tc.waitFor("the leader to delete the orphan assignment", func(s *Snapshot) bool { _, ok := s.Assign["w"]; return !ok })
	if _, found, err := st.Stop(ctx, "w"); found || err != nil {
		t.Fatalf("second stop: found %v, %v", found, err)
	}
}

func TestDrainAndView(t *testing.T) {
	tc := newTestCluster(t)
	tc.startLeader("h1")
	tc.addHost("h1", 0, 10, "zone=a")
	st := NewStore(tc.client, tc.cache, "h1", nil)
	ctx, cancel := context.WithTimeout(tc.ctx, wait)
	defer cancel()
	for _, n := range []string{"a", "b", "c"} {
		if res, err := st.Start(ctx, StartRequest{Name: n, Spec: spec("h")}); err != nil || res.Host != "h1" {
			t.Fatalf("start %s: %+v %v", n, res, err)
		}
	}
	h2 := tc.addHost("h2", 0, 10)

	if _, err := st.Drain(ctx, "", true); controlCode(err) != control.CodeInvalidConfig {
		t.Fatalf("drain of \"\": %v", err)
	}
	if _, err := st.Drain(ctx, "ghost", true); controlCode(err) != control.CodeNotFound || !strings.Contains(err.Error(), `"ghost"`) {
		t.Fatalf("drain of an unknown host: %v", err)
	}
	dr, err := st.Drain(ctx, "h1", true)
	if err != nil || dr.Action != "draining" || dr.Host != "h1" || len(dr.Workers) == 0 {
		t.Fatalf("drain: %+v %v", dr, err)
	}
	if dr, err := st.Drain(ctx, "h1", true); err != nil || dr.Action != "unchanged" {
		t.Fatalf("drain again: %+v %v", dr, err)
	}
	tc.waitFor("all workers to run on h2", func(s *Snapshot) bool {
		for _, n := range []string{"a", "b", "c"} {
			if r, ok := s.Running[n]; !ok || r.Host != "h2" || s.Assign[n].Host != "h2" {
				return false
			}
		}
		return true
	})
	// A constrained worker cannot go anywhere now: pending with the reason.
	pctx, pcancel := context.WithTimeout(tc.ctx, time.Second)
	_, _ = st.Start(pctx, StartRequest{Name: "z", Spec: spec("h"), Constraints: map[string]string{"zone": "a"}})
	pcancel()

	v, err := st.View(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v.Leader != "h1" || v.From != "h1" || v.Prefix != tc.keys.Prefix || v.Revision == 0 {
		t.Errorf("view header %+v", v)
	}
	if len(v.Hosts) != 2 || v.Hosts[0].Name != "h1" || !v.Hosts[0].Draining || !v.Hosts[0].Alive || !v.Hosts[0].Leader ||
		v.Hosts[0].Assigned != 0 || v.Hosts[1].Name != "h2" || v.Hosts[1].Assigned != 3 || v.Hosts[1].Load != 3 {
		t.Errorf("view hosts %+v", v.Hosts)
	}
	if len(v.Workers) != 4 {
		t.Fatalf("view workers %+v", v.Workers)
	}
	for _, w := range v.Workers[:3] {
		if w.Host != "h2" || w.RunningOn != "h2" || w.State != "running" || w.Moves != 1 || w.Pid == 0 || w.Class != "echo" {
			t.Errorf("view worker %+v", w)
		}
	}
	if z := v.Workers[3]; z.Name != "z" || z.State != "pending" || z.Pending != "every fitting host is drained" {
		t.Errorf("view of the pending worker %+v", z)
	}

	dr, err = st.Drain(ctx, "h1", false)
	if err != nil || dr.Action != "undrained" {
		t.Fatalf("undrain: %+v %v", dr, err)
	}
	tc.waitFor("z to be placed on h1", func(s *Snapshot) bool { r, ok := s.Running["z"]; return ok && r.Host == "h1" })
	if dr, err := st.Drain(ctx, "h1", false); err != nil || dr.Action != "unchanged" || len(dr.Workers) != 1 {
		t.Fatalf("undrain again: %+v %v", dr, err)
	}

	// h2 dies: its workers fail over to h1.
	h2.kill()
	_, err = tc.client.Revoke(tc.ctx, h2.lease)
	if err != nil {
		t.Fatal(err)
	}
	tc.waitFor("h2's workers to run on h1", func(s *Snapshot) bool {
		for _, n := range []string{"a", "b", "c"} {
			if r, ok := s.Running[n]; !ok || r.Host != "h1" {
				return false
			}
		}
		return true
	})
	v, _ = st.View(ctx)
	if len(v.Hosts) != 1 || v.Hosts[0].Name != "h1" || v.Hosts[0].Assigned != 4 {
		t.Errorf("view after h2 died %+v", v.Hosts)
	}
	for _, w := range v.Workers[:3] {
		if w.Moves != 2 {
			t.Errorf("worker %s moves %d, want 2 (drain, failover)", w.Name, w.Moves)
		}
	}
}

// TestViewStates: the view's states of a worker that is pending, moving,
// or assigned to a dead host, from a snapshot.
func TestViewStates(t *testing.T) {
	c := planCase{
		hosts:   []HostRecord{ph("h1", 0), ph("h2", 0)},
		workers: []WorkerRecord{pw("a"), pw("b"), pw("c"), withClassT(pw("d"), "x"), pw("e")},
		assign: map[string]Assignment{"a": {Host: "h1"}, "b": {Host: "h2", Moves: 1}, "c": {Host: "h1"},
			"d": {Host: "dead"}, "e": {Host: "dead"}},
		running: map[string]Running{"a": {Host: "h1", State: "backoff", PID: 7, Restarts: 3, Error: "exit 1"}, "b": {Host: "h1", State: "running"}},
	}
	s := c.snapshot()
	v := BuildView(s, "/p/", "h1", time.Unix(0, 0))
	want := map[string]string{"a": "backoff", "b": "moving", "c": "moving", "d": "pending", "e": "moving"}
	for _, w := range v.Workers {
		if w.State != want[w.Name] {
			t.Errorf("%s: state %q, want %q", w.Name, w.State, want[w.Name])
		}
	}
	if a := v.Workers[0]; a.Pid != 7 || a.Restarts != 3 || a.Error != "exit 1" || a.RunningOn != "h1" {
		t.Errorf("a: %+v", a)
	}
	if d := v.Workers[3]; d.Pending != "no live host offers class x" {
		t.Errorf("d: %+v", d)
	}
	if len(v.Hosts) != 3 || v.Hosts[0].Name != "dead" || v.Hosts[0].Alive || v.Hosts[0].Assigned != 2 {
		t.Errorf("hosts %+v", v.Hosts)
	}
}

func withClassT(w WorkerRecord, class string) WorkerRecord { w.Class = class; return w }

// TestStartDeadlineWhileStarting: placed on a host that does not start it
// before the deadline: "starting" on that host.
func TestStartDeadlineWhileStarting(t *testing.T) {
	tc := newTestCluster(t)
	tc.startLeader("h1")
	h := tc.addHost("h1", 0, 10)
	h.stopAg() // registered, but it starts nothing
	<-h.agDone
	st := NewStore(tc.client, tc.cache, "h1", nil)
	tc.waitFor("a leader", func(s *Snapshot) bool { return s.Leader() == "h1" })
	ctx, cancel := context.WithTimeout(tc.ctx, 5*time.Second)
	defer cancel()
	res, err := st.Start(ctx, StartRequest{Name: "w", Spec: spec("h")})
	if err != nil || res.State != "starting" || res.Host != "h1" || res.Action != "started" {
		t.Fatalf("start: %+v, %v; want starting on h1", res, err)
	}
}
