package daemon

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/broker/brokertest"
	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/host/internal/status"
)

// A worker's Status() details reach GET /v1/status, scrubbed of its
// sensitive config values; a worker whose Status never answers shows
// details_error, and does not hold the reply past status.DetailsTimeout.
func TestStatusCarriesWorkerDetails(t *testing.T) {
	const secret = "Zx9-status-secret"
	h := startHost(t, `
worker "acct" {
  class = "smpp"
  config {
    host     = "smsc.example"
    username = "account1"
    password = "`+secret+`"
  }
}
worker "mute" {
  class = "chaos"
  config {
    hang_status = true
  }
}
worker "plain" {
  class = "chaos"
}
`)
	pids := map[string]int{}
	for _, w := range []string{"acct", "mute", "plain"} {
		pids[w] = h.waitStarted(w)
	}
	began := time.Now()
	resp, err := http.Get("http://" + h.d.HTTPAddr() + "/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	took := time.Since(began)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/status: %d %v", resp.StatusCode, err)
	}
	// The hung worker costs at most status.DetailsTimeout; the slack is for a
	// loaded machine, and is still far below pluginproc.StatusTimeout (5 s).
	if limit := status.DetailsTimeout + 2*time.Second; took > limit {
		t.Errorf("status took %v with a worker whose Status hangs, want under %v", took, limit)
	}
	if strings.Contains(string(body), secret) {
		t.Fatalf("status shows the secret: %s", body)
	}
	var reply struct {
		OK     bool       `json:"ok"`
		Result api.Status `json:"result"`
	}
	if err := json.Unmarshal(body, &reply); err != nil || !reply.OK {
		t.Fatalf("reply %s: %v", body, err)
	}
	byName := map[string]api.Worker{}
	for _, w := range reply.Result.Workers {
		byName[w.Name] = w
	}
	var acct map[string]any
	if err := json.Unmarshal(byName["acct"].Details, &acct); err != nil {
		t.Fatalf("acct details %s: %v", byName["acct"].Details, err)
	}
	if acct["host"] != "smsc.example" || acct["pid"] != float64(pids["acct"]) {
		t.Errorf("acct details = %v, want host smsc.example and pid %d", acct, pids["acct"])
	}
	if acct["bind"] != "smpp://account1:(sensitive)@smsc.example" {
		t.Errorf("acct bind = %v, want the password scrubbed", acct["bind"])
	}
	if m := byName["mute"]; m.Details != nil || !strings.Contains(m.DetailsError, "did not answer") {
		t.Errorf("mute: details %s, error %q; want no details and a timeout error", m.Details, m.DetailsError)
	}
	var plain map[string]any
	if err := json.Unmarshal(byName["plain"].Details, &plain); err != nil || plain["mode"] != "run" {
		t.Errorf("plain details = %s (%v), want mode run", byName["plain"].Details, err)
	}
}

// The AMQP status reply carries the same details, scrubbed.
func TestStatusDetailsOverAMQP(t *testing.T) {
	const secret = "Zx9-amqp-status-secret"
	sys := brokertest.ID(t)
	h := amqpHost(t, sys, "h1", `
worker "acct" {
  class = "smpp"
  config {
    host     = "smsc.example"
    username = "account1"
    password = "`+secret+`"
  }
}
`)
	pid := h.waitStarted("acct")
	admin := brokertest.NewAdmin(t)
	replyQ, deliveries := admin.TempQueue("")
	admin.Publish(control.ControlExchange, sys+".h1", amqp.Publishing{Body: []byte(`{"operation": "status"}`), ReplyTo: replyQ, CorrelationId: "st-1"})
	d := brokertest.Receive(t, deliveries, waitTimeout)
	if strings.Contains(string(d.Body), secret) {
		t.Fatalf("the AMQP status reply shows the secret: %s", d.Body)
	}
	var reply struct {
		OK     bool       `json:"ok"`
		Result api.Status `json:"result"`
	}
	if err := json.Unmarshal(d.Body, &reply); err != nil || !reply.OK || len(reply.Result.Workers) != 1 {
		t.Fatalf("reply %s: %v", d.Body, err)
	}
	var details map[string]any
	if err := json.Unmarshal(reply.Result.Workers[0].Details, &details); err != nil ||
		details["pid"] != float64(pid) || details["bind"] != "smpp://account1:(sensitive)@smsc.example" {
		t.Fatalf("details over AMQP = %s (%v), want pid %d and the bind URL scrubbed", reply.Result.Workers[0].Details, err, pid)
	}
}
