package promexport

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dynworkers/dynworkers/host/internal/broker"
)

func testBusStats() *broker.EmbeddedBusStats {
	return &broker.EmbeddedBusStats{
		Bytes: 4096, MaxTotalBytes: 128 << 20, DroppedHead: 7, Rejected: 2, Expired: 3, ExpiredQueues: 1,
		Queues: []broker.EmbeddedQueueStats{
			{Name: "chat.inbound", Consumers: 1, Ready: 5, ReadyBytes: 500, Unacked: 20, DroppedHead: 7},
			{Name: "chat.outbound", Consumers: 0, Ready: 0, Rejected: 2},
		},
	}
}

func TestBusCollectorLint(t *testing.T) {
	problems, err := testutil.CollectAndLint(NewBusCollector(func() *broker.EmbeddedBusStats { return testBusStats() }))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

func TestBusCollectorSeries(t *testing.T) {
	const want = `
# HELP dynworkers_bus_dropped_total Messages the embedded bus lost to its bounds since the host started: dropped from a queue's head (drop_head), refused by a full queue (reject_publish), deleted with an expired queue (expired).
# TYPE dynworkers_bus_dropped_total counter
dynworkers_bus_dropped_total{reason="drop_head"} 7
dynworkers_bus_dropped_total{reason="expired"} 3
dynworkers_bus_dropped_total{reason="reject_publish"} 2
# HELP dynworkers_bus_queue_dropped_total Messages a queue of the embedded bus dropped from its head (drop_head) or refused (reject_publish) since it was created.
# TYPE dynworkers_bus_queue_dropped_total counter
dynworkers_bus_queue_dropped_total{queue="chat.inbound",reason="drop_head"} 7
dynworkers_bus_queue_dropped_total{queue="chat.inbound",reason="reject_publish"} 0
dynworkers_bus_queue_dropped_total{queue="chat.outbound",reason="drop_head"} 0
dynworkers_bus_queue_dropped_total{queue="chat.outbound",reason="reject_publish"} 2
# HELP dynworkers_bus_queue_messages_ready Ready messages of a queue of the embedded bus (what max_length bounds).
# TYPE dynworkers_bus_queue_messages_ready gauge
dynworkers_bus_queue_messages_ready{queue="chat.inbound"} 5
dynworkers_bus_queue_messages_ready{queue="chat.outbound"} 0
# HELP dynworkers_bus_max_bytes The embedded bus's max_total_bytes.
# TYPE dynworkers_bus_max_bytes gauge
dynworkers_bus_max_bytes 1.34217728e+08
`
	c := NewBusCollector(func() *broker.EmbeddedBusStats { return testBusStats() })
	if err := testutil.CollectAndCompare(c, strings.NewReader(want),
		"dynworkers_bus_dropped_total", "dynworkers_bus_queue_dropped_total", "dynworkers_bus_queue_messages_ready", "dynworkers_bus_max_bytes"); err != nil {
		t.Fatal(err)
	}
	// No embedded bus: nothing.
	none := NewBusCollector(func() *broker.EmbeddedBusStats { return nil })
	if n := testutil.CollectAndCount(none); n != 0 {
		t.Fatalf("%d series without a bus", n)
	}
}
