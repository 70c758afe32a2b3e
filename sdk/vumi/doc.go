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
// # Fields
//
// The fields are plain values. A string field holds "" where Vumi has None
// (JSON null): msg.ToAddr, msg.InReplyTo and the rest are read and set
// without nil checks, and "" is written as null. Only Content, where Vumi
// tells no content (null: a USSD session starting) from an empty text
// (""), keeps the difference, as a NullString: msg.Content.Valid is false
// for null and msg.Content.String is the text; vumi.String("hi") sets one.
// What the wire needs beyond the values is kept inside the message: a
// decoded message remembers which keys were absent (they stay absent while
// their field is empty), null, or the empty string (written back as ""
// while the field is still empty), so decoding and encoding again gives the
// same JSON back. Reply, Ack, Nack and DeliveryReport carry an empty string
// they copy from a decoded message over as one.
//
// # Encoding
//
// MarshalJSON writes keys in sorted order without insignificant space, and
// strings escaped as encoding/json escapes them without HTML escaping:
// non-ASCII characters as UTF-8, U+2028 and U+2029 as \u2028 and \u2029,
// invalid UTF-8 as \ufffd. Vumi's json.dumps writes non-ASCII as \uXXXX
// escapes and keys in its dict's order: the JSON values are the same (the
// golden tests compare values with testdata, which is in Vumi's shape).
// Messages are read and written by a hand-written codec, without
// reflection: call MarshalJSON (or PublishUserMessage) rather than
// json.Marshal, which validates and copies what MarshalJSON returns and
// escapes <, > and & on top.
//
// A worker that answers users replies to inbound messages:
//
//	msg, err := vumi.ParseUserMessage(body) // from <transport>.inbound
//	if err != nil {
//		return err // a *vumi.MissingFieldError or *vumi.InvalidFieldError
//	}
//	if !msg.Content.Valid {
//		return nil // a session event without content
//	}
//	reply := msg.Reply("You said "+msg.Content.String, false) // false ends a USSD session
//	out, err := reply.MarshalJSON() // publish on vumi.OutboundKey(msg.TransportName)
//
// A transport publishes what it receives, and events about what it sends:
//
//	in := vumi.NewInbound("smpp", vumi.TransportTypeSMS, "+27831234567", "12345", "hi")
//	in.FromAddrType = vumi.AddrTypeMSISDN
//	// publish in on vumi.InboundKey("smpp")
//
//	sent, err := vumi.ParseUserMessage(body) // from vumi.OutboundKey("smpp")
//	// ... hand it to the network, then:
//	ack := vumi.Ack(sent) // publish on vumi.EventKey("smpp")
package vumi
