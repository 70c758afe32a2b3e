package catalog

import "github.com/dynworkers/dynworkers/host/internal/suggest"

// suggest returns the known class name or alias closest to an unknown name,
// or "" when none is close (see suggest.Closest).
func (c *Catalog) suggest(name string) string {
	known := make([]string, 0, len(c.byName)+len(c.conflicts))
	for n := range c.byName {
		known = append(known, n)
	}
	for n := range c.conflicts {
		known = append(known, n)
	}
	return suggest.Closest(name, known)
}
