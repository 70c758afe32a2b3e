package vumi

import (
	"context"
	"fmt"
	"sync"

	"github.com/dynworkers/dynworkers/sdk"
)

// Typed publishing and consuming of Vumi messages through a worker's Env
// (sdk.Env.Publish and sdk.Env.Consume). A transport:
//
//	err := vumi.PublishUserMessage(ctx, env, vumi.InboundKey(name), in)
//	err = vumi.ConsumeUserMessages(env, vumi.OutboundKey(name), t.send)
//	err = vumi.PublishEvent(ctx, env, vumi.EventKey(name), vumi.Ack(sent))
//
// an application:
//
//	err := vumi.ConsumeUserMessages(env, vumi.InboundKey(name), a.handle)
//	err = vumi.PublishUserMessage(ctx, env, vumi.OutboundKey(name), msg.Reply("hi", true))

// PublishUserMessage validates msg, encodes it as Vumi's JSON and
// publishes it on key.
func PublishUserMessage(ctx context.Context, env *sdk.Env, key string, msg *TransportUserMessage) error {
	if err := msg.Validate(); err != nil {
		return fmt.Errorf("publishing a user message on %q: %w", key, err)
	}
	buf := getBuffer()
	defer putBuffer(buf)
	body, err := msg.appendJSON((*buf)[:0])
	if err != nil {
		return fmt.Errorf("publishing a user message on %q: %w", key, err)
	}
	*buf = body
	return env.Publish(ctx, key, body, nil)
}

// The buffers messages are encoded into for Publish, which does not keep
// the body it is given.
var buffers = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

func getBuffer() *[]byte { return buffers.Get().(*[]byte) }

func putBuffer(b *[]byte) {
	if cap(*b) <= 64<<10 {
		buffers.Put(b)
	}
}

// PublishEvent validates ev, encodes it as Vumi's JSON and publishes it on
// key.
func PublishEvent(ctx context.Context, env *sdk.Env, key string, ev *TransportEvent) error {
	if err := ev.Validate(); err != nil {
		return fmt.Errorf("publishing an event on %q: %w", key, err)
	}
	buf := getBuffer()
	defer putBuffer(buf)
	body, err := ev.appendJSON((*buf)[:0])
	if err != nil {
		return fmt.Errorf("publishing an event on %q: %w", key, err)
	}
	*buf = body
	return env.Publish(ctx, key, body, nil)
}

// ConsumeUserMessages consumes queue (see sdk.Env.Consume) and hands each
// message, decoded and validated, to handler, whose result settles it as
// an sdk.Handler's does. A message that is not a valid user message is
// logged and dropped (sdk.ErrDrop): it could never be handled.
func ConsumeUserMessages(env *sdk.Env, queue string, handler func(ctx context.Context, msg *TransportUserMessage) error, opts ...sdk.ConsumeOption) error {
	if handler == nil {
		return fmt.Errorf("consuming user messages from %q: no handler given", queue)
	}
	return env.Consume(queue, func(ctx context.Context, m sdk.Message) error {
		msg, err := ParseUserMessage(m.Body)
		if err != nil {
			env.Logger().Warn("dropping a message that is not a valid Vumi user message", "queue", queue, "routing_key", m.RoutingKey, "error", err)
			return sdk.Drop(err)
		}
		return handler(ctx, msg)
	}, opts...)
}

// ConsumeEvents consumes queue (see sdk.Env.Consume) and hands each event,
// decoded and validated, to handler, whose result settles it as an
// sdk.Handler's does. A message that is not a valid event is logged and
// dropped (sdk.ErrDrop).
func ConsumeEvents(env *sdk.Env, queue string, handler func(ctx context.Context, ev *TransportEvent) error, opts ...sdk.ConsumeOption) error {
	if handler == nil {
		return fmt.Errorf("consuming events from %q: no handler given", queue)
	}
	return env.Consume(queue, func(ctx context.Context, m sdk.Message) error {
		ev, err := ParseEvent(m.Body)
		if err != nil {
			env.Logger().Warn("dropping a message that is not a valid Vumi event", "queue", queue, "routing_key", m.RoutingKey, "error", err)
			return sdk.Drop(err)
		}
		return handler(ctx, ev)
	}, opts...)
}
