// Package broker keeps one AMQP 0-9-1 connection to RabbitMQ alive for the
// host and lets the rest of the host publish and consume through it without
// caring whether the broker is up at the moment.
//
// # Lifecycle
//
// Dial checks its options and returns at once; a goroutine then connects in
// the background and keeps reconnecting, with capped and jittered
// exponential backoff, until Close. WaitConnected waits for a connection
// (the first one or the next one). On every connection, before anybody may
// use it, Options.Setup runs on a fresh channel to declare the topology, so
// that queues deleted while the host was away, or lost with a broker that
// was reset, exist again before consumers resume.
//
// # Publishing
//
// Publish sends on a channel in confirm mode and returns only once the
// broker confirmed the message (or with an error: ErrNacked, a channel
// error, ErrDisconnected, ErrClosed or the context's error). A Publish that
// starts while the host is disconnected waits for the next connection until
// its context ends; TryPublish fails at once with ErrDisconnected instead,
// which is what a reply to a delivery wants: the delivery cannot be acked
// on a new connection anyway. A message whose connection is lost before its
// confirmation arrives is reported as ErrDisconnected and not resent: it
// may or may not have reached the broker.
//
// # Consuming
//
// Consume consumes one queue with manual acknowledgements and a prefetch
// limit, calling its handler for one delivery at a time, in order. When
// the connection is lost it waits for the next connection and consumes
// again; unacked deliveries of the lost connection are redelivered by the
// broker. It returns when its context ends or the Conn is closed.
//
// # Not the library's recovery
//
// amqp091-go has an experimental automatic recovery (Config.Recovery). This
// package does not use it: the host must re-run its own declarations (they
// may change between connections), decide when consumers resume, and
// report lost confirmations, and the library's recovery is explicitly
// subject to change.
package broker
