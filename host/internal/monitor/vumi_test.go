package monitor

import (
	"cmp"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// vumiAggregate is what Vumi's metrics pipeline makes of datapoints
// published on vumi.metrics (vumi/blinkenlights/metrics_workers.py):
// MetricTimeBucket splits each datapoint's values into time buckets of
// bucketSize seconds (int(ts) / bucket_size); MetricAggregator merges, per
// bucket and name, the aggregators asked for and the values, sorts the
// values as (timestamp, value) pairs, and publishes <name>.<aggregator>
// with the aggregator applied to them (vumi/blinkenlights/metrics.py:
// sum, avg = sum/len, max, min, last = the last after sorting). The keys
// of the result are "<name>.<aggregator>@<bucket start>".
func vumiAggregate(dps []Datapoint, bucketSize int64) map[string]float64 {
	type pair struct {
		t int64
		v float64
	}
	type entry struct {
		aggs   map[string]bool
		values []pair
	}
	buckets := map[string]*entry{} // by "<name>@<bucket start>"
	for _, d := range dps {
		for _, p := range d.Points {
			ts := p.Time.Unix()
			key := fmt.Sprintf("%s@%d", d.Name, ts/bucketSize*bucketSize)
			e := buckets[key]
			if e == nil {
				e = &entry{aggs: map[string]bool{}}
				buckets[key] = e
			}
			for _, a := range d.Aggregators {
				e.aggs[a] = true
			}
			e.values = append(e.values, pair{ts, p.Value})
		}
	}
	out := map[string]float64{}
	for key, e := range buckets {
		slices.SortFunc(e.values, func(a, b pair) int { return cmp.Or(cmp.Compare(a.t, b.t), cmp.Compare(a.v, b.v)) })
		name, at, _ := strings.Cut(key, "@")
		for a := range e.aggs {
			var r float64
			switch a {
			case AggSum, AggAvg:
				for _, p := range e.values {
					r += p.v
				}
				if a == AggAvg {
					r /= float64(len(e.values))
				}
			case AggMax:
				r = e.values[0].v
				for _, p := range e.values {
					r = max(r, p.v)
				}
			case AggMin:
				r = e.values[0].v
				for _, p := range e.values {
					r = min(r, p.v)
				}
			case AggLast:
				r = e.values[len(e.values)-1].v
			}
			out[name+"."+a+"@"+at] = r
		}
	}
	return out
}

// What the registry publishes for a worker's metrics gives, through Vumi's
// aggregation, the names and values it gives for a Vumi worker's
// MetricManager that was set the same values at the same times: whatever
// the aggregators, the metrics interval and the aggregator's bucket size.
func TestVumiAggregationMatchesMetricManager(t *testing.T) {
	const prefix = "dynworkers.prod.h1.worker.smsc"
	metrics := []struct {
		name string
		aggs []string
	}{
		{"replies", []string{AggSum}},                       // a Vumi Count
		{"latency", []string{AggAvg}},                       // a Vumi Timer, or Metric by default
		{"queue", []string{AggLast}},                        // several values a second: Vumi's last is their max
		{"depth", []string{AggMax, AggMin, AggLast}},        // extremes, folded
		{"mixed", []string{AggSum, AggAvg, AggMin, AggMax}}, // kept as they are
		{"signed", []string{AggSum}},                        // negative values too
	}
	type call struct {
		at     int64 // seconds after start
		metric int
		value  float64
	}
	rng := rand.New(rand.NewPCG(10, 20))
	start := time.Unix(1700000003, 0) // not at a bucket's start
	var calls []call
	for sec := range int64(37) {
		for range rng.IntN(16) { // 0 to 15 values a second
			m := rng.IntN(len(metrics))
			v := float64(rng.IntN(400)) / 4 // quarters: every sum is exact
			if metrics[m].name == "signed" {
				v -= 50
			}
			calls = append(calls, call{sec, m, v})
		}
	}

	// A Vumi worker: each Metric.set appends (int(time.time()), value);
	// the MetricManager publishes every 5 s [prefix + name, sorted
	// aggregators, the values since].
	var vumiDPs []Datapoint
	pending := map[int][]Point{}
	publish := func() {
		for m, pts := range pending {
			aggs := slices.Sorted(slices.Values(metrics[m].aggs))
			vumiDPs = append(vumiDPs, Datapoint{Name: prefix + "." + metrics[m].name, Aggregators: aggs, Points: pts})
		}
		clear(pending)
	}
	for i, c := range calls {
		if i > 0 && c.at/5 != calls[i-1].at/5 {
			publish()
		}
		pending[c.metric] = append(pending[c.metric], Point{Time: start.Add(time.Duration(c.at) * time.Second), Value: c.value})
	}
	publish()

	for _, interval := range []int64{1, 3, 5, 60} {
		// The host: Record at the call's time, Flush every interval.
		r, clk := newTestRegistry(0)
		var ours []Datapoint
		for i, c := range calls {
			if i > 0 && c.at/interval != calls[i-1].at/interval {
				ours = append(ours, r.Flush()...)
			}
			clk.set(start.Add(time.Duration(c.at)*time.Second + 300*time.Millisecond))
			if err := r.Record(prefix, metrics[c.metric].name, c.value, metrics[c.metric].aggs); err != nil {
				t.Fatal(err)
			}
		}
		ours = append(ours, r.Flush()...)
		for _, d := range ours {
			if !slices.Equal(d.Aggregators, slices.Sorted(slices.Values(d.Aggregators))) {
				t.Errorf("%s: aggregators %v not sorted", d.Name, d.Aggregators)
			}
			for _, a := range aggNames {
				if strings.HasSuffix(d.Name, "."+a) {
					t.Errorf("published name %s ends with its aggregator", d.Name)
				}
			}
		}
		for _, bucket := range []int64{1, 5, 10} {
			want := vumiAggregate(vumiDPs, bucket)
			got := vumiAggregate(ours, bucket)
			if !maps.Equal(got, want) {
				for _, k := range slices.Sorted(maps.Keys(want)) {
					if got[k] != want[k] {
						t.Errorf("interval %ds, bucket %ds: %s = %v, a Vumi worker's gives %v", interval, bucket, k, got[k], want[k])
					}
				}
				for k := range got {
					if _, ok := want[k]; !ok {
						t.Errorf("interval %ds, bucket %ds: %s, which a Vumi worker's does not give", interval, bucket, k)
					}
				}
			}
		}
	}
	// The comparison covered every metric and aggregator.
	seen := map[string]bool{}
	for k := range vumiAggregate(vumiDPs, 5) {
		name, _, _ := strings.Cut(k, "@")
		seen[name] = true
	}
	for _, m := range metrics {
		for _, a := range m.aggs {
			if !seen[prefix+"."+m.name+"."+a] {
				t.Errorf("the calls never gave %s.%s", m.name, a)
			}
		}
	}
}
