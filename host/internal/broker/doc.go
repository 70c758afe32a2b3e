// Package broker keeps one AMQP 0-9-1 connection to RabbitMQ alive for the
// host and lets the rest of the host publish and consume through it without
// caring whether the broker is up at the moment. It also offers the bus
// that carries the workers' messages (DESIGN §7): Bus, on RabbitMQ
// (AMQPBus, over a Conn) or in process (EmbeddedBus), and the bridge that
// gives each worker process its share of it (NewHostBridge).
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
// # TLS
//
// With an amqps:// URL the connection uses Options.TLS (the CA, the
// client certificate, the server name; the daemon makes it from the amqp
// block's tls block), copied for each connection, TLS 1.2 at least and
// never without verification (InsecureSkipVerify is refused). A failed
// handshake is reported with what to check: an unknown CA, a wrong name,
// or a broker that closed the connection after asking for a client
// certificate (in TLS 1.3 that shows only after the handshake; a
// GetClientCertificate hook records whether one was asked for and sent).
//
// # Publishing
//
// Every publish of the host goes through one pipeline (publish.go): the
// control channel's replies and events, Vumi metrics and heartbeats, and
// the workers' bus (AMQPBus.PublishAsync) are sent on the session's one
// confirm-mode channel. It is opened single-flight: one caller opens it
// (and declares the exchanges users registered, such as the bus's
// "vumi"), with no mutex held across the network, while concurrent
// callers wait for that one open; a channel closed by a channel error is
// reopened the same way.
//
// Publish sends and returns only once the broker confirmed the message
// (or with an error: ErrNacked, a channel error, ErrDisconnected,
// ErrClosed or the context's error). A Publish that starts while the host
// is disconnected waits for the next connection until its context ends;
// TryPublish fails at once with ErrDisconnected instead, which is what a
// reply to a delivery wants: the delivery cannot be acked on a new
// connection anyway. A message whose connection is lost before its
// confirmation arrives is reported as ErrDisconnected and not resent: it
// may or may not have reached the broker.
//
// # Consuming
//
// Every consumer of the host is one resumable consumer (consume.go's
// resumer): Conn.Consume, for the control channel, and AMQPBus's
// consumers differ only in what they declare and how they hand deliveries
// over. Each consumes on a channel of its own with manual
// acknowledgements and a prefetch limit. When the connection is lost it
// waits for the next connection and consumes again at once; unacked
// deliveries of the lost connection are redelivered by the broker. When
// the broker ends it while connected (a deleted queue), it resumes after
// the Conn's backoff. Conn.Consume calls its handler for one delivery at
// a time, in order, and returns when its context ends or the Conn is
// closed.
//
// # The workers' bus
//
// Bus is Vumi's routing: exchange "vumi" (direct, durable), durable queues
// named after the routing key they are bound with, manual acks, prefetch,
// and redelivery of whatever a consumer did not ack. Its documentation
// lists the guarantees; a conformance suite (bus_conformance_test.go) checks
// them against both implementations, so a plugin behaves the same with or
// without a broker. The host makes one bus:
//
//	bus := broker.NewAMQPBus(conn, broker.AMQPBusOptions{}) // amqp block
//	bus := broker.NewEmbeddedBus()                          // no amqp block
//
// and closes it before the Conn. An AMQPBus publishes through the Conn's
// pipeline, consumes on channels of its own (one per consumer), follows
// the Conn across reconnections, and re-declares each consumer's queue
// and bindings on the new connection before it consumes again.
//
// # The workers' side of the bus
//
// Workers reach the bus through the host, never with a connection of their
// own: Bridges.Process (or NewHostBridge) adapts a Bus to the Host service
// of one worker process (pluginproc.BusHost), which only translates gRPC
// to it. The bridge sends the process's deferred publishes with
// PublishAsync and delays each ack on the bus until the deferred
// publishes made while the worker had the delivery are confirmed,
// requeueing the delivery when one failed, whether it could not be sent
// or the broker refused it: one tracker (tracker.go) records both. At
// most BridgeOptions.MaxDeferred (DefaultMaxDeferred) deferred publishes
// of a process wait for their confirmation; beyond that the next one
// waits, and the process's Outbox stream with it (backpressure);
// confirmed publishes are not kept. bridge.go tells how.
//
// Poison messages (poison.go) are handled above the Bus, so both buses
// behave the same: the bridges of one host count each message's failed
// attempts (a Nack with requeue and the handler's error) per queue, and
// at the consumer's MaxRedeliveries-th the bridge publishes the message
// to the consumer's dead-letter key (a durable queue it declares with
// Bus.Declare when the consumer starts), with the x-dynworkers-* headers,
// and acks the original once the dead letter is confirmed.
//
// # Not the library's recovery
//
// amqp091-go has an experimental automatic recovery (Config.Recovery). This
// package does not use it: the host must re-run its own declarations (they
// may change between connections), decide when consumers resume, and
// report lost confirmations, and the library's recovery is explicitly
// subject to change.
package broker
