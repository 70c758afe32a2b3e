// Package api holds the host's API types: what status, list_classes,
// reload, the control operations' results and lifecycle events look like
// on the wire. The daemon fills them; control answers with them over AMQP
// and HTTP; the CLI and the dashboard read them. One definition, so that a
// field added for one client reaches every client.
//
// The JSON field names are the protocol (docs/control-protocol.md): change
// them only with a protocol note. Fields that a newer host adds must be
// optional for readers, so that the CLI can talk to an older host.
package api
