package vumiref

import "fmt"

// MissingFieldError reports a field that a Vumi message must have but lacks
// (Vumi's MissingMessageField). On a message built in Go, an empty required
// string (message_id, event_id, ...) and a zero Timestamp count as missing.
type MissingFieldError struct {
	Field string // the JSON key, e.g. "to_addr"
}

func (e *MissingFieldError) Error() string {
	return fmt.Sprintf("vumi: missing field %q", e.Field)
}

// InvalidFieldError reports a field whose value Vumi would reject or that
// does not have the JSON type this package expects (Vumi's
// InvalidMessageField).
type InvalidFieldError struct {
	Field  string // the JSON key, e.g. "session_event"
	Value  string // the offending value as JSON, e.g. `"foo"`
	Reason string // what was expected
}

func (e *InvalidFieldError) Error() string {
	msg := fmt.Sprintf("vumi: invalid %s %s", e.Field, e.Value)
	if e.Reason != "" {
		msg += " (" + e.Reason + ")"
	}
	return msg
}

func invalid(field string, value any, reason string) error {
	var v string
	switch x := value.(type) {
	case string:
		v = fmt.Sprintf("%q", x)
	case []byte:
		v = string(x)
	case nil:
		v = "null"
	default:
		v = fmt.Sprint(x)
	}
	return &InvalidFieldError{Field: field, Value: v, Reason: reason}
}
