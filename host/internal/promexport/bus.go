package promexport

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dynworkers/dynworkers/host/internal/broker"
)

// The embedded bus's metrics (doc.go lists them). The queue label has one
// value per queue that exists now: a queue expires once unused (host.bus's
// expires), and its series go with it, so their number is bounded by the
// queues the workers consume.
var (
	descBusBytes = newDesc("dynworkers_bus_bytes",
		"Memory the ready messages of all queues of the embedded bus take, as max_total_bytes counts it.")
	descBusMaxBytes = newDesc("dynworkers_bus_max_bytes",
		"The embedded bus's max_total_bytes.")
	descBusDropped = newDesc("dynworkers_bus_dropped_total",
		"Messages the embedded bus lost to its bounds since the host started: dropped from a queue's head (drop_head), refused by a full queue (reject_publish), deleted with an expired queue (expired).",
		"reason")
	descBusExpiredQueues = newDesc("dynworkers_bus_expired_queues_total",
		"Queues of the embedded bus deleted after going unused for host.bus.expires.")
	descBusQueueDropped = newDesc("dynworkers_bus_queue_dropped_total",
		"Messages a queue of the embedded bus dropped from its head (drop_head) or refused (reject_publish) since it was created.",
		"queue", "reason")
	descBusQueueReady = newDesc("dynworkers_bus_queue_messages_ready",
		"Ready messages of a queue of the embedded bus (what max_length bounds).", "queue")
	descBusQueueReadyBytes = newDesc("dynworkers_bus_queue_ready_bytes",
		"Body bytes of the ready messages of a queue of the embedded bus (what max_length_bytes bounds).", "queue")
	descBusQueueUnacked = newDesc("dynworkers_bus_queue_messages_unacked",
		"Messages of a queue of the embedded bus delivered and not yet acked.", "queue")
	descBusQueueConsumers = newDesc("dynworkers_bus_queue_consumers",
		"Consumers of a queue of the embedded bus.", "queue")

	busDescs = []*prometheus.Desc{
		descBusBytes, descBusMaxBytes, descBusDropped, descBusExpiredQueues, descBusQueueDropped,
		descBusQueueReady, descBusQueueReadyBytes, descBusQueueUnacked, descBusQueueConsumers,
	}
)

// The values of the reason label.
const (
	ReasonDropHead      = "drop_head"
	ReasonRejectPublish = "reject_publish"
	ReasonExpired       = "expired"
)

// BusCollector exposes the embedded bus's figures (broker.EmbeddedBus's
// Stats): what its bounds dropped, and each queue's backlog.
type BusCollector struct {
	src func() *broker.EmbeddedBusStats
}

var _ prometheus.Collector = (*BusCollector)(nil)

// NewBusCollector returns a BusCollector reading the figures from src,
// once per Collect; src may return nil (no embedded bus: a host with an
// amqp block, whose queues RabbitMQ reports), and then it exports nothing.
func NewBusCollector(src func() *broker.EmbeddedBusStats) *BusCollector {
	if src == nil {
		panic("promexport: NewBusCollector with a nil source")
	}
	return &BusCollector{src: src}
}

// Describe sends the descriptors of every metric the collector may export.
func (c *BusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range busDescs {
		ch <- d
	}
}

// Collect sends the bus's metrics.
func (c *BusCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.src()
	if s == nil {
		return
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge(descBusBytes, float64(s.Bytes))
	if s.MaxTotalBytes >= 0 {
		gauge(descBusMaxBytes, float64(s.MaxTotalBytes))
	}
	counter(descBusDropped, float64(s.DroppedHead), ReasonDropHead)
	counter(descBusDropped, float64(s.Rejected), ReasonRejectPublish)
	counter(descBusDropped, float64(s.Expired), ReasonExpired)
	counter(descBusExpiredQueues, float64(s.ExpiredQueues))
	for _, q := range s.Queues {
		name := label(q.Name)
		counter(descBusQueueDropped, float64(q.DroppedHead), name, ReasonDropHead)
		counter(descBusQueueDropped, float64(q.Rejected), name, ReasonRejectPublish)
		gauge(descBusQueueReady, float64(q.Ready), name)
		gauge(descBusQueueReadyBytes, float64(q.ReadyBytes), name)
		gauge(descBusQueueUnacked, float64(q.Unacked), name)
		gauge(descBusQueueConsumers, float64(q.Consumers), name)
	}
}
