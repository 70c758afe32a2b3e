package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/host/internal/httpapi"
	"github.com/dynworkers/dynworkers/host/internal/supervise"
	"github.com/dynworkers/dynworkers/host/internal/testplugins"
)

// postKill asks the host's HTTP API to kill a worker, as `dynworkers kill`
// does, and returns the HTTP status and the reply.
func postKill(t *testing.T, h *harness, name string) (int, control.Reply, api.KillResult) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+h.d.HTTPAddr()+"/v1/workers/"+name+"/kill", nil)
	req.Header.Set(httpapi.RequestHeader, "1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST kill %s: %v", name, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var rep struct {
		control.Reply
		Result api.KillResult `json:"result"`
	}
	if err := json.Unmarshal(body, &rep); err != nil {
		t.Fatalf("POST kill %s: %d %s: %v", name, resp.StatusCode, body, err)
	}
	return resp.StatusCode, rep.Reply, rep.Result
}

// kill_worker SIGKILLs the worker's own process, as a crash would: the
// supervisor reports the exit (killed by SIGKILL, with the kill's reason)
// and restarts it with a new pid, counting a restart; its neighbour keeps
// its process. A second kill hits the new process, not the warm spare the
// first crash made the host launch.
func TestKillWorker(t *testing.T) {
	h := startHost(t, `
worker "victim" {
  class = "chaos"
}
worker "neighbour" {
  class = "chaos"
}
`)
	first := h.waitStarted("victim")
	neighbour := h.waitStarted("neighbour")

	code, rep, res := postKill(t, h, "victim")
	if code != http.StatusOK || !rep.OK || res.Worker != "victim" || res.PID != first || res.Signal != "SIGKILL" {
		t.Fatalf("kill = %d %+v %+v, want victim's pid %d killed with SIGKILL", code, rep.Error, res, first)
	}
	// KillWorker answers once the process is gone.
	if testplugins.Alive(first) {
		t.Errorf("pid %d still alive after the kill answered", first)
	}
	ev := h.waitEvent("victim's exit", exitedEvent("victim")).(supervise.ChildExited)
	if msg := ev.Err.Error(); !strings.Contains(msg, "killed by SIGKILL") || !strings.Contains(msg, KillReason) {
		t.Errorf("exit event says %q, want killed by SIGKILL with %q", msg, KillReason)
	}
	second := h.waitStarted("victim")
	if second == first {
		t.Fatalf("victim came back with the same pid %d", first)
	}
	sdkEventually(t, func() bool {
		w, ok := h.d.Worker("victim")
		return ok && w.State == "running" && w.Restarts == 1 && strings.Contains(w.LastExit, "killed by SIGKILL")
	}, "victim running with restarts 1 and its last exit")
	if got := h.pid("neighbour"); got != neighbour {
		t.Errorf("neighbour's pid changed from %d to %d", neighbour, got)
	}

	// The first crash gave the binary warm spares; the second kill still
	// kills the worker's process.
	_, rep, res = postKill(t, h, "victim")
	if !rep.OK || res.PID != second {
		t.Fatalf("second kill = %+v %+v, want pid %d", rep.Error, res, second)
	}
	h.waitEvent("victim's second exit", exitedEvent("victim"))
	if third := h.waitStarted("victim"); third == second || third == first {
		t.Errorf("victim's third pid %d repeats an earlier one (%d, %d)", third, first, second)
	}
	if got := h.pid("neighbour"); got != neighbour {
		t.Errorf("neighbour's pid changed from %d to %d", neighbour, got)
	}
}

// An unknown worker is not_found; a stopped one a conflict saying its
// state.
func TestKillWorkerErrors(t *testing.T) {
	h := startHost(t, `
worker "w" {
  class = "chaos"
}
`)
	h.waitStarted("w")
	code, rep, _ := postKill(t, h, "nobody")
	if code != http.StatusNotFound || rep.OK || rep.Error.Code != control.CodeNotFound || !strings.Contains(rep.Error.Message, `"nobody"`) {
		t.Errorf("kill of an unknown worker = %d %+v, want 404 naming it", code, rep.Error)
	}
	if err := h.d.StopWorker(context.Background(), "w"); err != nil {
		t.Fatal(err)
	}
	code, rep, _ = postKill(t, h, "w")
	if code != http.StatusConflict || rep.OK || !strings.Contains(rep.Error.Message, `"w" is stopped`) {
		t.Errorf("kill of a stopped worker = %d %+v, want 409 saying it is stopped", code, rep.Error)
	}
	_, err := h.d.KillWorker(context.Background(), "nobody")
	var ce *control.Error
	if !errors.As(err, &ce) || ce.Code != control.CodeNotFound {
		t.Errorf("KillWorker(nobody) = %v", err)
	}
}

// sdkEventually polls cond until it holds or waitTimeout passes.
func sdkEventually(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", waitTimeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
