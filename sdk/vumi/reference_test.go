package vumi

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/dynworkers/dynworkers/sdk/vumi/internal/vumiref"
)

// The hand-written codec is checked against the encoding/json one it
// replaced (internal/vumiref): for any body, both accept it or both
// refuse it (with the same error when a field is at fault), and what they
// accept they decode to the same values and encode to the same bytes; so
// do replies, acks, nacks and delivery reports built from it.

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// sameError checks that a refusal is the same: a field error with the
// same text, or a JSON syntax error on both sides.
func sameError(t *testing.T, body []byte, got, want error) {
	t.Helper()
	var wm *vumiref.MissingFieldError
	var wi *vumiref.InvalidFieldError
	var gm *MissingFieldError
	var gi *InvalidFieldError
	wantField := errors.As(want, &wm) || errors.As(want, &wi)
	gotField := errors.As(got, &gm) || errors.As(got, &gi)
	if wantField != gotField || wantField && got.Error() != want.Error() {
		t.Fatalf("%q: error %v, the reference says %v", body, got, want)
	}
}

func checkUserMessage(t *testing.T, body []byte) {
	t.Helper()
	ref, rerr := vumiref.ParseUserMessage(body)
	m, err := ParseUserMessage(body)
	if (err == nil) != (rerr == nil) {
		t.Fatalf("%q: error %v, the reference says %v", body, err, rerr)
	}
	if err != nil {
		sameError(t, body, err, rerr)
		return
	}
	if m.ToAddr != deref(ref.ToAddr) || m.FromAddr != deref(ref.FromAddr) || m.InReplyTo != deref(ref.InReplyTo) ||
		m.TransportName != deref(ref.TransportName) || m.TransportType != deref(ref.TransportType) ||
		m.ToAddrType != deref(ref.ToAddrType) || m.FromAddrType != deref(ref.FromAddrType) ||
		m.Group != deref(ref.Group) || m.Provider != deref(ref.Provider) ||
		m.Content.Valid != (ref.Content != nil) || m.Content.String != deref(ref.Content) ||
		string(m.SessionEvent) != string(ref.SessionEvent) || m.MessageID != ref.MessageID ||
		!m.Timestamp.Equal(ref.Timestamp.Time) || len(m.Extra) != len(ref.Extra) {
		t.Fatalf("%q decoded as %+v, the reference as %+v", body, m, ref)
	}
	same := func(what string, got, want []byte, gerr, werr error) {
		t.Helper()
		if (gerr == nil) != (werr == nil) || !bytes.Equal(got, want) {
			t.Fatalf("%q: %s encodes as\n%s (%v), the reference as\n%s (%v)", body, what, got, gerr, want, werr)
		}
	}
	got, gerr := m.MarshalJSON()
	want, werr := ref.MarshalJSON()
	same("the message", got, want, gerr, werr)

	for _, close := range []bool{false, true} {
		rr, r := ref.Reply("re: <&>", close), m.Reply("re: <&>", close)
		r.MessageID, r.Timestamp = rr.MessageID, Timestamp{rr.Timestamp.Time}
		got, gerr = r.MarshalJSON()
		want, werr = rr.MarshalJSON()
		same("a reply", got, want, gerr, werr)
		rr, r = ref.ReplyGroup("", close), m.ReplyGroup("", close)
		r.MessageID, r.Timestamp = rr.MessageID, Timestamp{rr.Timestamp.Time}
		got, gerr = r.MarshalJSON()
		want, werr = rr.MarshalJSON()
		same("a group reply", got, want, gerr, werr)
	}
	for _, ev := range []struct {
		e *TransportEvent
		r *vumiref.TransportEvent
	}{
		{Ack(m), vumiref.Ack(ref)},
		{Nack(m, "no"), vumiref.Nack(ref, "no")},
		{Nack(m, ""), vumiref.Nack(ref, "")},
		{DeliveryReport(m, DeliveryFailed), vumiref.DeliveryReport(ref, vumiref.DeliveryFailed)},
	} {
		ev.e.EventID, ev.e.Timestamp = ev.r.EventID, Timestamp{ev.r.Timestamp.Time}
		got, gerr = ev.e.MarshalJSON()
		want, werr = ev.r.MarshalJSON()
		same("an event", got, want, gerr, werr)
		if verr, rverr := ev.e.Validate(), ev.r.Validate(); (verr == nil) != (rverr == nil) {
			t.Fatalf("%q: %s event: Validate %v, the reference's %v", body, ev.e.EventType, verr, rverr)
		}
	}
}

func checkEvent(t *testing.T, body []byte) {
	t.Helper()
	ref, rerr := vumiref.ParseEvent(body)
	e, err := ParseEvent(body)
	if (err == nil) != (rerr == nil) {
		t.Fatalf("%q: error %v, the reference says %v", body, err, rerr)
	}
	if err != nil {
		sameError(t, body, err, rerr)
		return
	}
	if e.SentMessageID != deref(ref.SentMessageID) || e.NackReason != deref(ref.NackReason) ||
		e.TransportName != deref(ref.TransportName) || string(e.DeliveryStatus) != string(ref.DeliveryStatus) ||
		string(e.EventType) != string(ref.EventType) || e.EventID != ref.EventID || e.UserMessageID != ref.UserMessageID ||
		len(e.Extra) != len(ref.Extra) {
		t.Fatalf("%q decoded as %+v, the reference as %+v", body, e, ref)
	}
	got, gerr := e.MarshalJSON()
	want, werr := ref.MarshalJSON()
	if e.shape[evDeliveryStatus] == isEmpty {
		// The reference wrote a decoded "delivery_status": "" back as
		// null; this codec keeps it "", as every other string key.
		want = bytes.Replace(want, []byte(`"delivery_status":null`), []byte(`"delivery_status":""`), 1)
	}
	if (gerr == nil) != (werr == nil) || !bytes.Equal(got, want) {
		t.Fatalf("%q encodes as\n%s (%v), the reference as\n%s (%v)", body, got, gerr, want, werr)
	}
}

var referenceSeeds = [][]byte{
	[]byte(`{"message_version": "20110921", "message_type": "user_message", "timestamp": "2026-11-27 01:02:03.5", "message_id": "x", "to_addr": "", "from_addr": null, "in_reply_to": "", "session_event": "new", "content": "<&>\u2028\ud800\u00e9\t\u0001", "transport_name": "", "transport_type": null, "group": "", "provider": "", "transport_metadata": {"n": 1.50, "a": [true, false, null, -0.5e+3, {}], "s": "\ud83d\ude00"}, "helper_metadata": null, "x": [1e400], "X": "\ud800", "\u0063ontent": "dup", "z" : { "a" : [ 1 , 2 ] } }`),
	[]byte(`{"message_version": "20110921", "message_type": "event", "timestamp": "2026-11-27 01:02:03", "event_id": "e", "user_message_id": "u", "event_type": "ack", "sent_message_id": "", "nack_reason": null, "delivery_status": "", "transport_name": "", "extra": "\u00e9"}`),
	[]byte(`{"message_version": "20110921", "message_type": "event", "timestamp": "2026-11-27 01:02:03", "event_id": "e", "user_message_id": "u", "event_type": "nack", "nack_reason": ""}`),
	[]byte(` {} `), []byte(`null`), []byte(`[]`), []byte(`{"a":1}x`), []byte(`{"a":01}`), []byte(`{"a":"\x"}`), []byte("{\"a\":\"\x01\"}"),
	[]byte(`{"message_version":"20110921","message_version":1}`), []byte(`{"message_version":"2011\u0030921"}`),
}

// FuzzAgainstReference decodes any body as a user message and as an
// event with both codecs and compares the results (see above).
func FuzzAgainstReference(f *testing.F) {
	addGoldenSeeds(f, "")
	for _, s := range referenceSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkUserMessage(t, body)
		checkEvent(t, body)
	})
}

// FuzzEncodeAgainstReference encodes messages built in Go with any
// strings, with both codecs.
func FuzzEncodeAgainstReference(f *testing.F) {
	f.Add("hi", "+27831234567", "key", `{"a": [1, "<b>"]}`)
	f.Add("\u2028\x00\xff\"\\", "", "\xe9", `"\u00e9"`)
	f.Fuzz(func(t *testing.T, content, addr, key, raw string) {
		// An empty address is null here (a string field built in Go), ""
		// in the reference (a pointer to "").
		addr = "+" + addr
		ref := vumiref.NewInbound("t", "sms", addr, addr, content)
		m := NewInbound("t", "sms", addr, addr, content)
		m.MessageID, m.Timestamp = ref.MessageID, Timestamp{ref.Timestamp.Time}
		ref.TransportMetadata[key] = content
		m.TransportMetadata[key] = content
		ref.HelperMetadata[content] = []any{key, nil, true, 3}
		m.HelperMetadata[content] = []any{key, nil, true, 3}
		ref.Extra = map[string]json.RawMessage{key: json.RawMessage(raw)}
		m.Extra = map[string]json.RawMessage{key: json.RawMessage(raw)}
		want, werr := ref.MarshalJSON()
		got, gerr := m.MarshalJSON()
		if (gerr == nil) != (werr == nil) || !bytes.Equal(got, want) {
			t.Fatalf("encodes as\n%s (%v), the reference as\n%s (%v)", got, gerr, want, werr)
		}
	})
}

// FuzzParseTimestampAgainstReference: the fast path of ParseTimestamp
// reads what time.Parse reads.
func FuzzParseTimestampAgainstReference(f *testing.F) {
	for _, s := range []string{"2026-11-27 01:02:03.000456", "2026-11-27 01:02:03", "2024-02-29 23:59:59.999999",
		"2023-02-29 00:00:00", "0000-01-01 00:00:00.000000", "9999-12-31 23:59:59", "2026-11-27 24:00:00",
		"2026-11-27 01:60:03", "2026-11-27 01:02:60", "2026-00-27 01:02:03", "2026-11-00 01:02:03", "2026-11-27 01:02:03.12345a",
		"+026-11-27 01:02:03", "2026-11-27 01:02:03.5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseTimestamp(s)
		want, rerr := vumiref.ParseTimestamp(s)
		if (err == nil) != (rerr == nil) || !got.Equal(want.Time) || got.Location() != want.Location() {
			t.Fatalf("%q: %v (%v), the reference %v (%v)", s, got.Time, err, want.Time, rerr)
		}
	})
}

// Nesting at encoding/json's limit: accepted or refused as the reference
// does, in Extra and in metadata.
func TestDepthAgainstReference(t *testing.T) {
	base := mustRead(t, "testdata/user_message_inbound_sms.json")
	for _, n := range []int{9998, 9999, 10000} {
		deep := strings.Repeat("[", n) + strings.Repeat("]", n)
		checkUserMessage(t, bytes.Replace(base, []byte(`"content"`), []byte(`"x": `+deep+`, "content"`), 1))
		obj := strings.Repeat(`{"a":`, n-1) + "1" + strings.Repeat("}", n-1)
		checkUserMessage(t, bytes.Replace(base, []byte(`"transport_metadata": {}`), []byte(`"transport_metadata": `+obj), 1))
	}
}
