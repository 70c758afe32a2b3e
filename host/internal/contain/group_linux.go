package contain

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// drainTimeout bounds Drain: how long the host keeps killing a group's
// processes until none is left.
const drainTimeout = 5 * time.Second

// cpuPeriod is the CFS period, in microseconds, CPU quotas are written for.
const cpuPeriod = 100000

// Group is the container of one plugin process: its cgroup directories and
// the limits applied to it. The zero of a nil *Group does nothing: methods
// of a nil Group are no-ops (no containment).
type Group struct {
	sys    *System
	name   string
	limits Limits
	v2     string            // its cgroup2 directory, "" if none
	v1     map[string]string // its v1 directories, by controller
	// memRlimit and pidsRlimit: the limit falls back to an rlimit.
	memRlimit, pidsRlimit bool

	mu      sync.Mutex
	fd      int  // an open fd of v2 for clone3, -1 if none
	placed  bool // the process was started in v2 by clone3
	pid     int
	removed bool
}

// New creates the cgroups of one plugin process, named after it (e.g. the
// worker's name), and applies limits to them. Without any usable cgroup it
// returns a Group that only applies the rlimits. Call Attach once the
// process runs and Remove once it is gone.
func (s *System) New(name string, limits Limits) (*Group, error) {
	g := &Group{sys: s, name: sanitize(name), limits: limits, v1: map[string]string{}, fd: -1}
	leaf := fmt.Sprintf("%d-%s", s.seq.Add(1), g.name)
	if s.v2 != "" {
		d := filepath.Join(s.v2, leaf)
		if err := os.Mkdir(d, 0o755); err != nil {
			return nil, fmt.Errorf("creating its cgroup: %w", err)
		}
		g.v2 = d
	}
	// v1 hierarchies: those with a limit to apply, and the one that kills
	// when v2 cannot.
	for ctl, base := range s.v1 {
		need := ctl == s.killCtl
		switch ctl {
		case "memory":
			need = need || limits.Memory > 0
		case "pids":
			need = need || limits.Pids > 0
		case "cpu":
			need = need || limits.CPU > 0
		}
		if !need {
			continue
		}
		d := filepath.Join(base, leaf)
		if err := os.Mkdir(d, 0o755); err != nil {
			g.Remove()
			return nil, fmt.Errorf("creating its %s cgroup: %w", ctl, err)
		}
		g.v1[ctl] = d
	}
	if err := g.applyCgroupLimits(); err != nil {
		g.Remove()
		return nil, err
	}
	return g, nil
}

// applyCgroupLimits writes the limits to the cgroup files, and records
// which ones fall back to rlimits.
func (g *Group) applyCgroupLimits() error {
	l := g.limits
	v2 := func(ctl string) bool { return g.v2 != "" && g.sys.v2Ctl[ctl] }
	type write struct{ path, value string }
	var ws []write
	if l.Memory > 0 {
		switch {
		case v2("memory"):
			ws = append(ws, write{filepath.Join(g.v2, "memory.max"), strconv.FormatInt(l.Memory, 10)})
			if exists(filepath.Join(g.v2, "memory.swap.max")) {
				ws = append(ws, write{filepath.Join(g.v2, "memory.swap.max"), "0"})
			}
			// One OOM kill ends the whole worker, not one of its processes.
			ws = append(ws, write{filepath.Join(g.v2, "memory.oom.group"), "1"})
		case g.v1["memory"] != "":
			d := g.v1["memory"]
			ws = append(ws, write{filepath.Join(d, "memory.limit_in_bytes"), strconv.FormatInt(l.Memory, 10)})
			if exists(filepath.Join(d, "memory.memsw.limit_in_bytes")) {
				ws = append(ws, write{filepath.Join(d, "memory.memsw.limit_in_bytes"), strconv.FormatInt(l.Memory, 10)})
			}
		default:
			g.memRlimit = true
		}
	}
	if l.Pids > 0 {
		switch {
		case v2("pids"):
			ws = append(ws, write{filepath.Join(g.v2, "pids.max"), strconv.FormatInt(l.Pids, 10)})
		case g.v1["pids"] != "":
			ws = append(ws, write{filepath.Join(g.v1["pids"], "pids.max"), strconv.FormatInt(l.Pids, 10)})
		default:
			g.pidsRlimit = true
		}
	}
	if l.CPU > 0 {
		quota := max(int64(l.CPU*cpuPeriod), 1000)
		switch {
		case v2("cpu"):
			ws = append(ws, write{filepath.Join(g.v2, "cpu.max"), fmt.Sprintf("%d %d", quota, cpuPeriod)})
		case g.v1["cpu"] != "":
			ws = append(ws, write{filepath.Join(g.v1["cpu"], "cpu.cfs_period_us"), strconv.Itoa(cpuPeriod)})
			ws = append(ws, write{filepath.Join(g.v1["cpu"], "cpu.cfs_quota_us"), strconv.FormatInt(quota, 10)})
		}
	}
	for _, w := range ws {
		if err := writeFile(w.path, w.value); err != nil {
			return fmt.Errorf("setting %s to %s: %w", w.path, w.value, err)
		}
	}
	return nil
}

// CgroupFD returns an open descriptor of the group's cgroup2 directory for
// exec's SysProcAttr.CgroupFD (clone3 with CLONE_INTO_CGROUP: the process
// is in the cgroup from its first instruction), or false when the process
// must be attached after it started. The descriptor is closed by Attach or
// Remove.
func (g *Group) CgroupFD() (int, bool) {
	if g == nil || g.v2 == "" || !g.sys.v2Kill {
		// cgroup.kill came with Linux 5.14; clone3 into a cgroup with
		// 5.7: without the first, do not count on the second.
		return -1, false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.fd < 0 {
		fd, err := unix.Open(g.v2, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, false
		}
		g.fd = fd
	}
	return g.fd, true
}

// Started tells the group that the process was started (with or without
// its CgroupFD); placed says it was started in the cgroup2 directory by
// clone3.
func (g *Group) Started(pid int, placed bool) {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.pid, g.placed = pid, placed
	g.closeFDLocked()
}

// Attach puts the process pid in the group's cgroups it was not started in
// and applies the rlimits (open_files, and the fallbacks of memory and
// pids). The plugin does not fork before its go-plugin handshake, so
// attaching it just after the handshake leaves nothing outside.
func (g *Group) Attach(pid int) error {
	if g == nil {
		return nil
	}
	g.mu.Lock()
	placed := g.placed && g.pid == pid
	g.pid = pid
	g.mu.Unlock()
	var errs []error
	if g.v2 != "" && !placed {
		if err := writeFile(filepath.Join(g.v2, "cgroup.procs"), strconv.Itoa(pid)); err != nil {
			errs = append(errs, fmt.Errorf("moving it to %s: %w", g.v2, err))
		}
	}
	for _, d := range g.v1 {
		if err := writeFile(filepath.Join(d, "cgroup.procs"), strconv.Itoa(pid)); err != nil {
			errs = append(errs, fmt.Errorf("moving it to %s: %w", d, err))
		}
	}
	set := func(res int, what string, n int64) {
		if err := unix.Prlimit(pid, res, &unix.Rlimit{Cur: uint64(n), Max: uint64(n)}, nil); err != nil {
			errs = append(errs, fmt.Errorf("setting %s to %d: %w", what, n, err))
		}
	}
	if g.limits.OpenFiles > 0 {
		set(unix.RLIMIT_NOFILE, "RLIMIT_NOFILE", g.limits.OpenFiles)
	}
	if g.memRlimit {
		set(unix.RLIMIT_DATA, "RLIMIT_DATA", g.limits.Memory)
	}
	if g.pidsRlimit {
		set(unix.RLIMIT_NPROC, "RLIMIT_NPROC", g.limits.Pids)
	}
	return errors.Join(errs...)
}

// Signal sends SIGKILL to every process of the group without waiting.
func (g *Group) Signal() {
	if g == nil {
		return
	}
	switch {
	case g.v2 != "" && g.sys.v2Kill:
		_ = writeFile(filepath.Join(g.v2, "cgroup.kill"), "1")
	default:
		if d := g.killDir(); d != "" {
			for _, pid := range readPids(filepath.Join(d, "cgroup.procs")) {
				_ = unix.Kill(pid, unix.SIGKILL)
			}
		}
	}
}

// SignalOthers sends SIGKILL to every process of the group if any process
// but pid (the plugin, which has ended) is left in it: it costs one read of
// cgroup.procs when nothing is left, as after most exits.
func (g *Group) SignalOthers(pid int) {
	if g == nil {
		return
	}
	if d := g.killDir(); d != "" {
		for _, p := range readPids(filepath.Join(d, "cgroup.procs")) {
			if p != pid {
				g.Signal()
				return
			}
		}
	}
}

// killDir is the cgroup whose cgroup.procs lists the group's processes.
func (g *Group) killDir() string {
	if g.v2 != "" {
		return g.v2
	}
	if g.sys.killCtl != "" {
		return g.v1[g.sys.killCtl]
	}
	return ""
}

// Drain kills every process left in the group and returns once there is
// none, or with an error after a few seconds.
func (g *Group) Drain() error {
	if g == nil {
		return nil
	}
	d := g.killDir()
	if d == "" {
		return nil
	}
	procs := filepath.Join(d, "cgroup.procs")
	if len(readPids(procs)) == 0 {
		return nil // the usual case: nothing left, one read
	}
	if g.v2 != "" && g.sys.v2Kill {
		_ = writeFile(filepath.Join(g.v2, "cgroup.kill"), "1")
	}
	var freezer string
	if g.v2 == "" && g.sys.killCtl == "freezer" {
		freezer = d
	}
	if !killLoop(d, &freezer) {
		return fmt.Errorf("processes still in %s after %s of SIGKILL: %v", d, drainTimeout, readPids(procs))
	}
	return nil
}

// killLoop kills the processes of cgroup dir until none is left (or
// drainTimeout passes); with a v1 freezer directory it freezes the group
// first, so no process can fork while the host reads the list. It reports
// whether the group is empty.
func killLoop(dir string, freezer *string) bool {
	deadline := time.Now().Add(drainTimeout)
	procs := filepath.Join(dir, "cgroup.procs")
	for wait := time.Millisecond; ; wait = min(wait*2, 50*time.Millisecond) {
		frozen := false
		if freezer != nil && *freezer != "" {
			frozen = freeze(*freezer, deadline)
		}
		pids := readPids(procs)
		for _, pid := range pids {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
		if frozen {
			_ = writeFile(filepath.Join(*freezer, "freezer.state"), "THAWED")
		}
		if len(pids) == 0 {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(wait)
	}
}

// freeze freezes a v1 freezer cgroup and waits (until deadline) for it to
// be frozen.
func freeze(dir string, deadline time.Time) bool {
	state := filepath.Join(dir, "freezer.state")
	if writeFile(state, "FROZEN") != nil {
		return false
	}
	for readString(state) != "FROZEN" {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

// OOMKills returns how many of the group's processes the kernel's OOM
// killer has killed (memory.events oom_kill on v2, memory.oom_control
// oom_kill on v1); 0 when the group has no memory controller.
func (g *Group) OOMKills() int {
	if g == nil {
		return 0
	}
	var path string
	switch {
	case g.v2 != "" && g.sys.v2Ctl["memory"]:
		path = filepath.Join(g.v2, "memory.events")
	case g.v1["memory"] != "":
		path = filepath.Join(g.v1["memory"], "memory.oom_control")
	default:
		return 0
	}
	for _, line := range strings.Split(readString(path), "\n") {
		if n, ok := strings.CutPrefix(line, "oom_kill "); ok {
			v, _ := strconv.Atoi(strings.TrimSpace(n))
			return v
		}
	}
	return 0
}

// MemoryByRlimit reports whether the memory limit is an RLIMIT_DATA: an
// allocation over it fails (a Go plugin then dies with "runtime: out of
// memory") instead of the OOM killer ending the process.
func (g *Group) MemoryByRlimit() bool { return g != nil && g.memRlimit }

// Limits returns the limits the group applies.
func (g *Group) Limits() Limits {
	if g == nil {
		return Limits{}
	}
	return g.limits
}

// Dirs returns the group's cgroup directories (v2 first), for tests and
// diagnostics.
func (g *Group) Dirs() []string {
	if g == nil {
		return nil
	}
	var out []string
	if g.v2 != "" {
		out = append(out, g.v2)
	}
	for _, ctl := range []string{"memory", "pids", "cpu", "freezer"} {
		if d := g.v1[ctl]; d != "" {
			out = append(out, d)
		}
	}
	return out
}

// Remove removes the group's cgroup directories; call it once its
// processes are gone (after Drain). It may be called more than once.
func (g *Group) Remove() {
	if g == nil {
		return
	}
	g.mu.Lock()
	g.closeFDLocked()
	done := g.removed
	g.removed = true
	g.mu.Unlock()
	if done {
		return
	}
	if g.v2 != "" {
		removeDir(g.v2)
	}
	for _, d := range g.v1 {
		removeDir(d)
	}
}

func (g *Group) closeFDLocked() {
	if g.fd >= 0 {
		unix.Close(g.fd)
		g.fd = -1
	}
}

// removeDir removes a cgroup directory, retrying for a moment while the
// kernel still counts a process that just died in it.
func removeDir(d string) {
	deadline := time.Now().Add(time.Second)
	for {
		err := syscall.Rmdir(d)
		if err == nil || errors.Is(err, syscall.ENOENT) || time.Now().After(deadline) || !errors.Is(err, syscall.EBUSY) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// sanitize makes a worker name usable as (part of) a cgroup directory
// name: letters, digits, '.', '_' and '-' kept, anything else '_', at most
// 64 bytes.
func sanitize(name string) string {
	b := []byte(name)
	if len(b) > 64 {
		b = b[:64]
	}
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			b[i] = '_'
		}
	}
	if len(b) == 0 {
		return "process"
	}
	return string(b)
}
