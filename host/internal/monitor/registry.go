package monitor

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"
)

// Aggregators a worker may ask for, Vumi's five
// (vumi.blinkenlights.metrics: SUM, AVG, MAX, MIN, LAST).
const (
	AggSum  = "sum"
	AggAvg  = "avg"
	AggMin  = "min"
	AggMax  = "max"
	AggLast = "last"
)

// DefaultAggregator is used when a metric is recorded with no aggregator:
// avg, the default of Vumi's Metric class (DEFAULT_AGGREGATORS = [AVG]).
const DefaultAggregator = AggAvg

// DefaultMaxNames is the number of distinct metric names a prefix may have
// when NewRegistry is given 0.
const DefaultMaxNames = 1000

// MaxNameLen is the longest metric name Record accepts, after sanitising.
const MaxNameLen = 200

// Errors of Record, to be checked with errors.Is.
var (
	ErrUnknownAggregator = errors.New("unknown aggregator")
	ErrTooManyMetrics    = errors.New("too many metric names")
	ErrInvalidMetric     = errors.New("invalid metric")
)

// aggs is a set of aggregators, one bit each, in the order Flush emits
// them: sorted by name, as Vumi sorts a metric's aggregators.
type aggs uint8

var aggNames = [...]string{AggAvg, AggLast, AggMax, AggMin, AggSum}

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

// series is what a Registry keeps of one metric between flushes: a
// summary that every aggregator can be computed from, whatever the number
// of values.
type series struct {
	aggs          aggs // asked for since the last flush
	n             int
	sum, min, max float64
	last          float64
}

func (s *series) add(v float64, a aggs) {
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

// Registry collects the metrics workers report and aggregates them until
// the next Flush. It is safe for concurrent use.
//
// Metrics are grouped by prefix (normally one per worker, from
// WorkerPrefix). A prefix may have at most maxNames distinct metric names;
// a name, once recorded, counts against that limit until Remove(prefix),
// so that a worker that makes up a new name per message cannot grow the
// host's memory without bound. Memory per name is constant: values are
// folded into a running sum, count, min, max and last as they arrive.
type Registry struct {
	maxNames int

	mu       sync.Mutex
	prefixes map[string]map[string]*series
}

// NewRegistry returns a Registry that allows maxNames distinct metric
// names per prefix; 0 means DefaultMaxNames.
func NewRegistry(maxNames int) *Registry {
	if maxNames <= 0 {
		maxNames = DefaultMaxNames
	}
	return &Registry{maxNames: maxNames, prefixes: map[string]map[string]*series{}}
}

// Record adds value to metric name under prefix, to be aggregated with
// aggregators (any of sum, avg, min, max, last; none means avg). The name
// is sanitised by SanitizeName. It is an error (ErrInvalidMetric) if the
// name is empty or longer than MaxNameLen once sanitised or the value is
// NaN or infinite, if an aggregator is unknown (ErrUnknownAggregator), or
// if name is new and prefix already has its maximum number of names
// (ErrTooManyMetrics). A rejected value changes nothing.
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
	r.mu.Lock()
	defer r.mu.Unlock()
	names := r.prefixes[prefix]
	if names == nil {
		names = map[string]*series{}
		r.prefixes[prefix] = names
	}
	s := names[clean]
	if s == nil {
		if len(names) >= r.maxNames {
			return fmt.Errorf("metric %q: %w: %q already has %d (the maximum)", clean, ErrTooManyMetrics, prefix, r.maxNames)
		}
		s = &series{}
		names[clean] = s
	}
	s.add(value, set)
	return nil
}

// Flush returns the aggregates of every metric recorded since the last
// Flush and starts a new interval. Each metric gives one datapoint per
// aggregator it was recorded with, named <prefix>.<name>.<aggregator>,
// carrying that aggregator alone and one point at now (see the package
// doc for why). Datapoints are ordered by prefix, name and aggregator.
func (r *Registry) Flush(now time.Time) []Datapoint {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Datapoint
	for _, prefix := range sortedKeys(r.prefixes) {
		names := r.prefixes[prefix]
		for _, name := range sortedKeys(names) {
			s := names[name]
			if s.n == 0 {
				continue
			}
			base := joinName(prefix, name)
			for i, agg := range aggNames {
				if s.aggs&(1<<i) == 0 {
					continue
				}
				out = append(out, Datapoint{
					Name:        base + "." + agg,
					Aggregators: []string{agg},
					Points:      []Point{{Time: now, Value: s.value(agg)}},
				})
			}
			*s = series{}
		}
	}
	return out
}

// Remove forgets prefix: its values not yet flushed and its names, which
// then no longer count against the limit. The host calls it when a worker
// is removed.
func (r *Registry) Remove(prefix string) {
	r.mu.Lock()
	delete(r.prefixes, prefix)
	r.mu.Unlock()
}

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
