package control

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/dynworkers/dynworkers/host/internal/suggest"
)

// operations lists the operation names a request may carry, canonical names
// first and then the aliases, for messages and suggestions.
var operations = []string{OpStartWorker, OpStopWorker, OpRestartWorker, OpStatus, OpListClasses, OpReload,
	OpStartSupervisor, OpStopSupervisor, OpDrain, OpUndrain, OpClusterStatus, OpLogs, OpKillWorker, OpStartAlias}

// Decode parses a control message body. The body is either a Blinkenlights
// envelope
//
//	{"message_version": "20110707", "message_type": "control",
//	 "source_name": ..., "source_id": ..., "timestamp": [Y, M, D, h, m, s],
//	 "payload": {...}}
//
// or the bare payload object. An object with a "payload" member is an
// envelope; its other members are informational and not checked, so that
// any Blinkenlights publisher is understood. The payload's members are
// those of Request; unknown members are ignored (later versions may add
// some), and null means absent.
//
// Errors have CodeMalformed when the body is not JSON, not an object, the
// payload is not an object, or a member has the wrong JSON type (the
// Detail's Attribute names it): worker_config must be an object, replace
// and cluster booleans, constraints an object whose values are strings,
// intensity a number, period a string or a number, lines a whole number,
// after a whole number of 0 or more, the others strings; CodeUnknownOperation when the operation is missing or unknown.
// The alias "start_worker" is normalised to "vumi_worker". On success the
// Request's operation is a known one, but nothing else is validated yet:
// Dispatcher.Do does that.
//
// A body over DefaultMaxMessageBytes is refused (CodeMalformed, naming the
// limit) before it is parsed; Dispatcher.Handle applies the host's own
// limit (SetMaxMessageBytes) the same way.
//
// Error messages never quote the body, which may hold secrets.
func Decode(body []byte) (*Request, *Error) {
	if err := checkMessageSize(len(body), DefaultMaxMessageBytes); err != nil {
		return nil, err
	}
	req, err := decode(body)
	if err != nil {
		return nil, err
	}
	return req, nil
}

// decode is Decode, except that on error it returns what it could read of
// the request too (never nil), so that the reply to a bad request can still
// echo its request_id and the log can name its operation and worker.
func decode(body []byte) (*Request, *Error) {
	members, err := object(body)
	if err != nil {
		return &Request{}, malformed("", "the body is %s", err)
	}
	if raw, ok := members["payload"]; ok {
		if members, err = object(raw); err != nil {
			return &Request{}, malformed("payload", "the envelope's payload is %s", err)
		}
	}
	var req Request
	var errs []Detail
	str := func(field string, dst *string) {
		raw, ok := members[field]
		if !ok || isNull(raw) {
			return
		}
		if err := json.Unmarshal(raw, dst); err != nil {
			errs = append(errs, wrongType(field, "a string", raw))
		}
	}
	str("request_id", &req.RequestID)
	str("operation", &req.Operation)
	str("worker_name", &req.WorkerName)
	str("worker_class", &req.WorkerClass)
	str("supervisor", &req.Supervisor)
	str("supervisor_name", &req.SupervisorName)
	str("strategy", &req.Strategy)
	str("host", &req.Host)
	str("since", &req.Since)
	if err := checkRequestID(req.RequestID); err != nil {
		req.RequestID = "" // never echoed back
		return &req, err
	}
	if raw, ok := members["replace"]; ok && !isNull(raw) {
		if err := json.Unmarshal(raw, &req.Replace); err != nil {
			errs = append(errs, wrongType("replace", "true or false", raw))
		}
	}
	if raw, ok := members["cluster"]; ok && !isNull(raw) {
		if err := json.Unmarshal(raw, &req.Cluster); err != nil {
			errs = append(errs, wrongType("cluster", "true or false", raw))
		}
	}
	if raw, ok := members["constraints"]; ok && !isNull(raw) {
		c, d := decodeConstraints(raw)
		if d != nil {
			errs = append(errs, *d)
		} else {
			req.Constraints = c
		}
	}
	if raw, ok := members["worker_config"]; ok && !isNull(raw) {
		if kind(raw) != "an object" {
			errs = append(errs, wrongType("worker_config", "an object", raw))
		} else {
			req.WorkerConfig = raw
		}
	}
	if raw, ok := members["intensity"]; ok && !isNull(raw) {
		if kind(raw) != "a number" {
			errs = append(errs, wrongType("intensity", "a whole number", raw))
		} else {
			req.Intensity = raw
		}
	}
	if raw, ok := members["period"]; ok && !isNull(raw) {
		if k := kind(raw); k != "a string" && k != "a number" {
			errs = append(errs, wrongType("period", `a duration string such as "30s" or a number of seconds`, raw))
		} else {
			req.Period = raw
		}
	}
	if raw, ok := members["lines"]; ok && !isNull(raw) {
		if err := json.Unmarshal(raw, &req.Lines); err != nil {
			errs = append(errs, wrongType("lines", "a whole number", raw))
		}
	}
	if raw, ok := members["after"]; ok && !isNull(raw) {
		if err := json.Unmarshal(raw, &req.After); err != nil {
			errs = append(errs, wrongType("after", "a whole number of 0 or more (a seq of the log)", raw))
		}
	}
	if len(errs) > 0 {
		e := malformed(errs[0].Attribute, "%s", errs[0].Summary)
		if len(errs) > 1 {
			e.Message = fmt.Sprintf("%s (and %d more)", e.Message, len(errs)-1)
		}
		e.Details = errs
		return &req, e
	}
	op, err2 := normalizeOperation(req.Operation)
	if err2 != nil {
		return &req, err2
	}
	req.Operation = op
	return &req, nil
}

// normalizeOperation maps the alias to its canonical name and rejects
// unknown operations.
func normalizeOperation(op string) (string, *Error) {
	switch op {
	case "":
		return "", &Error{
			Code:    CodeUnknownOperation,
			Message: "the operation is missing: set \"operation\" to one of " + opList(),
			Details: []Detail{{Attribute: "operation", Summary: "Missing operation"}},
		}
	case OpStartAlias:
		return OpStartWorker, nil
	case OpStartWorker, OpStopWorker, OpRestartWorker, OpStatus, OpListClasses, OpReload,
		OpStartSupervisor, OpStopSupervisor, OpDrain, OpUndrain, OpClusterStatus, OpLogs, OpKillWorker:
		return op, nil
	}
	msg := fmt.Sprintf("unknown operation %s: use one of %s", quoteShort(op), opList())
	if m := suggest.Closest(op, operations); m != "" {
		msg = fmt.Sprintf("unknown operation %s: did you mean %q?", quoteShort(op), m)
	}
	return "", &Error{
		Code:    CodeUnknownOperation,
		Message: msg,
		Details: []Detail{{Attribute: "operation", Summary: "Unknown operation", Detail: "The operations are " + opList() + "."}},
	}
}

// object parses data as one JSON object. The error says what data is
// instead, in words that fit after "is".
func object(data []byte) (map[string]json.RawMessage, error) {
	if !json.Valid(data) {
		var v any
		err := json.Unmarshal(data, &v)
		var se *json.SyntaxError
		if errors.As(err, &se) {
			// A SyntaxError quotes at most one character of the input.
			return nil, fmt.Errorf("not valid JSON: %v (at byte %d)", se, se.Offset)
		}
		return nil, errors.New("not valid JSON")
	}
	if k := kind(data); k != "an object" {
		return nil, fmt.Errorf("%s, not a JSON object", k)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, errors.New("not a valid JSON object")
	}
	return m, nil
}

// kind names the JSON type of a valid JSON value, with its article.
func kind(raw []byte) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "empty"
	}
	switch raw[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

func isNull(raw []byte) bool { return kind(raw) == "null" }

// wrongType describes a member of the wrong JSON type without quoting its
// value, which may be a secret.
func wrongType(field, want string, raw []byte) Detail {
	return Detail{
		Attribute: field,
		Summary:   fmt.Sprintf("%q must be %s, not %s", field, want, kind(raw)),
	}
}

// decodeConstraints decodes the constraints member: an object whose
// values are strings (null values and an empty object are none). Its
// error names the field and the key at fault, never a value.
func decodeConstraints(raw json.RawMessage) (map[string]string, *Detail) {
	if kind(raw) != "an object" {
		d := wrongType("constraints", `an object of labels, such as {"zone": "a"}`, raw)
		return nil, &d
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil {
		d := Detail{Attribute: "constraints", Summary: `"constraints" is not a valid JSON object`}
		return nil, &d
	}
	var out map[string]string
	for _, k := range slices.Sorted(maps.Keys(members)) { // the first bad key, always the same
		v := members[k]
		if isNull(v) {
			continue
		}
		if kind(v) != "a string" {
			return nil, &Detail{Attribute: "constraints",
				Summary: fmt.Sprintf("%q must map labels to strings: the value of %s is %s", "constraints", quoteShort(k), kind(v))}
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return nil, &Detail{Attribute: "constraints", Summary: fmt.Sprintf("%q: the value of %s is not a valid string", "constraints", quoteShort(k))}
		}
		if out == nil {
			out = map[string]string{}
		}
		out[k] = s
	}
	return out, nil
}

// malformed returns a CodeMalformed error; field, when not empty, becomes
// the Detail's Attribute.
func malformed(field, format string, args ...any) *Error {
	e := Errorf(CodeMalformed, format, args...)
	if field != "" {
		e.Details = []Detail{{Attribute: field, Summary: e.Message}}
	}
	return e
}

func opList() string {
	return `"vumi_worker" (alias "start_worker"), "stop_worker", "restart_worker", "status", "list_classes", "reload", "start_supervisor", "stop_supervisor", "drain", "undrain", "cluster_status", "logs" or "kill_worker"`
}

// quoteShort quotes s for a message or a log, cut to a sane length: the
// input comes from the network.
func quoteShort(s string) string {
	if c := cut(s, 100); len(c) < len(s) {
		return fmt.Sprintf("%q...", c)
	}
	return fmt.Sprintf("%q", s)
}

// cut returns at most the first n bytes of s, without splitting a UTF-8
// sequence.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}
