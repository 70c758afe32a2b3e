package daemon

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dynworkers/dynworkers/host/internal/broker"
)

// The host block's bus block bounds the host's embedded bus, and /metrics
// counts what the bounds refused, per queue and for the whole bus.
func TestEmbeddedBusBoundsFromConfig(t *testing.T) {
	dir := t.TempDir()
	linkPlugin(t, filepath.Join(dir, "plugins"), "smpp")
	h := startConfig(t, dir, `system_id = "test"
host {
  name       = "test-host"
  plugin_dir = "plugins"
  state_dir  = "var"
  http_addr  = "127.0.0.1:0"
  bus {
    max_length = 2
    overflow   = "reject-publish"
    expires    = "1h"
  }
}
worker "smsc" {
  class = "smpp"
  config {
    host = "smpp.example.com"
  }
}
`)
	h.waitStarted("smsc")
	bus, ok := h.d.Bus().(*broker.EmbeddedBus)
	if !ok {
		t.Fatalf("the host's bus is %T, want the embedded bus", h.d.Bus())
	}
	ctx := context.Background()
	c, err := bus.Consume(ctx, "bounded", nil, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		err := bus.Publish(ctx, "bounded", fmt.Appendf(nil, "m%d", i), nil)
		if (err != nil) != (i == 2) || (err != nil && !errors.Is(err, broker.ErrQueueFull)) {
			t.Fatalf("publish %d: %v (max_length 2, reject-publish)", i, err)
		}
	}
	fams := scrapeMetrics(t, h)
	value := func(name string, labels map[string]string) float64 {
		t.Helper()
		f := fams[name]
		if f == nil {
			t.Fatalf("/metrics has no %s", name)
		}
	metrics:
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue metrics
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
		t.Fatalf("/metrics has no %s%v", name, labels)
		return 0
	}
	if v := value("dynworkers_bus_dropped_total", map[string]string{"reason": "reject_publish"}); v != 1 {
		t.Errorf("dynworkers_bus_dropped_total{reason=reject_publish} = %v, want 1", v)
	}
	if v := value("dynworkers_bus_queue_dropped_total", map[string]string{"queue": "bounded", "reason": "reject_publish"}); v != 1 {
		t.Errorf("dynworkers_bus_queue_dropped_total{queue=bounded} = %v, want 1", v)
	}
	if v := value("dynworkers_bus_queue_messages_ready", map[string]string{"queue": "bounded"}); v != 2 {
		t.Errorf("dynworkers_bus_queue_messages_ready{queue=bounded} = %v, want 2", v)
	}
	if !strings.Contains(h.logs.String(), "max_length=2") {
		t.Errorf("the host did not log the bus's bounds:\n%s", h.logs.String())
	}
}
