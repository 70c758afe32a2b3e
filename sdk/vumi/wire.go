package vumi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// The codec: a hand-written JSON reader and writer for the two message
// types, with no reflection on the path of a message. They accept and
// write exactly what encoding/json did for this package before (the
// reference kept in internal/vumiref, which FuzzAgainstReference checks
// them against): the same grammar, the same string unescaping (invalid
// UTF-8 and lone surrogates become U+FFFD), the same escaping on output
// (encoding/json's, without HTML escaping: non-ASCII is written as UTF-8,
// U+2028 and U+2029 as \u2028 and \u2029), keys sorted, no insignificant
// space.

// presence records how a known key looked in the JSON a message was decoded
// from, so that encoding gives back what Vumi's from_json + to_json would:
// keys Vumi tolerates missing stay missing, explicit nulls stay null, and
// an empty string stays an empty string (the fields are plain strings, in
// which "" otherwise stands for null).
type presence uint8

const (
	unknown presence = iota // built in Go, not decoded (or given a default)
	absent                  // key not in the decoded JSON
	isNull                  // key present with value null
	isValue                 // key present with a value (a non-empty string)
	isEmpty                 // key present with the empty string
)

// maxDepth is encoding/json's limit on nesting.
const maxDepth = 10000

// syntaxError is a JSON syntax error at offset off.
type syntaxError struct {
	msg string
	off int
}

func (e *syntaxError) Error() string { return fmt.Sprintf("%s (at byte %d)", e.msg, e.off) }

// span is the raw JSON value of a key, data[start:end]; end == 0 when the key
// was not seen.
type span struct{ start, end int }

func (s span) seen() bool { return s.end > 0 }

// rawField is an unknown key and its raw value.
type rawField struct {
	key string
	val span
}

// reader scans JSON.
type reader struct {
	data  []byte
	pos   int
	depth int
}

func (r *reader) errorf(format string, args ...any) error {
	return &syntaxError{msg: fmt.Sprintf(format, args...), off: r.pos}
}

func (r *reader) skipSpace() {
	for r.pos < len(r.data) {
		switch r.data[r.pos] {
		case ' ', '\t', '\n', '\r':
			r.pos++
		default:
			return
		}
	}
}

func (r *reader) unexpected(what string) error {
	if r.pos >= len(r.data) {
		return r.errorf("unexpected end of JSON input")
	}
	return r.errorf("invalid character %s %s", quoteChar(r.data[r.pos]), what)
}

func quoteChar(c byte) string {
	if c == '\'' {
		return `'\''`
	}
	if c == '"' {
		return `'"'`
	}
	s := strconv.Quote(string(rune(c)))
	return "'" + s[1:len(s)-1] + "'"
}

// readObject reads the top-level object of a message, calling field for
// each member with its key (unescaped) and the span of its value. It fails
// on anything but one JSON object, surrounded by optional space.
func (r *reader) readObject(field func(key []byte, val span)) error {
	r.skipSpace()
	if r.pos >= len(r.data) || r.data[r.pos] != '{' {
		if r.pos < len(r.data) {
			v, err := r.value()
			if err != nil {
				return err
			}
			r.skipSpace()
			if r.pos < len(r.data) {
				return r.unexpected("after top-level value")
			}
			if string(r.data[v.start:v.end]) == "null" {
				return errGotNull
			}
			return errors.New("want a JSON object")
		}
		return r.unexpected("looking for beginning of value")
	}
	r.pos++
	r.depth = 1
	var keyBuf []byte
	r.skipSpace()
	if r.pos < len(r.data) && r.data[r.pos] == '}' {
		r.pos++
	} else {
		for {
			r.skipSpace()
			if r.pos >= len(r.data) || r.data[r.pos] != '"' {
				return r.unexpected("looking for beginning of object key string")
			}
			ks := r.pos
			if err := r.skipString(); err != nil {
				return err
			}
			key := r.data[ks+1 : r.pos-1]
			if !plainString(r.data[ks:r.pos]) {
				var ok bool
				if keyBuf, ok = unquoteInto(keyBuf[:0], r.data[ks:r.pos]); !ok {
					return r.errorf("invalid string")
				}
				key = keyBuf
			}
			r.skipSpace()
			if r.pos >= len(r.data) || r.data[r.pos] != ':' {
				return r.unexpected("after object key")
			}
			r.pos++
			r.skipSpace()
			val, err := r.value()
			if err != nil {
				return err
			}
			field(key, val)
			r.skipSpace()
			if r.pos < len(r.data) && r.data[r.pos] == ',' {
				r.pos++
				continue
			}
			if r.pos < len(r.data) && r.data[r.pos] == '}' {
				r.pos++
				break
			}
			return r.unexpected("after object key:value pair")
		}
	}
	r.skipSpace()
	if r.pos < len(r.data) {
		return r.unexpected("after top-level value")
	}
	return nil
}

var errGotNull = errors.New("got null, want a JSON object")

// value skips one JSON value starting at r.pos (no leading space), checking
// its syntax, and returns its span.
func (r *reader) value() (span, error) {
	start := r.pos
	if r.pos >= len(r.data) {
		return span{}, r.unexpected("looking for beginning of value")
	}
	switch c := r.data[r.pos]; {
	case c == '"':
		if err := r.skipString(); err != nil {
			return span{}, err
		}
	case c == '{':
		if err := r.skipContainer('{', '}'); err != nil {
			return span{}, err
		}
	case c == '[':
		if err := r.skipContainer('[', ']'); err != nil {
			return span{}, err
		}
	case c == '-' || c >= '0' && c <= '9':
		if err := r.skipNumber(); err != nil {
			return span{}, err
		}
	case c == 't':
		if err := r.literal("true"); err != nil {
			return span{}, err
		}
	case c == 'f':
		if err := r.literal("false"); err != nil {
			return span{}, err
		}
	case c == 'n':
		if err := r.literal("null"); err != nil {
			return span{}, err
		}
	default:
		return span{}, r.unexpected("looking for beginning of value")
	}
	return span{start, r.pos}, nil
}

func (r *reader) literal(lit string) error {
	for i := 0; i < len(lit); i++ {
		if r.pos >= len(r.data) {
			return r.unexpected("")
		}
		if r.data[r.pos] != lit[i] {
			return r.unexpected("in literal " + lit + " (expecting " + quoteChar(lit[i]) + ")")
		}
		r.pos++
	}
	return nil
}

// skipString skips a string starting at r.pos, which is '"'.
func (r *reader) skipString() error {
	r.pos++
	for r.pos < len(r.data) {
		// Skip a run of plain bytes first.
		for r.pos < len(r.data) {
			if c := r.data[r.pos]; c == '"' || c == '\\' || c < 0x20 {
				break
			}
			r.pos++
		}
		if r.pos >= len(r.data) {
			break
		}
		c := r.data[r.pos]
		switch {
		case c == '"':
			r.pos++
			return nil
		case c == '\\':
			r.pos++
			if r.pos >= len(r.data) {
				return r.unexpected("")
			}
			switch r.data[r.pos] {
			case 'b', 'f', 'n', 'r', 't', '\\', '/', '"':
				r.pos++
			case 'u':
				r.pos++
				for range 4 {
					if r.pos >= len(r.data) {
						return r.unexpected("")
					}
					if !isHex(r.data[r.pos]) {
						return r.unexpected("in \\u hexadecimal character escape")
					}
					r.pos++
				}
			default:
				return r.unexpected("in string escape code")
			}
		case c < 0x20:
			return r.unexpected("in string literal")
		default:
			r.pos++
		}
	}
	return r.unexpected("")
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func (r *reader) digits() {
	for r.pos < len(r.data) && r.data[r.pos] >= '0' && r.data[r.pos] <= '9' {
		r.pos++
	}
}

func (r *reader) skipNumber() error {
	if r.data[r.pos] == '-' {
		r.pos++
		if r.pos >= len(r.data) {
			return r.unexpected("")
		}
		if c := r.data[r.pos]; c < '0' || c > '9' {
			return r.unexpected("in numeric literal")
		}
	}
	if r.data[r.pos] == '0' {
		r.pos++
	} else {
		r.digits()
	}
	if r.pos < len(r.data) && r.data[r.pos] == '.' {
		r.pos++
		if r.pos >= len(r.data) {
			return r.unexpected("")
		}
		if c := r.data[r.pos]; c < '0' || c > '9' {
			return r.unexpected("after decimal point in numeric literal")
		}
		r.digits()
	}
	if r.pos < len(r.data) && (r.data[r.pos] == 'e' || r.data[r.pos] == 'E') {
		r.pos++
		if r.pos < len(r.data) && (r.data[r.pos] == '+' || r.data[r.pos] == '-') {
			r.pos++
		}
		if r.pos >= len(r.data) {
			return r.unexpected("")
		}
		if c := r.data[r.pos]; c < '0' || c > '9' {
			return r.unexpected("in exponent of numeric literal")
		}
		r.digits()
	}
	return nil
}

// skipContainer skips an object or array starting at r.pos.
func (r *reader) skipContainer(open, close byte) error {
	r.depth++
	if r.depth > maxDepth {
		return r.errorf("exceeded max depth")
	}
	r.pos++
	r.skipSpace()
	if r.pos < len(r.data) && r.data[r.pos] == close {
		r.pos++
		r.depth--
		return nil
	}
	for {
		r.skipSpace()
		if open == '{' {
			if r.pos >= len(r.data) || r.data[r.pos] != '"' {
				return r.unexpected("looking for beginning of object key string")
			}
			if err := r.skipString(); err != nil {
				return err
			}
			r.skipSpace()
			if r.pos >= len(r.data) || r.data[r.pos] != ':' {
				return r.unexpected("after object key")
			}
			r.pos++
			r.skipSpace()
		}
		if _, err := r.value(); err != nil {
			return err
		}
		r.skipSpace()
		if r.pos < len(r.data) && r.data[r.pos] == ',' {
			r.pos++
			continue
		}
		if r.pos < len(r.data) && r.data[r.pos] == close {
			r.pos++
			r.depth--
			return nil
		}
		if open == '{' {
			return r.unexpected("after object key:value pair")
		}
		return r.unexpected("after array element")
	}
}

// unquoteInto appends the contents of the JSON string s (with its quotes,
// already checked by skipString) to dst, as encoding/json unquotes it:
// invalid UTF-8 and lone surrogates become U+FFFD.
func unquoteInto(dst, s []byte) ([]byte, bool) {
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return dst, false
	}
	s = s[1 : len(s)-1]
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\\':
			if i+1 >= len(s) {
				return dst, false
			}
			switch s[i+1] {
			case '"', '\\', '/', '\'':
				dst = append(dst, s[i+1])
			case 'b':
				dst = append(dst, '\b')
			case 'f':
				dst = append(dst, '\f')
			case 'n':
				dst = append(dst, '\n')
			case 'r':
				dst = append(dst, '\r')
			case 't':
				dst = append(dst, '\t')
			case 'u':
				rr := getu4(s[i:])
				if rr < 0 {
					return dst, false
				}
				i += 6
				if utf16.IsSurrogate(rr) {
					rr1 := getu4(s[i:])
					if dec := utf16.DecodeRune(rr, rr1); dec != unicode.ReplacementChar {
						i += 6
						dst = utf8.AppendRune(dst, dec)
						continue
					}
					rr = unicode.ReplacementChar
				}
				dst = utf8.AppendRune(dst, rr)
				continue
			default:
				return dst, false
			}
			i += 2
		case c == '"', c < ' ':
			return dst, false
		case c < utf8.RuneSelf:
			// Copy a run of plain ASCII at once.
			j := i + 1
			for j < len(s) && s[j] < utf8.RuneSelf && s[j] != '\\' && s[j] != '"' && s[j] >= ' ' {
				j++
			}
			dst = append(dst, s[i:j]...)
			i = j
		default:
			rr, size := utf8.DecodeRune(s[i:])
			i += size
			dst = utf8.AppendRune(dst, rr)
		}
	}
	return dst, true
}

// getu4 decodes \uXXXX from the beginning of s, returning the hex value,
// or -1.
func getu4(s []byte) rune {
	if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
		return -1
	}
	var r rune
	for _, c := range s[2:6] {
		switch {
		case '0' <= c && c <= '9':
			c = c - '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}

// unquote returns the string the JSON string s holds. A string without
// escapes is a substring of the message's text (one allocation for all).
func (f *fields) unquote(s span) string {
	if plainString(f.data[s.start:s.end]) {
		return f.text[s.start+1 : s.end-1]
	}
	v, _ := unquote(f.data[s.start:s.end])
	return v
}

func plainString(s []byte) bool {
	if len(s) < 2 {
		return false
	}
	for _, c := range s[1 : len(s)-1] {
		if c < ' ' || c == '\\' || c == '"' || c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// unquote returns the string the JSON string s holds.
func unquote(s []byte) (string, bool) {
	// The common case, a string of plain ASCII without escapes, is the
	// bytes between the quotes.
	plain := len(s) >= 2
	for i := 1; plain && i < len(s)-1; i++ {
		if c := s[i]; c < ' ' || c == '\\' || c == '"' || c >= utf8.RuneSelf {
			plain = false
		}
	}
	if plain {
		return string(s[1 : len(s)-1]), true
	}
	b, ok := unquoteInto(make([]byte, 0, len(s)), s)
	return string(b), ok
}

// fields is a decoded object's known keys (by index) and unknown ones.
type fields struct {
	data  []byte
	text  string       // data as a string: decoded strings without escapes are substrings of it
	known [umKeys]span // by key index (events use the first evKeys)
	extra []rawField
}

// readFields reads a message's object into f, whose known spans are by
// key index (later duplicates win, as with encoding/json).
func readFields(f *fields, data []byte, what string, index func(key []byte) int) error {
	f.data, f.text = data, string(data)
	r := reader{data: data}
	err := r.readObject(func(key []byte, val span) {
		if i := index(key); i >= 0 {
			f.known[i] = val
			return
		}
		k := string(key)
		for j := range f.extra {
			if f.extra[j].key == k {
				f.extra[j].val = val
				return
			}
		}
		f.extra = append(f.extra, rawField{k, val})
	})
	if err != nil {
		return fmt.Errorf("vumi: decoding %s: %w", what, err)
	}
	return nil
}

func (f *fields) raw(s span) []byte { return f.data[s.start:s.end] }

// presence reports how key index i looked.
func (f *fields) presence(i int) presence {
	s := f.known[i]
	switch {
	case !s.seen():
		return absent
	case f.data[s.start] == 'n':
		return isNull
	case s.end-s.start == 2 && f.data[s.start] == '"':
		return isEmpty
	}
	return isValue
}

// str decodes a string-or-null key: null (or no key) is "".
func (f *fields) str(i int, key string) (string, error) {
	s := f.known[i]
	if !s.seen() || f.data[s.start] == 'n' {
		return "", nil
	}
	if f.data[s.start] != '"' {
		return "", invalid(key, f.raw(s), "want a string or null")
	}
	return f.unquote(s), nil
}

// reqNullStr decodes a key that must be present and a string or null.
func (f *fields) reqNullStr(i int, key string) (string, error) {
	v, err := f.str(i, key)
	if err != nil {
		return "", err
	}
	if !f.known[i].seen() {
		return "", &MissingFieldError{Field: key}
	}
	return v, nil
}

// emptyOnly is the presence a copy of a field of presence p gets in a
// message built from it: an empty string stays one, anything else is as
// if built in Go.
func emptyOnly(p presence) presence {
	if p == isEmpty {
		return isEmpty
	}
	return unknown
}

// reqStr decodes a key that must be present and a string.
func (f *fields) reqStr(i int, key string) (string, error) {
	s := f.known[i]
	if !s.seen() {
		return "", &MissingFieldError{Field: key}
	}
	switch f.data[s.start] {
	case 'n':
		return "", invalid(key, nil, "want a string")
	case '"':
		return f.unquote(s), nil
	}
	return "", invalid(key, f.raw(s), "want a string or null")
}

// object decodes an object-or-null key, keeping numbers as json.Number so
// that they are written back exactly as they came.
func (f *fields) object(i int, key string) (map[string]any, error) {
	s := f.known[i]
	if !s.seen() || f.data[s.start] == 'n' {
		return nil, nil
	}
	if f.data[s.start] != '{' {
		return nil, invalid(key, f.raw(s), "want an object or null")
	}
	v, _ := parseValue(f.data, s.start)
	return v.(map[string]any), nil
}

func (f *fields) timestamp(i int) (Timestamp, error) {
	s := f.known[i]
	const want = "want a string like \"2006-01-02 15:04:05.000000\""
	switch {
	case !s.seen():
		return Timestamp{}, &MissingFieldError{Field: "timestamp"}
	case f.data[s.start] == 'n':
		return Timestamp{}, invalid("timestamp", nil, want)
	case f.data[s.start] != '"':
		return Timestamp{}, invalid("timestamp", f.raw(s), want)
	}
	str := f.unquote(s)
	t, err := ParseTimestamp(str)
	if err != nil {
		return Timestamp{}, invalid("timestamp", str, "want \"%Y-%m-%d %H:%M:%S.%f\" or \"%Y-%m-%d %H:%M:%S\"")
	}
	return t, nil
}

// messageVersion checks message_version first, as Vumi does.
func (f *fields) messageVersion(i int) (string, error) {
	s := f.known[i]
	if !s.seen() {
		return "", &MissingFieldError{Field: "message_version"}
	}
	if string(f.raw(s)) != `"`+MessageVersion+`"` {
		if v, _ := unquote(f.raw(s)); f.data[s.start] != '"' || v != MessageVersion {
			return "", invalid("message_version", f.raw(s), "want \""+MessageVersion+"\"")
		}
	}
	return MessageVersion, nil
}

// extraMap returns the unknown keys with copies of their raw values, or nil
// if there are none.
func (f *fields) extraMap() map[string]json.RawMessage {
	if len(f.extra) == 0 {
		return nil
	}
	m := make(map[string]json.RawMessage, len(f.extra))
	for _, e := range f.extra {
		m[e.key] = json.RawMessage(slices.Clone(f.raw(e.val)))
	}
	return m
}

// parseValue decodes the JSON value at data[pos:], which has been checked,
// into what encoding/json with UseNumber gives for an any: map[string]any,
// []any, string, json.Number, bool or nil. It returns the value and the
// offset after it.
func parseValue(data []byte, pos int) (any, int) {
	r := reader{data: data, pos: pos}
	return r.parse(), r.pos
}

func (r *reader) parse() any {
	start := r.pos
	switch c := r.data[r.pos]; c {
	case '{':
		m := map[string]any{}
		r.pos++
		r.skipSpace()
		if r.data[r.pos] == '}' {
			r.pos++
			return m
		}
		for {
			r.skipSpace()
			ks := r.pos
			_ = r.skipString()
			k, _ := unquote(r.data[ks:r.pos])
			r.skipSpace()
			r.pos++ // ':'
			r.skipSpace()
			m[k] = r.parse()
			r.skipSpace()
			c := r.data[r.pos]
			r.pos++
			if c == '}' {
				return m
			}
		}
	case '[':
		a := []any{}
		r.pos++
		r.skipSpace()
		if r.data[r.pos] == ']' {
			r.pos++
			return a
		}
		for {
			r.skipSpace()
			a = append(a, r.parse())
			r.skipSpace()
			c := r.data[r.pos]
			r.pos++
			if c == ']' {
				return a
			}
		}
	case '"':
		_ = r.skipString()
		s, _ := unquote(r.data[start:r.pos])
		return s
	case 't':
		r.pos += 4
		return true
	case 'f':
		r.pos += 5
		return false
	case 'n':
		r.pos += 4
		return nil
	default:
		_ = r.skipNumber()
		return json.Number(r.data[start:r.pos])
	}
}

// writer builds the JSON object of a message: its keys in sorted order,
// the known ones (in sorted order, by the caller) merged with the unknown
// ones (Extra).
type writer struct {
	b     []byte
	n     int      // members written
	extra []string // sorted unknown keys still to write
	xm    map[string]json.RawMessage
	err   error
}

func newWriter(b []byte, extra map[string]json.RawMessage, isKnown func(string) bool) writer {
	w := writer{b: append(b, '{'), xm: extra}
	if len(extra) > 0 {
		for k := range extra {
			if !isKnown(k) {
				w.extra = append(w.extra, k)
			}
		}
		slices.Sort(w.extra)
	}
	return w
}

// key starts the member key, first writing the unknown keys that sort
// before it.
func (w *writer) key(key string) {
	for len(w.extra) > 0 && w.extra[0] < key {
		w.writeExtra()
	}
	w.sep()
	w.b = append(w.b, '"')
	w.b = append(w.b, key...) // known keys need no escaping
	w.b = append(w.b, '"', ':')
}

func (w *writer) sep() {
	if w.n > 0 {
		w.b = append(w.b, ',')
	}
	w.n++
}

func (w *writer) writeExtra() {
	k := w.extra[0]
	w.extra = w.extra[1:]
	w.sep()
	w.b = appendString(w.b, k)
	w.b = append(w.b, ':')
	raw := w.xm[k]
	if raw == nil {
		w.b = append(w.b, "null"...)
		return
	}
	var err error
	if w.b, err = appendCompact(w.b, raw); err != nil && w.err == nil {
		w.err = fmt.Errorf("vumi: encoding %s: json: error calling MarshalJSON for type json.RawMessage: %w", k, err)
	}
}

func (w *writer) finish() ([]byte, error) {
	for len(w.extra) > 0 {
		w.writeExtra()
	}
	if w.err != nil {
		return nil, w.err
	}
	return append(w.b, '}'), nil
}

func (w *writer) putString(key, v string) {
	w.key(key)
	w.b = appendString(w.b, v)
}

func (w *writer) putNull(key string) {
	w.key(key)
	w.b = append(w.b, "null"...)
}

func (w *writer) putTimestamp(key string, t Timestamp) {
	w.key(key)
	w.b = append(w.b, '"')
	w.b = t.appendVumi(w.b)
	w.b = append(w.b, '"')
}

// str writes a string-or-null key. A non-empty value is written as it is;
// "" is written as "" if the key held "" in the decoded JSON, left out if
// the key was absent from it (or the message was built in Go and the key
// is not nullable), and null otherwise.
func (w *writer) str(key, v string, p presence, nullable bool) {
	switch {
	case v != "":
		w.putString(key, v)
	case p == isEmpty:
		w.putString(key, "")
	case p == absent:
	case p == isNull, p == isValue, nullable:
		w.putNull(key)
	}
}

// object writes an object key. A nil map is written as {} unless the key
// was absent from (omitted) or null in (null) the decoded JSON.
func (w *writer) object(key string, m map[string]any, p presence) {
	switch {
	case m != nil:
		w.key(key)
		var err error
		if w.b, err = appendValue(w.b, m, 0); err != nil && w.err == nil {
			w.err = fmt.Errorf("vumi: encoding %s: %w", key, err)
		}
	case p == absent:
	case p == isNull:
		w.putNull(key)
	default:
		w.key(key)
		w.b = append(w.b, '{', '}')
	}
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string, escaped as encoding/json does
// without HTML escaping.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= ' ' && b != '"' && b != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendValue appends v as encoding/json (without HTML escaping) encodes
// it. The types a decoded message holds are written here; others go
// through encoding/json.
func appendValue(dst []byte, v any, depth int) ([]byte, error) {
	if depth > maxDepth {
		return marshalInto(dst, v) // encoding/json reports the cycle
	}
	switch x := v.(type) {
	case nil:
		return append(dst, "null"...), nil
	case string:
		return appendString(dst, x), nil
	case bool:
		return strconv.AppendBool(dst, x), nil
	case json.Number:
		if x == "" {
			return append(dst, '0'), nil
		}
		if !validNumber(x) {
			return dst, fmt.Errorf("json: invalid number literal %q", string(x))
		}
		return append(dst, x...), nil
	case int:
		return strconv.AppendInt(dst, int64(x), 10), nil
	case int64:
		return strconv.AppendInt(dst, x, 10), nil
	case map[string]any:
		if x == nil {
			return append(dst, "null"...), nil
		}
		dst = append(dst, '{')
		var small [16]string
		keys := small[:0]
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, k)
			dst = append(dst, ':')
			var err error
			if dst, err = appendValue(dst, x[k], depth+1); err != nil {
				return dst, err
			}
		}
		return append(dst, '}'), nil
	case []any:
		if x == nil {
			return append(dst, "null"...), nil
		}
		dst = append(dst, '[')
		for i, e := range x {
			if i > 0 {
				dst = append(dst, ',')
			}
			var err error
			if dst, err = appendValue(dst, e, depth+1); err != nil {
				return dst, err
			}
		}
		return append(dst, ']'), nil
	}
	return marshalInto(dst, v)
}

// marshalInto appends what encoding/json writes for v, without HTML
// escaping.
func marshalInto(dst []byte, v any) ([]byte, error) {
	b, err := marshal(v)
	if err != nil {
		return dst, err
	}
	return append(dst, b...), nil
}

// marshal is json.Marshal without HTML escaping (Vumi does not escape <, >
// and &) and without the trailing newline of json.Encoder.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// validNumber reports whether s is a JSON number.
func validNumber(s json.Number) bool {
	r := reader{data: []byte(s)}
	if len(s) == 0 || (s[0] != '-' && (s[0] < '0' || s[0] > '9')) {
		return false
	}
	return r.skipNumber() == nil && r.pos == len(s)
}

// appendCompact appends the JSON value raw with insignificant space
// removed, as encoding/json does with what a json.Marshaler returns, and
// fails if raw is not one JSON value.
func appendCompact(dst, raw []byte) ([]byte, error) {
	r := reader{data: raw}
	r.skipSpace()
	val, err := r.value()
	if err != nil {
		return dst, err
	}
	r.skipSpace()
	if r.pos < len(raw) {
		return dst, r.unexpected("after top-level value")
	}
	v := raw[val.start:val.end]
	if c := v[0]; c != '{' && c != '[' {
		return append(dst, v...), nil
	}
	// Copy, dropping space outside strings.
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		case '"':
			j := i + 1
			for v[j] != '"' {
				if v[j] == '\\' {
					j++
				}
				j++
			}
			dst = append(dst, v[i:j+1]...)
			i = j
			continue
		}
		dst = append(dst, c)
	}
	return dst, nil
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
