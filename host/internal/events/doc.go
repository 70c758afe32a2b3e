// Package events owns the host's lifecycle events from the moment a
// supervisor emits one to the moment the broker has confirmed it on
// vumi.events (DESIGN §5).
//
// supervise keeps its own vocabulary (ChildStarting, ChildStarted, ...);
// this package is the one place that turns it into the wire form,
// api.Event, as published on vumi.events, listed by GET /v1/events and
// logged by the host:
//
//   - Mapper.Map maps a supervise.Event to an api.Event: the wire name, the
//     host's system_id and name, the pid of a started worker, and the
//     supervisor_* renaming of events about a child that is a supervisor
//     (marked by MetaKind/KindSupervisor in its ChildSpec.Meta).
//   - Ring keeps the most recent events for the status API, bounded.
//   - Publisher sends events to the broker in the order they were emitted
//     without ever blocking the supervisor that emitted them, and drains
//     what it still holds when the host stops (Close).
//
// Lifecycle of a Publisher: NewPublisher (its goroutine starts) → Publish
// from any goroutine → Close(ctx) once nothing emits events anymore (the
// supervisors are stopped): it publishes what is queued and returns when
// the queue is empty or ctx ends, whichever comes first.
//
// The package knows nothing about plugin processes or AMQP: the daemon
// passes the pid lookup (Mapper.Pid) and the publish function
// (PublisherOptions.Publish).
package events
