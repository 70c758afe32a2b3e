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

// flushed is a Flush result as "name=value" strings, for short wants.
func flushed(dps []Datapoint, now time.Time) ([]string, error) {
	var out []string
	for _, d := range dps {
		if len(d.Aggregators) != 1 || !strings.HasSuffix(d.Name, "."+d.Aggregators[0]) {
			return nil, fmt.Errorf("%s: aggregators %v, want the one its name ends with", d.Name, d.Aggregators)
		}
		if len(d.Points) != 1 || !d.Points[0].Time.Equal(now) {
			return nil, fmt.Errorf("%s: points %v, want one at %v", d.Name, d.Points, now)
		}
		out = append(out, fmt.Sprintf("%s=%g", d.Name, d.Points[0].Value))
	}
	return out, nil
}

func TestRegistryAggregates(t *testing.T) {
	r := NewRegistry(0)
	now := time.Unix(1700000000, 0)
	for _, v := range []float64{3, 1, 4, 1, 5} {
		mustRecord(t, r, "p.w", "all", v, "sum", "avg", "min", "max", "last")
		mustRecord(t, r, "p.w", "plain", v) // no aggregator: avg
	}
	mustRecord(t, r, "p.w", "count", 1, "sum")
	mustRecord(t, r, "p.w", "count", 1, "sum")
	// Aggregators asked for at different times add up, as in Vumi's
	// MetricAggregator.
	mustRecord(t, r, "p.w", "mixed", 2, "max")
	mustRecord(t, r, "p.w", "mixed", 6, "min")
	mustRecord(t, r, "", "bare", 7, "last")
	got, err := flushed(r.Flush(now), now)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"bare.last=7",
		"p.w.all.avg=2.8", "p.w.all.last=5", "p.w.all.max=5", "p.w.all.min=1", "p.w.all.sum=14",
		"p.w.count.sum=2",
		"p.w.mixed.max=6", "p.w.mixed.min=2",
		"p.w.plain.avg=2.8",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %q\nwant %q", got, want)
	}

	// The next interval starts empty: nothing recorded, nothing sent.
	if dps := r.Flush(now.Add(5 * time.Second)); len(dps) != 0 {
		t.Errorf("second flush: %v", dps)
	}
	mustRecord(t, r, "p.w", "count", 1, "sum")
	later := now.Add(10 * time.Second)
	if got, _ := flushed(r.Flush(later), later); !reflect.DeepEqual(got, []string{"p.w.count.sum=1"}) {
		t.Errorf("third flush: %q", got)
	}
}

func TestRegistryWireFormat(t *testing.T) {
	r := NewRegistry(0)
	mustRecord(t, r, "dynworkers.s.h.worker.echo", "Messages Sent", 1, "sum")
	mustRecord(t, r, "dynworkers.s.h.worker.echo", "messages sent", 2, "sum")
	got, err := json.Marshal(MetricMessage{Datapoints: r.Flush(time.Unix(1700000000, 700_000_000))})
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"datapoints":[["dynworkers.s.h.worker.echo.messages_sent.sum",["sum"],[[1700000000,3.0]]]]}`
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
	if dps := r.Flush(time.Now()); len(dps) != 0 {
		t.Errorf("rejected values were kept: %v", dps)
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
	r.Flush(time.Now())
	mustRecord(t, r, "w1", "m0", 1)
	mustRecord(t, r, "w2", "m3", 1)
	if err := r.Record("w1", "m3", 1, nil); !errors.Is(err, ErrTooManyMetrics) {
		t.Errorf("after a flush: err = %v, want ErrTooManyMetrics", err)
	}
	// Remove frees the prefix's names.
	r.Remove("w1")
	mustRecord(t, r, "w1", "m3", 1)
	now := time.Now()
	got, _ := flushed(r.Flush(now), now)
	if want := []string{"w1.m3.avg=1", "w2.m3.avg=1"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
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
			total[d.Name] += d.Points[0].Value
		}
	}
	go func() { // flushes while values arrive: none may be lost or counted twice
		defer close(flusherDone)
		for {
			select {
			case <-stop:
				return
			default:
				collect(r.Flush(time.Now()))
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
	collect(r.Flush(time.Now()))
	want := map[string]float64{"w0.hits.sum": workers / 2 * per, "w1.hits.sum": workers / 2 * per}
	if !reflect.DeepEqual(total, want) {
		t.Errorf("sums %v, want %v", total, want)
	}
}
