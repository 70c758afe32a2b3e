package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/cluster"
	"github.com/dynworkers/dynworkers/host/internal/config"
	"github.com/dynworkers/dynworkers/host/internal/contain"
	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/host/internal/state"
	"github.com/dynworkers/dynworkers/host/internal/supervise"
)

// withCluster gives the loaded daemon a cluster block (until the config
// parser reads one from HCL, the tests set it on the loaded Config).
func withCluster(t *testing.T, cc *config.ClusterConfig) func(*Daemon) {
	return func(d *Daemon) {
		d.cfg.Cluster = cc
		cs, err := newClusterSide(d.cfg)
		if err != nil {
			t.Fatalf("cluster side: %v", err)
		}
		d.cl = cs
	}
}

// startClusterHost runs a host named name with the chaos and smpp plugins,
// the HCL body, and cc as its cluster block.
func startClusterHost(t *testing.T, name, body string, cc *config.ClusterConfig) *harness {
	t.Helper()
	dir := t.TempDir()
	plugins := filepath.Join(dir, "plugins")
	linkPlugin(t, plugins, "chaos")
	linkPlugin(t, plugins, "smpp")
	src := fmt.Sprintf("system_id = \"test\"\nhost {\n  name = %q\n  plugin_dir = \"plugins\"\n  state_dir = \"var\"\n  http_addr = \"127.0.0.1:0\"\n}\n%s\n", name, body)
	return startConfigHook(t, dir, src, nil, withCluster(t, cc))
}

// A host without a cluster block answers every cluster operation with a
// conflict saying so, and changes nothing.
func TestClusterOperationsWithoutClusterBlock(t *testing.T) {
	h := startHost(t, "")
	ctx := context.Background()
	msg := "not part of a cluster (it has no cluster block)"
	_, err := h.d.StartWorker(ctx, control.WorkerSpec{Name: "cw", Class: "chaos", Cluster: true})
	if ce := wantCode(t, err, control.CodeConflict); !strings.Contains(ce.Message, msg) {
		t.Errorf("cluster start: %v", ce)
	}
	_, err = h.d.Drain(ctx, "", true)
	if ce := wantCode(t, err, control.CodeConflict); !strings.Contains(ce.Message, msg) {
		t.Errorf("drain: %v", ce)
	}
	_, err = h.d.ClusterStatus(ctx)
	if ce := wantCode(t, err, control.CodeConflict); !strings.Contains(ce.Message, msg) {
		t.Errorf("cluster_status: %v", ce)
	}
	if ws := h.d.Workers(); len(ws) != 0 {
		t.Errorf("workers = %+v", ws)
	}
	// A start through .any or .all (which the dispatcher marks as a
	// cluster start) is a local start here, as it always was.
	for _, route := range []string{"test.any", "test.all"} {
		name := "via-" + route[len("test."):]
		r, err := h.d.StartWorker(control.WithRoute(ctx, route), control.WorkerSpec{Name: name, Class: "chaos", Cluster: true})
		if err != nil || r.Action != "started" || r.State != "running" {
			t.Fatalf("start through %s = %+v, %v", route, r, err)
		}
		if ws, _ := h.d.Worker(name); ws.Source != api.SourceControl {
			t.Errorf("%s: source %q, want control", name, ws.Source)
		}
		if err := h.d.StopWorker(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	// Through the host's own key, "cluster": true is refused.
	_, err = h.d.StartWorker(control.WithRoute(ctx, "test.test-host"), control.WorkerSpec{Name: "cw", Class: "chaos", Cluster: true})
	wantCode(t, err, control.CodeConflict)
	// Local starts and stops are as ever.
	if r, err := h.d.StartWorker(ctx, control.WorkerSpec{Name: "local", Class: "chaos"}); err != nil || r.Action != "started" {
		t.Fatalf("local start = %+v, %v", r, err)
	}
	if err := h.d.StopWorker(ctx, "local"); err != nil {
		t.Fatal(err)
	}
}

// deadEndpoint is a loopback address nothing listens on.
func deadEndpoint(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// A host whose etcd cannot be reached still starts and runs its HCL and
// local workers, says clearly that etcd is unreachable, and stops
// promptly.
func TestClusterHostRunsWithoutEtcd(t *testing.T) {
	h := startClusterHost(t, "lonely", `
worker "local-hcl" {
  class = "chaos"
}
`, &config.ClusterConfig{Endpoints: []string{deadEndpoint(t)}, DialTimeout: 500 * time.Millisecond})
	h.waitStarted("local-hcl")
	ctx := context.Background()
	if r, err := h.d.StartWorker(ctx, control.WorkerSpec{Name: "local-dyn", Class: "chaos"}); err != nil || r.State != "running" {
		t.Fatalf("local start = %+v, %v", r, err)
	}
	if ws, _ := h.d.Worker("local-dyn"); ws.Source != api.SourceControl {
		t.Errorf("local-dyn source = %q", ws.Source)
	}
	deadline := time.Now().Add(waitTimeout)
	for !strings.Contains(h.logs.String(), "etcd cannot be reached yet") {
		if time.Now().After(deadline) {
			t.Fatal("the host never said that etcd cannot be reached")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A cluster operation fails (with an error, not a hang) and changes
	// nothing on the host.
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	_, err := h.d.StartWorker(cctx, control.WorkerSpec{Name: "cw", Class: "chaos", Cluster: true})
	cancel()
	if err == nil {
		t.Error("a cluster start succeeded without etcd")
	}
	if _, ok := h.d.Worker("cw"); ok {
		t.Error("a cluster start without etcd left a worker")
	}
	began := time.Now()
	h.stop()
	if took := time.Since(began); took > leaveTimeout+10*time.Second {
		t.Errorf("shutdown took %v", took)
	}
}

// The Runner the agent drives, on real plugin processes: Resolve checks
// as a local start does and names the sensitive attributes; Run starts a
// worker of source cluster (not persisted, listed in status), leaves it
// alone with the same spec hash and replaces it with another; a config
// the plugin rejects is a permanent error and leaves nothing; Stop kills
// a worker that ignores it at ctx's deadline; Restart starts a new
// process; local control operations cannot touch it; a reload leaves it.
func TestClusterRunnerOnRealProcesses(t *testing.T) {
	h := startHost(t, `
worker "hcl" {
  class = "chaos"
}
`)
	h.waitStarted("hcl")
	r := &clusterRunner{d: h.d}
	ctx := context.Background()

	res, err := r.Resolve("sm", "vumi.workers.smpp.transport.SMPPTransport",
		json.RawMessage(`{"host":"h","port":"2773","username":"u","password":"hunter2-secret","system_id":"x"}`), "")
	if err != nil {
		t.Fatal(err)
	}
	if res.Class != "smpp" || res.Supervisor != "root" || res.SpecHash == "" || !slices.Equal(res.Sensitive, []string{"password"}) ||
		!strings.Contains(string(res.Config), `"port":2773`) {
		t.Fatalf("resolved = %+v (config %s)", res, res.Config)
	}
	for _, c := range []struct {
		name, class, cfg, sup string
		code                  control.Code
	}{
		{"x", "nope", `{}`, "", control.CodeUnknownClass},
		{"x", "chaos", `{"delay":"not-a-duration"}`, "", control.CodeInvalidConfig},
		{"x", "chaos", `{"no_such_attr":1}`, "", control.CodeInvalidConfig},
		{"../x", "chaos", `{}`, "", control.CodeInvalidConfig},
		{"x", "chaos", `{}`, "a/../b", control.CodeInvalidConfig},
	} {
		_, err := r.Resolve(c.name, c.class, json.RawMessage(c.cfg), c.sup)
		var ce *control.Error
		if !errors.As(err, &ce) || ce.Code != c.code {
			t.Errorf("Resolve(%q, %q, %s, %q) = %v, want %s", c.name, c.class, c.cfg, c.sup, err, c.code)
		}
	}
	if o := r.Offers(); !slices.Contains(o.Classes, "chaos") || !slices.Contains(o.Classes, "vumi.workers.smpp.transport.SMPPTransport") ||
		!slices.Equal(o.Supervisors, []string{"root"}) {
		t.Errorf("offers = %+v", o)
	}

	chaos, err := r.Resolve("cw", "chaos", json.RawMessage(`{}`), "")
	if err != nil {
		t.Fatal(err)
	}
	spec := cluster.Spec{Name: "cw", Class: chaos.Class, Supervisor: chaos.Supervisor, Config: chaos.Config, SpecHash: chaos.SpecHash, Generation: 1}
	st, err := r.Run(ctx, spec)
	if err != nil || st.State != "running" || st.PID == 0 {
		t.Fatalf("Run = %+v, %v", st, err)
	}
	pid := st.PID
	if ws, ok := h.d.Worker("cw"); !ok || ws.Source != api.SourceCluster || ws.Pid != pid {
		t.Fatalf("cw = %+v", ws)
	}
	status, err := h.d.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if i := slices.IndexFunc(status.Workers, func(w api.Worker) bool { return w.Name == "cw" }); i < 0 || status.Workers[i].Source != "cluster" {
		t.Errorf("status lists cw as %+v", status.Workers)
	}
	if st := h.loadState(); slices.ContainsFunc(st.Workers, func(w state.Worker) bool { return w.Name == "cw" }) {
		t.Error("a cluster worker was persisted in workers.json")
	}
	if st, err := r.Run(ctx, spec); err != nil || st.PID != pid {
		t.Errorf("same spec again = %+v, %v; want the same process %d", st, err, pid)
	}
	if local := r.Local(); len(local) != 1 || local["cw"].PID != pid || local["cw"].State != "running" {
		t.Errorf("Local = %+v", local)
	}

	// Local control operations: conflicts; the worker runs on.
	if _, err := h.d.StartWorker(ctx, control.WorkerSpec{Name: "cw", Class: "chaos", Replace: true}); err == nil {
		t.Error("a local start replaced a cluster worker")
	} else {
		wantCode(t, err, control.CodeConflict)
	}
	wantCode(t, h.d.StopWorker(ctx, "cw"), control.CodeConflict)
	wantCode(t, h.d.RestartWorker(ctx, "cw"), control.CodeConflict)
	// A reload of the unchanged configuration leaves it alone.
	if _, err := h.d.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if ws, _ := h.d.Worker("cw"); ws.Pid != pid {
		t.Errorf("after reload cw = %+v, want pid %d", ws, pid)
	}

	// Restart: a new process.
	if st, err := r.Restart(ctx, "cw"); err != nil || st.State != "running" || st.PID == pid || st.PID == 0 {
		t.Fatalf("Restart = %+v, %v", st, err)
	}
	waitGone(t, 10*time.Second, pid)

	// Another spec: replaced by a worker that ignores its stop.
	stubborn, err := r.Resolve("cw", "chaos", json.RawMessage(`{"mode":"ignore_stop"}`), "")
	if err != nil {
		t.Fatal(err)
	}
	spec2 := cluster.Spec{Name: "cw", Class: stubborn.Class, Supervisor: stubborn.Supervisor, Config: stubborn.Config, SpecHash: stubborn.SpecHash, Generation: 1}
	st, err = r.Run(ctx, spec2)
	if err != nil || st.State != "running" {
		t.Fatalf("Run of the new spec = %+v, %v", st, err)
	}
	pid = st.PID
	// Its shutdown_timeout is 5 s; the stop's deadline, 1 s, comes first.
	sctx, cancel := context.WithTimeout(ctx, time.Second)
	began := time.Now()
	err = r.Stop(sctx, "cw")
	cancel()
	if err != nil {
		t.Fatalf("Stop = %v", err)
	}
	if took := time.Since(began); took < 900*time.Millisecond || took > 4500*time.Millisecond {
		t.Errorf("Stop took %v: want the 1 s deadline, not the 5 s shutdown_timeout", took)
	}
	waitGone(t, time.Second, pid)
	if _, ok := h.d.Worker("cw"); ok || len(r.Local()) != 0 {
		t.Error("cw is still on the host after Stop")
	}
	if err := r.Stop(ctx, "cw"); err != nil {
		t.Errorf("Stop of a worker not there = %v, want nil", err)
	}

	// A config the plugin rejects: permanent, invalid_config, nothing left.
	bad, err := r.Resolve("bad", "chaos", json.RawMessage(`{"mode":"start_error","permanent":true,"message":"no way"}`), "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Run(ctx, cluster.Spec{Name: "bad", Class: bad.Class, Supervisor: bad.Supervisor, Config: bad.Config, SpecHash: bad.SpecHash})
	if !errors.Is(err, supervise.ErrPermanent) {
		t.Fatalf("Run of a rejected config = %v, want a permanent error", err)
	}
	wantCode(t, err, control.CodeInvalidConfig)
	if _, ok := h.d.Worker("bad"); ok {
		t.Error("the rejected worker is still on the host")
	}
	// A name taken by an HCL worker.
	_, err = r.Run(ctx, cluster.Spec{Name: "hcl", Class: chaos.Class, Supervisor: "root", Config: chaos.Config, SpecHash: chaos.SpecHash})
	wantCode(t, err, control.CodeConflict)
}

// A reload reports a changed cluster block as ignored (it applies at the
// next start); where the block is in the files does not count.
func TestReloadIgnoresClusterChanges(t *testing.T) {
	base := &config.Config{Cluster: &config.ClusterConfig{Endpoints: []string{"a:2379"}, Labels: map[string]string{"zone": "a"}}}
	moved := &config.Config{Cluster: &config.ClusterConfig{Endpoints: []string{"a:2379"}, Labels: map[string]string{"zone": "a"}}}
	moved.Cluster.Range.Start.Line = 12
	relabelled := &config.Config{Cluster: &config.ClusterConfig{Endpoints: []string{"a:2379"}, Labels: map[string]string{"zone": "b"}}}
	for _, c := range []struct {
		a, b *config.Config
		want bool
	}{
		{base, moved, false},
		{base, relabelled, true},
		{base, &config.Config{}, true},
		{&config.Config{}, base, true},
		{&config.Config{}, &config.Config{}, false},
	} {
		if got := slices.Contains(ignoredChanges(c.a, c.b), "cluster"); got != c.want {
			t.Errorf("ignoredChanges(%+v, %+v) lists cluster: %v, want %v", c.a.Cluster, c.b.Cluster, got, c.want)
		}
	}
}

// The same cluster start received by hosts with different default worker
// limits is the same spec: the cluster's hash leaves the limits out (each
// host runs the worker with its own).
func TestClusterSpecHashLeavesHostLimitsOut(t *testing.T) {
	h := startHost(t, "")
	w, res, err := h.d.resolveCluster("cw", "chaos", json.RawMessage(`{"delay":"1s"}`), "")
	if err != nil {
		t.Fatal(err)
	}
	if res.SpecHash != clusterSpecHash(w) {
		t.Errorf("Resolve's hash %s is not the cluster's spec hash %s", res.SpecHash, clusterSpecHash(w))
	}
	// The same worker resolved on a host with default limits.
	limited := *w
	limited.Limits = contain.Limits{Pids: 64, Memory: 64 << 20}
	if limited.SpecHash() == w.SpecHash() {
		t.Fatal("the limits do not count in a local worker's spec hash; this test proves nothing")
	}
	if clusterSpecHash(&limited) != clusterSpecHash(w) {
		t.Error("the cluster's spec hash depends on the host's limits")
	}
	_, other, err := h.d.resolveCluster("cw", "chaos", json.RawMessage(`{"delay":"2s"}`), "")
	if err != nil {
		t.Fatal(err)
	}
	if other.SpecHash == res.SpecHash {
		t.Error("another config has the same hash")
	}
}
