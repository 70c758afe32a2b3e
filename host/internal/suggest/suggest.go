// Package suggest finds the likely intended name for a misspelled one, for
// the "did you mean" hints of config diagnostics and catalog errors.
package suggest

import (
	"slices"
	"strings"
)

// Closest returns the candidate the user most likely meant by name, or ""
// when none is close: a candidate equal but for case, then one ending in
// "."+name (a short name for a dotted class name), then the nearest within
// a small edit distance (at most a quarter of the candidate's length, and
// at least 2). Ties go to the candidate that sorts first, so the answer
// does not depend on the order of candidates.
func Closest(name string, candidates []string) string {
	sorted := slices.Clone(candidates)
	slices.Sort(sorted)
	lower := strings.ToLower(name)
	for _, c := range sorted {
		if strings.ToLower(c) == lower {
			return c
		}
	}
	for _, c := range sorted {
		if strings.HasSuffix(strings.ToLower(c), "."+lower) {
			return c
		}
	}
	best, bestDist := "", -1
	for _, c := range sorted {
		d := Levenshtein(lower, strings.ToLower(c))
		if d <= max(2, len([]rune(c))/4) && (bestDist < 0 || d < bestDist) {
			best, bestDist = c, d
		}
	}
	return best
}

// Levenshtein returns the edit distance between a and b, in runes.
func Levenshtein(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
