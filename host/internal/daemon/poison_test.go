package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dynworkers/dynworkers/host/internal/broker"
	"github.com/dynworkers/dynworkers/host/internal/broker/brokertest"
	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/sdk/sdktest"
)

// Poison messages end to end: a real plugin process (the test plugin
// "bus", with the SDK) whose handler always fails a message gets it
// exactly max_redeliveries times (Message.Failures 0, 1, ...); then the
// host dead-letters it to <queue>.dlq with the error in its headers, the
// worker's dead_lettered metric counts it, and the worker goes on with
// the next message. On the embedded bus and on RabbitMQ.

func TestPoisonMessageDeadLetteredEmbedded(t *testing.T) {
	dir := t.TempDir()
	linkPlugin(t, filepath.Join(dir, "plugins"), "bus")
	// The handler's error names the worker's password: the dead letter's
	// header and the host's log must not.
	h := startHostIn(t, dir, strings.Replace(poisonWorker("p.in", 0), "prefetch = 2", "prefetch = 2\n    password = \"poison-secret-4711\"", 1))
	if e := checkPoison(t, h, "p.in", 5); e != "told to fail always (password (sensitive))" {
		t.Errorf("dead letter's error header = %q, want the password scrubbed", e)
	}
	if strings.Contains(h.logs.String(), "poison-secret-4711") {
		t.Errorf("the host's log has the worker's password")
	}
}

func TestPoisonMessageDeadLetteredAMQP(t *testing.T) {
	url := brokertest.URL(t)
	sys := brokertest.ID(t)
	in := sys + ".in"
	dir := t.TempDir()
	linkPlugin(t, filepath.Join(dir, "plugins"), "bus")
	admin := brokertest.NewAdmin(t)
	admin.DeleteAtCleanup([]string{in, in + ".dlq", control.HostQueue(sys, "h1"), control.AnyQueue(sys)}, nil)
	h := startAMQPHost(t, dir, sys, "h1", url, poisonWorker(in, 3))
	checkPoison(t, h, in, 3)
}

func poisonWorker(queue string, max int) string {
	return fmt.Sprintf(`
worker "poisoned" {
  class = "bus"
  config {
    queue = %q
    prefetch = 2
    max_redeliveries = %d
  }
}
`, queue, max)
}

// checkPoison returns the dead letter's error header.
func checkPoison(t *testing.T, h *harness, in string, max int) string {
	t.Helper()
	h.waitStarted("poisoned")
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	bus := h.d.Bus()
	if err := bus.Declare(ctx, in, nil); err != nil { // the worker's may not be declared yet
		t.Fatal(err)
	}
	dl, err := bus.Consume(ctx, in+".dlq", nil, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer dl.Close()
	if err := bus.Publish(ctx, in, []byte("poison"), map[string]string{"h": "v"}); err != nil {
		t.Fatal(err)
	}
	var d broker.Delivery
	select {
	case d = <-dl.Deliveries():
	case <-ctx.Done():
		t.Fatalf("no dead letter in %s.dlq", in)
	}
	if string(d.Body) != "poison" || d.Headers["h"] != "v" || !strings.HasPrefix(d.Headers[broker.HeaderError], "told to fail always") || strings.Contains(d.Headers[broker.HeaderError], "poison-secret-4711") ||
		d.Headers[broker.HeaderFailures] != fmt.Sprint(max) || d.Headers[broker.HeaderQueue] != in || d.Headers[broker.HeaderRoutingKey] != in {
		t.Fatalf("dead letter %q %v", d.Body, d.Headers)
	}
	_ = dl.Ack(d.Tag)
	// The next message comes after it: had it been requeued once more,
	// the worker would have handled it again first.
	if err := bus.Publish(ctx, in, []byte("after"), nil); err != nil {
		t.Fatal(err)
	}
	var st struct {
		Handled  []string `json:"handled"`
		Failures []int    `json:"failures"`
	}
	sdktest.Eventually(t, waitTimeout, func() bool {
		raw, err := h.processOf("poisoned").Status(ctx)
		if err != nil || json.Unmarshal(raw, &st) != nil {
			return false
		}
		return slices.Contains(st.Handled, "after=ack")
	}, "the worker did not handle the message after the poison one: %v", later(func() any { return st.Handled }))
	calls := 0
	for _, e := range st.Handled {
		if strings.HasPrefix(e, "poison=") {
			calls++
		}
	}
	wantFailures := make([]int, max+1) // 0..max-1 for the poison message, 0 for the next
	for i := range max {
		wantFailures[i] = i
	}
	if calls != max || !slices.Equal(st.Failures, wantFailures) {
		t.Fatalf("handled %v with failures %v; want %d calls with failures %v", st.Handled, st.Failures, max, wantFailures)
	}
	// The worker's metric counts it.
	sdktest.Eventually(t, waitTimeout, func() bool {
		for _, m := range scrapeMetrics(t, h)["dynworkers_worker_metric_total"].GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["worker"] == "poisoned" && labels["metric"] == DeadLetteredMetric {
				return m.GetCounter().GetValue() == 1
			}
		}
		return false
	}, "dynworkers_worker_metric_total{worker=\"poisoned\",metric=%q} is not 1", DeadLetteredMetric)
	return d.Headers[broker.HeaderError]
}
