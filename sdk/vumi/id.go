package vumi

import (
	"crypto/rand"
	"encoding/hex"
)

// NewID returns a random (version 4) UUID as 32 lowercase hex digits without
// dashes, the form of Vumi's TransportMessage.generate_id (uuid4().get_hex())
// used for message_id and event_id.
func NewID() string {
	var b [16]byte
	rand.Read(b[:])         // never returns an error; it crashes the program instead
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
	var h [32]byte
	hex.Encode(h[:], b[:])
	return string(h[:])
}
