// Package contain keeps each plugin process of the host, and everything it
// starts, in a container of its own: one cgroup per process, so that the host
// can stop all of a worker's processes at once (grandchildren that called
// setsid included), limit its memory, processes and CPU, and tell an OOM kill
// from any other SIGKILL.
//
// Detect finds out once per host process what the machine offers:
//
//   - cgroup v2 with controllers (a pure v2 machine, the host in a delegated
//     subtree): memory.max, pids.max, cpu.max, memory.events oom_kill and
//     cgroup.kill in one directory per process; the process is started in it
//     by clone3 (SysProcAttr.UseCgroupFD), so nothing it does escapes;
//   - cgroup v1 controllers (memory, pids, cpu, freezer hierarchies), as on a
//     hybrid layout: one directory per process in each hierarchy that has a
//     limit to apply; a v2 mount without controllers (/sys/fs/cgroup/unified)
//     is still used for placement by clone3 and cgroup.kill;
//   - nothing usable: the process group alone, and rlimits (prlimit) for the
//     limits that have one (see Support.Warnings for what they do not cover).
//
// The directories live under the host's own cgroup of each hierarchy, in
// dynworkers/<host pid>/<n>-<name>; directories left by hosts that died are
// emptied and removed by the next Detect.
package contain

import (
	"fmt"
	"strconv"
	"strings"
)

// Limits are the resource limits of one worker process and its descendants.
// Zero fields mean no limit.
type Limits struct {
	// Memory is the most memory, in bytes, the worker's processes may use
	// together (swap included); over it the kernel's OOM killer ends them.
	Memory int64
	// Pids is the most tasks (processes and threads) they may have at once.
	Pids int64
	// CPU is the share of one CPU they may use, e.g. 0.5 or 2.
	CPU float64
	// OpenFiles is the most open files of each process (RLIMIT_NOFILE).
	OpenFiles int64
}

// IsZero reports whether l sets no limit.
func (l Limits) IsZero() bool { return l == Limits{} }

// String is l in the words of the HCL limits block, e.g.
// `memory = "256MiB", pids = 64`; "none" when l sets nothing.
func (l Limits) String() string {
	var parts []string
	if l.Memory > 0 {
		parts = append(parts, fmt.Sprintf("memory = %q", FormatBytes(l.Memory)))
	}
	if l.Pids > 0 {
		parts = append(parts, fmt.Sprintf("pids = %d", l.Pids))
	}
	if l.CPU > 0 {
		parts = append(parts, "cpu = "+strconv.FormatFloat(l.CPU, 'f', -1, 64))
	}
	if l.OpenFiles > 0 {
		parts = append(parts, fmt.Sprintf("open_files = %d", l.OpenFiles))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// FormatBytes writes n in the largest binary unit that divides it, e.g.
// "256MiB", "1536KiB" or "1000B".
func FormatBytes(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for i < len(units)-1 && n != 0 && n%1024 == 0 {
		n /= 1024
		i++
	}
	return strconv.FormatInt(n, 10) + units[i]
}

// How a limit or the kill is enforced (Support's fields).
const (
	ByCgroup2 = "cgroup2"
	ByCgroup1 = "cgroup1"
	ByRlimit  = "rlimit"
	// NotEnforced: the machine offers nothing for this limit.
	NotEnforced = ""
)

// How the processes of a worker are killed (Support.Kill).
const (
	KillCgroup2     = "cgroup2 cgroup.kill"
	KillFreezer     = "cgroup1 freezer"
	KillProcsLoop   = "cgroup.procs"
	KillProcessOnly = "process group"
)

// Support says how this machine enforces each limit and kills a worker.
type Support struct {
	Memory, Pids, CPU, OpenFiles string // ByCgroup2, ByCgroup1, ByRlimit or NotEnforced
	// Kill is how all of a worker's processes are killed: KillCgroup2,
	// KillFreezer, KillProcsLoop or KillProcessOnly.
	Kill string
	// Cgroup2 is the directory of this host's cgroups in the v2
	// hierarchy; Cgroup1 those of the v1 hierarchies, by controller.
	Cgroup2 string
	Cgroup1 map[string]string
	// Notes say why a cgroup hierarchy or controller could not be used.
	Notes []string
}

// Warnings are the sentences `dynworkers validate` prints about limits l
// on this machine: one for each limit it cannot enforce as configured.
func (s Support) Warnings(l Limits) []string {
	var w []string
	why := ""
	if len(s.Notes) > 0 {
		why = " (" + strings.Join(s.Notes, "; ") + ")"
	}
	if l.Memory > 0 && s.Memory == ByRlimit {
		w = append(w, fmt.Sprintf("memory = %q: no usable memory cgroup controller%s; the host sets RLIMIT_DATA on the plugin process instead, which caps its heap and other private writable mappings, not its resident memory, and each process it starts separately; an allocation over it fails rather than being OOM-killed", FormatBytes(l.Memory), why))
	}
	if l.Pids > 0 && s.Pids == ByRlimit {
		w = append(w, fmt.Sprintf("pids = %d: no usable pids cgroup controller%s; the host sets RLIMIT_NPROC instead, which counts every process of the user the host runs as (not of the worker) and is ignored for root: it does not stop a fork bomb", l.Pids, why))
	}
	if l.CPU > 0 && s.CPU == NotEnforced {
		w = append(w, fmt.Sprintf("cpu = %s: no usable cpu cgroup controller%s; the limit is not enforced (RLIMIT_CPU caps total CPU seconds, not a rate, so the host does not use it)", strconv.FormatFloat(l.CPU, 'f', -1, 64), why))
	}
	return w
}

// ContainmentWarning is the sentence validate prints when the machine
// offers no cgroup to kill a worker's processes with; empty when it does.
func (s Support) ContainmentWarning() string {
	if s.Kill != KillProcessOnly {
		return ""
	}
	why := ""
	if len(s.Notes) > 0 {
		why = " (" + strings.Join(s.Notes, "; ") + ")"
	}
	return "no usable cgroup" + why + ": the host kills a worker's process group only, so a process the worker started that left the group (setsid) outlives the worker"
}
