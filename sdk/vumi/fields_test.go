package vumi

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// The value fields: "" for null, Content a NullString, and the JSON a
// message was decoded from written back.
func TestValueFields(t *testing.T) {
	m, err := ParseUserMessage(mustRead(t, "testdata/user_message_irc_group.json"))
	if err != nil {
		t.Fatal(err)
	}
	// null is "", read without nil checks.
	if m.ToAddr != "" || m.InReplyTo != "" || m.Provider != "" || m.Group != "#vumi" || m.FromAddr != "alice" ||
		m.Content != String("anyone around?") {
		t.Errorf("decoded %+v", m)
	}

	// A decoded empty string is "" in Go and stays "" on the wire; null
	// stays null; content "" is a valid, empty NullString.
	data := mustRead(t, "testdata/user_message_empty_strings.json")
	e, err := ParseUserMessage(data)
	if err != nil {
		t.Fatal(err)
	}
	if !e.Content.Valid || e.Content.String != "" || e.Group != "" || e.InReplyTo != "" || e.ToAddrType != "" {
		t.Errorf("decoded %+v", e)
	}
	out, err := e.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	assertSameJSON(t, out, data)
	for _, want := range []string{`"content":""`, `"group":""`, `"in_reply_to":""`, `"provider":""`, `"from_addr_type":""`, `"to_addr_type":null`} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("%s not in %s", want, out)
		}
	}
	// A field set to a value is written; set back to "", it is written as
	// the decoded JSON had it: "" where it was "", null where it held a
	// string.
	e.Group, e.ToAddr = "#go", ""
	out, _ = e.MarshalJSON()
	if !bytes.Contains(out, []byte(`"group":"#go"`)) || !bytes.Contains(out, []byte(`"to_addr":null`)) {
		t.Errorf("encoded %s", out)
	}
	e.Group = ""
	if out, _ = e.MarshalJSON(); !bytes.Contains(out, []byte(`"group":""`)) {
		t.Errorf("encoded %s", out)
	}
	// Content: null and "" differ.
	e.Content = NullString{}
	if out, _ = e.MarshalJSON(); !bytes.Contains(out, []byte(`"content":null`)) {
		t.Errorf("encoded %s", out)
	}

	// Replying to it: the reply's content "" is "", and the empty strings
	// it copies (group, provider) stay "", as Vumi's reply would have them.
	r := e.Reply("", true)
	out, _ = r.MarshalJSON()
	for _, want := range []string{`"content":""`, `"group":""`, `"provider":""`, `"in_reply_to":"` + e.MessageID + `"`, `"to_addr":"127.0.0.1:5555"`, `"from_addr":null`} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("%s not in the reply %s", want, out)
		}
	}
	// A group reply to a message with an (empty) group goes to the group.
	if g, _ := e.ReplyGroup("x", true).MarshalJSON(); !bytes.Contains(g, []byte(`"to_addr":null`)) {
		t.Errorf("group reply %s", g)
	}

	// Built in Go, "" is null: the zero message's strings are nulls.
	b := NewOutbound("+27831234567", "hi")
	out, _ = b.MarshalJSON()
	for _, k := range []string{"from_addr", "transport_name", "transport_type", "group", "provider", "in_reply_to", "session_event", "to_addr_type"} {
		if !bytes.Contains(out, []byte(`"`+k+`":null`)) {
			t.Errorf("%s is not null in %s", k, out)
		}
	}
}

// A nack with an empty reason has one (""), as in Vumi; an event's string
// fields are values too.
func TestEventValueFields(t *testing.T) {
	msg := NewInbound("t", TransportTypeSMS, "a", "b", "c")
	n := Nack(msg, "")
	if err := n.Validate(); err != nil {
		t.Fatal(err)
	}
	out, _ := n.MarshalJSON()
	if !bytes.Contains(out, []byte(`"nack_reason":""`)) || bytes.Contains(out, []byte("sent_message_id")) {
		t.Errorf("nack %s", out)
	}
	back, err := ParseEvent(out)
	if err != nil || back.NackReason != "" || back.TransportName != "t" {
		t.Errorf("decoded %+v, %v", back, err)
	}
	a := Ack(msg)
	if a.SentMessageID != msg.MessageID {
		t.Errorf("ack %+v", a)
	}
	a.SentMessageID = ""
	if err := a.Validate(); err == nil || !strings.Contains(err.Error(), "sent_message_id") {
		t.Errorf("an ack with no sent_message_id: %v", err)
	}
}

// The encoding is fixed to the byte: keys sorted, no space, strings as
// encoding/json writes them without HTML escaping.
func TestEncodingBytes(t *testing.T) {
	m, err := ParseUserMessage(mustRead(t, "testdata/user_message_extra_fields.json"))
	if err != nil {
		t.Fatal(err)
	}
	m.Content = String("h\u00e9llo \u2713 <b>&amp;</b> \"q\"\n\x01\u2028\xff")
	out, err := m.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"__cache__":{"seen":1},"content":"h` + "\u00e9llo \u2713" + ` <b>&amp;</b> \"q\"\n\u0001\u2028\ufffd",` +
		`"custom":[1,2.5,"three",null,{"four":[4]}],"from_addr":"+27831234567","from_addr_type":"msisdn","group":null,` +
		`"helper_metadata":{"optout":{"optout":false},"tag":{"tag":["pool","12345"]}},"in_reply_to":null,` +
		`"message_id":"c0ffee00c0ffee00c0ffee00c0ffee00","message_store_batch_id":"batch-42","message_type":"user_message",` +
		`"message_version":"20110921","nullish":null,"provider":null,` +
		`"routing_metadata":{"endpoint_name":"default","go_hops":[[["CONVERSATION","c-1"],"default"]]},` +
		`"session_event":null,"timestamp":"2026-11-27 01:02:03.000000","to_addr":"12345","to_addr_type":"msisdn",` +
		`"transport_metadata":{"big":12345678901234567890,"exp":1e3,"list":[null,true,{"a":"b"}],"ratio":2.50},` +
		`"transport_name":"smpp_transport","transport_type":"sms"}`
	if string(out) != want {
		t.Errorf("encoded\n%s\nwant\n%s", out, want)
	}
	if !json.Valid(out) {
		t.Error("not valid JSON")
	}
	// Bad values in what a worker put in the message are errors naming
	// the key.
	m.TransportMetadata["n"] = json.Number("1x")
	if _, err := m.MarshalJSON(); err == nil || !strings.Contains(err.Error(), "transport_metadata") {
		t.Errorf("invalid number: %v", err)
	}
	delete(m.TransportMetadata, "n")
	m.Extra["custom"] = json.RawMessage(`[1,`)
	if _, err := m.MarshalJSON(); err == nil || !strings.Contains(err.Error(), "custom") {
		t.Errorf("invalid raw extra: %v", err)
	}
	m.Extra["custom"] = nil
	if out, err := m.MarshalJSON(); err != nil || !bytes.Contains(out, []byte(`"custom":null`)) {
		t.Errorf("nil raw extra: %s, %v", out, err)
	}
}
