package daemon

import (
	"context"
	"strings"
	"testing"

	"github.com/dynworkers/dynworkers/host/internal/cluster"
	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/host/internal/etcdtest"
)

// kill_worker of a cluster worker: the host that runs it kills it (and
// restarts it, as after a crash); another host of the cluster answers with
// a conflict that names the host to send it to.
func TestKillClusterWorker(t *testing.T) {
	e := etcdtest.Start(t)
	c := e.Client(t)
	keys := cluster.Keys{Prefix: cluster.DefaultPrefix("test")}
	cc1, cc2 := clusterOf(e), clusterOf(e)
	cc1.Labels, cc2.Labels = map[string]string{"zone": "a"}, map[string]string{"zone": "b"}
	h1 := startClusterHost(t, "h1", "", cc1)
	h2 := startClusterHost(t, "h2", "", cc2)
	waitKey(t, c, keys.Host("h1"), true)
	waitKey(t, c, keys.Host("h2"), true)
	ctx := context.Background()
	r, err := h2.d.StartWorker(ctx, control.WorkerSpec{Name: "cw", Class: "chaos", Cluster: true, Constraints: map[string]string{"zone": "a"}})
	if err != nil || r.Host != "h1" {
		t.Fatalf("start = %+v, %v; want it on h1", r, err)
	}
	waitFor(t, "h2 sees cw running on h1", waitTimeout, func() bool { return h2.d.clusterHostOf("cw") == "h1" })

	_, err = h2.d.KillWorker(ctx, "cw")
	if ce := wantCode(t, err, control.CodeConflict); !strings.Contains(ce.Message, `runs on host "h1"`) || !strings.Contains(ce.Message, "-host h1") {
		t.Errorf("kill through h2: %v, want a conflict naming h1", ce)
	}
	res, err := h1.d.KillWorker(ctx, "cw")
	if err != nil || res.PID != r.Pid {
		t.Fatalf("kill on h1 = %+v, %v; want pid %d", res, err, r.Pid)
	}
	waitFor(t, "cw back on h1 with a new pid", waitTimeout, func() bool {
		ws, ok := h1.d.Worker("cw")
		return ok && ws.State == "running" && ws.Pid != r.Pid && ws.Pid != 0 && ws.Restarts == 1
	})
}
