package config

import (
	"time"

	"github.com/hashicorp/hcl/v2"
)

// Embedded bus overflow policies (host.bus.overflow), as RabbitMQ's
// x-overflow.
const (
	OverflowDropHead      = "drop-head"
	OverflowRejectPublish = "reject-publish"
)

// Overflows lists the valid host.bus.overflow values.
var Overflows = []string{OverflowDropHead, OverflowRejectPublish}

// Bounds of the bus block's settings.
const (
	// MaxBusMaxLength bounds host.bus.max_length.
	MaxBusMaxLength = maxIntensity
	// MinBusMaxTotalBytes is the smallest host.bus.max_total_bytes.
	MinBusMaxTotalBytes = 1 << 20
)

// BusConfig is the host block's bus block: the bounds of the embedded
// bus's queues, with RabbitMQ's semantics (broker.EmbeddedBusOptions
// tells them). A zero field means the bus's default (broker.Default*);
// docs/operator-guide.md ("The embedded bus") lists them. A host with an
// amqp block does not use the embedded bus and refuses the block.
type BusConfig struct {
	// MaxLength is the most ready messages a queue holds (x-max-length).
	MaxLength int
	// MaxLengthBytes is the most body bytes of ready messages a queue
	// holds (x-max-length-bytes).
	MaxLengthBytes int64
	// MaxTotalBytes bounds the memory of the ready messages of all queues.
	MaxTotalBytes int64
	// Overflow is one of Overflows; "" means drop-head.
	Overflow string
	// Expires deletes a queue unused (no consumer) for that long.
	Expires time.Duration
}

var busSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "max_length"}, {Name: "max_length_bytes"}, {Name: "max_total_bytes"}, {Name: "overflow"}, {Name: "expires"},
	},
}

// decodeBus decodes the host block's bus block, if any.
func (m *merger) decodeBus(sc *scope, blocks hcl.Blocks) {
	b := sc.onlyBlock(blocks, "bus", "the host block")
	if b == nil {
		return
	}
	m.bus = b.DefRange.Ptr()
	content, d := b.Body.Content(busSchema)
	sc.add(d...)
	a := content.Attributes
	bc := &m.f.Host.Bus
	if attr := a["max_length"]; attr != nil {
		n := -1
		sc.wholeNumber(attr, &n)
		switch {
		case n >= 1:
			bc.MaxLength = n
		case n == 0:
			sc.errorf(attr.Expr.Range(), "Invalid value",
				"The argument \"max_length\" of the bus block (the most ready messages a queue holds) must be a whole number from 1 to %d.", MaxBusMaxLength)
		}
	}
	if attr := a["max_length_bytes"]; attr != nil {
		if n, ok := sc.size(attr); ok {
			if n < 1 {
				sc.errorf(attr.Expr.Range(), "Invalid value",
					"The argument \"max_length_bytes\" of the bus block (the most body bytes of ready messages a queue holds) must be at least 1 byte, such as \"32MiB\".")
			} else {
				bc.MaxLengthBytes = int64(n)
			}
		}
	}
	if attr := a["max_total_bytes"]; attr != nil {
		if n, ok := sc.size(attr); ok {
			if n < MinBusMaxTotalBytes {
				sc.errorf(attr.Expr.Range(), "Invalid value",
					"The argument \"max_total_bytes\" of the bus block (the memory the ready messages of all queues may take) must be at least 1MiB, such as \"128MiB\".")
			} else {
				bc.MaxTotalBytes = int64(n)
			}
		}
	}
	sc.enum(a["overflow"], "overflow policy", Overflows, &bc.Overflow)
	sc.duration(a["expires"], &bc.Expires)
}

// finishBus refuses a bus block next to an amqp block, wherever each is:
// RabbitMQ's queues are bounded by the operator's policies, not by the
// host, and a block that bounds nothing would mislead.
func (m *merger) finishBus() {
	if m.bus == nil || m.amqp == nil {
		return
	}
	*m.diags = append(*m.diags, &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  "Bus block without the embedded bus",
		Detail: "The host block's bus block bounds the embedded bus, which a host with an amqp block (at " + position(*m.amqp) +
			") does not use: its workers' queues are RabbitMQ's. Bound them with a RabbitMQ policy instead, such as " +
			"rabbitmqctl set_policy bounds \".*\" '{\"max-length\":100000,\"overflow\":\"drop-head\",\"expires\":1800000}' --apply-to queues, " +
			"and remove the bus block.",
		Subject: m.bus,
	})
}
