package daemon

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/httpapi"
	"github.com/dynworkers/dynworkers/host/internal/supervise"
)

// While the host stops, status keeps answering over HTTP (the stopping
// worker shows as such) and a start is refused with a conflict saying the
// host is shutting down.
func TestStoppingHostAnswersStatusAndRefusesChanges(t *testing.T) {
	h := startHost(t, `
worker "stubborn" {
  class            = "chaos"
  shutdown_timeout = "3s"
  config {
    mode = "ignore_stop"
  }
}
`)
	h.waitStarted("stubborn")
	base := "http://" + h.d.HTTPAddr()
	h.cancel() // as SIGTERM does
	h.waitEvent("stubborn stopping", func(ev supervise.Event) bool {
		e, ok := ev.(supervise.ChildStopping)
		return ok && e.Child == "stubborn"
	})

	resp, err := http.Get(base + "/v1/status")
	if err != nil {
		t.Fatalf("status while stopping: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var reply struct {
		OK     bool       `json:"ok"`
		Result api.Status `json:"result"`
	}
	if err := json.Unmarshal(body, &reply); err != nil || !reply.OK || len(reply.Result.Workers) != 1 ||
		reply.Result.Workers[0].State != string(supervise.StateStopping) {
		t.Fatalf("status while stopping = %d %s (%v), want stubborn stopping", resp.StatusCode, body, err)
	}

	req, _ := http.NewRequest(http.MethodPost, base+"/v1/workers", strings.NewReader(`{"name": "late", "class": "chaos"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(httpapi.RequestHeader, "1")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("start while stopping: %v", err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusConflict || !strings.Contains(string(body), "shutting down") {
		t.Fatalf("start while stopping = %d %s, want 409 saying the host is shutting down", resp.StatusCode, body)
	}
	// Run reports the kill of the worker that ignored its stop.
	err = <-h.runErr
	h.runErr <- nil // for the harness's own stop
	if err != nil && !strings.Contains(err.Error(), "killed by SIGKILL") {
		t.Fatalf("Run: %v", err)
	}
	if _, err := http.Get(base + "/v1/status"); err == nil {
		t.Error("the HTTP API still answers after the host stopped")
	}
}
