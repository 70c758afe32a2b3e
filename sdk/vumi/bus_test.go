package vumi_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/dynworkers/dynworkers/sdk"
	"github.com/dynworkers/dynworkers/sdk/sdktest"
	"github.com/dynworkers/dynworkers/sdk/vumi"
)

func TestPublishAndConsumeTyped(t *testing.T) {
	env := sdktest.NewEnv(t)
	ctx := context.Background()
	in := vumi.NewInbound("sms", vumi.TransportTypeSMS, "+27831234567", "12345", "hi")
	if err := vumi.PublishUserMessage(ctx, env.SDK(), vumi.InboundKey("sms"), in); err != nil {
		t.Fatal(err)
	}
	got := env.WaitPublished("sms.inbound", 1)[0].UserMessage(t)
	if got.MessageID != in.MessageID || got.Content.String != "hi" {
		t.Errorf("published %+v", got)
	}
	if err := vumi.PublishEvent(ctx, env.SDK(), vumi.EventKey("sms"), vumi.Ack(in)); err != nil {
		t.Fatal(err)
	}
	if ev := env.WaitPublished("sms.event", 1)[0].Event(t); ev.UserMessageID != in.MessageID {
		t.Errorf("event %+v", ev)
	}
	bad := vumi.NewUserMessage()
	bad.MessageID = ""
	if err := vumi.PublishUserMessage(ctx, env.SDK(), "x", bad); err == nil {
		t.Error("an invalid message was published")
	}

	var handled []*vumi.TransportUserMessage
	if err := vumi.ConsumeUserMessages(env.SDK(), "sms.outbound", func(_ context.Context, m *vumi.TransportUserMessage) error {
		handled = append(handled, m)
		if m.Content.String == "fail" {
			return errors.New("later")
		}
		return nil
	}, sdk.WithPrefetch(1)); err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(in.Reply("ok", true))
	if out, err := env.Deliver("sms.outbound", body); out != sdk.OutcomeAck || err != nil {
		t.Errorf("Deliver = %v, %v", out, err)
	}
	body, _ = json.Marshal(in.Reply("fail", true))
	if out, _ := env.Deliver("sms.outbound", body); out != sdk.OutcomeRequeue {
		t.Errorf("Deliver(fail) = %v", out)
	}
	if out, err := env.Deliver("sms.outbound", []byte(`{"message_type":"user_message"}`)); out != sdk.OutcomeDrop || !errors.Is(err, sdk.ErrDrop) {
		t.Errorf("Deliver(malformed) = %v, %v", out, err)
	}
	if len(handled) != 2 || handled[0].InReplyTo != in.MessageID {
		t.Errorf("handled %+v", handled)
	}
	env.WaitLog("not a valid Vumi user message")

	if err := vumi.ConsumeEvents(env.SDK(), "sms.event", func(context.Context, *vumi.TransportEvent) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if out, _ := env.Deliver("sms.event", body); out != sdk.OutcomeDrop {
		t.Errorf("a user message on the event queue: %v", out)
	}
	if err := vumi.ConsumeUserMessages(env.SDK(), "vumi.control", func(context.Context, *vumi.TransportUserMessage) error { return nil }); !errors.Is(err, sdk.ErrReservedName) {
		t.Errorf("reserved queue: %v", err)
	}
}
