package contain

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
)

// topDir is the directory, in the host's own cgroup of each hierarchy, that
// holds one directory per host process (named by its pid).
const topDir = "dynworkers"

// hostLeaf is the cgroup a host moves itself to, on cgroup v2, when its own
// cgroup must hand its controllers down (no process may stay in a cgroup
// that does).
const hostLeaf = "host"

// controllers are those the host uses for limits, in the order they are
// tried for killing when no v2 cgroup.kill is available.
var limitControllers = []string{"memory", "pids", "cpu"}

// System is what this host process can use of the machine's cgroups. Its
// methods are safe for concurrent use.
type System struct {
	support Support
	// v2 is this host's directory in the cgroup2 hierarchy, "" if none is
	// usable; v2Ctl the controllers enabled for its children; v2Kill
	// whether cgroup.kill (and so clone3 into a cgroup) is available.
	v2     string
	v2Ctl  map[string]bool
	v2Kill bool
	// v1 is this host's directory in each usable v1 hierarchy, by
	// controller (memory, pids, cpu, freezer).
	v1      map[string]string
	killCtl string // the v1 controller whose cgroup kills when v2 cannot
	seq     atomic.Int64
}

var (
	detectOnce sync.Once
	detected   *System
)

// Detect finds out, once per process, what the machine offers, creates this
// host's cgroup directories and removes those of hosts that died (killing
// whatever they left running). Later calls return the same System.
func Detect() *System {
	detectOnce.Do(func() { detected = detect(os.Getpid()) })
	return detected
}

// Probe reports what Detect would find without keeping anything: the
// directories it creates to find out are removed again (and those of dead
// hosts are left alone). For `dynworkers validate`.
func Probe() Support {
	if detected != nil {
		return detected.Support()
	}
	s := detectWith(os.Getpid(), false)
	s.removeHostDirs()
	return s.Support()
}

// Support says how this System enforces limits and kills.
func (s *System) Support() Support {
	out := s.support
	out.Cgroup1 = map[string]string{}
	for k, v := range s.support.Cgroup1 {
		out.Cgroup1[k] = v
	}
	out.Notes = slices.Clone(s.support.Notes)
	return out
}

func detect(pid int) *System { return detectWith(pid, true) }

// Uncontained returns a System that uses no cgroup: the process group and
// rlimits only, as on a machine without usable cgroups. For tests of that
// fallback.
func Uncontained() *System {
	s := &System{v2Ctl: map[string]bool{}, v1: map[string]string{}}
	s.support = Support{Memory: ByRlimit, Pids: ByRlimit, CPU: NotEnforced, OpenFiles: ByRlimit,
		Kill: KillProcessOnly, Cgroup1: map[string]string{}, Notes: []string{"cgroups not used"}}
	return s
}

func detectWith(pid int, clean bool) *System {
	s := &System{v2Ctl: map[string]bool{}, v1: map[string]string{}}
	mounts := readMounts()
	own := readOwnCgroups()
	note := func(format string, args ...any) {
		s.support.Notes = append(s.support.Notes, fmt.Sprintf(format, args...))
	}
	name := strconv.Itoa(pid)

	// cgroup v2.
	if mnt, ok := mounts.v2, mounts.v2 != ""; ok {
		if path, ok := own["0::"]; ok {
			ownDir := mounts.dir(mnt, path)
			top := filepath.Join(ownDir, topDir)
			if clean {
				cleanStale(top, true)
			}
			dir := filepath.Join(top, name)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				note("cgroup2 at %s: cannot create %s: %v", mnt, dir, err)
			} else {
				s.v2 = dir
				s.v2Kill = exists(filepath.Join(dir, "cgroup.kill"))
				s.v2Ctl = enableV2(ownDir, top, dir, pid, note)
			}
		} else {
			note("cgroup2 at %s: this process has no cgroup2 path in /proc/self/cgroup", mnt)
		}
	}
	// cgroup v1 hierarchies, for what v2 does not offer.
	for _, ctl := range append(slices.Clone(limitControllers), "freezer") {
		if s.v2Ctl[ctl] || (ctl == "freezer" && s.v2Kill) {
			continue // v2 does it
		}
		mnt, ok := mounts.v1[ctl]
		if !ok {
			continue
		}
		path, ok := own[ctl]
		if !ok {
			note("cgroup1 %s at %s: this process has no %s path in /proc/self/cgroup", ctl, mnt, ctl)
			continue
		}
		top := filepath.Join(mounts.dir(mnt, path), topDir)
		if clean {
			cleanStale(top, false)
		}
		dir := filepath.Join(top, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			note("cgroup1 %s: cannot create %s: %v", ctl, dir, err)
			continue
		}
		s.v1[ctl] = dir
	}

	sup := &s.support
	sup.Cgroup2 = s.v2
	sup.Cgroup1 = map[string]string{}
	for k, v := range s.v1 {
		sup.Cgroup1[k] = v
	}
	for _, ctl := range limitControllers {
		by := NotEnforced
		switch {
		case s.v2Ctl[ctl]:
			by = ByCgroup2
		case s.v1[ctl] != "":
			by = ByCgroup1
		case ctl != "cpu":
			by = ByRlimit
		}
		switch ctl {
		case "memory":
			sup.Memory = by
		case "pids":
			sup.Pids = by
		case "cpu":
			sup.CPU = by
		}
	}
	sup.OpenFiles = ByRlimit
	switch {
	case s.v2 != "" && s.v2Kill:
		sup.Kill = KillCgroup2
	case s.v1["freezer"] != "":
		sup.Kill, s.killCtl = KillFreezer, "freezer"
	case s.v2 != "":
		sup.Kill = KillProcsLoop
	default:
		for _, ctl := range limitControllers {
			if s.v1[ctl] != "" {
				sup.Kill, s.killCtl = KillProcsLoop, ctl
				break
			}
		}
		if sup.Kill == "" {
			sup.Kill = KillProcessOnly
		}
	}
	return s
}

// enableV2 hands the available controllers (memory, pids, cpu) down from the
// host's own cgroup to dir, its per-host directory, and returns those
// enabled. When the host's cgroup holds the host itself (a delegated
// systemd unit, say), the host first moves to a leaf of it, "host", as the
// cgroup v2 rule "no processes in a cgroup that hands controllers down"
// requires; it does not when other processes share its cgroup.
func enableV2(ownDir, top, dir string, pid int, note func(string, ...any)) map[string]bool {
	enabled := map[string]bool{}
	avail := strings.Fields(readString(filepath.Join(ownDir, "cgroup.controllers")))
	var want []string
	for _, c := range limitControllers {
		if slices.Contains(avail, c) {
			want = append(want, c)
		}
	}
	if len(want) == 0 {
		return enabled
	}
	line := "+" + strings.Join(want, " +")
	err := writeFile(filepath.Join(ownDir, "cgroup.subtree_control"), line)
	if errors.Is(err, syscall.EBUSY) {
		procs := readPids(filepath.Join(ownDir, "cgroup.procs"))
		if len(procs) == 1 && procs[0] == pid {
			leaf := filepath.Join(ownDir, hostLeaf)
			if err = os.MkdirAll(leaf, 0o755); err == nil {
				if err = writeFile(filepath.Join(leaf, "cgroup.procs"), strconv.Itoa(pid)); err == nil {
					err = writeFile(filepath.Join(ownDir, "cgroup.subtree_control"), line)
				}
			}
		} else {
			err = fmt.Errorf("%w: other processes share the host's cgroup; run the host in a cgroup of its own (systemd: Delegate=yes)", err)
		}
	}
	if err == nil {
		err = writeFile(filepath.Join(top, "cgroup.subtree_control"), line)
	}
	if err == nil {
		err = writeFile(filepath.Join(dir, "cgroup.subtree_control"), line)
	}
	if err != nil {
		note("cgroup2 controllers %s cannot be handed down from %s: %v", strings.Join(want, ", "), ownDir, err)
		return enabled
	}
	for _, c := range want {
		enabled[c] = true
	}
	return enabled
}

// removeHostDirs removes this host's (empty) directories.
func (s *System) removeHostDirs() {
	if s.v2 != "" {
		_ = os.Remove(s.v2)
	}
	for _, d := range s.v1 {
		_ = os.Remove(d)
	}
}

// cleanStale empties and removes the directories under top of host pids
// that no longer run: whatever their workers left running (a setsid
// grandchild outlives a host killed with SIGKILL) is killed.
func cleanStale(top string, v2 bool) {
	ents, err := os.ReadDir(top)
	if err != nil {
		return
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !e.IsDir() || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); err == nil || errors.Is(err, syscall.EPERM) {
			continue // that host (or a process reusing its pid) runs
		}
		hostDir := filepath.Join(top, e.Name())
		leaves, _ := os.ReadDir(hostDir)
		for _, l := range leaves {
			if !l.IsDir() {
				continue
			}
			d := filepath.Join(hostDir, l.Name())
			if v2 && exists(filepath.Join(d, "cgroup.kill")) {
				_ = writeFile(filepath.Join(d, "cgroup.kill"), "1")
			}
			killLoop(d, nil)
			removeDir(d)
		}
		removeDir(hostDir)
	}
}

// mounts are the cgroup mount points of the machine.
type mounts struct {
	v2 string            // the cgroup2 mount, "" if none
	v1 map[string]string // v1 mount by controller
	// root is the cgroup path each mount point shows (its mountinfo
	// root: "/", or the container's own path without a cgroup namespace).
	root map[string]string
}

// dir is the directory of cgroup path (as /proc/self/cgroup shows it) under
// mount point mnt.
func (m mounts) dir(mnt, path string) string {
	if r := m.root[mnt]; r != "" && r != "/" {
		if rest, ok := strings.CutPrefix(path, r); ok && (rest == "" || rest[0] == '/') {
			path = rest
		}
	}
	return filepath.Join(mnt, path)
}

func readMounts() mounts {
	m := mounts{v1: map[string]string{}, root: map[string]string{}}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return m
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		// 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(qf) < 3 {
			continue
		}
		point := unescapeMount(pf[4])
		if _, seen := m.root[point]; !seen {
			m.root[point] = unescapeMount(pf[3])
		}
		switch qf[0] {
		case "cgroup2":
			if m.v2 == "" {
				m.v2 = point
			}
		case "cgroup":
			for _, opt := range strings.Split(qf[2], ",") {
				if slices.Contains(limitControllers, opt) || opt == "freezer" {
					if _, dup := m.v1[opt]; !dup {
						m.v1[opt] = point
					}
				}
			}
		}
	}
	return m
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// readOwnCgroups returns this process's cgroup path by controller ("memory",
// "cpu", ...) and "0::" for cgroup v2.
func readOwnCgroups() map[string]string {
	out := map[string]string{}
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return out
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			out["0::"] = parts[2]
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			out[c] = parts[2]
		}
	}
	return out
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func readString(path string) string {
	b, _ := os.ReadFile(path)
	return strings.TrimSpace(string(b))
}

// writeFile writes s to an existing cgroup file (no create, no truncate
// needed: cgroup files take one write).
func writeFile(path, s string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(s)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// readPids reads a cgroup.procs file.
func readPids(path string) []int {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if n, err := strconv.Atoi(f); err == nil && n > 0 {
			pids = append(pids, n)
		}
	}
	return pids
}
