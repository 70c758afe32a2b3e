package vumiref

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

var eventKeys = []string{
	"message_version", "message_type", "timestamp",
	"routing_metadata", "helper_metadata",
	"event_id", "event_type", "user_message_id",
	"sent_message_id", "nack_reason", "delivery_status",
	"transport_name", "transport_metadata",
}

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
// writes all three type-specific keys, null where unused).
type TransportEvent struct {
	MessageVersion string    // message_version: always MessageVersion
	MessageType    string    // message_type: always MessageTypeEvent
	EventID        string    // event_id: 32 lowercase hex digits (NewID)
	Timestamp      Timestamp // timestamp

	RoutingMetadata map[string]any // routing_metadata
	HelperMetadata  map[string]any // helper_metadata

	EventType     EventType // event_type
	UserMessageID string    // user_message_id: message_id of the user message

	SentMessageID  *string        // sent_message_id: the transport's id for the message; ack
	NackReason     *string        // nack_reason; nack
	DeliveryStatus DeliveryStatus // delivery_status; delivery_report

	TransportName     *string        // transport_name
	TransportMetadata map[string]any // transport_metadata

	// Extra holds the keys this type does not know, as raw JSON, and
	// MarshalJSON writes them back. Entries whose key is one of the keys
	// above are ignored.
	Extra map[string]json.RawMessage

	shape shape
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
		TransportName:     clonePtr(msg.TransportName),
		TransportMetadata: map[string]any{},
	}
}

// Ack returns an ack of msg: the transport accepted it. sent_message_id is
// msg's message_id, as in Vumi's test helpers; set SentMessageID to the id
// the transport's upstream gave the message when there is one.
func Ack(msg *TransportUserMessage) *TransportEvent {
	e := newEvent(msg, EventAck)
	e.SentMessageID = clonePtr(&msg.MessageID)
	return e
}

// Nack returns a nack of msg: the transport could not send it, for reason.
func Nack(msg *TransportUserMessage, reason string) *TransportEvent {
	e := newEvent(msg, EventNack)
	e.NackReason = &reason
	return e
}

// DeliveryReport returns a delivery report on msg with status.
func DeliveryReport(msg *TransportUserMessage, status DeliveryStatus) *TransportEvent {
	e := newEvent(msg, EventDeliveryReport)
	e.DeliveryStatus = status
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
	d, err := newDecoder(data, "event")
	if err != nil {
		return err
	}
	var v TransportEvent
	// The checks follow Vumi's TransportEvent.validate_fields.
	if v.MessageVersion, err = d.messageVersion(); err != nil {
		return err
	}
	if v.MessageType, err = d.reqStr("message_type"); err != nil {
		return err
	}
	if v.Timestamp, err = d.timestamp(); err != nil {
		return err
	}
	if v.HelperMetadata, err = d.object("helper_metadata"); err != nil {
		return err
	}
	d.backfill("helper_metadata")
	if v.RoutingMetadata, err = d.object("routing_metadata"); err != nil {
		return err
	}
	if v.UserMessageID, err = d.reqStr("user_message_id"); err != nil {
		return err
	}
	if v.EventID, err = d.reqStr("event_id"); err != nil {
		return err
	}
	var et string
	if et, err = d.reqStr("event_type"); err != nil {
		return err
	}
	v.EventType = EventType(et)
	if !v.EventType.Valid() {
		return invalid("event_type", et, `want "ack", "nack" or "delivery_report"`)
	}
	if v.SentMessageID, err = d.str("sent_message_id"); err != nil {
		return err
	}
	if v.NackReason, err = d.str("nack_reason"); err != nil {
		return err
	}
	var status *string
	if status, err = d.str("delivery_status"); err != nil {
		return err
	}
	if status != nil {
		v.DeliveryStatus = DeliveryStatus(*status)
	}
	if need := v.requiredKey(); d.shape[need] == absent {
		return &MissingFieldError{Field: need}
	}
	if v.TransportName, err = d.str("transport_name"); err != nil {
		return err
	}
	if v.TransportMetadata, err = d.object("transport_metadata"); err != nil {
		return err
	}
	if err := v.Validate(); err != nil {
		return err
	}
	v.Extra = d.extra()
	v.shape = d.shape
	*e = v
	return nil
}

// requiredKey is the key e's event type needs.
func (e *TransportEvent) requiredKey() string {
	switch e.EventType {
	case EventAck:
		return "sent_message_id"
	case EventNack:
		return "nack_reason"
	case EventDeliveryReport:
		return "delivery_status"
	}
	return ""
}

// MarshalJSON encodes e in Vumi's JSON shape; see TransportEvent. It does
// not validate e.
func (e TransportEvent) MarshalJSON() ([]byte, error) {
	enc := newEncoder(e.shape, e.Extra, eventKeys)
	enc.put("message_version", e.MessageVersion)
	enc.put("message_type", e.MessageType)
	enc.put("timestamp", e.Timestamp)
	enc.object("routing_metadata", e.RoutingMetadata)
	enc.object("helper_metadata", e.HelperMetadata)
	enc.put("event_id", e.EventID)
	enc.put("event_type", string(e.EventType))
	enc.put("user_message_id", e.UserMessageID)
	need := e.requiredKey()
	enc.str("sent_message_id", e.SentMessageID, need == "sent_message_id")
	enc.str("nack_reason", e.NackReason, need == "nack_reason")
	var status *string
	if e.DeliveryStatus != "" {
		s := string(e.DeliveryStatus)
		status = &s
	}
	enc.str("delivery_status", status, need == "delivery_status")
	enc.str("transport_name", e.TransportName, true)
	enc.object("transport_metadata", e.TransportMetadata)
	return enc.bytes()
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
		if e.SentMessageID == nil {
			return invalid("sent_message_id", nil, "an ack needs one")
		}
	case EventNack:
		if e.NackReason == nil {
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
	c.SentMessageID = clonePtr(e.SentMessageID)
	c.NackReason = clonePtr(e.NackReason)
	c.TransportName = clonePtr(e.TransportName)
	c.Extra = cloneRaw(e.Extra)
	return &c
}
