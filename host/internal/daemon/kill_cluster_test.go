package daemon

import (
	"context"
	"strings"
	"testing"

	"github.com/dynworkers/dynworkers/host/internal/control"
)

// kill_worker of a cluster worker: the host that runs it kills it (and
// restarts it, as after a crash); another host of the cluster answers with
// a conflict that names the host to send it to.
func TestKillClusterWorker(t *testing.T) {
	h1, h2 := twoZoneHosts(t)
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
