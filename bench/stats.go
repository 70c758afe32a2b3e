package bench

import (
	"math"
	"slices"
	"time"
)

// Summary describes a set of durations. Percentiles are nearest-rank: the
// p-th percentile of n sorted samples is sample ⌈p/100·n⌉ (1-based), so
// every reported value is one that was measured.
type Summary struct {
	N    int           `json:"n"`
	Min  time.Duration `json:"min_ns"`
	P50  time.Duration `json:"p50_ns"`
	P90  time.Duration `json:"p90_ns"`
	P99  time.Duration `json:"p99_ns"`
	Max  time.Duration `json:"max_ns"`
	Mean time.Duration `json:"mean_ns"`
}

// Summarize returns the summary of ds; the zero Summary for none.
func Summarize(ds []time.Duration) Summary {
	if len(ds) == 0 {
		return Summary{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	return Summary{
		N:    len(s),
		Min:  s[0],
		P50:  Percentile(s, 50),
		P90:  Percentile(s, 90),
		P99:  Percentile(s, 99),
		Max:  s[len(s)-1],
		Mean: sum / time.Duration(len(s)),
	}
}

// Percentile returns the nearest-rank p-th percentile (0 < p ≤ 100) of
// sorted, which must be sorted ascending and not empty.
func Percentile[T any](sorted []T, p float64) T {
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// Median returns the nearest-rank median of vs (the lower middle value for
// an even count); the zero value for none.
func Median[T int64 | time.Duration](vs []T) T {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	return Percentile(s, 50)
}

// Max returns the largest of vs; the zero value for none.
func Max[T int64 | time.Duration](vs []T) T {
	if len(vs) == 0 {
		return 0
	}
	return slices.Max(vs)
}

// Micros converts durations to whole microseconds, for the raw numbers.
func Micros(ds []time.Duration) []int64 {
	out := make([]int64, len(ds))
	for i, d := range ds {
		out[i] = d.Microseconds()
	}
	return out
}

// ms formats d in milliseconds with a precision that suits its size.
func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	switch {
	case v >= 1000:
		return trimFloat(d.Seconds(), 2) + " s"
	case v >= 100:
		return trimFloat(v, 0) + " ms"
	case v >= 10:
		return trimFloat(v, 1) + " ms"
	default:
		return trimFloat(v, 2) + " ms"
	}
}
