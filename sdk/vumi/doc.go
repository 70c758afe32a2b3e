// Package vumi holds Vumi-compatible message types, so that a worker can
// exchange messages with Vumi transports and applications over AMQP.
//
// The reference is Vumi's vumi/message.py (message_version "20110921"):
//
//   - TransportUserMessage, message_type "user_message", is a message to or
//     from a user. Transports publish the ones they receive on
//     InboundKey(transport) and consume the ones to send from
//     OutboundKey(transport).
//   - TransportEvent, message_type "event", is an ack, a nack or a delivery
//     report about a message a transport was asked to send, published on
//     EventKey(transport).
//
// Both encode to and decode from exactly Vumi's JSON: the same keys, nulls
// and empty maps, timestamps as "2026-11-27 01:02:03.000456" (UTC, see
// Timestamp) and ids as 32 lowercase hex digits (NewID). Decoding applies
// Vumi's validation and keeps keys it does not know in Extra; encoding
// writes them back, so a message survives a round trip through a Go worker.
//
// A worker that answers users replies to inbound messages:
//
//	msg, err := vumi.ParseUserMessage(body) // from <transport>.inbound
//	if err != nil {
//		return err // a *vumi.MissingFieldError or *vumi.InvalidFieldError
//	}
//	reply := msg.Reply("Thanks!", false) // false ends a USSD session
//	out, err := json.Marshal(reply)       // publish on vumi.OutboundKey(*msg.TransportName)
//
// A transport publishes what it receives, and events about what it sends:
//
//	in := vumi.NewInbound("smpp", vumi.TransportTypeSMS, "+27831234567", "12345", "hi")
//	in.FromAddrType = new(vumi.AddrTypeMSISDN)
//	// publish in on vumi.InboundKey("smpp")
//
//	sent, err := vumi.ParseUserMessage(body) // from vumi.OutboundKey("smpp")
//	// ... hand it to the network, then:
//	ack := vumi.Ack(sent) // publish on vumi.EventKey("smpp")
package vumi
