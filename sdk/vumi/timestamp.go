package vumi

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// TimestampLayout is Vumi's VUMI_DATE_FORMAT, "%Y-%m-%d %H:%M:%S.%f", as a
// Go layout. Vumi's timestamps are naive datetimes in UTC with microsecond
// precision.
const TimestampLayout = "2006-01-02 15:04:05.000000"

// timestampLayoutNoFraction is Vumi's _VUMI_DATE_FORMAT_NO_MICROSECONDS,
// which parse_vumi_date also accepts.
const timestampLayoutNoFraction = "2006-01-02 15:04:05"

// Timestamp is a point in time encoded the way Vumi encodes one: a JSON
// string such as "2026-11-27 01:02:03.000456", in UTC, without a zone
// suffix, to the microsecond.
//
// The embedded time.Time gives it the usual methods. Encoding converts to
// UTC and drops anything finer than a microsecond (Python's datetime has no
// more). Decoding accepts what Vumi's parse_vumi_date accepts: the layout
// above with 1 to 6 fractional digits, or no fractional part at all.
type Timestamp struct {
	time.Time
}

// Now is the current time as a Timestamp, in UTC and truncated to the
// microsecond, as Vumi's datetime.utcnow() default.
func Now() Timestamp {
	return NewTimestamp(time.Now())
}

// NewTimestamp converts t to UTC and truncates it to the microsecond.
func NewTimestamp(t time.Time) Timestamp {
	return Timestamp{t.UTC().Truncate(time.Microsecond)}
}

// ParseTimestamp parses a Vumi timestamp. Like Vumi's parse_vumi_date it
// reads the value with microseconds when a "." occurs in its last ten
// characters and without them otherwise. Fields must be zero-padded as Vumi
// writes them; zone suffixes ("Z", "+02:00") and the "T" separator are
// errors, as they are for Vumi.
func ParseTimestamp(s string) (Timestamp, error) {
	if t, ok := parseFast(s); ok {
		return t, nil
	}
	base, frac := s, ""
	tail := s
	if len(tail) > 10 {
		tail = tail[len(tail)-10:]
	}
	if strings.Contains(tail, ".") {
		i := strings.LastIndexByte(s, '.')
		base, frac = s[:i], s[i+1:]
		if len(frac) < 1 || len(frac) > 6 || strings.Trim(frac, "0123456789") != "" {
			return Timestamp{}, fmt.Errorf("vumi: timestamp %q: fractional seconds must be 1 to 6 digits", s)
		}
	}
	t, err := time.ParseInLocation(timestampLayoutNoFraction, base, time.UTC)
	if err != nil || len(base) != len(timestampLayoutNoFraction) {
		return Timestamp{}, fmt.Errorf("vumi: timestamp %q does not match %q or %q", s,
			"%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S")
	}
	if frac != "" {
		// %f pads on the right: ".5" is 500000 microseconds.
		micros := 0
		for i := range 6 {
			micros *= 10
			if i < len(frac) {
				micros += int(frac[i] - '0')
			}
		}
		t = t.Add(time.Duration(micros) * time.Microsecond)
	}
	return Timestamp{t}, nil
}

// parseFast parses the layouts Vumi writes, "2006-01-02 15:04:05.000000"
// and "2006-01-02 15:04:05", without time.Parse; ok is false for anything
// else, which ParseTimestamp then reads (or refuses) the slow way.
func parseFast(s string) (Timestamp, bool) {
	if len(s) != 26 && len(s) != 19 {
		return Timestamp{}, false
	}
	num := func(i, n int) int {
		v := 0
		for _, c := range []byte(s[i : i+n]) {
			if c < '0' || c > '9' {
				return -1
			}
			v = v*10 + int(c-'0')
		}
		return v
	}
	if s[4] != '-' || s[7] != '-' || s[10] != ' ' || s[13] != ':' || s[16] != ':' {
		return Timestamp{}, false
	}
	year, month, day := num(0, 4), num(5, 2), num(8, 2)
	hour, minute, sec := num(11, 2), num(14, 2), num(17, 2)
	micros := 0
	if len(s) == 26 {
		if s[19] != '.' {
			return Timestamp{}, false
		}
		micros = num(20, 6)
	}
	if year < 0 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23 ||
		minute < 0 || minute > 59 || sec < 0 || sec > 59 || micros < 0 {
		return Timestamp{}, false
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, micros*1000, time.UTC)
	if t.Day() != day { // the 30th of February, say
		return Timestamp{}, false
	}
	return Timestamp{t}, true
}

// String formats t with TimestampLayout, in UTC.
func (t Timestamp) String() string {
	return string(t.appendVumi(make([]byte, 0, len(TimestampLayout))))
}

// AppendText implements encoding.TextAppender with Vumi's layout (and
// hides the RFC 3339 one of the embedded time.Time).
func (t Timestamp) AppendText(b []byte) ([]byte, error) {
	return t.appendVumi(b), nil
}

// appendVumi appends t in TimestampLayout, in UTC: what AppendFormat
// writes, without parsing the layout.
func (t Timestamp) appendVumi(b []byte) []byte {
	u := t.UTC()
	year, month, day := u.Date()
	if year < 0 || year > 9999 {
		return u.AppendFormat(b, TimestampLayout)
	}
	hour, minute, sec := u.Clock()
	b = appendDigits(b, year, 4)
	b = append(b, '-')
	b = appendDigits(b, int(month), 2)
	b = append(b, '-')
	b = appendDigits(b, day, 2)
	b = append(b, ' ')
	b = appendDigits(b, hour, 2)
	b = append(b, ':')
	b = appendDigits(b, minute, 2)
	b = append(b, ':')
	b = appendDigits(b, sec, 2)
	b = append(b, '.')
	return appendDigits(b, u.Nanosecond()/1000, 6)
}

// appendDigits appends v, which is not negative, zero-padded to n digits.
func appendDigits(b []byte, v, n int) []byte {
	var d [8]byte
	for i := n - 1; i >= 0; i-- {
		d[i] = byte('0' + v%10)
		v /= 10
	}
	return append(b, d[:n]...)
}

// MarshalText implements encoding.TextMarshaler with Vumi's layout.
func (t Timestamp) MarshalText() ([]byte, error) {
	return []byte(t.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler; see ParseTimestamp.
func (t *Timestamp) UnmarshalText(b []byte) error {
	v, err := ParseTimestamp(string(b))
	if err != nil {
		return err
	}
	*t = v
	return nil
}

// MarshalJSON encodes t as a JSON string in Vumi's layout.
func (t Timestamp) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, len(TimestampLayout)+2)
	b = append(b, '"')
	return append(t.appendVumi(b), '"'), nil
}

// UnmarshalJSON decodes a JSON string in Vumi's layout. JSON null leaves t
// unchanged, as usual for encoding/json.
func (t *Timestamp) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("vumi: timestamp must be a JSON string, got %s", b)
	}
	return t.UnmarshalText([]byte(s))
}
