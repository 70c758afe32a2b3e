package vumi

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// jsonValue decodes data as a generic JSON value, numbers kept as written,
// so that two documents compare equal exactly when they hold the same
// values, whatever their key order and whitespace.
func jsonValue(t *testing.T, data []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("invalid JSON %s: %v", data, err)
	}
	return v
}

func assertSameJSON(t *testing.T, got, want []byte) {
	t.Helper()
	if g, w := jsonValue(t, got), jsonValue(t, want); !reflect.DeepEqual(g, w) {
		t.Errorf("JSON differs\n got: %s\nwant: %s", got, compact(t, want))
	}
}

func compact(t *testing.T, data []byte) []byte {
	var buf bytes.Buffer
	if err := json.Compact(&buf, data); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func keys(t *testing.T, data []byte) []string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func sorted(ks ...string) []string {
	slices.Sort(ks)
	return ks
}

// roundTrip decodes data as the message type its file name says and
// encodes it again.
func roundTrip(t *testing.T, name string, data []byte) []byte {
	t.Helper()
	var v json.Marshaler
	if strings.HasPrefix(name, "event_") {
		e, err := ParseEvent(data)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		v = e
	} else {
		m, err := ParseUserMessage(data)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		v = m
	}
	out, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return out
}

// TestGolden: every testdata/*.json message in Vumi's shape decodes and
// encodes back to the same JSON value; every X.in.json encodes to
// X.out.json (what Vumi's from_json + to_json gives for it).
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, path := range files {
		name := filepath.Base(path)
		if strings.HasSuffix(name, ".out.json") {
			continue
		}
		t.Run(name, func(t *testing.T) {
			in, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			want := in
			if base, ok := strings.CutSuffix(path, ".in.json"); ok {
				if want, err = os.ReadFile(base + ".out.json"); err != nil {
					t.Fatal(err)
				}
			}
			out := roundTrip(t, name, in)
			assertSameJSON(t, out, want)
			// And the encoding is stable.
			assertSameJSON(t, roundTrip(t, name, out), want)
		})
	}
}

func TestGoldenFieldValues(t *testing.T) {
	data, err := os.ReadFile("testdata/user_message_ussd_new.json")
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseUserMessage(data)
	if err != nil {
		t.Fatal(err)
	}
	if m.SessionEvent != SessionNew || m.Content.Valid || m.ToAddr != "*120*1234#" ||
		m.FromAddr != "+27831234567" || m.FromAddrType != AddrTypeMSISDN || m.ToAddrType != "" ||
		m.TransportType != TransportTypeUSSD || m.Provider != "vodacom" || m.Group != "" ||
		m.InReplyTo != "" || m.MessageID != "4d3c2b1a0f9e4d8c8b7a6f5e4d3c2b1a" {
		t.Errorf("decoded fields wrong: %+v", m)
	}
	want := time.Date(2026, 1, 5, 23, 59, 59, 999999000, time.UTC)
	if !m.Timestamp.Equal(want) {
		t.Errorf("timestamp = %v, want %v", m.Timestamp, want)
	}
	if got := m.TransportMetadata["session_id"]; got != "s-8812" {
		t.Errorf("transport_metadata.session_id = %v", got)
	}
	if m.RoutingEndpoint() != "default" || m.Extra != nil {
		t.Errorf("endpoint %q, extra %v", m.RoutingEndpoint(), m.Extra)
	}

	data, err = os.ReadFile("testdata/event_delivery_report.json")
	if err != nil {
		t.Fatal(err)
	}
	e, err := ParseEvent(data)
	if err != nil {
		t.Fatal(err)
	}
	if e.EventType != EventDeliveryReport || e.DeliveryStatus != DeliveryDelivered ||
		e.UserMessageID != "0a1b2c3d4e5f40718293a4b5c6d7e8f9" || e.TransportName != "smpp_transport" ||
		e.SentMessageID != "" || e.NackReason != "" {
		t.Errorf("decoded event wrong: %+v", e)
	}
	// to_addr and from_addr are not event fields: they stay in Extra.
	if string(e.Extra["to_addr"]) != `"+27831234567"` || len(e.Extra) != 2 {
		t.Errorf("extra = %v", e.Extra)
	}
}

// The keys of messages built in Go are those Vumi's process_fields and
// Transport.publish_event give.
func TestConstructedShape(t *testing.T) {
	userKeys := sorted("message_version", "message_type", "timestamp", "routing_metadata",
		"helper_metadata", "message_id", "in_reply_to", "provider", "session_event", "content",
		"transport_metadata", "group", "to_addr_type", "from_addr_type", "to_addr", "from_addr",
		"transport_name", "transport_type")
	in := NewInbound("smpp", TransportTypeSMS, "+27831234567", "12345", "hi")
	data, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if got := keys(t, data); !slices.Equal(got, userKeys) {
		t.Errorf("inbound keys = %v, want %v", got, userKeys)
	}
	want := `{"message_version":"20110921","message_type":"user_message","message_id":"` + in.MessageID +
		`","timestamp":"` + in.Timestamp.String() + `","routing_metadata":{},"helper_metadata":{},` +
		`"in_reply_to":null,"provider":null,"group":null,"session_event":null,"content":"hi",` +
		`"transport_metadata":{},"to_addr_type":null,"from_addr_type":null,"to_addr":"12345",` +
		`"from_addr":"+27831234567","transport_name":"smpp","transport_type":"sms"}`
	assertSameJSON(t, data, []byte(want))
	if err := in.Validate(); err != nil {
		t.Error(err)
	}

	// TransportUserMessage.send: from_addr, transport_name and
	// transport_type null.
	out := NewOutbound("+27831234567", "ping")
	data, _ = json.Marshal(out)
	var m map[string]any
	_ = json.Unmarshal(data, &m)
	for _, k := range []string{"from_addr", "transport_name", "transport_type", "in_reply_to", "session_event"} {
		if v, ok := m[k]; !ok || v != nil {
			t.Errorf("outbound %s = %v (present %v), want null", k, v, ok)
		}
	}
	if m["to_addr"] != "+27831234567" || m["content"] != "ping" {
		t.Errorf("outbound = %s", data)
	}

	common := []string{"message_version", "message_type", "timestamp", "routing_metadata",
		"helper_metadata", "event_id", "event_type", "user_message_id", "transport_name", "transport_metadata"}
	for _, tc := range []struct {
		ev    *TransportEvent
		extra string
	}{
		{Ack(in), "sent_message_id"},
		{Nack(in, "no route"), "nack_reason"},
		{DeliveryReport(in, DeliveryFailed), "delivery_status"},
	} {
		data, err := json.Marshal(tc.ev)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := keys(t, data), sorted(append(slices.Clone(common), tc.extra)...); !slices.Equal(got, want) {
			t.Errorf("%s keys = %v, want %v", tc.ev.EventType, got, want)
		}
		if err := tc.ev.Validate(); err != nil {
			t.Errorf("%s: %v", tc.ev.EventType, err)
		}
		back, err := ParseEvent(data)
		if err != nil {
			t.Fatalf("%s: %v", tc.ev.EventType, err)
		}
		if back.UserMessageID != in.MessageID || back.TransportName != "smpp" || back.EventID != tc.ev.EventID {
			t.Errorf("%s decoded = %+v", tc.ev.EventType, back)
		}
	}
	ack := Ack(in)
	if ack.SentMessageID != in.MessageID {
		t.Errorf("ack sent_message_id = %q, want the message's id", ack.SentMessageID)
	}
	if n := Nack(in, "no route"); n.NackReason != "no route" || n.EventType != EventNack {
		t.Errorf("nack = %+v", n)
	}
	if dr := DeliveryReport(in, DeliveryPending); dr.DeliveryStatus != DeliveryPending {
		t.Errorf("dr = %+v", dr)
	}
}

var idRE = regexp.MustCompile(`^[0-9a-f]{12}4[0-9a-f]{3}[89ab][0-9a-f]{15}$`)

func TestNewID(t *testing.T) {
	seen := map[string]bool{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 500 {
				id := NewID()
				mu.Lock()
				seen[id] = true
				mu.Unlock()
				if !idRE.MatchString(id) {
					t.Errorf("NewID() = %q: not a uuid4 as 32 lowercase hex digits", id)
				}
			}
		})
	}
	wg.Wait()
	if len(seen) != 4000 {
		t.Errorf("%d distinct ids out of 4000", len(seen))
	}
	m := NewUserMessage()
	e := Ack(m)
	if !idRE.MatchString(m.MessageID) || !idRE.MatchString(e.EventID) || m.MessageID == e.EventID {
		t.Errorf("message_id %q, event_id %q", m.MessageID, e.EventID)
	}
}

func TestTimestampFormat(t *testing.T) {
	ts := NewTimestamp(time.Date(2026, 11, 27, 1, 2, 3, 456789, time.UTC))
	data, err := json.Marshal(ts)
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != `"2026-11-27 01:02:03.000456"` {
		t.Errorf("encoded %s", data)
	}
	// Other zones are converted to UTC.
	sast := time.FixedZone("SAST", 2*3600)
	ts = NewTimestamp(time.Date(2026, 11, 27, 3, 2, 3, 123456000, sast))
	if ts.String() != "2026-11-27 01:02:03.123456" {
		t.Errorf("SAST encoded as %s", ts)
	}
	// A Timestamp built directly is still written in UTC, to the
	// microsecond.
	raw := Timestamp{time.Date(2026, 11, 27, 3, 2, 3, 999999999, sast)}
	if raw.String() != "2026-11-27 01:02:03.999999" {
		t.Errorf("raw encoded as %s", raw)
	}
	if now := Now(); now.Location() != time.UTC || now.Nanosecond()%1000 != 0 {
		t.Errorf("Now() = %v", now.Time)
	}
	text, _ := ts.MarshalText()
	if string(text) != "2026-11-27 01:02:03.123456" {
		t.Errorf("MarshalText = %s", text)
	}
	text, _ = ts.AppendText([]byte("at "))
	if string(text) != "at 2026-11-27 01:02:03.123456" {
		t.Errorf("AppendText = %s", text)
	}
	var back Timestamp
	if err := back.UnmarshalText([]byte("2026-11-27 01:02:03.123456")); err != nil || !back.Equal(ts.Time) {
		t.Errorf("UnmarshalText: %v %v", back, err)
	}
}

func TestTimestampRoundTrip(t *testing.T) {
	for _, s := range []string{
		"2026-11-27 01:02:03.000456",
		"2026-11-27 01:02:03.000000",
		"2026-11-27 01:02:03.999999",
		"2024-02-29 23:59:59.100000",
		"1970-01-01 00:00:00.000001",
	} {
		var ts Timestamp
		if err := json.Unmarshal([]byte(`"`+s+`"`), &ts); err != nil {
			t.Errorf("%s: %v", s, err)
			continue
		}
		if ts.String() != s {
			t.Errorf("%s came back as %s", s, ts)
		}
		if ts.Location() != time.UTC {
			t.Errorf("%s decoded in %v", s, ts.Location())
		}
	}
	for s, want := range map[string]string{
		"2026-11-27 01:02:03":       "2026-11-27 01:02:03.000000", // parse_vumi_date's fallback
		"2026-11-27 01:02:03.5":     "2026-11-27 01:02:03.500000", // %f pads on the right
		"2026-11-27 01:02:03.00045": "2026-11-27 01:02:03.000450",
	} {
		ts, err := ParseTimestamp(s)
		if err != nil {
			t.Errorf("%s: %v", s, err)
			continue
		}
		if ts.String() != want {
			t.Errorf("%s parsed as %s, want %s", s, ts, want)
		}
	}
	want := time.Date(2026, 11, 27, 1, 2, 3, 456000, time.UTC)
	if ts, _ := ParseTimestamp("2026-11-27 01:02:03.000456"); !ts.Equal(want) {
		t.Errorf("parsed %v, want %v", ts.Time, want)
	}
	var ts Timestamp
	if err := ts.UnmarshalJSON([]byte("null")); err != nil || !ts.IsZero() {
		t.Errorf("null: %v %v", err, ts)
	}
}

func TestTimestampErrors(t *testing.T) {
	for _, s := range []string{
		"",
		"2026-11-27",
		"2026-11-27T01:02:03.000456",  // ISO separator
		"2026-11-27 01:02:03.000456Z", // zone suffix
		"2026-11-27 01:02:03+02:00",
		"2026-11-27 01:02:03.",        // %f needs a digit
		"2026-11-27 01:02:03.1234567", // %f takes at most 6
		"2026-11-27 01:02:03.12a",
		"2026-13-27 01:02:03.000000",
		"2026-02-30 01:02:03.000000",
		"2026-11-27 24:02:03.000000",
		"2026-1-27 01:02:03.000000",
		" 2026-11-27 01:02:03.000000",
	} {
		if ts, err := ParseTimestamp(s); err == nil {
			t.Errorf("ParseTimestamp(%q) = %v, want an error", s, ts)
		}
	}
	var ts Timestamp
	for _, js := range []string{`123`, `{}`, `"2026-11-27T01:02:03"`, `true`} {
		if err := json.Unmarshal([]byte(js), &ts); err == nil {
			t.Errorf("Unmarshal(%s) succeeded", js)
		}
	}
}

func TestReply(t *testing.T) {
	data, err := os.ReadFile("testdata/user_message_ussd_new.json")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := ParseUserMessage(data)
	if err != nil {
		t.Fatal(err)
	}
	msg.SetRoutingEndpoint("ussd_in")

	r := msg.Reply("Menu", true)
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	if r.ToAddr != "+27831234567" || r.FromAddr != "*120*1234#" {
		t.Errorf("addresses not swapped: to %v from %v", r.ToAddr, r.FromAddr)
	}
	if r.InReplyTo != msg.MessageID {
		t.Errorf("in_reply_to = %v", r.InReplyTo)
	}
	if r.MessageID == msg.MessageID || !idRE.MatchString(r.MessageID) {
		t.Errorf("reply message_id = %q", r.MessageID)
	}
	if r.TransportName != "aat_ussd" || r.TransportType != "ussd" || r.Provider != "vodacom" || r.Group != "" {
		t.Errorf("transport fields not copied: %+v", r)
	}
	if !reflect.DeepEqual(r.TransportMetadata, msg.TransportMetadata) {
		t.Errorf("transport_metadata = %v", r.TransportMetadata)
	}
	if !reflect.DeepEqual(r.HelperMetadata, msg.HelperMetadata) {
		t.Errorf("helper_metadata = %v", r.HelperMetadata)
	}
	if r.SessionEvent != SessionNone {
		t.Errorf("continuing reply session_event = %q, want null (Vumi's reply)", r.SessionEvent)
	}
	if r.Content.String != "Menu" {
		t.Errorf("content = %v", r.Content.String)
	}
	if r.ToAddrType != "" || r.FromAddrType != "" {
		t.Errorf("address types = %v %v, want null as in Vumi's reply", r.ToAddrType, r.FromAddrType)
	}
	if r.RoutingEndpoint() != "ussd_in" || len(r.RoutingMetadata) != 1 {
		t.Errorf("routing_metadata = %v", r.RoutingMetadata)
	}
	if r.Extra != nil {
		t.Errorf("reply extra = %v", r.Extra)
	}

	// The reply's maps are copies.
	r.TransportMetadata["aat_ussd"].(map[string]any)["provider"] = "mtn"
	r.HelperMetadata["go"].(map[string]any)["user_account"] = "x"
	if msg.TransportMetadata["aat_ussd"].(map[string]any)["provider"] != "vodacom" ||
		msg.HelperMetadata["go"].(map[string]any)["user_account"] != "acc-1" {
		t.Error("changing the reply changed the original")
	}

	c := msg.Reply("Bye", false)
	if c.SessionEvent != SessionClose {
		t.Errorf("closing reply session_event = %q", c.SessionEvent)
	}
	out, _ := json.Marshal(c)
	if !bytes.Contains(out, []byte(`"session_event":"close"`)) || !bytes.Contains(out, []byte(`"in_reply_to":"`+msg.MessageID+`"`)) {
		t.Errorf("encoded reply: %s", out)
	}
	out, _ = json.Marshal(r)
	if !bytes.Contains(out, []byte(`"session_event":null`)) {
		t.Errorf("encoded reply: %s", out)
	}

	// A message without a routing endpoint gets a reply on "default".
	plain := NewInbound("t", TransportTypeSMS, "a", "b", "c")
	if pr := plain.Reply("d", true); pr.RoutingMetadata["endpoint_name"] != "default" {
		t.Errorf("reply routing_metadata = %v", pr.RoutingMetadata)
	}
}

func TestReplyGroup(t *testing.T) {
	data, err := os.ReadFile("testdata/user_message_irc_group.json")
	if err != nil {
		t.Fatal(err)
	}
	undirected, err := ParseUserMessage(data)
	if err != nil {
		t.Fatal(err)
	}
	// As Vumi's test_transport_user_message_reply_undirected_group.
	r := undirected.Reply("Hi!", true)
	if r.FromAddr != "" || r.ToAddr != "alice" || r.Group != "#vumi" {
		t.Errorf("reply: from %v to %v group %v", r.FromAddr, r.ToAddr, r.Group)
	}
	g := undirected.ReplyGroup("Hi!", true)
	if g.FromAddr != "" || g.ToAddr != "" || g.Group != "#vumi" {
		t.Errorf("reply_group: from %v to %v group %v", g.FromAddr, g.ToAddr, g.Group)
	}
	if g.RoutingEndpoint() != "irc" {
		t.Errorf("endpoint = %q", g.RoutingEndpoint())
	}
	// Without a group, ReplyGroup is Reply.
	sms := NewInbound("t", TransportTypeSMS, "+27831234567", "12345", "x")
	if g := sms.ReplyGroup("y", true); g.ToAddr != "+27831234567" || g.FromAddr != "12345" {
		t.Errorf("reply_group without a group: %+v", g)
	}
}

func TestUnknownFieldsPreserved(t *testing.T) {
	data, err := os.ReadFile("testdata/user_message_extra_fields.json")
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseUserMessage(data)
	if err != nil {
		t.Fatal(err)
	}
	got := slices.Sorted(func(yield func(string) bool) {
		for k := range m.Extra {
			if !yield(k) {
				return
			}
		}
	})
	if want := []string{"__cache__", "custom", "message_store_batch_id", "nullish"}; !slices.Equal(got, want) {
		t.Errorf("extra keys = %v, want %v", got, want)
	}
	// Change known fields; the unknown ones survive.
	m.Content = String("changed")
	m.SessionEvent = SessionClose
	m.TransportMetadata["added"] = true
	// An Extra entry named like a known key does not override it.
	m.Extra["content"] = json.RawMessage(`"sneaky"`)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var got2, orig map[string]any
	_ = json.Unmarshal(out, &got2)
	_ = json.Unmarshal(data, &orig)
	for _, k := range []string{"__cache__", "custom", "message_store_batch_id", "nullish"} {
		if v, ok := got2[k]; !ok || !reflect.DeepEqual(v, orig[k]) {
			t.Errorf("%s = %v (present %v), want %v", k, v, ok, orig[k])
		}
	}
	if got2["content"] != "changed" || got2["session_event"] != "close" {
		t.Errorf("known fields: content %v, session_event %v", got2["content"], got2["session_event"])
	}
	// Numbers are written back as they came, not via float64.
	if !bytes.Contains(out, []byte(`"big":12345678901234567890`)) || !bytes.Contains(out, []byte(`"ratio":2.50`)) {
		t.Errorf("numbers changed: %s", out)
	}
	// MarshalJSON keeps non-ASCII and HTML characters as they are (like
	// Vumi; json.Marshal then escapes <, > and & as \u003c and so on, which
	// is the same JSON value).
	orig2, _ := ParseUserMessage(data)
	enc, _ := orig2.MarshalJSON()
	if !bytes.Contains(enc, []byte(`"content":"héllo ✓ <b>&amp;</b> \"quoted\""`)) {
		t.Errorf("content encoded as %s", enc)
	}

	// Clone keeps Extra and is independent of the original.
	c := orig2.Clone()
	c.Extra["custom"][0] = ' '
	c.TransportMetadata["list"].([]any)[0] = "x"
	if orig2.Extra["custom"][0] != '[' || orig2.TransportMetadata["list"].([]any)[0] != nil {
		t.Error("Clone shares data with the original")
	}
	enc2, _ := json.Marshal(orig2.Clone())
	assertSameJSON(t, enc2, enc)
}

// Keys Vumi tolerates missing stay missing after a round trip; set, they
// are written.
func TestOptionalKeys(t *testing.T) {
	data, err := os.ReadFile("testdata/user_message_2013.json")
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseUserMessage(data)
	if err != nil {
		t.Fatal(err)
	}
	m.FromAddrType = AddrTypeMSISDN
	m.SetRoutingEndpoint("")
	out, _ := json.Marshal(m)
	ks := keys(t, out)
	if !slices.Contains(ks, "from_addr_type") || slices.Contains(ks, "to_addr_type") || !slices.Contains(ks, "routing_metadata") {
		t.Errorf("keys = %v", ks)
	}
	if m.RoutingEndpoint() != "default" {
		t.Errorf("endpoint = %q", m.RoutingEndpoint())
	}

	// A vumi2 ack's null nack_reason and delivery_status stay null.
	data, err = os.ReadFile("testdata/event_vumi2_ack.json")
	if err != nil {
		t.Fatal(err)
	}
	e, err := ParseEvent(data)
	if err != nil {
		t.Fatal(err)
	}
	if e.TransportName != "" || e.NackReason != "" || e.DeliveryStatus != "" {
		t.Errorf("vumi2 ack = %+v", e)
	}
	out, _ = json.Marshal(e)
	if !bytes.Contains(out, []byte(`"nack_reason":null`)) || bytes.Contains(out, []byte(`transport_name`)) {
		t.Errorf("vumi2 ack encoded as %s", out)
	}

	// Explicit null metadata stays null.
	in := bytes.Replace(mustRead(t, "testdata/user_message_inbound_sms.json"),
		[]byte(`"transport_metadata": {}`), []byte(`"transport_metadata": null`), 1)
	m, err = ParseUserMessage(in)
	if err != nil {
		t.Fatal(err)
	}
	out, _ = json.Marshal(m)
	assertSameJSON(t, out, in)
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// edit returns the JSON object in path with key set to value (raw JSON),
// or removed when value is "".
func edit(t *testing.T, path, key, value string) []byte {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(mustRead(t, path), &m); err != nil {
		t.Fatal(err)
	}
	if value == "" {
		delete(m, key)
	} else {
		m[key] = json.RawMessage(value)
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeErrors(t *testing.T) {
	const sms = "testdata/user_message_inbound_sms.json"
	const ack = "testdata/event_ack.json"
	const nack = "testdata/event_nack.json"
	const dr = "testdata/event_delivery_report.json"
	type tc struct {
		name    string
		data    []byte
		event   bool
		missing string // want a *MissingFieldError for this field
		invalid string // want an *InvalidFieldError for this field
		text    string // and this in the message
	}
	cases := []tc{
		{name: "not JSON", data: []byte(`{"message_version":`), text: "decoding user message"},
		{name: "array", data: []byte(`[]`), text: "decoding user message"},
		{name: "string", data: []byte(`"x"`), text: "decoding user message"},
		{name: "null", data: []byte(`null`), text: "got null"},
		{name: "empty object", data: []byte(`{}`), missing: "message_version"},
		{name: "bad session_event", data: edit(t, sms, "session_event", `"foo"`), invalid: "session_event", text: `"foo"`},
		{name: "empty session_event", data: edit(t, sms, "session_event", `""`), invalid: "session_event"},
		{name: "numeric session_event", data: edit(t, sms, "session_event", `1`), invalid: "session_event"},
		{name: "wrong version", data: edit(t, sms, "message_version", `"20110922"`), invalid: "message_version", text: "20110922"},
		{name: "null message_type", data: edit(t, sms, "message_type", `null`), invalid: "message_type"},
		{name: "event as user message", data: edit(t, sms, "message_type", `"event"`), invalid: "message_type"},
		{name: "no timestamp", data: edit(t, sms, "timestamp", ""), missing: "timestamp"},
		{name: "ISO timestamp", data: edit(t, sms, "timestamp", `"2026-11-27T01:02:03Z"`), invalid: "timestamp", text: "2026-11-27T01:02:03Z"},
		{name: "numeric timestamp", data: edit(t, sms, "timestamp", `1700000000`), invalid: "timestamp"},
		{name: "no message_id", data: edit(t, sms, "message_id", ""), missing: "message_id"},
		{name: "null message_id", data: edit(t, sms, "message_id", "null"), invalid: "message_id"},
		{name: "no to_addr", data: edit(t, sms, "to_addr", ""), missing: "to_addr"},
		{name: "no from_addr", data: edit(t, sms, "from_addr", ""), missing: "from_addr"},
		{name: "no in_reply_to", data: edit(t, sms, "in_reply_to", ""), missing: "in_reply_to"},
		{name: "no session_event", data: edit(t, sms, "session_event", ""), missing: "session_event"},
		{name: "no content", data: edit(t, sms, "content", ""), missing: "content"},
		{name: "numeric content", data: edit(t, sms, "content", `42`), invalid: "content", text: "42"},
		{name: "no transport_name", data: edit(t, sms, "transport_name", ""), missing: "transport_name"},
		{name: "no transport_type", data: edit(t, sms, "transport_type", ""), missing: "transport_type"},
		{name: "no transport_metadata", data: edit(t, sms, "transport_metadata", ""), missing: "transport_metadata"},
		{name: "list transport_metadata", data: edit(t, sms, "transport_metadata", `[]`), invalid: "transport_metadata"},
		{name: "string helper_metadata", data: edit(t, sms, "helper_metadata", `"x"`), invalid: "helper_metadata"},
		{name: "numeric to_addr_type", data: edit(t, sms, "to_addr_type", `1`), invalid: "to_addr_type"},

		{name: "event not JSON", data: []byte(`nope`), event: true, text: "decoding event"},
		{name: "event null", data: []byte(` null `), event: true, text: "got null"},
		{name: "unknown event_type", data: edit(t, ack, "event_type", `"bogus"`), event: true, invalid: "event_type", text: "bogus"},
		{name: "no event_type", data: edit(t, ack, "event_type", ""), event: true, missing: "event_type"},
		{name: "no event_id", data: edit(t, ack, "event_id", ""), event: true, missing: "event_id"},
		{name: "no user_message_id", data: edit(t, ack, "user_message_id", ""), event: true, missing: "user_message_id"},
		{name: "ack without sent_message_id", data: edit(t, ack, "sent_message_id", ""), event: true, missing: "sent_message_id"},
		{name: "ack with null sent_message_id", data: edit(t, ack, "sent_message_id", "null"), event: true, invalid: "sent_message_id"},
		{name: "nack without nack_reason", data: edit(t, nack, "nack_reason", ""), event: true, missing: "nack_reason"},
		{name: "nack with null nack_reason", data: edit(t, nack, "nack_reason", "null"), event: true, invalid: "nack_reason"},
		{name: "dr without delivery_status", data: edit(t, dr, "delivery_status", ""), event: true, missing: "delivery_status"},
		{name: "dr with bad delivery_status", data: edit(t, dr, "delivery_status", `"lost"`), event: true, invalid: "delivery_status", text: "lost"},
		{name: "dr with null delivery_status", data: edit(t, dr, "delivery_status", `null`), event: true, invalid: "delivery_status"},
		{name: "user message as event", data: mustRead(t, sms), event: true, missing: "user_message_id"},
		{name: "event wrong message_type", data: edit(t, ack, "message_type", `"user_message"`), event: true, invalid: "message_type"},
		{name: "event bad timestamp", data: edit(t, ack, "timestamp", `"yesterday"`), event: true, invalid: "timestamp"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var err error
			var target any
			if c.event {
				_, err = ParseEvent(c.data)
				target = new(TransportEvent)
			} else {
				_, err = ParseUserMessage(c.data)
				target = new(TransportUserMessage)
			}
			if err == nil {
				t.Fatalf("decoded %s without error", c.data)
			}
			// json.Unmarshal fails too, with the same error unless the JSON
			// is malformed (encoding/json reports that itself).
			if bytes.Equal(bytes.TrimSpace(c.data), []byte("null")) {
				// json.Unmarshal leaves the target alone on null.
			} else if uerr := json.Unmarshal(c.data, target); uerr == nil {
				t.Fatalf("json.Unmarshal decoded %s without error", c.data)
			} else if c.missing+c.invalid != "" && uerr.Error() != err.Error() {
				t.Errorf("json.Unmarshal: %v, Parse: %v", uerr, err)
			}
			var me *MissingFieldError
			var ie *InvalidFieldError
			switch {
			case c.missing != "":
				if !errors.As(err, &me) || me.Field != c.missing {
					t.Errorf("error %v, want a MissingFieldError for %s", err, c.missing)
				}
			case c.invalid != "":
				if !errors.As(err, &ie) || ie.Field != c.invalid {
					t.Errorf("error %v, want an InvalidFieldError for %s", err, c.invalid)
				}
			}
			field := c.missing + c.invalid
			if !strings.Contains(err.Error(), field) || !strings.Contains(err.Error(), c.text) {
				t.Errorf("error %q should name %q and contain %q", err, field, c.text)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	m := NewInbound("t", TransportTypeUSSD, "a", "b", "c")
	m.SessionEvent = "foo"
	err := m.Validate()
	var ie *InvalidFieldError
	if !errors.As(err, &ie) || ie.Field != "session_event" || err.Error() != `vumi: invalid session_event "foo" (want null, "new", "resume" or "close")` {
		t.Errorf("Validate() = %v", err)
	}
	for _, tc := range []struct {
		mutate func(*TransportUserMessage)
		field  string
	}{
		{func(m *TransportUserMessage) { m.MessageID = "" }, "message_id"},
		{func(m *TransportUserMessage) { m.MessageVersion = "" }, "message_version"},
		{func(m *TransportUserMessage) { m.MessageVersion = "1" }, "message_version"},
		{func(m *TransportUserMessage) { m.MessageType = "" }, "message_type"},
		{func(m *TransportUserMessage) { m.MessageType = MessageTypeEvent }, "message_type"},
		{func(m *TransportUserMessage) { m.Timestamp = Timestamp{} }, "timestamp"},
	} {
		m := NewInbound("t", TransportTypeSMS, "a", "b", "c")
		tc.mutate(m)
		err := m.Validate()
		if err == nil || !strings.Contains(err.Error(), `"`+tc.field+`"`) && !strings.Contains(err.Error(), " "+tc.field+" ") {
			t.Errorf("Validate() = %v, want an error naming %s", err, tc.field)
		}
	}
	// Vumi allows nulls in the nullable fields.
	if err := (&TransportUserMessage{MessageVersion: MessageVersion, MessageType: MessageTypeUserMessage,
		MessageID: "x", Timestamp: Now()}).Validate(); err != nil {
		t.Errorf("minimal message: %v", err)
	}

	msg := NewInbound("t", TransportTypeSMS, "a", "b", "c")
	for _, tc := range []struct {
		ev    *TransportEvent
		field string
	}{
		{func() *TransportEvent { e := Ack(msg); e.SentMessageID = ""; return e }(), "sent_message_id"},
		{func() *TransportEvent {
			e := Nack(msg, "r")
			e.NackReason = ""
			e.shape[evNackReason] = unknown
			return e
		}(), "nack_reason"},
		{DeliveryReport(msg, "lost"), "delivery_status"},
		{DeliveryReport(msg, ""), "delivery_status"},
		{func() *TransportEvent { e := Ack(msg); e.EventType = "x"; return e }(), "event_type"},
		{func() *TransportEvent { e := Ack(msg); e.EventType = ""; return e }(), "event_type"},
		{func() *TransportEvent { e := Ack(msg); e.UserMessageID = ""; return e }(), "user_message_id"},
		{func() *TransportEvent { e := Ack(msg); e.EventID = ""; return e }(), "event_id"},
		{func() *TransportEvent { e := Ack(msg); e.MessageType = MessageTypeUserMessage; return e }(), "message_type"},
	} {
		err := tc.ev.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("Validate() = %v, want an error naming %s", err, tc.field)
		}
	}
}

func TestRoutingKeys(t *testing.T) {
	for got, want := range map[string]string{
		InboundKey("smpp_transport"):  "smpp_transport.inbound",
		OutboundKey("smpp_transport"): "smpp_transport.outbound",
		EventKey("smpp_transport"):    "smpp_transport.event",
		FailuresKey("smpp_transport"): "smpp_transport.failures",
	} {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}

// The types work as fields of other types and in slices, and JSON null
// leaves them alone.
func TestNested(t *testing.T) {
	type envelope struct {
		Msg    *TransportUserMessage `json:"msg"`
		Events []TransportEvent      `json:"events"`
		Null   TransportUserMessage  `json:"null"`
	}
	in := NewInbound("t", TransportTypeSMS, "a", "b", "c")
	env := envelope{Msg: in, Events: []TransportEvent{*Ack(in), *Nack(in, "n")}}
	data, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	data = bytes.Replace(data, []byte(`"null":{`), []byte(`"ignored":{`), 1)
	data = bytes.Replace(data, []byte(`"events"`), []byte(`"null":null,"events"`), 1)
	var back envelope
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if back.Msg.MessageID != in.MessageID || len(back.Events) != 2 || back.Events[1].EventType != EventNack {
		t.Errorf("back = %+v", back)
	}
	if !back.Null.Timestamp.IsZero() {
		t.Error("null decoded into a message")
	}
	// Concurrent encoding of one decoded message is safe.
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if _, err := json.Marshal(back.Msg); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
}
