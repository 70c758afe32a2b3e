package vumi

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// addGoldenSeeds adds the testdata messages whose file name starts with
// prefix to f's seed corpus.
func addGoldenSeeds(f *testing.F, prefix string) {
	f.Helper()
	files, _ := filepath.Glob("testdata/" + prefix + "*.json")
	if len(files) == 0 {
		f.Fatalf("no testdata/%s*.json", prefix)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// FuzzParseUserMessage decodes any body as a user message and checks what
// the package promises of one that decodes: it encodes; the encoding
// decodes again and encodes to the same bytes (the encoding is stable);
// every key of the body is in the encoding (unknown keys are kept), an
// unknown key with the value it had; a clone encodes the same; and a
// reply to it encodes and decodes.
func FuzzParseUserMessage(f *testing.F) {
	addGoldenSeeds(f, "user_message_")
	f.Add([]byte(`{"message_version": "20110921", "message_type": "user_message", "timestamp": "2026-11-27 01:02:03.5", "message_id": "x", "to_addr": null, "from_addr": null, "in_reply_to": null, "session_event": "new", "content": "<&>", "transport_name": null, "transport_type": null, "transport_metadata": {"n": 1.50}, "helper_metadata": null, "x": [1e400], "X": "\ud800"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := ParseUserMessage(body)
		if err != nil {
			if m != nil || err.Error() == "" {
				t.Fatalf("ParseUserMessage = %v, %v", m, err)
			}
			return
		}
		out := checkStable(t, body, m, func(b []byte) (json.Marshaler, error) { return ParseUserMessage(b) }, userMessageKeys)
		if c, err := json.Marshal(m.Clone()); err != nil || !bytes.Equal(c, out) {
			t.Fatalf("the clone encodes as %s (%v), not %s", c, err, out)
		}
		reply, err := json.Marshal(m.Reply("thanks", false))
		if err != nil {
			t.Fatalf("a reply does not encode: %v", err)
		}
		if _, err := ParseUserMessage(reply); err != nil {
			t.Fatalf("a reply %s does not decode: %v", reply, err)
		}
	})
}

// FuzzParseEvent is FuzzParseUserMessage for events.
func FuzzParseEvent(f *testing.F) {
	addGoldenSeeds(f, "event_")
	f.Fuzz(func(t *testing.T, body []byte) {
		e, err := ParseEvent(body)
		if err != nil {
			if e != nil || err.Error() == "" {
				t.Fatalf("ParseEvent = %v, %v", e, err)
			}
			return
		}
		out := checkStable(t, body, e, func(b []byte) (json.Marshaler, error) { return ParseEvent(b) }, eventKeys)
		if c, err := json.Marshal(e.Clone()); err != nil || !bytes.Equal(c, out) {
			t.Fatalf("the clone encodes as %s (%v), not %s", c, err, out)
		}
	})
}

// checkStable encodes v, decoded from body, and checks that the encoding
// decodes (with parse) and encodes to the same bytes, and that it keeps
// every key of body, those not in known with their values (as JSON
// values: json.Marshal escapes "&", "<" and ">" in what MarshalJSON
// returns). It returns the encoding.
func checkStable(t *testing.T, body []byte, v json.Marshaler, parse func([]byte) (json.Marshaler, error), known []string) []byte {
	t.Helper()
	out, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("a decoded message does not encode: %v", err)
	}
	v2, err := parse(out)
	if err != nil {
		t.Fatalf("the encoding %s does not decode: %v", out, err)
	}
	out2, err := json.Marshal(v2)
	if err != nil || !bytes.Equal(out, out2) {
		t.Fatalf("a second encoding differs (%v):\n%s\n%s", err, out, out2)
	}
	var in, got map[string]json.RawMessage
	if err := json.Unmarshal(body, &in); err != nil {
		t.Fatalf("a message decoded from a body that is not an object: %v", err)
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	for k, raw := range in {
		g, ok := got[k]
		if !ok {
			t.Fatalf("the encoding %s lost the key %q", out, k)
		}
		if !isKnown(k, known) && !reflect.DeepEqual(jsonValue(t, g), jsonValue(t, raw)) {
			t.Fatalf("unknown key %q: %s became %s", k, raw, g)
		}
	}
	return out
}

func isKnown(k string, known []string) bool {
	for _, n := range known {
		if k == n {
			return true
		}
	}
	return false
}
