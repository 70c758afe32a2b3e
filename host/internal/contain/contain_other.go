//go:build !linux

package contain

// System is what this host process can use: outside Linux, no cgroup and
// no rlimit; the host kills a worker's process group only.
type System struct{}

var detected = &System{}

// Detect returns the System: nothing to contain with outside Linux.
func Detect() *System { return detected }

// Probe reports what Detect finds.
func Probe() Support { return detected.Support() }

// Support says that nothing is enforced.
func (s *System) Support() Support {
	return Support{Kill: KillProcessOnly, Cgroup1: map[string]string{}, Notes: []string{"cgroups exist on Linux only"}}
}

// Uncontained returns the System: nothing is contained outside Linux.
func Uncontained() *System { return detected }

// Group does nothing outside Linux.
type Group struct{ limits Limits }

// New returns a Group that only remembers limits.
func (s *System) New(name string, limits Limits) (*Group, error) { return &Group{limits: limits}, nil }

func (g *Group) CgroupFD() (int, bool) { return -1, false }
func (g *Group) Started(int, bool)     {}
func (g *Group) Attach(int) error      { return nil }
func (g *Group) Signal()               {}
func (g *Group) SignalOthers(int)      {}
func (g *Group) Drain() error          { return nil }
func (g *Group) OOMKills() int         { return 0 }
func (g *Group) MemoryByRlimit() bool  { return false }
func (g *Group) Dirs() []string        { return nil }
func (g *Group) Remove()               {}
func (g *Group) Limits() Limits {
	if g == nil {
		return Limits{}
	}
	return g.limits
}
