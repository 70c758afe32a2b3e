package vumiref

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
)

// presence records how a known key looked in the JSON a message was decoded
// from, so that encoding gives back what Vumi's from_json + to_json would:
// keys Vumi tolerates missing stay missing, explicit nulls stay null.
type presence uint8

const (
	unknown presence = iota // built in Go, not decoded
	absent                  // key not in the decoded JSON
	isNull                  // key present with value null
	isValue                 // key present with a value
)

// shape maps known keys to their presence in the decoded JSON. A nil shape
// is a message built in Go. A shape is never written after decoding, so
// copies of a message may share it.
type shape map[string]presence

func (s shape) of(key string) presence {
	if s == nil {
		return unknown
	}
	return s[key]
}

// decoder reads known keys out of a JSON object, removing them, so that what
// remains are the unknown keys.
type decoder struct {
	obj   map[string]json.RawMessage
	shape shape
}

func newDecoder(data []byte, what string) (*decoder, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil {
		return nil, fmt.Errorf("vumi: decoding %s: %w", what, err)
	}
	if obj == nil {
		return nil, fmt.Errorf("vumi: decoding %s: got null, want a JSON object", what)
	}
	return &decoder{obj: obj, shape: shape{}}, nil
}

// take removes key and reports its raw value and presence.
func (d *decoder) take(key string) (json.RawMessage, presence) {
	raw, ok := d.obj[key]
	if !ok {
		d.shape[key] = absent
		return nil, absent
	}
	delete(d.obj, key)
	if string(bytes.TrimSpace(raw)) == "null" {
		d.shape[key] = isNull
		return raw, isNull
	}
	d.shape[key] = isValue
	return raw, isValue
}

// backfill marks key as Vumi's validate_fields treats it when it is missing:
// it sets a default, so the key is written back on encode.
func (d *decoder) backfill(key string) {
	if d.shape[key] == absent {
		d.shape[key] = unknown
	}
}

func (d *decoder) require(key string) error {
	if d.shape[key] == absent {
		return &MissingFieldError{Field: key}
	}
	return nil
}

// str decodes a string-or-null key.
func (d *decoder) str(key string) (*string, error) {
	raw, p := d.take(key)
	if p != isValue {
		return nil, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, invalid(key, []byte(raw), "want a string or null")
	}
	return &s, nil
}

// reqNullStr decodes a key that must be present and a string or null.
func (d *decoder) reqNullStr(key string) (*string, error) {
	p, err := d.str(key)
	if err != nil {
		return nil, err
	}
	return p, d.require(key)
}

// reqStr decodes a key that must be present and a string.
func (d *decoder) reqStr(key string) (string, error) {
	p, err := d.str(key)
	if err != nil {
		return "", err
	}
	if err := d.require(key); err != nil {
		return "", err
	}
	if p == nil {
		return "", invalid(key, nil, "want a string")
	}
	return *p, nil
}

// object decodes an object-or-null key, keeping numbers as json.Number so that
// they are written back exactly as they came.
func (d *decoder) object(key string) (map[string]any, error) {
	raw, p := d.take(key)
	if p != isValue {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, invalid(key, []byte(raw), "want an object or null")
	}
	return m, nil
}

func (d *decoder) timestamp() (Timestamp, error) {
	raw, p := d.take("timestamp")
	switch p {
	case absent:
		return Timestamp{}, &MissingFieldError{Field: "timestamp"}
	case isNull:
		return Timestamp{}, invalid("timestamp", nil, "want a string like \"2006-01-02 15:04:05.000000\"")
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return Timestamp{}, invalid("timestamp", []byte(raw), "want a string like \"2006-01-02 15:04:05.000000\"")
	}
	t, err := ParseTimestamp(s)
	if err != nil {
		return Timestamp{}, invalid("timestamp", s, "want \"%Y-%m-%d %H:%M:%S.%f\" or \"%Y-%m-%d %H:%M:%S\"")
	}
	return t, nil
}

// messageVersion checks message_version first, as Vumi does.
func (d *decoder) messageVersion() (string, error) {
	raw, p := d.take("message_version")
	if p == absent {
		return "", &MissingFieldError{Field: "message_version"}
	}
	var s string
	if p != isValue || json.Unmarshal(raw, &s) != nil || s != MessageVersion {
		return "", invalid("message_version", []byte(raw), "want \""+MessageVersion+"\"")
	}
	return s, nil
}

// extra returns the keys that were not taken, or nil if there are none.
func (d *decoder) extra() map[string]json.RawMessage {
	if len(d.obj) == 0 {
		return nil
	}
	return d.obj
}

// encoder builds the JSON object of a message.
type encoder struct {
	out   map[string]json.RawMessage
	shape shape
	err   error
}

func newEncoder(s shape, extra map[string]json.RawMessage, known []string) *encoder {
	e := &encoder{out: make(map[string]json.RawMessage, len(extra)+len(known)), shape: s}
	for k, v := range extra {
		if !slices.Contains(known, k) {
			e.out[k] = v
		}
	}
	return e
}

func (e *encoder) put(key string, v any) {
	if e.err != nil {
		return
	}
	b, err := marshal(v)
	if err != nil {
		e.err = fmt.Errorf("vumi: encoding %s: %w", key, err)
		return
	}
	e.out[key] = b
}

// str writes a string-or-null key. A nil value is written as null unless
// the key was absent from the decoded JSON, or the message was built in Go
// and nullable is false.
func (e *encoder) str(key string, p *string, nullable bool) {
	switch pr := e.shape.of(key); {
	case p != nil:
		e.put(key, *p)
	case pr == absent:
	case pr == isNull, pr == isValue, nullable:
		e.put(key, nil)
	}
}

// object writes an object key. A nil map is written as {} unless the key was
// absent from (omitted) or null in (null) the decoded JSON.
func (e *encoder) object(key string, m map[string]any) {
	switch pr := e.shape.of(key); {
	case m != nil:
		e.put(key, m)
	case pr == absent:
	case pr == isNull:
		e.put(key, nil)
	default:
		e.put(key, map[string]any{})
	}
}

func (e *encoder) bytes() ([]byte, error) {
	if e.err != nil {
		return nil, e.err
	}
	return marshal(e.out)
}

// marshal is json.Marshal without HTML escaping (Vumi does not escape <, >
// and &) and without the trailing newline of json.Encoder. Maps come out
// with sorted keys.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// cloneValue deep-copies the maps and slices of a decoded JSON value.
func cloneValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		return cloneMap(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = cloneValue(e)
		}
		return out
	default:
		return v
	}
}

func cloneMap(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = cloneValue(v)
	}
	return out
}

func cloneRaw(m map[string]json.RawMessage) map[string]json.RawMessage {
	if m == nil {
		return nil
	}
	out := maps.Clone(m)
	for k, v := range out {
		out[k] = slices.Clone(v)
	}
	return out
}
