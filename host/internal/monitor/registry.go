package monitor

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dynworkers/dynworkers/internal/wire"
)

// Aggregators a worker may ask for, Vumi's five
// (vumi.blinkenlights.metrics: SUM, AVG, MAX, MIN, LAST).
const (
	AggSum  = wire.AggSum
	AggAvg  = wire.AggAvg
	AggMin  = wire.AggMin
	AggMax  = wire.AggMax
	AggLast = wire.AggLast
)

// DefaultAggregator is used when a metric is recorded with no aggregator:
// avg, the default of Vumi's Metric class (DEFAULT_AGGREGATORS = [AVG]).
const DefaultAggregator = AggAvg

// DefaultMaxNames is the number of distinct metric names a prefix may have
// when NewRegistry is given 0.
const DefaultMaxNames = 1000

// MaxNameLen is the longest metric name Record accepts, after sanitising.
const MaxNameLen = 200

// MaxRawPoints is the number of values a prefix (a worker) may keep as
// points of their own within one flush interval, for the metrics whose
// values cannot be folded (see the package doc). Values beyond it still
// count in the metric's figures (Values, which Prometheus shows) but are
// left out of the Vumi datapoints, and counted by Dropped.
const MaxRawPoints = 10000

// Errors of Record, to be checked with errors.Is.
var (
	ErrUnknownAggregator = errors.New("unknown aggregator")
	ErrTooManyMetrics    = errors.New("too many metric names")
	ErrInvalidMetric     = errors.New("invalid metric")
	// ErrNameCollision is the error for a name that sanitises to the
	// name of another metric the same prefix recorded under a different
	// spelling ("Messages Sent" after "messages-sent"): the two would be
	// one series downstream, silently mixed.
	ErrNameCollision = errors.New("metric name collision")
)

// aggs is a set of aggregators, one bit each, in the order Flush emits
// them: sorted by name, as Vumi sorts a metric's aggregators.
type aggs uint8

var aggNames = [...]string{AggAvg, AggLast, AggMax, AggMin, AggSum}

const (
	aggAvg aggs = 1 << iota
	aggLast
	aggMax
	aggMin
	aggSum
)

const allowedAggregators = "sum, avg, min, max, last"

func parseAggs(names []string) (aggs, error) {
	if len(names) == 0 {
		names = []string{DefaultAggregator}
	}
	var set aggs
	for _, n := range names {
		i := slices.Index(aggNames[:], n)
		if i < 0 {
			return 0, fmt.Errorf("%w %q (allowed: %s)", ErrUnknownAggregator, n, allowedAggregators)
		}
		set |= 1 << i
	}
	return set, nil
}

func (a aggs) names() []string {
	out := make([]string, 0, 5)
	for i, n := range aggNames {
		if a&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	return out
}

// fold says how the values of one second may be folded into fewer points
// without changing what Vumi's MetricAggregator computes from them (see
// the package doc, "Metrics reported by workers").
type fold uint8

const (
	foldNone     fold = iota // every value is a point
	foldSum                  // one point per second: the sum of its values
	foldExtremes             // up to two points per second: its min and its max
)

func foldOf(a aggs) fold {
	switch {
	case a == aggSum:
		return foldSum
	case a&^(aggMin|aggMax|aggLast) == 0:
		return foldExtremes
	}
	return foldNone
}

// rawPoint is a Point in whole Unix seconds, half the size.
type rawPoint struct {
	sec int64
	v   float64
}

// series is what a Registry keeps of one metric of one prefix.
type series struct {
	// raw is the name the metric was first recorded under (since the
	// prefix's last Release), to refuse a different spelling of it.
	raw string

	// The current interval, emptied by Flush.
	aggs          aggs // asked for since the last flush
	n             int
	sum, min, max float64
	last          float64
	points        []rawPoint // what Vumi gets, folded as fold says
	folded        fold       // how points were folded so far this interval

	// Lasting values, for Values.
	total    float64 // sum of every value recorded with the sum aggregator
	hasTotal bool
	shown    aggs       // which of avg, last, max, min have a value in gauge
	gauge    [4]float64 // the last flushed interval's avg, last, max, min
}

// add records v at second sec, asked to be aggregated with a. It returns
// whether v became a point of its own beyond the budget (and was left out
// of the points).
func (s *series) add(sec int64, v float64, a aggs, budget *int) (dropped bool) {
	s.aggs |= a
	if s.n == 0 {
		s.sum, s.min, s.max = v, v, v
	} else {
		s.sum += v
		s.min = math.Min(s.min, v)
		s.max = math.Max(s.max, v)
	}
	s.last = v
	s.n++
	if a&aggSum != 0 {
		s.total += v
		s.hasTotal = true
	}

	// Points. A change of aggregators within an interval may make the
	// folding of the earlier values of the interval inexact; the next
	// interval is exact again.
	f := foldOf(s.aggs)
	if f != s.folded && len(s.points) > 0 && f != foldNone {
		f = foldNone // points folded another way cannot be folded further
	}
	s.folded = f
	p := s.points
	k := len(p)
	switch {
	case f == foldSum && k > 0 && p[k-1].sec == sec:
		p[k-1].v += v
		return false
	case f == foldExtremes && k > 1 && p[k-1].sec == sec && p[k-2].sec == sec:
		// p[k-2] is the second's min, p[k-1] its max.
		p[k-2].v = math.Min(p[k-2].v, v)
		p[k-1].v = math.Max(p[k-1].v, v)
		return false
	case f == foldExtremes && k > 0 && p[k-1].sec == sec:
		switch {
		case v == p[k-1].v:
			return false
		case v > p[k-1].v:
			s.points = append(p, rawPoint{sec, v})
		default:
			s.points = append(p, p[k-1])
			s.points[k-1].v = v
		}
		return false
	case f == foldNone:
		if *budget <= 0 {
			return true
		}
		*budget--
	}
	s.points = append(p, rawPoint{sec, v})
	return false
}

func (s *series) value(agg string) float64 {
	switch agg {
	case AggSum:
		return s.sum
	case AggAvg:
		return s.sum / float64(s.n)
	case AggMin:
		return s.min
	case AggMax:
		return s.max
	default: // AggLast
		return s.last
	}
}

// prefixEntry is one prefix's metrics.
type prefixEntry struct {
	names map[string]*series // by sanitised name
	// touched is when a value was last recorded (Prune keeps a prefix
	// recorded to after its cut-off).
	touched time.Time
	// budget is what is left of MaxRawPoints this interval.
	budget int
}

// Registry collects the metrics workers report, keeps each interval's
// values for Vumi until the next Flush, and keeps each metric's latest
// figures for the Snapshot and Prometheus (Values). It is safe for
// concurrent use.
//
// Metrics are grouped by prefix (normally one per worker, from
// WorkerPrefix). A prefix may have at most maxNames distinct metric names;
// a name, once recorded, counts against that limit until Remove(prefix)
// or Prune, so that a worker that makes up a new name per message cannot
// grow the host's memory without bound. Memory per name is bounded too:
// see the package doc.
type Registry struct {
	maxNames int

	mu       sync.Mutex
	prefixes map[string]*prefixEntry
	n        int // series, over all prefixes

	dropped atomic.Uint64
	now     func() time.Time // time.Now; tests replace it
}

// NewRegistry returns a Registry that allows maxNames distinct metric
// names per prefix; 0 means DefaultMaxNames.
func NewRegistry(maxNames int) *Registry {
	if maxNames <= 0 {
		maxNames = DefaultMaxNames
	}
	return &Registry{maxNames: maxNames, prefixes: map[string]*prefixEntry{}, now: time.Now}
}

// Record adds value, at the current time, to metric name under prefix, to
// be aggregated with aggregators (any of sum, avg, min, max, last; none
// means avg). The name is sanitised by SanitizeName. It is an error
// (ErrInvalidMetric) if the name is empty or longer than MaxNameLen once
// sanitised or the value is NaN or infinite, if an aggregator is unknown
// (ErrUnknownAggregator), if the name is new and prefix already has its
// maximum number of names (ErrTooManyMetrics), or if it sanitises to the
// name of a metric that prefix recorded under another spelling
// (ErrNameCollision). A rejected value changes nothing.
func (r *Registry) Record(prefix, name string, value float64, aggregators []string) error {
	clean := SanitizeName(name)
	switch {
	case clean == "":
		return fmt.Errorf("metric %q: %w: empty name", name, ErrInvalidMetric)
	case len(clean) > MaxNameLen:
		return fmt.Errorf("metric %.40q...: %w: name longer than %d bytes", clean, ErrInvalidMetric, MaxNameLen)
	case math.IsNaN(value) || math.IsInf(value, 0):
		return fmt.Errorf("metric %q: %w: value %v", clean, ErrInvalidMetric, value)
	}
	set, err := parseAggs(aggregators)
	if err != nil {
		return fmt.Errorf("metric %q: %w", clean, err)
	}
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.prefixes[prefix]
	if p == nil {
		p = &prefixEntry{names: map[string]*series{}, budget: MaxRawPoints}
		r.prefixes[prefix] = p
	}
	s := p.names[clean]
	switch {
	case s == nil:
		if len(p.names) >= r.maxNames {
			return fmt.Errorf("metric %q: %w: %q already has %d (the maximum)", clean, ErrTooManyMetrics, prefix, r.maxNames)
		}
		s = &series{raw: name}
		p.names[clean] = s
		r.n++
	case s.raw == "":
		s.raw = name // released: the first spelling since claims it
	case s.raw != name:
		return fmt.Errorf("%w: metric %q and %q, recorded before, are both %q once sanitised", ErrNameCollision, name, s.raw, clean)
	}
	p.touched = now
	if s.add(now.Unix(), value, set, &p.budget) {
		r.dropped.Add(1)
	}
	return nil
}

// Flush returns the datapoints of every metric recorded since the last
// Flush and starts a new interval. Each metric gives one datapoint named
// <prefix>.<name>, with the aggregators it was recorded with (sorted, as
// Vumi's Metric sorts them) and its points: the values with the whole
// second they were recorded at, folded where that changes nothing for
// those aggregators (see the package doc). This is what a Vumi worker's
// MetricManager publishes for the same values, so Vumi's aggregators
// publish <prefix>.<name>.<aggregator> from it as they would for a Vumi
// worker. Datapoints are ordered by prefix and name. The interval's
// aggregates become the figures Values shows.
func (r *Registry) Flush() []Datapoint {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Datapoint
	for _, prefix := range sortedKeys(r.prefixes) {
		p := r.prefixes[prefix]
		p.budget = MaxRawPoints
		for _, name := range sortedKeys(p.names) {
			s := p.names[name]
			if s.n == 0 {
				continue
			}
			points := make([]Point, len(s.points))
			for i, rp := range s.points {
				points[i] = Point{Time: time.Unix(rp.sec, 0), Value: rp.v}
			}
			if len(points) > 0 {
				out = append(out, Datapoint{Name: joinName(prefix, name), Aggregators: s.aggs.names(), Points: points})
			}
			for i, agg := range aggNames[:4] { // avg, last, max, min: gauges
				if s.aggs&(1<<i) != 0 {
					s.gauge[i] = s.value(agg)
					s.shown |= 1 << i
				}
			}
			s.aggs, s.n, s.folded = 0, 0, foldNone
			s.points = s.points[:0]
			if cap(s.points) > 64 {
				s.points = nil // a burst does not pin its memory
			}
		}
	}
	return out
}

// MetricValue is one figure of a worker's own metric, as a Snapshot and the
// Prometheus exporter show it.
type MetricValue struct {
	// Name is the metric's name, sanitised.
	Name string
	// Aggregator is sum, avg, min, max or last.
	Aggregator string
	// Value is, for sum, the sum of every value recorded with the sum
	// aggregator since the prefix's metrics began (a counter, which only
	// goes down if the worker reports negative values); for the others,
	// the aggregate of the last flushed interval in which the metric was
	// recorded with that aggregator ("last" is the last value in the
	// order the host received them).
	Value float64
}

// Values returns the figures of the metrics of prefix, ordered by name
// and aggregator; nil if it has none.
func (r *Registry) Values(prefix string) []MetricValue {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.prefixes[prefix]
	if p == nil {
		return nil
	}
	var out []MetricValue
	for _, name := range sortedKeys(p.names) {
		s := p.names[name]
		for i, agg := range aggNames[:4] {
			if s.shown&(1<<i) != 0 {
				out = append(out, MetricValue{Name: name, Aggregator: agg, Value: s.gauge[i]})
			}
		}
		if s.hasTotal {
			out = append(out, MetricValue{Name: name, Aggregator: AggSum, Value: s.total})
		}
	}
	return out
}

// Release lets the next value of each metric of prefix claim its name
// anew, keeping the values: a new process of a worker may spell a name
// differently from its predecessor (the series stays the same). The host
// calls it when a worker's process starts.
func (r *Registry) Release(prefix string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p := r.prefixes[prefix]; p != nil {
		for _, s := range p.names {
			s.raw = ""
		}
	}
}

// Remove forgets prefix: its values not yet flushed, its figures and its
// names, which then no longer count against the limit. It costs one map
// deletion.
func (r *Registry) Remove(prefix string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.removeLocked(prefix)
}

func (r *Registry) removeLocked(prefix string) {
	if p := r.prefixes[prefix]; p != nil {
		r.n -= len(p.names)
		delete(r.prefixes, prefix)
	}
}

// Prune removes, as Remove does, every prefix for which keep returns false
// and that had no value recorded at or after since, and returns how many
// it removed. The Monitor calls it after each flush with the prefixes of
// the workers that exist and the time it began listing them, so that a
// worker's metrics go with it, but not those of a worker added while the
// list was made.
func (r *Registry) Prune(keep func(prefix string) bool, since time.Time) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for prefix, p := range r.prefixes {
		if !keep(prefix) && p.touched.Before(since) {
			r.removeLocked(prefix)
			n++
		}
	}
	return n
}

// Len returns the number of series (distinct metric names over all
// prefixes) the registry holds.
func (r *Registry) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

// Dropped returns how many values have been left out of the Vumi
// datapoints so far because their prefix had used up MaxRawPoints in an
// interval.
func (r *Registry) Dropped() uint64 { return r.dropped.Load() }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// joinName joins a prefix and a name with a dot; an empty prefix adds
// nothing.
func joinName(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return strings.TrimSuffix(prefix, ".") + "." + name
}
