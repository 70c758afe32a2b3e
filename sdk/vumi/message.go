package vumi

import "encoding/json"

// MessageVersion is the message_version of every Vumi transport message
// (TransportMessage.MESSAGE_VERSION).
const MessageVersion = "20110921"

// Message types (TransportMessage.MESSAGE_TYPE of the subclasses).
const (
	MessageTypeUserMessage = "user_message"
	MessageTypeEvent       = "event"
)

// SessionEvent is the session_event of a user message. SessionNone, the
// empty string, is encoded as JSON null.
//
// A transport may send any of them to a worker; a worker sends SessionNone
// (continue the session, if any) or SessionClose (end it after this
// message) to a transport.
type SessionEvent string

// Session events (TransportUserMessage.SESSION_*).
const (
	SessionNone   SessionEvent = ""
	SessionNew    SessionEvent = "new"
	SessionResume SessionEvent = "resume"
	SessionClose  SessionEvent = "close"
)

// Valid reports whether e is one of the four session events.
func (e SessionEvent) Valid() bool {
	switch e {
	case SessionNone, SessionNew, SessionResume, SessionClose:
		return true
	}
	return false
}

// Canonical transport_type values (TransportUserMessage.TT_*). Vumi does not
// restrict transport_type to these.
const (
	TransportTypeHTTPAPI = "http_api"
	TransportTypeIRC     = "irc"
	TransportTypeTelnet  = "telnet"
	TransportTypeTwitter = "twitter"
	TransportTypeSMS     = "sms"
	TransportTypeUSSD    = "ussd"
	TransportTypeXMPP    = "xmpp"
	TransportTypeMXit    = "mxit"
	TransportTypeWeChat  = "wechat"
)

// Address types for to_addr_type and from_addr_type
// (TransportUserMessage.AT_*). Vumi does not restrict the fields to these.
const (
	AddrTypeIRCNickname   = "irc_nickname"
	AddrTypeTwitterHandle = "twitter_handle"
	AddrTypeMSISDN        = "msisdn"
	AddrTypeGTalkID       = "gtalk_id"
	AddrTypeJabberID      = "jabber_id"
	AddrTypeMXitID        = "mxit_id"
	AddrTypeWeChatID      = "wechat_id"
)

// NullString is a JSON string that may be null. TransportUserMessage's
// Content is one because Vumi tells no content (null: a USSD session
// starting, a telnet client connecting) from an empty text ("": an empty
// line). The zero value is null; String(s) is the string s.
type NullString struct {
	String string // the string; "" when null
	Valid  bool   // false for JSON null
}

// String returns s as a NullString that is not null.
func String(s string) NullString { return NullString{String: s, Valid: true} }

// The keys of a user message, in sorted order (the order MarshalJSON
// writes them in).
const (
	umContent = iota
	umFromAddr
	umFromAddrType
	umGroup
	umHelperMetadata
	umInReplyTo
	umMessageID
	umMessageType
	umMessageVersion
	umProvider
	umRoutingMetadata
	umSessionEvent
	umTimestamp
	umToAddr
	umToAddrType
	umTransportMetadata
	umTransportName
	umTransportType
	umKeys
)

// userMessageKeys are the keys TransportUserMessage represents as fields,
// by index.
var userMessageKeys = []string{
	umContent:           "content",
	umFromAddr:          "from_addr",
	umFromAddrType:      "from_addr_type",
	umGroup:             "group",
	umHelperMetadata:    "helper_metadata",
	umInReplyTo:         "in_reply_to",
	umMessageID:         "message_id",
	umMessageType:       "message_type",
	umMessageVersion:    "message_version",
	umProvider:          "provider",
	umRoutingMetadata:   "routing_metadata",
	umSessionEvent:      "session_event",
	umTimestamp:         "timestamp",
	umToAddr:            "to_addr",
	umToAddrType:        "to_addr_type",
	umTransportMetadata: "transport_metadata",
	umTransportName:     "transport_name",
	umTransportType:     "transport_type",
}

func userMessageKey(key []byte) int {
	switch string(key) {
	case "content":
		return umContent
	case "from_addr":
		return umFromAddr
	case "from_addr_type":
		return umFromAddrType
	case "group":
		return umGroup
	case "helper_metadata":
		return umHelperMetadata
	case "in_reply_to":
		return umInReplyTo
	case "message_id":
		return umMessageID
	case "message_type":
		return umMessageType
	case "message_version":
		return umMessageVersion
	case "provider":
		return umProvider
	case "routing_metadata":
		return umRoutingMetadata
	case "session_event":
		return umSessionEvent
	case "timestamp":
		return umTimestamp
	case "to_addr":
		return umToAddr
	case "to_addr_type":
		return umToAddrType
	case "transport_metadata":
		return umTransportMetadata
	case "transport_name":
		return umTransportName
	case "transport_type":
		return umTransportType
	}
	return -1
}

func isUserMessageKey(k string) bool { return userMessageKey([]byte(k)) >= 0 }

// TransportUserMessage is a message to or from a user: Vumi's
// vumi.message.TransportUserMessage, message_type "user_message". Each
// field's comment gives its JSON key.
//
// The string fields hold "" for JSON null (Vumi's None), and "" is written
// as null, except where the message was decoded with "" in that key (it is
// written back as ""). Content, where an empty text and no content are
// different things, is a NullString. A nil map is {}.
//
// Decoding (UnmarshalJSON, ParseUserMessage) does what Vumi's from_json and
// validate_fields do: it fails with a *MissingFieldError or
// *InvalidFieldError naming the field, fills in helper_metadata, group and
// provider when they are missing (older messages lack them), and keeps every
// key it does not know in Extra. Encoding writes back the decoded message
// as Vumi's to_json would: the same keys, with to_addr_type, from_addr_type
// and routing_metadata left out if they were missing (messages from Vumi
// older than address types, added in 2015, lack them), and explicit nulls
// kept.
// A message built in Go is encoded with every key, as Vumi's process_fields
// fills them.
type TransportUserMessage struct {
	MessageVersion string    // message_version: always MessageVersion
	MessageType    string    // message_type: always MessageTypeUserMessage
	MessageID      string    // message_id: 32 lowercase hex digits (NewID)
	Timestamp      Timestamp // timestamp

	RoutingMetadata map[string]any // routing_metadata, e.g. {"endpoint_name": "default"}
	HelperMetadata  map[string]any // helper_metadata

	InReplyTo string // in_reply_to: message_id of the message replied to

	TransportName     string         // transport_name
	TransportType     string         // transport_type, e.g. TransportTypeSMS
	TransportMetadata map[string]any // transport_metadata: opaque, for the transport

	ToAddr       string       // to_addr: "" (null) for a message to a group as a whole
	FromAddr     string       // from_addr
	ToAddrType   string       // to_addr_type, e.g. AddrTypeMSISDN
	FromAddrType string       // from_addr_type
	Group        string       // group, e.g. an IRC channel
	Provider     string       // provider, e.g. a mobile network
	SessionEvent SessionEvent // session_event: SessionNone is null
	Content      NullString   // content: null (the zero NullString) for no content

	// Extra holds the keys this type does not know, as raw JSON, and
	// MarshalJSON writes them back. Entries whose key is one of the keys
	// above are ignored.
	Extra map[string]json.RawMessage

	shape [umKeys]presence
}

// NewUserMessage returns a user message with Vumi's defaults: version and
// type, a new message_id, the current timestamp, empty metadata maps and
// null elsewhere.
func NewUserMessage() *TransportUserMessage {
	return &TransportUserMessage{
		MessageVersion:    MessageVersion,
		MessageType:       MessageTypeUserMessage,
		MessageID:         NewID(),
		Timestamp:         Now(),
		RoutingMetadata:   map[string]any{},
		HelperMetadata:    map[string]any{},
		TransportMetadata: map[string]any{},
	}
}

// NewInbound returns a message from a user as a transport publishes it on
// InboundKey(transportName) (Transport.publish_message): from fromAddr to
// toAddr, with the given content and empty transport_metadata. Set
// SessionEvent, the address types and the rest on the result as needed.
func NewInbound(transportName, transportType, fromAddr, toAddr, content string) *TransportUserMessage {
	m := NewUserMessage()
	m.TransportName = transportName
	m.TransportType = transportType
	m.FromAddr = fromAddr
	m.ToAddr = toAddr
	m.Content = String(content)
	return m
}

// NewOutbound returns a message to toAddr that is not a reply, as Vumi's
// TransportUserMessage.send builds it: from_addr, transport_name and
// transport_type are null, for a dispatcher or the sender to fill in.
func NewOutbound(toAddr, content string) *TransportUserMessage {
	m := NewUserMessage()
	m.ToAddr = toAddr
	m.Content = String(content)
	return m
}

// ParseUserMessage decodes and validates a user message; see
// TransportUserMessage.
func ParseUserMessage(data []byte) (*TransportUserMessage, error) {
	m := new(TransportUserMessage)
	if err := m.decode(data); err != nil {
		return nil, err
	}
	return m, nil
}

// UnmarshalJSON decodes and validates a user message; see
// TransportUserMessage. JSON null leaves m unchanged.
func (m *TransportUserMessage) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		return nil
	}
	return m.decode(data)
}

func (m *TransportUserMessage) decode(data []byte) error {
	d := &fields{}
	err := readFields(d, data, "user message", userMessageKey)
	if err != nil {
		return err
	}
	var v TransportUserMessage
	for i := range v.shape {
		v.shape[i] = d.presence(i)
	}
	// The checks follow Vumi's validate_fields: message_version first, then
	// the keys TransportMessage requires, then those TransportUserMessage
	// requires. helper_metadata, group and provider get defaults when
	// missing; routing_metadata and the address types may be missing.
	if v.MessageVersion, err = d.messageVersion(umMessageVersion); err != nil {
		return err
	}
	if v.MessageType, err = d.reqStr(umMessageType, "message_type"); err != nil {
		return err
	}
	if v.Timestamp, err = d.timestamp(umTimestamp); err != nil {
		return err
	}
	if v.HelperMetadata, err = d.object(umHelperMetadata, "helper_metadata"); err != nil {
		return err
	}
	backfill(&v.shape[umHelperMetadata])
	if v.RoutingMetadata, err = d.object(umRoutingMetadata, "routing_metadata"); err != nil {
		return err
	}
	if v.MessageID, err = d.reqStr(umMessageID, "message_id"); err != nil {
		return err
	}
	if v.ToAddr, err = d.reqNullStr(umToAddr, "to_addr"); err != nil {
		return err
	}
	if v.FromAddr, err = d.reqNullStr(umFromAddr, "from_addr"); err != nil {
		return err
	}
	if v.InReplyTo, err = d.reqNullStr(umInReplyTo, "in_reply_to"); err != nil {
		return err
	}
	switch v.shape[umSessionEvent] {
	case absent:
		return &MissingFieldError{Field: "session_event"}
	case isNull:
	default:
		raw := d.raw(d.known[umSessionEvent])
		s, _ := d.str(umSessionEvent, "session_event")
		if raw[0] != '"' || s == "" || !SessionEvent(s).Valid() {
			return invalid("session_event", raw, `want null, "new", "resume" or "close"`)
		}
		v.SessionEvent = SessionEvent(s)
	}
	if v.Content.String, err = d.reqNullStr(umContent, "content"); err != nil {
		return err
	}
	v.Content.Valid = v.shape[umContent] != isNull
	if v.TransportName, err = d.reqNullStr(umTransportName, "transport_name"); err != nil {
		return err
	}
	if v.TransportType, err = d.reqNullStr(umTransportType, "transport_type"); err != nil {
		return err
	}
	if v.TransportMetadata, err = d.object(umTransportMetadata, "transport_metadata"); err != nil {
		return err
	}
	if v.shape[umTransportMetadata] == absent {
		return &MissingFieldError{Field: "transport_metadata"}
	}
	if v.Group, err = d.str(umGroup, "group"); err != nil {
		return err
	}
	backfill(&v.shape[umGroup])
	if v.Provider, err = d.str(umProvider, "provider"); err != nil {
		return err
	}
	backfill(&v.shape[umProvider])
	if v.ToAddrType, err = d.str(umToAddrType, "to_addr_type"); err != nil {
		return err
	}
	if v.FromAddrType, err = d.str(umFromAddrType, "from_addr_type"); err != nil {
		return err
	}
	if err := v.Validate(); err != nil {
		return err
	}
	v.Extra = d.extraMap()
	*m = v
	return nil
}

// backfill marks a key as Vumi's validate_fields treats it when it is
// missing: it sets a default, so the key is written back on encode.
func backfill(p *presence) {
	if *p == absent {
		*p = unknown
	}
}

// MarshalJSON encodes m in Vumi's JSON shape; see TransportUserMessage. It
// does not validate m.
func (m TransportUserMessage) MarshalJSON() ([]byte, error) {
	return m.appendJSON(make([]byte, 0, m.sizeHint()))
}

// sizeHint is about the size of m's encoding, for its buffer.
func (m *TransportUserMessage) sizeHint() int {
	n := 512 + len(m.Content.String) + len(m.ToAddr) + len(m.FromAddr) + len(m.TransportName) + len(m.Group) + len(m.Provider)
	for _, v := range m.Extra {
		n += len(v) + 16
	}
	return n
}

func (m *TransportUserMessage) appendJSON(b []byte) ([]byte, error) {
	s := &m.shape
	w := newWriter(b, m.Extra, isUserMessageKey)
	// In sorted order.
	switch {
	case m.Content.Valid:
		w.putString("content", m.Content.String)
	case s[umContent] == absent:
	default:
		w.putNull("content")
	}
	w.str("from_addr", m.FromAddr, s[umFromAddr], true)
	w.str("from_addr_type", m.FromAddrType, s[umFromAddrType], true)
	w.str("group", m.Group, s[umGroup], true)
	w.object("helper_metadata", m.HelperMetadata, s[umHelperMetadata])
	w.str("in_reply_to", m.InReplyTo, s[umInReplyTo], true)
	w.putString("message_id", m.MessageID)
	w.putString("message_type", m.MessageType)
	w.putString("message_version", m.MessageVersion)
	w.str("provider", m.Provider, s[umProvider], true)
	w.object("routing_metadata", m.RoutingMetadata, s[umRoutingMetadata])
	if m.SessionEvent == SessionNone {
		w.putNull("session_event")
	} else {
		w.putString("session_event", string(m.SessionEvent))
	}
	w.putTimestamp("timestamp", m.Timestamp)
	w.str("to_addr", m.ToAddr, s[umToAddr], true)
	w.str("to_addr_type", m.ToAddrType, s[umToAddrType], true)
	w.object("transport_metadata", m.TransportMetadata, s[umTransportMetadata])
	w.str("transport_name", m.TransportName, s[umTransportName], true)
	w.str("transport_type", m.TransportType, s[umTransportType], true)
	return w.finish()
}

// Validate checks what Vumi checks of a user message (validate_fields) and
// that message_type is "user_message". The error is a *MissingFieldError
// or an *InvalidFieldError naming the field.
func (m *TransportUserMessage) Validate() error {
	if err := validateCommon(m.MessageVersion, m.MessageType, MessageTypeUserMessage, m.Timestamp); err != nil {
		return err
	}
	if m.MessageID == "" {
		return &MissingFieldError{Field: "message_id"}
	}
	if !m.SessionEvent.Valid() {
		return invalid("session_event", string(m.SessionEvent), `want null, "new", "resume" or "close"`)
	}
	return nil
}

func validateCommon(version, mtype, wantType string, ts Timestamp) error {
	switch version {
	case "":
		return &MissingFieldError{Field: "message_version"}
	case MessageVersion:
	default:
		return invalid("message_version", version, `want "`+MessageVersion+`"`)
	}
	switch mtype {
	case "":
		return &MissingFieldError{Field: "message_type"}
	case wantType:
	default:
		return invalid("message_type", mtype, `want "`+wantType+`"`)
	}
	if ts.IsZero() {
		return &MissingFieldError{Field: "timestamp"}
	}
	return nil
}

// Reply returns a reply to m, as Vumi's TransportUserMessage.reply builds
// it: to_addr is m's from_addr and from_addr is m's to_addr; group,
// provider, transport_name, transport_type and transport_metadata are m's;
// in_reply_to is m's message_id; helper_metadata is copied too (Vumi keeps
// it for legacy code); the routing endpoint is m's. The reply has a new
// message_id and timestamp, and null address types.
//
// session_event is SessionNone (null) when continueSession is true, which
// tells a transport to carry on with any session, and SessionClose
// otherwise, as in Vumi. Set the reply's SessionEvent to override it (Vumi's
// session_event keyword).
//
// The maps are deep copies: changing the reply does not change m.
func (m *TransportUserMessage) Reply(content string, continueSession bool) *TransportUserMessage {
	endpoint := m.RoutingEndpoint()
	if endpoint == "" {
		endpoint = DefaultEndpointName
	}
	r := &TransportUserMessage{
		MessageVersion:    MessageVersion,
		MessageType:       MessageTypeUserMessage,
		MessageID:         NewID(),
		Timestamp:         Now(),
		RoutingMetadata:   map[string]any{"endpoint_name": endpoint},
		HelperMetadata:    cloneMap(m.HelperMetadata),
		InReplyTo:         m.MessageID,
		TransportName:     m.TransportName,
		TransportType:     m.TransportType,
		TransportMetadata: cloneMap(m.TransportMetadata),
		ToAddr:            m.FromAddr,
		FromAddr:          m.ToAddr,
		Group:             m.Group,
		Provider:          m.Provider,
		Content:           String(content),
	}
	if !continueSession {
		r.SessionEvent = SessionClose
	}
	if r.TransportMetadata == nil {
		r.TransportMetadata = map[string]any{}
	}
	if r.HelperMetadata == nil {
		r.HelperMetadata = map[string]any{}
	}
	// An empty string copied from m is written as one, as Vumi would.
	r.shape[umToAddr] = emptyOnly(m.shape[umFromAddr])
	r.shape[umFromAddr] = emptyOnly(m.shape[umToAddr])
	for _, k := range []int{umGroup, umProvider, umTransportName, umTransportType} {
		r.shape[k] = emptyOnly(m.shape[k])
	}
	return r
}

// ReplyGroup is Reply, but when m has a group the reply goes to the group
// as a whole: its to_addr is null (Vumi's reply_group).
func (m *TransportUserMessage) ReplyGroup(content string, continueSession bool) *TransportUserMessage {
	r := m.Reply(content, continueSession)
	if m.Group != "" || m.shape[umGroup] == isEmpty {
		r.ToAddr = ""
		r.shape[umToAddr] = unknown
	}
	return r
}

// RoutingEndpoint returns routing_metadata["endpoint_name"], or
// DefaultEndpointName if it is not set.
func (m *TransportUserMessage) RoutingEndpoint() string {
	return routingEndpoint(m.RoutingMetadata)
}

// SetRoutingEndpoint sets routing_metadata["endpoint_name"]; the empty
// string sets DefaultEndpointName.
func (m *TransportUserMessage) SetRoutingEndpoint(name string) {
	setRoutingEndpoint(&m.RoutingMetadata, name)
}

// Clone returns a deep copy of m.
func (m *TransportUserMessage) Clone() *TransportUserMessage {
	c := *m
	c.RoutingMetadata = cloneMap(m.RoutingMetadata)
	c.HelperMetadata = cloneMap(m.HelperMetadata)
	c.TransportMetadata = cloneMap(m.TransportMetadata)
	c.Extra = cloneRaw(m.Extra)
	return &c
}
