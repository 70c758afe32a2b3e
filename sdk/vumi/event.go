package vumi

import "encoding/json"

// EventType is the event_type of a TransportEvent.
type EventType string

// Event types (the keys of TransportEvent.EVENT_TYPES).
const (
	EventAck            EventType = "ack"             // the transport accepted the message; sent_message_id
	EventNack           EventType = "nack"            // the transport refused the message; nack_reason
	EventDeliveryReport EventType = "delivery_report" // news of delivery; delivery_status
)

// Valid reports whether t is one of the three event types.
func (t EventType) Valid() bool {
	switch t {
	case EventAck, EventNack, EventDeliveryReport:
		return true
	}
	return false
}

// DeliveryStatus is the delivery_status of a delivery report. The empty
// string is JSON null (or no key).
type DeliveryStatus string

// Delivery statuses (TransportEvent.DELIVERY_STATUSES).
const (
	DeliveryPending   DeliveryStatus = "pending"
	DeliveryFailed    DeliveryStatus = "failed"
	DeliveryDelivered DeliveryStatus = "delivered"
)

// Valid reports whether s is one of the three delivery statuses.
func (s DeliveryStatus) Valid() bool {
	switch s {
	case DeliveryPending, DeliveryFailed, DeliveryDelivered:
		return true
	}
	return false
}

// The keys of an event, in sorted order.
const (
	evDeliveryStatus = iota
	evEventID
	evEventType
	evHelperMetadata
	evMessageType
	evMessageVersion
	evNackReason
	evRoutingMetadata
	evSentMessageID
	evTimestamp
	evTransportMetadata
	evTransportName
	evUserMessageID
	evKeys
)

// eventKeys are the keys TransportEvent represents as fields, by index.
var eventKeys = []string{
	evDeliveryStatus:    "delivery_status",
	evEventID:           "event_id",
	evEventType:         "event_type",
	evHelperMetadata:    "helper_metadata",
	evMessageType:       "message_type",
	evMessageVersion:    "message_version",
	evNackReason:        "nack_reason",
	evRoutingMetadata:   "routing_metadata",
	evSentMessageID:     "sent_message_id",
	evTimestamp:         "timestamp",
	evTransportMetadata: "transport_metadata",
	evTransportName:     "transport_name",
	evUserMessageID:     "user_message_id",
}

func eventKey(key []byte) int {
	switch string(key) {
	case "delivery_status":
		return evDeliveryStatus
	case "event_id":
		return evEventID
	case "event_type":
		return evEventType
	case "helper_metadata":
		return evHelperMetadata
	case "message_type":
		return evMessageType
	case "message_version":
		return evMessageVersion
	case "nack_reason":
		return evNackReason
	case "routing_metadata":
		return evRoutingMetadata
	case "sent_message_id":
		return evSentMessageID
	case "timestamp":
		return evTimestamp
	case "transport_metadata":
		return evTransportMetadata
	case "transport_name":
		return evTransportName
	case "user_message_id":
		return evUserMessageID
	}
	return -1
}

func isEventKey(k string) bool { return eventKey([]byte(k)) >= 0 }

// TransportEvent is news about a user message a transport was asked to
// send: Vumi's vumi.message.TransportEvent, message_type "event". Each
// field's comment gives its JSON key.
//
// Of sent_message_id, nack_reason and delivery_status, an event built in Go
// carries only the one its event_type needs (unless others are set), as
// Vumi's do. Decoding and encoding work as for TransportUserMessage:
// Vumi's checks, unknown keys kept in Extra, and the decoded keys written
// back, including those Vumi does not require (transport_name,
// transport_metadata and routing_metadata are missing from events that did
// not come from a transport's publish_event) and explicit nulls (vumi2
// writes all three type-specific keys, null where unused). As there, the
// string fields hold "" for null: an ack's SentMessageID and a nack's
// NackReason must not be empty (Validate) unless they were decoded as "" or
// built so by Nack.
type TransportEvent struct {
	MessageVersion string    // message_version: always MessageVersion
	MessageType    string    // message_type: always MessageTypeEvent
	EventID        string    // event_id: 32 lowercase hex digits (NewID)
	Timestamp      Timestamp // timestamp

	RoutingMetadata map[string]any // routing_metadata
	HelperMetadata  map[string]any // helper_metadata

	EventType     EventType // event_type
	UserMessageID string    // user_message_id: message_id of the user message

	SentMessageID  string         // sent_message_id: the transport's id for the message; ack
	NackReason     string         // nack_reason; nack
	DeliveryStatus DeliveryStatus // delivery_status; delivery_report

	TransportName     string         // transport_name
	TransportMetadata map[string]any // transport_metadata

	// Extra holds the keys this type does not know, as raw JSON, and
	// MarshalJSON writes them back. Entries whose key is one of the keys
	// above are ignored.
	Extra map[string]json.RawMessage

	shape [evKeys]presence
}

// newEvent builds an event about msg as Vumi's Transport.publish_event
// does: transport_name from msg and empty transport_metadata.
func newEvent(msg *TransportUserMessage, t EventType) *TransportEvent {
	return &TransportEvent{
		MessageVersion:    MessageVersion,
		MessageType:       MessageTypeEvent,
		EventID:           NewID(),
		Timestamp:         Now(),
		RoutingMetadata:   map[string]any{},
		HelperMetadata:    map[string]any{},
		EventType:         t,
		UserMessageID:     msg.MessageID,
		TransportName:     msg.TransportName,
		TransportMetadata: map[string]any{},
	}
}

// Ack returns an ack of msg: the transport accepted it. sent_message_id is
// msg's message_id, as in Vumi's test helpers; set SentMessageID to the id
// the transport's upstream gave the message when there is one.
func Ack(msg *TransportUserMessage) *TransportEvent {
	e := newEvent(msg, EventAck)
	e.SentMessageID = msg.MessageID
	e.shape[evTransportName] = emptyOnly(msg.shape[umTransportName])
	return e
}

// Nack returns a nack of msg: the transport could not send it, for reason.
// An empty reason is written as "": a nack always has a nack_reason.
func Nack(msg *TransportUserMessage, reason string) *TransportEvent {
	e := newEvent(msg, EventNack)
	e.NackReason = reason
	if reason == "" {
		e.shape[evNackReason] = isEmpty // a nack needs a reason, even an empty one
	}
	e.shape[evTransportName] = emptyOnly(msg.shape[umTransportName])
	return e
}

// DeliveryReport returns a delivery report on msg with status.
func DeliveryReport(msg *TransportUserMessage, status DeliveryStatus) *TransportEvent {
	e := newEvent(msg, EventDeliveryReport)
	e.DeliveryStatus = status
	e.shape[evTransportName] = emptyOnly(msg.shape[umTransportName])
	return e
}

// ParseEvent decodes and validates an event; see TransportEvent.
func ParseEvent(data []byte) (*TransportEvent, error) {
	e := new(TransportEvent)
	if err := e.decode(data); err != nil {
		return nil, err
	}
	return e, nil
}

// UnmarshalJSON decodes and validates an event; see TransportEvent. JSON
// null leaves e unchanged.
func (e *TransportEvent) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		return nil
	}
	return e.decode(data)
}

func (e *TransportEvent) decode(data []byte) error {
	d := &fields{}
	err := readFields(d, data, "event", eventKey)
	if err != nil {
		return err
	}
	var v TransportEvent
	for i := range v.shape {
		v.shape[i] = d.presence(i)
	}
	// The checks follow Vumi's TransportEvent.validate_fields.
	if v.MessageVersion, err = d.messageVersion(evMessageVersion); err != nil {
		return err
	}
	if v.MessageType, err = d.reqStr(evMessageType, "message_type"); err != nil {
		return err
	}
	if v.Timestamp, err = d.timestamp(evTimestamp); err != nil {
		return err
	}
	if v.HelperMetadata, err = d.object(evHelperMetadata, "helper_metadata"); err != nil {
		return err
	}
	backfill(&v.shape[evHelperMetadata])
	if v.RoutingMetadata, err = d.object(evRoutingMetadata, "routing_metadata"); err != nil {
		return err
	}
	if v.UserMessageID, err = d.reqStr(evUserMessageID, "user_message_id"); err != nil {
		return err
	}
	if v.EventID, err = d.reqStr(evEventID, "event_id"); err != nil {
		return err
	}
	var et string
	if et, err = d.reqStr(evEventType, "event_type"); err != nil {
		return err
	}
	v.EventType = EventType(et)
	if !v.EventType.Valid() {
		return invalid("event_type", et, `want "ack", "nack" or "delivery_report"`)
	}
	if v.SentMessageID, err = d.str(evSentMessageID, "sent_message_id"); err != nil {
		return err
	}
	if v.NackReason, err = d.str(evNackReason, "nack_reason"); err != nil {
		return err
	}
	var status string
	if status, err = d.str(evDeliveryStatus, "delivery_status"); err != nil {
		return err
	}
	v.DeliveryStatus = DeliveryStatus(status)
	if need := v.requiredKey(); v.shape[need] == absent {
		return &MissingFieldError{Field: eventKeys[need]}
	}
	if v.TransportName, err = d.str(evTransportName, "transport_name"); err != nil {
		return err
	}
	if v.TransportMetadata, err = d.object(evTransportMetadata, "transport_metadata"); err != nil {
		return err
	}
	if err := v.Validate(); err != nil {
		return err
	}
	v.Extra = d.extraMap()
	*e = v
	return nil
}

// requiredKey is the index of the key e's event type needs, or -1.
func (e *TransportEvent) requiredKey() int {
	switch e.EventType {
	case EventAck:
		return evSentMessageID
	case EventNack:
		return evNackReason
	case EventDeliveryReport:
		return evDeliveryStatus
	}
	return -1
}

// MarshalJSON encodes e in Vumi's JSON shape; see TransportEvent. It does
// not validate e.
func (e TransportEvent) MarshalJSON() ([]byte, error) {
	return e.appendJSON(make([]byte, 0, 512))
}

func (e *TransportEvent) appendJSON(b []byte) ([]byte, error) {
	s := &e.shape
	need := e.requiredKey()
	w := newWriter(b, e.Extra, isEventKey)
	// In sorted order.
	w.str("delivery_status", string(e.DeliveryStatus), s[evDeliveryStatus], need == evDeliveryStatus)
	w.putString("event_id", e.EventID)
	w.putString("event_type", string(e.EventType))
	w.object("helper_metadata", e.HelperMetadata, s[evHelperMetadata])
	w.putString("message_type", e.MessageType)
	w.putString("message_version", e.MessageVersion)
	w.str("nack_reason", e.NackReason, s[evNackReason], need == evNackReason)
	w.object("routing_metadata", e.RoutingMetadata, s[evRoutingMetadata])
	w.str("sent_message_id", e.SentMessageID, s[evSentMessageID], need == evSentMessageID)
	w.putTimestamp("timestamp", e.Timestamp)
	w.object("transport_metadata", e.TransportMetadata, s[evTransportMetadata])
	w.str("transport_name", e.TransportName, s[evTransportName], true)
	w.putString("user_message_id", e.UserMessageID)
	return w.finish()
}

// Validate checks what Vumi checks of an event (validate_fields) and that
// message_type is "event". The error is a *MissingFieldError or an
// *InvalidFieldError naming the field.
func (e *TransportEvent) Validate() error {
	if err := validateCommon(e.MessageVersion, e.MessageType, MessageTypeEvent, e.Timestamp); err != nil {
		return err
	}
	if e.UserMessageID == "" {
		return &MissingFieldError{Field: "user_message_id"}
	}
	if e.EventID == "" {
		return &MissingFieldError{Field: "event_id"}
	}
	switch e.EventType {
	case "":
		return &MissingFieldError{Field: "event_type"}
	case EventAck:
		if e.SentMessageID == "" && e.shape[evSentMessageID] != isEmpty {
			return invalid("sent_message_id", nil, "an ack needs one")
		}
	case EventNack:
		if e.NackReason == "" && e.shape[evNackReason] != isEmpty {
			return invalid("nack_reason", nil, "a nack needs one")
		}
	case EventDeliveryReport:
		if !e.DeliveryStatus.Valid() {
			return invalid("delivery_status", string(e.DeliveryStatus), `want "pending", "failed" or "delivered"`)
		}
	default:
		return invalid("event_type", string(e.EventType), `want "ack", "nack" or "delivery_report"`)
	}
	return nil
}

// RoutingEndpoint returns routing_metadata["endpoint_name"], or
// DefaultEndpointName if it is not set.
func (e *TransportEvent) RoutingEndpoint() string {
	return routingEndpoint(e.RoutingMetadata)
}

// SetRoutingEndpoint sets routing_metadata["endpoint_name"]; the empty
// string sets DefaultEndpointName.
func (e *TransportEvent) SetRoutingEndpoint(name string) {
	setRoutingEndpoint(&e.RoutingMetadata, name)
}

// Clone returns a deep copy of e.
func (e *TransportEvent) Clone() *TransportEvent {
	c := *e
	c.RoutingMetadata = cloneMap(e.RoutingMetadata)
	c.HelperMetadata = cloneMap(e.HelperMetadata)
	c.TransportMetadata = cloneMap(e.TransportMetadata)
	c.Extra = cloneRaw(e.Extra)
	return &c
}
