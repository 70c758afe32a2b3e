package catalog

import (
	"sort"
	"strings"
)

// suggest returns the known class name or alias closest to an unknown name,
// or "" when none is close: a name that differs only in case, one that ends
// in ".<name>" (a short name for a dotted one), or one within a small edit
// distance.
func (c *Catalog) suggest(name string) string {
	known := make([]string, 0, len(c.byName)+len(c.conflicts))
	for n := range c.byName {
		known = append(known, n)
	}
	for n := range c.conflicts {
		known = append(known, n)
	}
	sort.Strings(known) // deterministic among equals
	lower := strings.ToLower(name)
	for _, k := range known {
		if strings.ToLower(k) == lower {
			return k
		}
	}
	for _, k := range known {
		if strings.HasSuffix(strings.ToLower(k), "."+lower) {
			return k
		}
	}
	best, bestDist := "", max(1, len([]rune(name))/3)+1
	for _, k := range known {
		if d := levenshtein(lower, strings.ToLower(k)); d < bestDist {
			best, bestDist = k, d
		}
	}
	return best
}

func levenshtein(a, b string) int {
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
