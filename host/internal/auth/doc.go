// Package auth authenticates and authorises control requests: the policy
// of a host's control block (principals, each with the operations, class
// patterns and supervisor subtrees it may use), the broker identity of an
// AMQP message (its user_id property, which RabbitMQ validates against the
// publishing connection's user), and end-to-end signatures.
//
// # Signatures
//
// A signed request carries four values, as AMQP headers (string values;
// the timestamp may also be an integer) or as HTTP headers of the same
// names:
//
//	dynworkers-key-id      the key's id, 1 to 64 of [A-Za-z0-9._-]
//	dynworkers-timestamp   Unix time in seconds, decimal
//	dynworkers-nonce       16 to 128 of [A-Za-z0-9_-], fresh for each request
//	dynworkers-signature   the signature, standard base64 with padding
//
// The signature is over these exact bytes (SignedString):
//
//	"dynworkers-control-v1\n" + key_id + "\n" + timestamp + "\n" + nonce + "\n" + scope + "\n" + body
//
// where body is the exact message or request body (no re-encoding) and
// scope binds the request to where it was sent: "amqp " + the routing key
// it was published with (such as "global.host-a", "global.all"), or
// "http " + the method + " " + the request target as sent (such as
// "http POST /v1/workers"). Ed25519 keys sign with crypto/ed25519; HMAC
// keys with HMAC-SHA256. The key id selects the principal and its key, so
// the algorithm is the key's, never the message's.
//
// A request is accepted only when its timestamp is within the replay
// window of the host's clock (either side) and its nonce was not seen
// with the same key id within the window. Nonces are kept in a bounded
// cache; when it is full of nonces still in their window, new signed
// requests are refused rather than risk a replay.
package auth
