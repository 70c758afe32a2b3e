package main

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/dynworkers/dynworkers/sdk"
	"github.com/dynworkers/dynworkers/sdk/sdktest"
	"github.com/dynworkers/dynworkers/sdk/vumi"
)

func inbound(t *testing.T, ev vumi.SessionEvent, content vumi.NullString) []byte {
	t.Helper()
	m := vumi.NewUserMessage()
	m.TransportName, m.TransportType = "tel", vumi.TransportTypeTelnet
	m.FromAddr, m.ToAddr = "127.0.0.1:5555", "127.0.0.1:2323"
	m.SessionEvent, m.Content = ev, content
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestEchoReplies(t *testing.T) {
	w := sdktest.Run(t, Class, map[string]any{"transport_name": "tel"})
	queues := []string{}
	for _, c := range w.Env.Consumers() {
		queues = append(queues, c.Queue)
	}
	if len(queues) != 2 || queues[0] != "tel.inbound" || queues[1] != "tel.event" {
		t.Fatalf("consumes %v", queues)
	}
	in := inbound(t, vumi.SessionResume, vumi.String("hello there"))
	if out, err := w.Env.Deliver("tel.inbound", in); out != sdk.OutcomeAck || err != nil {
		t.Fatalf("Deliver = %v, %v", out, err)
	}
	orig, _ := vumi.ParseUserMessage(in)
	reply := w.Env.WaitPublished("tel.outbound", 1)[0].UserMessage(t)
	if reply.Content.String != "hello there" || reply.InReplyTo != orig.MessageID || reply.ToAddr != "127.0.0.1:5555" ||
		reply.FromAddr != "127.0.0.1:2323" || reply.SessionEvent != vumi.SessionNone || reply.TransportName != "tel" {
		t.Errorf("reply %+v", reply)
	}
	// The count is reported within metricInterval, not per message.
	if m := w.Env.WaitMetric("echoed"); len(m) != 1 || m[0].Value != 1 || m[0].Aggregators[0] != sdk.AggSum {
		t.Errorf("metrics %+v", m)
	}

	// A session starting or ending without content: no reply.
	for _, ev := range []vumi.SessionEvent{vumi.SessionNew, vumi.SessionClose} {
		if out, err := w.Env.Deliver("tel.inbound", inbound(t, ev, vumi.NullString{})); out != sdk.OutcomeAck || err != nil {
			t.Fatalf("Deliver = %v, %v", out, err)
		}
	}
	if out, _ := w.Env.Deliver("tel.inbound", inbound(t, vumi.SessionClose, vumi.String("bye"))); out != sdk.OutcomeAck {
		t.Fatal(out)
	}
	if n := len(w.Env.PublishedTo("tel.outbound")); n != 1 {
		t.Errorf("%d replies, want 1", n)
	}
	// Not a Vumi message: dropped.
	if out, _ := w.Env.Deliver("tel.inbound", []byte(`{"x":1}`)); out != sdk.OutcomeDrop {
		t.Errorf("malformed message settled %v", out)
	}
	// Events are counted.
	ack, _ := json.Marshal(vumi.Ack(reply))
	nack, _ := json.Marshal(vumi.Nack(reply, "gone"))
	for _, b := range [][]byte{ack, nack} {
		if out, err := w.Env.Deliver("tel.event", b); out != sdk.OutcomeAck || err != nil {
			t.Fatalf("event: %v, %v", out, err)
		}
	}
	st := w.Status(context.Background())
	if st["echoed"] != float64(1) || st["ignored"] != float64(3) || st["acks"] != float64(1) || st["nacks"] != float64(1) {
		t.Errorf("status %v", st)
	}
}

// The replies sent since the last report are reported when the worker
// stops: the "echoed" values add up to the replies.
func TestEchoReportsCountOnStop(t *testing.T) {
	w := sdktest.Run(t, Class, map[string]any{"transport_name": "tel"})
	for range 5 {
		if out, err := w.Env.Deliver("tel.inbound", inbound(t, vumi.SessionResume, vumi.String("x"))); out != sdk.OutcomeAck || err != nil {
			t.Fatalf("Deliver = %v, %v", out, err)
		}
	}
	if err := w.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, m := range w.Env.WaitMetric("echoed") {
		sum += m.Value
	}
	if sum != 5 {
		t.Errorf("echoed values add up to %v, want 5", sum)
	}
}

// A reply that cannot be published is requeued.
func TestEchoRequeuesWhenPublishFails(t *testing.T) {
	w := sdktest.Run(t, Class, map[string]any{"transport_name": "tel"},
		sdktest.OnPublish(func(context.Context, sdktest.Published) error { return errors.New("bus down") }))
	if out, _ := w.Env.Deliver("tel.inbound", inbound(t, vumi.SessionNone, vumi.String("x"))); out != sdk.OutcomeRequeue {
		t.Errorf("settled %v, want requeue", out)
	}
}

func TestEchoConfig(t *testing.T) {
	for _, cfg := range []string{`{}`, `{"transport_name":""}`, `{"transport_name":"vumi.control"}`, `{"transport_name":"tel","x":1}`} {
		if _, err := sdktest.Start(t, Class, cfg); !errors.Is(err, sdk.ErrInvalidConfig) {
			t.Errorf("config %s: %v", cfg, err)
		}
	}
	if _, err := sdktest.Start(t, Class, `{"transport_name":"tel"}`, sdktest.WithoutBus()); !errors.Is(err, sdk.ErrNoBus) {
		t.Errorf("without a bus: %v", err)
	}
}
