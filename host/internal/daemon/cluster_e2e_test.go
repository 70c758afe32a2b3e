package daemon

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/cluster"
	"github.com/dynworkers/dynworkers/host/internal/config"
	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/host/internal/etcdtest"
	"github.com/dynworkers/dynworkers/host/internal/state"
)

// The tests in this file run one host on a real etcd. Those named
// TestClusterE2E* need the cluster package's Store and Agent (helpers A
// and B): with the stubs they fail at the first cluster start.

// waitKey waits until key exists in etcd (present) or does not.
func waitKey(t *testing.T, c *clientv3.Client, key string, present bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		r, err := c.Get(ctx, key, clientv3.WithCountOnly())
		cancel()
		if err == nil && (r.Count > 0) == present {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd key %s present=%v not reached within %s (err %v)", key, present, waitTimeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// keyExists reads key once.
func keyExists(t *testing.T, c *clientv3.Client, key string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := c.Get(ctx, key, clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return r.Count > 0
}

func clusterOf(e *etcdtest.Server) *config.ClusterConfig {
	return &config.ClusterConfig{Endpoints: []string{e.Endpoint()}, LeaseTTL: 10 * time.Second, DialTimeout: 2 * time.Second}
}

// A cluster start is resolved on the host that receives it: a bad one is
// refused there with the code a local start gives, and nothing reaches
// etcd. (Passes with the stubs: the Store is never called.)
func TestClusterStartResolvedOnReceivingHost(t *testing.T) {
	e := etcdtest.Start(t)
	c := e.Client(t)
	h := startClusterHost(t, "h1", "", clusterOf(e))
	ctx := context.Background()
	for _, c := range []struct {
		spec control.WorkerSpec
		code control.Code
	}{
		{control.WorkerSpec{Name: "x", Class: "nope", Cluster: true}, control.CodeUnknownClass},
		{control.WorkerSpec{Name: "x", Class: "chaos", Config: json.RawMessage(`{"delay":"soon"}`), Cluster: true}, control.CodeInvalidConfig},
		{control.WorkerSpec{Name: "../x", Class: "chaos", Cluster: true}, control.CodeInvalidConfig},
	} {
		_, err := h.d.StartWorker(ctx, c.spec)
		wantCode(t, err, c.code)
	}
	r, err := c.Get(ctx, cluster.DefaultPrefix("test")+"workers/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if r.Count != 0 {
		t.Errorf("%d worker records in etcd after refused starts", r.Count)
	}
	if ws := h.d.Workers(); len(ws) != 0 {
		t.Errorf("workers = %+v", ws)
	}
}

// One host: a cluster start runs the worker on it with source cluster and
// writes its record; the same start again is unchanged, another spec a
// conflict; a local start of the name is a conflict; a reload leaves it
// alone; a stop by name removes it and its record; at shutdown the host
// leaves (its lease is revoked: its host and running keys go at once) and
// the desired state stays in etcd. NEEDS helpers A and B (Store, Agent).
func TestClusterE2EOneHost(t *testing.T) {
	e := etcdtest.Start(t)
	c := e.Client(t)
	keys := cluster.Keys{Prefix: cluster.DefaultPrefix("test")}
	h := startClusterHost(t, "h1", `
worker "hcl" {
  class = "chaos"
}
`, clusterOf(e))
	h.waitStarted("hcl")
	waitKey(t, c, keys.Host("h1"), true)
	ctx := context.Background()

	spec := control.WorkerSpec{Name: "cw", Class: "chaos", Config: json.RawMessage(`{}`), Cluster: true}
	r, err := h.d.StartWorker(ctx, spec)
	if err != nil || r.Action != "started" || r.Host != "h1" || r.State != "running" || r.Pid == 0 {
		t.Fatalf("cluster start = %+v, %v", r, err)
	}
	pid := r.Pid
	ws, ok := h.d.Worker("cw")
	if !ok || ws.Source != api.SourceCluster || ws.Pid != pid {
		t.Fatalf("cw = %+v", ws)
	}
	if !keyExists(t, c, keys.Worker("cw")) || !keyExists(t, c, keys.Running("cw")) {
		t.Errorf("etcd lacks cw's records:\n%s", etcdtest.Dump(c, keys.Prefix))
	}
	if st := h.loadState(); slices.ContainsFunc(st.Workers, func(w state.Worker) bool { return w.Name == "cw" }) {
		t.Error("a cluster worker was persisted in workers.json")
	}
	if r, err := h.d.StartWorker(ctx, spec); err != nil || r.Action != "unchanged" || r.Pid != pid {
		t.Errorf("same start again = %+v, %v", r, err)
	}
	other := spec
	other.Config = json.RawMessage(`{"delay":"1s"}`)
	_, err = h.d.StartWorker(ctx, other)
	wantCode(t, err, control.CodeConflict)
	local := spec
	local.Cluster = false
	_, err = h.d.StartWorker(ctx, local)
	if ce := wantCode(t, err, control.CodeConflict); !strings.Contains(ce.Message, "cluster worker") {
		t.Errorf("local start of a cluster name: %v", ce)
	}
	if _, err := h.d.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if ws, _ := h.d.Worker("cw"); ws.Pid != pid {
		t.Errorf("after reload cw = %+v, want pid %d", ws, pid)
	}
	view, err := h.d.ClusterStatus(ctx)
	if err != nil || len(view.Hosts) != 1 || len(view.Workers) != 1 || view.Workers[0].RunningOn != "h1" {
		t.Errorf("cluster status = %+v, %v", view, err)
	}

	// Stop by name: the process and the record go.
	if err := h.d.StopWorker(ctx, "cw"); err != nil {
		t.Fatal(err)
	}
	waitGone(t, 10*time.Second, pid)
	if _, ok := h.d.Worker("cw"); ok {
		t.Error("cw still on the host after its stop")
	}
	if keyExists(t, c, keys.Worker("cw")) || keyExists(t, c, keys.Running("cw")) {
		t.Errorf("cw's records outlived its stop:\n%s", etcdtest.Dump(c, keys.Prefix))
	}
	wantCode(t, h.d.StopWorker(ctx, "cw"), control.CodeNotFound)

	// A permanent first-start failure: the local start's error, and nothing
	// in etcd.
	_, err = h.d.StartWorker(ctx, control.WorkerSpec{Name: "bad", Class: "chaos", Cluster: true,
		Config: json.RawMessage(`{"mode":"start_error","permanent":true}`)})
	wantCode(t, err, control.CodeInvalidConfig)
	if keyExists(t, c, keys.Worker("bad")) {
		t.Error("the record of a start that failed for good stayed in etcd")
	}

	// Shutdown: Leave revokes the lease, so the host and running keys go
	// at once (not after the 10 s TTL); the desired state stays.
	if r, err := h.d.StartWorker(ctx, control.WorkerSpec{Name: "cw2", Class: "chaos", Cluster: true}); err != nil || r.State != "running" {
		t.Fatalf("cw2 = %+v, %v", r, err)
	}
	h.stop()
	if keyExists(t, c, keys.Host("h1")) || keyExists(t, c, keys.Running("cw2")) {
		t.Errorf("the host's keys outlived its shutdown (lease not revoked):\n%s", etcdtest.Dump(c, keys.Prefix))
	}
	if !keyExists(t, c, keys.Worker("cw2")) {
		t.Error("cw2's desired state went with the host")
	}
}

// waitFor polls cond until it holds, failing after within.
func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Two hosts: a cluster start received by one runs where the constraints
// say; the other host refuses a local start of the name, and its stop and
// restart act on the host that runs it; a host that shuts down hands its
// cluster workers over at once (well within the lease TTL). NEEDS helpers
// A and B (Store, Agent, leader).
func TestClusterE2ETwoHosts(t *testing.T) {
	h1, h2 := twoZoneHosts(t)
	ctx := context.Background()

	r, err := h2.d.StartWorker(ctx, control.WorkerSpec{Name: "cw", Class: "chaos", Cluster: true, Constraints: map[string]string{"zone": "a"}})
	if err != nil || r.Host != "h1" || r.State != "running" {
		t.Fatalf("start through h2 = %+v, %v; want it running on h1", r, err)
	}
	ws, ok := h1.d.Worker("cw")
	if !ok || ws.Source != api.SourceCluster || ws.Pid != r.Pid {
		t.Fatalf("h1's cw = %+v, %v", ws, ok)
	}
	if _, ok := h2.d.Worker("cw"); ok {
		t.Fatal("cw runs on h2 too")
	}
	_, err = h2.d.StartWorker(ctx, control.WorkerSpec{Name: "cw", Class: "chaos"})
	if ce := wantCode(t, err, control.CodeConflict); !strings.Contains(ce.Message, "cluster worker") {
		t.Errorf("local start on h2 of a cluster name: %v", ce)
	}
	if _, ok := h2.d.Worker("cw"); ok {
		t.Fatal("the refused local start left a worker on h2")
	}

	// Restart and stop through h2 act on h1.
	old := ws.Pid
	if err := h2.d.RestartWorker(ctx, "cw"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "cw restarted on h1", waitTimeout, func() bool {
		ws, ok := h1.d.Worker("cw")
		return ok && ws.State == "running" && ws.Pid != old && ws.Pid != 0
	})
	waitGone(t, 10*time.Second, old)
	ws, _ = h1.d.Worker("cw")
	if err := h2.d.StopWorker(ctx, "cw"); err != nil {
		t.Fatal(err)
	}
	if _, ok := h1.d.Worker("cw"); ok {
		t.Error("cw still on h1 after the stop through h2 returned")
	}
	waitGone(t, 10*time.Second, ws.Pid)

	// h1 shuts down: its cluster worker runs on h2 well before h1's lease
	// could have expired (TTL 10 s).
	// Both hosts are empty: placement breaks the tie by name, so h1.
	r, err = h2.d.StartWorker(ctx, control.WorkerSpec{Name: "mv", Class: "chaos", Cluster: true})
	if err != nil || r.Host != "h1" {
		t.Fatalf("mv = %+v, %v; want it on h1", r, err)
	}
	ws, ok = h1.d.Worker("mv")
	if !ok {
		t.Fatal("mv is not on h1")
	}
	began := time.Now()
	h1.stop()
	waitFor(t, "mv running on h2", 8*time.Second, func() bool {
		ws, ok := h2.d.Worker("mv")
		return ok && ws.State == "running"
	})
	t.Logf("mv ran on h2 %v after h1 began its shutdown", time.Since(began).Round(time.Millisecond))
	waitGone(t, time.Second, ws.Pid)
}

// The host keeps running/<name> current as the worker's state changes
// (the supervision event hook tells the agent at once; the agent's
// periodic reconcile would catch up too): a worker that keeps exiting
// shows its restarts there. NEEDS helpers A and B.
func TestClusterE2ERunningRecordFollowsTheWorker(t *testing.T) {
	e := etcdtest.Start(t)
	c := e.Client(t)
	keys := cluster.Keys{Prefix: cluster.DefaultPrefix("test")}
	h := startClusterHost(t, "h1", "", clusterOf(e))
	waitKey(t, c, keys.Host("h1"), true)
	ctx := context.Background()
	r, err := h.d.StartWorker(ctx, control.WorkerSpec{Name: "flaky", Class: "chaos", Cluster: true,
		Config: json.RawMessage(`{"mode":"exit","delay":"200ms"}`)})
	if err != nil || r.Host != "h1" {
		t.Fatalf("start = %+v, %v", r, err)
	}
	var rec cluster.Running
	waitFor(t, "running/flaky showing restarts", waitTimeout, func() bool {
		gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		g, err := c.Get(gctx, keys.Running("flaky"))
		if err != nil || len(g.Kvs) == 0 {
			return false
		}
		if err := json.Unmarshal(g.Kvs[0].Value, &rec); err != nil {
			t.Fatal(err)
		}
		return rec.Restarts >= 2
	})
	if rec.Host != "h1" {
		t.Errorf("running record = %+v", rec)
	}
	if ws, _ := h.d.Worker("flaky"); ws.Restarts < rec.Restarts {
		t.Errorf("the host counts %d restarts, etcd %d", ws.Restarts, rec.Restarts)
	}
}

// A host cut off from etcd still shuts down within its bounds, and its
// cluster workers stop with it. NEEDS helpers A and B.
func TestClusterE2EShutdownWithoutEtcd(t *testing.T) {
	e := etcdtest.Start(t)
	c := e.Client(t)
	proxy := etcdtest.NewProxy(t, e.Endpoint())
	keys := cluster.Keys{Prefix: cluster.DefaultPrefix("test")}
	cc := clusterOf(e)
	cc.Endpoints = []string{proxy.Addr()}
	h := startClusterHost(t, "h1", "", cc)
	waitKey(t, c, keys.Host("h1"), true)
	r, err := h.d.StartWorker(context.Background(), control.WorkerSpec{Name: "cw", Class: "chaos", Cluster: true})
	if err != nil || r.Pid == 0 {
		t.Fatalf("start = %+v, %v", r, err)
	}
	proxy.Block()
	began := time.Now()
	h.stop()
	if took := time.Since(began); took > 2*leaveTimeout+10*time.Second {
		t.Errorf("shutdown without etcd took %v", took)
	}
	waitGone(t, time.Second, r.Pid)
}

// twoZoneHosts starts a private etcd and two cluster hosts on it, h1 in
// zone a and h2 in zone b, and waits until both are members.
func twoZoneHosts(t *testing.T) (h1, h2 *harness) {
	t.Helper()
	e := etcdtest.Start(t)
	c := e.Client(t)
	keys := cluster.Keys{Prefix: cluster.DefaultPrefix("test")}
	cc1, cc2 := clusterOf(e), clusterOf(e)
	cc1.Labels, cc2.Labels = map[string]string{"zone": "a"}, map[string]string{"zone": "b"}
	h1 = startClusterHost(t, "h1", "", cc1)
	h2 = startClusterHost(t, "h2", "", cc2)
	waitKey(t, c, keys.Host("h1"), true)
	waitKey(t, c, keys.Host("h2"), true)
	return h1, h2
}
