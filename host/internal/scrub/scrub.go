// Package scrub removes the values of a worker's sensitive config
// attributes from what the worker reports to the host (its log lines and
// stderr, the errors of its RPCs, its status details, the names of its
// metrics) before the host stores or shows any of it.
//
// The rule for a value of length n:
//
//   - n >= MinSubstring (4 bytes): every occurrence is replaced by Redacted,
//     inside any text, in each of the forms it takes when quoted or escaped:
//     as is, Go-quoted (%q), JSON-escaped (with and without HTML escaping),
//     URL query- and path-escaped;
//   - shorter: replaced only where it is a whole value: a whole string (a
//     log field, a JSON string, a message), or a number equal to it. Inside
//     free text it is kept: replacing "ab" or "1" wherever it occurs would
//     destroy the logs and protect little (a value that short is guessed in
//     a few tries anyway).
//
// Text cut short (a log line over its length cap) loses a trailing prefix of
// a value too, so the part of a value that was cut never shows (TrimPartial).
//
// A nil *Scrubber, or one with no values, changes nothing.
package scrub

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Redacted replaces a sensitive value.
const Redacted = "(sensitive)"

// MinSubstring is the length from which a value is replaced wherever it
// occurs in a text; shorter values only when they are a whole value.
const MinSubstring = 4

// Scrubber replaces the sensitive values of one worker. Its methods are
// safe for concurrent use (it is never changed once made).
type Scrubber struct {
	// long are the forms of length >= MinSubstring, longest first.
	long []string
	// whole holds every form of every value, the short ones too.
	whole map[string]struct{}
}

// New returns a Scrubber of the given sensitive values. Empty values are
// ignored; with none left it returns nil, which scrubs nothing.
func New(values ...string) *Scrubber {
	s := &Scrubber{whole: map[string]struct{}{}}
	for _, v := range values {
		for _, f := range Forms(v) {
			if _, dup := s.whole[f]; dup {
				continue
			}
			s.whole[f] = struct{}{}
			if len(f) >= MinSubstring {
				s.long = append(s.long, f)
			}
		}
	}
	if len(s.whole) == 0 {
		return nil
	}
	slices.SortStableFunc(s.long, func(a, b string) int { return len(b) - len(a) })
	return s
}

// Merge returns a Scrubber of the values of both (either may be nil).
func Merge(a, b *Scrubber) *Scrubber {
	switch {
	case a.Empty():
		return b
	case b.Empty():
		return a
	}
	out := &Scrubber{whole: make(map[string]struct{}, len(a.whole)+len(b.whole))}
	for _, s := range []*Scrubber{a, b} {
		for f := range s.whole {
			if _, dup := out.whole[f]; !dup {
				out.whole[f] = struct{}{}
				if len(f) >= MinSubstring {
					out.long = append(out.long, f)
				}
			}
		}
	}
	slices.Sort(out.long)
	slices.SortStableFunc(out.long, func(a, b string) int { return len(b) - len(a) })
	return out
}

// Forms returns the ways v can appear in text: as is, Go-quoted, JSON
// string content (HTML-escaped as encoding/json does by default, and not),
// URL query- and path-escaped. Duplicates are left out.
func Forms(v string) []string {
	if v == "" {
		return nil
	}
	out := []string{v}
	add := func(f string) {
		if f != "" && !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	q := strconv.Quote(v)
	add(q[1 : len(q)-1])
	if b, err := json.Marshal(v); err == nil {
		add(string(b[1 : len(b)-1]))
	}
	var sb strings.Builder
	enc := json.NewEncoder(&sb)
	enc.SetEscapeHTML(false)
	if enc.Encode(v) == nil {
		j := strings.TrimSpace(sb.String())
		add(j[1 : len(j)-1])
	}
	add(url.QueryEscape(v))
	add(url.PathEscape(v))
	return out
}

// Empty reports whether s replaces nothing.
func (s *Scrubber) Empty() bool { return s == nil || len(s.whole) == 0 }

// String scrubs a text: a whole text equal to a value is Redacted, and
// values of MinSubstring bytes or more are replaced wherever they occur.
func (s *Scrubber) String(t string) string {
	if s.Empty() || t == "" {
		return t
	}
	if _, ok := s.whole[t]; ok {
		return Redacted
	}
	for _, f := range s.long {
		if strings.Contains(t, f) {
			t = strings.ReplaceAll(t, f, Redacted)
		}
	}
	return t
}

// Contains reports whether String would change t.
func (s *Scrubber) Contains(t string) bool {
	if s.Empty() {
		return false
	}
	if _, ok := s.whole[t]; ok {
		return true
	}
	for _, f := range s.long {
		if strings.Contains(t, f) {
			return true
		}
	}
	return false
}

// TrimPartial scrubs t, a text that was cut short, and then removes a
// trailing beginning of a value (of MinSubstring bytes or more): the rest of
// that value was cut, and its beginning must not show either.
func (s *Scrubber) TrimPartial(t string) string {
	t = s.String(t)
	if s.Empty() {
		return t
	}
	cut := 0
	for _, f := range s.long {
		for k := min(len(f)-1, len(t)); k > cut; k-- {
			if strings.HasSuffix(t, f[:k]) {
				cut = k
				break
			}
		}
	}
	return t[:len(t)-cut]
}

// Value scrubs a value of a log field or a decoded JSON document: strings
// as String does, numbers equal to a value, the elements of slices and
// maps (keys too), errors and Stringers by their text. Other values are
// scrubbed by their %v text when that contains a value.
func (s *Scrubber) Value(v any) any {
	if s.Empty() {
		return v
	}
	switch x := v.(type) {
	case nil, bool:
		return v
	case string:
		return s.String(x)
	case []byte:
		return s.String(string(x))
	case json.Number: // a Stringer, but scrubbed as the number it is
		return s.number(v, string(x))
	case error:
		if t := x.Error(); s.Contains(t) {
			return s.String(t)
		}
		return v
	case fmt.Stringer:
		if t := x.String(); s.Contains(t) {
			return s.String(t)
		}
		return v
	case float64:
		return s.number(v, strconv.FormatFloat(x, 'f', -1, 64))
	case float32:
		return s.number(v, strconv.FormatFloat(float64(x), 'f', -1, 32))
	case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return s.number(v, fmt.Sprint(x))
	case []any:
		out := make([]any, len(x))
		for i := range x {
			out[i] = s.Value(x[i])
		}
		return out
	case []string:
		out := make([]string, len(x))
		for i := range x {
			out[i] = s.String(x[i])
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[s.String(k)] = s.Value(e)
		}
		return out
	case map[string]string:
		out := make(map[string]string, len(x))
		for k, e := range x {
			out[s.String(k)] = s.String(e)
		}
		return out
	}
	if t := fmt.Sprintf("%v", v); s.Contains(t) {
		return s.String(t)
	}
	return v
}

func (s *Scrubber) number(v any, text string) any {
	if _, ok := s.whole[text]; ok {
		return Redacted
	}
	return v
}

// JSON scrubs the strings, keys and numbers of a JSON document and returns
// it re-encoded. A document that is not valid JSON is refused (ok false):
// what a worker sends is shown only once it has been scrubbed. Numbers are
// kept as written (json.Number), so an integer past 2^53 stays exact.
func (s *Scrubber) JSON(doc []byte) ([]byte, bool) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, false
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, false // trailing data, as json.Unmarshal refuses it
	}
	v = s.Value(v)
	out, err := json.Marshal(v)
	if err != nil {
		return nil, false
	}
	return out, true
}
