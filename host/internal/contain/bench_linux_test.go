package contain

import "testing"

// BenchmarkGroupNewRemove is what containment adds to a plugin launch and
// exit: creating, limiting and removing its cgroups (no process in them).
func BenchmarkGroupNewRemove(b *testing.B) {
	if Detect().Support().Kill == KillProcessOnly {
		b.Skip("no usable cgroup")
	}
	for _, bc := range []struct {
		name string
		l    Limits
	}{{"no-limits", Limits{}}, {"memory-pids-cpu", Limits{Memory: 256 << 20, Pids: 64, CPU: 0.5}}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				g, err := Detect().New("bench", bc.l)
				if err != nil {
					b.Fatal(err)
				}
				if err := g.Drain(); err != nil {
					b.Fatal(err)
				}
				g.Remove()
			}
		})
	}
}
