package monitor

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

func mustRecord(t *testing.T, r *Registry, prefix, name string, v float64, aggs ...string) {
	t.Helper()
	if err := r.Record(prefix, name, v, aggs); err != nil {
		t.Fatal(err)
	}
}

// clock is a Registry's time, set by the test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// newTestRegistry returns a Registry whose time is the clock's, starting
// at t0.
func newTestRegistry(maxNames int) (*Registry, *clock) {
	c := &clock{t: t0}
	r := NewRegistry(maxNames)
	r.now = c.now
	return r, c
}

var t0 = time.Unix(1700000000, 0)

// flushed is a Flush result as "name[aggs]=t:v,t:v" strings (t in seconds
// after t0), for short wants.
func flushed(dps []Datapoint) []string {
	var out []string
	for _, d := range dps {
		pts := make([]string, len(d.Points))
		for i, p := range d.Points {
			pts[i] = fmt.Sprintf("%d:%g", p.Time.Unix()-t0.Unix(), p.Value)
		}
		out = append(out, fmt.Sprintf("%s%v=%s", d.Name, d.Aggregators, strings.Join(pts, ",")))
	}
	return out
}

// Values are folded into fewer points only where Vumi's aggregation of
// them gives the same: sums per second, the min and max of each second
// for min, max and last; other metrics keep every value.
func TestRegistryFlushPoints(t *testing.T) {
	r, c := newTestRegistry(0)
	for sec, vs := range [][]float64{{3, 1, 4}, {1, 5}} {
		c.set(t0.Add(time.Duration(sec) * time.Second))
		for _, v := range vs {
			mustRecord(t, r, "p.w", "all", v, "sum", "avg", "min", "max", "last")
			mustRecord(t, r, "p.w", "plain", v) // no aggregator: avg
			mustRecord(t, r, "p.w", "count", v, "sum")
			mustRecord(t, r, "p.w", "extremes", v, "max", "last", "min")
			mustRecord(t, r, "p.w", "peak", v, "max")
		}
	}
	mustRecord(t, r, "p.w", "same", 2, "min")
	mustRecord(t, r, "p.w", "same", 2, "min")
	mustRecord(t, r, "", "bare", 7, "last")
	got := flushed(r.Flush())
	want := []string{
		"bare[last]=1:7",
		"p.w.all[avg last max min sum]=0:3,0:1,0:4,1:1,1:5",
		"p.w.count[sum]=0:8,1:6",
		"p.w.extremes[last max min]=0:1,0:4,1:1,1:5",
		"p.w.peak[max]=0:1,0:4,1:1,1:5",
		"p.w.plain[avg]=0:3,0:1,0:4,1:1,1:5",
		"p.w.same[min]=1:2",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %q\nwant %q", got, want)
	}

	// The next interval starts empty: nothing recorded, nothing sent.
	if dps := r.Flush(); len(dps) != 0 {
		t.Errorf("second flush: %v", dps)
	}
	mustRecord(t, r, "p.w", "count", 1, "sum")
	if got := flushed(r.Flush()); !reflect.DeepEqual(got, []string{"p.w.count[sum]=1:1"}) {
		t.Errorf("third flush: %q", got)
	}
}

// Aggregators asked for at different times add up, as in Vumi's
// MetricAggregator; a metric whose aggregators stop allowing a fold keeps
// its values from then on.
func TestRegistryAggregatorsChange(t *testing.T) {
	r, _ := newTestRegistry(0)
	mustRecord(t, r, "p", "m", 2, "sum")
	mustRecord(t, r, "p", "m", 3, "sum")
	mustRecord(t, r, "p", "m", 6, "max")
	mustRecord(t, r, "p", "m", 1, "sum")
	if got, want := flushed(r.Flush()), []string{"p.m[max sum]=0:5,0:6,0:1"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestRegistryWireFormat(t *testing.T) {
	r, c := newTestRegistry(0)
	c.set(time.Unix(1700000000, 700_000_000))
	mustRecord(t, r, "dynworkers.s.h.worker.echo", "Messages Sent", 1, "sum")
	mustRecord(t, r, "dynworkers.s.h.worker.echo", "Messages Sent", 2, "sum")
	got, err := json.Marshal(MetricMessage{Datapoints: r.Flush()})
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"datapoints":[["dynworkers.s.h.worker.echo.messages_sent",["sum"],[[1700000000,3.0]]]]}`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestRegistryRejects(t *testing.T) {
	r := NewRegistry(0)
	for _, tc := range []struct {
		name  string
		value float64
		aggs  []string
		is    error
		says  string
	}{
		{"x", 1, []string{"median"}, ErrUnknownAggregator, `metric "x": unknown aggregator "median" (allowed: sum, avg, min, max, last)`},
		{"x", 1, []string{"sum", "AVG"}, ErrUnknownAggregator, `"AVG"`},
		{"x", math.NaN(), nil, ErrInvalidMetric, "NaN"},
		{"x", math.Inf(-1), nil, ErrInvalidMetric, "-Inf"},
		{"", 1, nil, ErrInvalidMetric, "empty name"},
		{"...", 1, nil, ErrInvalidMetric, "empty name"},
		{strings.Repeat("a", MaxNameLen+1), 1, nil, ErrInvalidMetric, "longer than 200"},
	} {
		err := r.Record("p", tc.name, tc.value, tc.aggs)
		if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("Record(%.20q, %v, %q): err = %v, want %v saying %q", tc.name, tc.value, tc.aggs, err, tc.is, tc.says)
		}
	}
	if dps := r.Flush(); len(dps) != 0 {
		t.Errorf("rejected values were kept: %v", dps)
	}
	if r.Len() != 0 {
		t.Errorf("Len = %d after rejections", r.Len())
	}
}

// Names that differ only in what SanitizeName changes are one series
// downstream: the second spelling is refused, with both names in the
// error, until the prefix is released (a new process of the worker).
func TestRegistryNameCollision(t *testing.T) {
	r, _ := newTestRegistry(0)
	mustRecord(t, r, "w1", "Messages Sent", 1, "sum")
	for _, other := range []string{"messages-sent", "messages_sent", "MESSAGES SENT", "messages sent"} {
		err := r.Record("w1", other, 1, []string{"sum"})
		if !errors.Is(err, ErrNameCollision) || !strings.Contains(err.Error(), fmt.Sprintf("%q", other)) ||
			!strings.Contains(err.Error(), `"Messages Sent"`) || !strings.Contains(err.Error(), `"messages_sent"`) {
			t.Errorf("Record(%q) = %v, want a collision naming both names", other, err)
		}
	}
	// The same spelling again, and the other spelling under another
	// prefix, are fine.
	mustRecord(t, r, "w1", "Messages Sent", 2, "sum")
	mustRecord(t, r, "w2", "messages-sent", 5, "sum")
	if got, want := flushed(r.Flush()), []string{"w1.messages_sent[sum]=0:3", "w2.messages_sent[sum]=0:5"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	// Released, the first spelling recorded claims the name again; the
	// series and its total go on.
	r.Release("w1")
	mustRecord(t, r, "w1", "messages_sent", 4, "sum")
	if err := r.Record("w1", "Messages Sent", 1, nil); !errors.Is(err, ErrNameCollision) {
		t.Errorf("old spelling after release and a new one: %v", err)
	}
	if got := r.Values("w1"); !reflect.DeepEqual(got, []MetricValue{{"messages_sent", AggSum, 7}}) {
		t.Errorf("Values = %v", got)
	}
}

func TestRegistryNameLimit(t *testing.T) {
	r := NewRegistry(3)
	for i := range 3 {
		mustRecord(t, r, "w1", fmt.Sprint("m", i), 1)
	}
	err := r.Record("w1", "m3", 1, nil)
	if !errors.Is(err, ErrTooManyMetrics) || !strings.Contains(err.Error(), `"w1" already has 3`) {
		t.Fatalf("fourth name: err = %v", err)
	}
	// Known names still work, in later intervals too; other prefixes have
	// their own limit.
	r.Flush()
	mustRecord(t, r, "w1", "m0", 1)
	mustRecord(t, r, "w2", "m3", 1)
	if err := r.Record("w1", "m3", 1, nil); !errors.Is(err, ErrTooManyMetrics) {
		t.Errorf("after a flush: err = %v, want ErrTooManyMetrics", err)
	}
	// Remove frees the prefix's names.
	r.Remove("w1")
	mustRecord(t, r, "w1", "m3", 1)
	var names []string
	for _, d := range r.Flush() {
		names = append(names, d.Name)
	}
	if want := []string{"w1.m3", "w2.m3"}; !reflect.DeepEqual(names, want) {
		t.Errorf("got %q, want %q", names, want)
	}
}

// Values keeps the running total of a sum and the last flushed interval's
// other aggregates, through intervals without values, until the prefix
// goes.
func TestRegistryValues(t *testing.T) {
	r := NewRegistry(0)
	for _, v := range []float64{3, 1, 4} {
		mustRecord(t, r, "w", "lat", v, "avg", "max", "min", "last", "sum")
		mustRecord(t, r, "w", "sent", 1, "sum")
	}
	// Before the first flush only the totals are known.
	want := []MetricValue{{"lat", "sum", 8}, {"sent", "sum", 3}}
	if got := r.Values("w"); !reflect.DeepEqual(got, want) {
		t.Errorf("before the flush: %v, want %v", got, want)
	}
	r.Flush()
	want = []MetricValue{
		{"lat", "avg", 8.0 / 3}, {"lat", "last", 4}, {"lat", "max", 4}, {"lat", "min", 1}, {"lat", "sum", 8},
		{"sent", "sum", 3},
	}
	if got := r.Values("w"); !reflect.DeepEqual(got, want) {
		t.Errorf("after the flush: %v\nwant %v", got, want)
	}
	mustRecord(t, r, "w", "sent", 2, "sum")
	r.Flush()
	r.Flush() // an interval without values changes nothing
	want[5].Value = 5
	if got := r.Values("w"); !reflect.DeepEqual(got, want) {
		t.Errorf("later: %v\nwant %v", got, want)
	}
	if got := r.Values("other"); got != nil {
		t.Errorf("unknown prefix: %v", got)
	}
}

// Len counts series; Remove and Prune take a prefix's series away, Prune
// only from prefixes that are neither kept nor recorded to since its
// cut-off.
func TestRegistryLenRemovePrune(t *testing.T) {
	r, c := newTestRegistry(0)
	mustRecord(t, r, "a", "x", 1)
	mustRecord(t, r, "a", "y", 1)
	mustRecord(t, r, "b", "x", 1)
	if r.Len() != 3 {
		t.Fatalf("Len = %d, want 3", r.Len())
	}
	r.Remove("a")
	r.Remove("nothing")
	if r.Len() != 1 {
		t.Fatalf("after Remove: Len = %d, want 1", r.Len())
	}
	c.set(t0.Add(time.Second))
	mustRecord(t, r, "c", "x", 1) // recorded at the cut-off: kept
	mustRecord(t, r, "d", "x", 1)
	keep := func(p string) bool { return p == "d" }
	if n := r.Prune(keep, t0.Add(time.Second)); n != 1 || r.Len() != 2 {
		t.Fatalf("Prune removed %d, Len %d; want 1 (b), 2", n, r.Len())
	}
	if n := r.Prune(keep, t0.Add(2*time.Second)); n != 1 || r.Len() != 1 {
		t.Fatalf("second Prune removed %d, Len %d; want c gone, d kept", n, r.Len())
	}
	if n := r.Prune(func(string) bool { return false }, t0.Add(2*time.Second)); n != 1 || r.Len() != 0 {
		t.Fatalf("third Prune removed %d, Len %d; want d gone", n, r.Len())
	}
}

// Values a worker cannot have folded are kept as points up to
// MaxRawPoints per prefix and interval; beyond, they only count in the
// figures, and in Dropped. Folded metrics do not use up the budget.
func TestRegistryRawPointBudget(t *testing.T) {
	r, _ := newTestRegistry(0)
	for i := range MaxRawPoints + 5 {
		mustRecord(t, r, "w", "lat", float64(i%7), "avg")
		mustRecord(t, r, "w", "sent", 1, "sum")
	}
	dps := r.Flush()
	if len(dps) != 2 || len(dps[0].Points) != MaxRawPoints || dps[1].Points[0].Value != MaxRawPoints+5 {
		t.Fatalf("got %d datapoints, %d points of lat, sent %v", len(dps), len(dps[0].Points), dps[1].Points)
	}
	if r.Dropped() != 5 {
		t.Errorf("Dropped = %d, want 5", r.Dropped())
	}
	// The budget is per interval.
	mustRecord(t, r, "w", "lat", 1, "avg")
	if dps := r.Flush(); len(dps) != 1 || len(dps[0].Points) != 1 || r.Dropped() != 5 {
		t.Errorf("next interval: %v, dropped %d", dps, r.Dropped())
	}
}

func TestRegistryConcurrent(t *testing.T) {
	r := NewRegistry(0)
	const workers, per = 8, 1000
	var wg sync.WaitGroup
	var mu sync.Mutex
	total := map[string]float64{}
	stop := make(chan struct{})
	flusherDone := make(chan struct{})
	collect := func(dps []Datapoint) {
		mu.Lock()
		defer mu.Unlock()
		for _, d := range dps {
			for _, p := range d.Points {
				total[d.Name] += p.Value
			}
		}
	}
	go func() { // flushes while values arrive: none may be lost or counted twice
		defer close(flusherDone)
		for {
			select {
			case <-stop:
				return
			default:
				collect(r.Flush())
				_ = r.Values("w0")
			}
		}
	}()
	for w := range workers {
		wg.Go(func() {
			for range per {
				if err := r.Record(fmt.Sprint("w", w%2), "hits", 1, []string{AggSum}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	<-flusherDone
	collect(r.Flush())
	want := map[string]float64{"w0.hits": workers / 2 * per, "w1.hits": workers / 2 * per}
	if !reflect.DeepEqual(total, want) {
		t.Errorf("sums %v, want %v", total, want)
	}
	if v := r.Values("w1"); len(v) != 1 || v[0].Value != workers/2*per {
		t.Errorf("total %v, want %d", v, workers/2*per)
	}
}
