package monitor

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// AMQP destinations of Vumi's metrics and heartbeats (vumi.blinkenlights:
// MetricPublisher and HeartBeatPublisher). Both exchanges are direct and
// durable.
const (
	MetricsExchange     = "vumi.metrics"
	MetricsRoutingKey   = "vumi.metrics"
	HeartbeatExchange   = "vumi.health"
	HeartbeatRoutingKey = "heartbeat.inbound"
)

// Point is one value of a metric at one time.
//
// On the wire it is the array [<unix seconds>, <value>]. The time is whole
// seconds, as Vumi's MetricManager sends it (int(time.time())), and the
// value always has a decimal point or an exponent, so that Vumi's Python 2
// aggregators read it as a float: they would otherwise average integers
// with integer division. Decoding accepts fractional timestamps too.
type Point struct {
	Time  time.Time
	Value float64
}

// MarshalJSON encodes p as [<unix seconds>, <value>]. A NaN or infinite
// value is an error: JSON has no way to write it.
func (p Point) MarshalJSON() ([]byte, error) {
	return p.appendJSON(make([]byte, 0, 32))
}

func (p Point) appendJSON(b []byte) ([]byte, error) {
	if math.IsNaN(p.Value) || math.IsInf(p.Value, 0) {
		return nil, fmt.Errorf("metric value %v cannot be encoded as JSON", p.Value)
	}
	b = append(b, '[')
	b = strconv.AppendInt(b, p.Time.Unix(), 10)
	b = append(b, ',')
	b = appendFloat(b, p.Value)
	return append(b, ']'), nil
}

// UnmarshalJSON decodes [<unix seconds>, <value>], the seconds an integer
// or a fraction.
func (p *Point) UnmarshalJSON(b []byte) error {
	var raw []json.Number
	if err := unmarshalNumbers(b, &raw); err != nil {
		return fmt.Errorf("metric point: %w", err)
	}
	if len(raw) != 2 {
		return fmt.Errorf("metric point: want [timestamp, value], got %d elements", len(raw))
	}
	t, err := parseUnixSeconds(raw[0])
	if err != nil {
		return fmt.Errorf("metric point timestamp: %w", err)
	}
	v, err := raw[1].Float64()
	if err != nil {
		return fmt.Errorf("metric point value: %w", err)
	}
	*p = Point{Time: t, Value: v}
	return nil
}

func unmarshalNumbers(b []byte, v *[]json.Number) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	return d.Decode(v)
}

func parseUnixSeconds(n json.Number) (time.Time, error) {
	s := string(n)
	if !strings.ContainsAny(s, ".eE") {
		sec, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return time.Time{}, err
		}
		return time.Unix(sec, 0), nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return time.Time{}, err
	}
	if math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > 1<<62 {
		return time.Time{}, fmt.Errorf("timestamp %s out of range", s)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(math.Round(frac*1e9))), nil
}

// appendFloat writes f as a JSON number that always reads back as a float
// in Python: "1.0", not "1". Large and tiny magnitudes use an exponent,
// at the same thresholds as encoding/json.
func appendFloat(b []byte, f float64) []byte {
	abs := math.Abs(f)
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		return strconv.AppendFloat(b, f, 'e', -1, 64) // "1e+21" is a float to Python
	}
	start := len(b)
	b = strconv.AppendFloat(b, f, 'f', -1, 64)
	if bytes.IndexByte(b[start:], '.') < 0 {
		b = append(b, ".0"...)
	}
	return b
}

// appendJSONString appends s as encoding/json writes it. Metric names and
// aggregators are plain (sanitized components): printable ASCII that JSON
// writes as is between quotes, without the call and the allocation of
// json.Marshal, which writes every other string.
func appendJSONString(b []byte, s string) ([]byte, error) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, err := json.Marshal(s)
			if err != nil {
				return nil, err
			}
			return append(b, q...), nil
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"'), nil
}

// Datapoint is one entry of a Vumi metrics message: a metric name, the
// aggregators Vumi's metric workers are asked to apply to its values, and
// the values. On the wire it is the array
//
//	["<name>", ["<aggregator>", ...], [[<unix seconds>, <value>], ...]]
type Datapoint struct {
	Name        string
	Aggregators []string
	Points      []Point
}

// MarshalJSON encodes d as Vumi's three-element array. Nil aggregators and
// points are written as empty arrays.
func (d Datapoint) MarshalJSON() ([]byte, error) {
	return d.appendJSON(make([]byte, 0, 64+len(d.Name)+32*len(d.Points)))
}

func (d Datapoint) appendJSON(b []byte) ([]byte, error) {
	var err error
	b = append(b, '[')
	if b, err = appendJSONString(b, d.Name); err != nil {
		return nil, err
	}
	b = append(b, ",["...)
	for i, a := range d.Aggregators {
		if i > 0 {
			b = append(b, ',')
		}
		if b, err = appendJSONString(b, a); err != nil {
			return nil, err
		}
	}
	b = append(b, "],["...)
	for i, p := range d.Points {
		if i > 0 {
			b = append(b, ',')
		}
		if b, err = p.appendJSON(b); err != nil {
			return nil, fmt.Errorf("metric %q: %w", d.Name, err)
		}
	}
	return append(b, "]]"...), nil
}

// UnmarshalJSON decodes Vumi's three-element array.
func (d *Datapoint) UnmarshalJSON(b []byte) error {
	var raw []json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("metric datapoint: %w", err)
	}
	if len(raw) != 3 {
		return fmt.Errorf("metric datapoint: want [name, aggregators, points], got %d elements", len(raw))
	}
	var out Datapoint
	if err := json.Unmarshal(raw[0], &out.Name); err != nil {
		return fmt.Errorf("metric datapoint name: %w", err)
	}
	if err := json.Unmarshal(raw[1], &out.Aggregators); err != nil {
		return fmt.Errorf("metric %q aggregators: %w", out.Name, err)
	}
	if err := json.Unmarshal(raw[2], &out.Points); err != nil {
		return fmt.Errorf("metric %q points: %w", out.Name, err)
	}
	*d = out
	return nil
}

// MetricMessage is the body of a message on the vumi.metrics exchange:
// {"datapoints": [<datapoint>, ...]}.
type MetricMessage struct {
	Datapoints []Datapoint
}

// MarshalJSON encodes m as {"datapoints":[...]}, an empty array if there
// are none.
func (m MetricMessage) MarshalJSON() ([]byte, error) {
	// Sized for the whole message, so that it is written without growing
	// (a 1,000-worker host's is about 0.7 MB): a point is at most about
	// 48 bytes, an aggregator its quotes and comma more than its name.
	n := 32
	for _, d := range m.Datapoints {
		n += len(d.Name) + 16 + 48*len(d.Points)
		for _, a := range d.Aggregators {
			n += len(a) + 3
		}
	}
	b := make([]byte, 0, n)
	b = append(b, `{"datapoints":[`...)
	for i, d := range m.Datapoints {
		if i > 0 {
			b = append(b, ',')
		}
		var err error
		if b, err = d.appendJSON(b); err != nil {
			return nil, err
		}
	}
	return append(b, "]}"...), nil
}

// UnmarshalJSON decodes {"datapoints":[...]}; other keys are ignored.
func (m *MetricMessage) UnmarshalJSON(b []byte) error {
	var raw struct {
		Datapoints *[]Datapoint `json:"datapoints"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("metric message: %w", err)
	}
	if raw.Datapoints == nil {
		return errors.New(`metric message: no "datapoints"`)
	}
	m.Datapoints = *raw.Datapoints
	return nil
}
