package monitor

import (
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestMetricMessageGolden(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	msg := MetricMessage{Datapoints: []Datapoint{
		{Name: "dynworkers.sys.host.worker.echo.rss_bytes", Aggregators: []string{"avg"},
			Points: []Point{{Time: t0, Value: 12345678}}},
		{Name: "dynworkers.sys.host.worker.echo.latency", Aggregators: []string{"avg", "max"},
			// Sub-second times are sent as whole seconds, as Vumi does.
			Points: []Point{{Time: t0.Add(900 * time.Millisecond), Value: 0.25}, {Time: t0.Add(5 * time.Second), Value: -1.5}}},
		{Name: `odd "name"`, Aggregators: nil, Points: nil},
		{Name: "tiny.and.huge", Aggregators: []string{"last"},
			Points: []Point{{Time: t0, Value: 1e-7}, {Time: t0, Value: 1e21}, {Time: t0, Value: 0}}},
	}}
	got, err := json.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "metric_message.json", got)

	var back MetricMessage
	if err := json.Unmarshal(got, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Datapoints) != 4 || back.Datapoints[1].Points[0].Time != t0 || back.Datapoints[1].Points[1].Value != -1.5 ||
		!reflect.DeepEqual(back.Datapoints[1].Aggregators, []string{"avg", "max"}) {
		t.Errorf("round trip: %+v", back)
	}
}

func TestEmptyMetricMessage(t *testing.T) {
	got, err := json.Marshal(MetricMessage{})
	if err != nil || string(got) != `{"datapoints":[]}` {
		t.Errorf("got %s, %v", got, err)
	}
}

// A body as Vumi's MetricManager publishes it: Python's json.dumps, with
// integer timestamps and spaces after separators.
func TestDecodeVumiMetricMessage(t *testing.T) {
	const body = `{"datapoints": [["vumi.test.foo", ["avg", "sum"], [[1700000000, 1.5], [1700000001, 2]]], ` +
		`["vumi.test.bar", [], [[1700000002.5, 3.0]]]]}`
	var m MetricMessage
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatal(err)
	}
	want := MetricMessage{Datapoints: []Datapoint{
		{Name: "vumi.test.foo", Aggregators: []string{"avg", "sum"},
			Points: []Point{{time.Unix(1700000000, 0), 1.5}, {time.Unix(1700000001, 0), 2}}},
		{Name: "vumi.test.bar", Aggregators: []string{},
			Points: []Point{{time.Unix(1700000002, 5e8), 3}}},
	}}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("got  %+v\nwant %+v", m, want)
	}
}

func TestDatapointErrors(t *testing.T) {
	for _, v := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		_, err := json.Marshal(Datapoint{Name: "x", Points: []Point{{Value: v}}})
		if err == nil || !strings.Contains(err.Error(), `metric "x"`) {
			t.Errorf("value %v: err = %v", v, err)
		}
	}
	for _, body := range []string{
		`["x", ["avg"]]`,
		`["x", ["avg"], [[1, 2, 3]]]`,
		`["x", ["avg"], [["soon", 2]]]`,
		`[1, ["avg"], []]`,
		`{"name": "x"}`,
	} {
		var d Datapoint
		if err := json.Unmarshal([]byte(body), &d); err == nil {
			t.Errorf("%s: decoded as %+v, want an error", body, d)
		}
	}
	var m MetricMessage
	if err := json.Unmarshal([]byte(`{"points": []}`), &m); err == nil {
		t.Error(`a message without "datapoints" decoded`)
	}
}

func TestAppendFloat(t *testing.T) {
	for v, want := range map[float64]string{
		0: "0.0", 1: "1.0", -2: "-2.0", 1.5: "1.5", 12345678: "12345678.0", 1e20: "100000000000000000000.0",
		1e21: "1e+21", 1e-7: "1e-07", 0.000001: "0.000001", 1700000000.25: "1700000000.25",
	} {
		if got := string(appendFloat(nil, v)); got != want {
			t.Errorf("%v: got %s, want %s", v, got, want)
		}
	}
}

// appendJSONString writes every string exactly as encoding/json does: the
// plain ones itself, the others through json.Marshal.
func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{
		"", "dynworkers.prod.web-1.worker.echo.cpu_percent", "avg", "a b~z",
		`quo"te`, `back\slash`, "<html>&amp;", "tab\there", "nl\n", "\x7f", "é", "\xff", "\u2028",
	} {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		got, err := appendJSONString([]byte("x"), s)
		if err != nil || string(got) != "x"+string(want) {
			t.Errorf("appendJSONString(%q) = %s, %v; want x%s", s, got, err, want)
		}
	}
}
