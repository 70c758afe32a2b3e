package bench

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/procfs"
	"golang.org/x/sys/unix"
)

// The harness reads /proc from outside the host, through
// github.com/prometheus/procfs (the library the host's own monitor is
// built on): process identity, parents, command names, CPU time,
// descriptor targets, VmRSS. Only smaps_rollup is parsed here, for the PSS
// split procfs does not give.

// procFS is /proc, opened once.
var procFS = sync.OnceValues(func() (procfs.FS, error) { return procfs.NewDefaultFS() })

// proc returns procfs's handle on pid.
func proc(pid int) (procfs.Proc, error) {
	fs, err := procFS()
	if err != nil {
		return procfs.Proc{}, err
	}
	return fs.Proc(pid)
}

// Proc identifies one process across pid reuse.
type Proc struct {
	Pid int
	// StartTicks, the process's start time in clock ticks since boot
	// (field 22 of /proc/<pid>/stat), tells it from a later process given
	// the same pid.
	StartTicks uint64
}

// readStat returns /proc/<pid>/stat.
func readStat(pid int) (procfs.ProcStat, error) {
	p, err := proc(pid)
	if err != nil {
		return procfs.ProcStat{}, err
	}
	return p.Stat()
}

// Identify reads pid's start time, so that Alive and WaitGone can tell it
// from a later process that gets the same pid.
func Identify(pid int) (Proc, error) {
	st, err := readStat(pid)
	if err != nil {
		return Proc{}, fmt.Errorf("identifying process %d: %w", pid, err)
	}
	return Proc{Pid: pid, StartTicks: st.Starttime}, nil
}

// Alive reports whether p still runs: its pid exists, is the same process
// and is not a zombie.
func (p Proc) Alive() bool {
	st, err := readStat(p.Pid)
	return err == nil && st.Starttime == p.StartTicks && st.State != "Z"
}

// ProcCPU returns the CPU time (user + system) process pid has used so far.
func ProcCPU(pid int) (time.Duration, error) {
	st, err := readStat(pid)
	if err != nil {
		return 0, err
	}
	return seconds(st.CPUTime()), nil
}

// WaitGone waits until p has terminated, at most timeout, and reports
// whether it has. It waits on a pidfd (readable once the process has
// terminated), so it neither polls nor sleeps.
func (p Proc) WaitGone(timeout time.Duration) bool {
	fd, err := unix.PidfdOpen(p.Pid, 0)
	if err != nil {
		return errors.Is(err, unix.ESRCH) // no such process: gone
	}
	defer unix.Close(fd)
	// The pidfd now holds whatever process has the pid; if it is not p,
	// p is gone (and not a zombie any more, or its pid would not be free).
	if !p.Alive() {
		return true
	}
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		if left < 0 {
			left = 0
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(left.Milliseconds()))
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return !p.Alive()
		case n > 0:
			return true
		case left == 0:
			return false
		}
	}
}

// ChildrenOf returns the live processes whose parent is ppid.
func ChildrenOf(ppid int) []Proc {
	fs, err := procFS()
	if err != nil {
		return nil
	}
	all, err := fs.AllProcs()
	if err != nil {
		return nil
	}
	var out []Proc
	for _, p := range all {
		st, err := p.Stat()
		if err != nil || st.PPID != ppid || st.State == "Z" {
			continue
		}
		out = append(out, Proc{Pid: p.PID, StartTicks: st.Starttime})
	}
	return out
}

// SocketCount returns how many of pid's open file descriptors are
// sockets. A plugin process that has finished its go-plugin handshake and
// been connected to by the host has two: its listener and the host's gRPC
// connection (its stdio are pipes).
func SocketCount(pid int) (int, error) {
	p, err := proc(pid)
	if err != nil {
		return 0, err
	}
	targets, err := p.FileDescriptorTargets()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, l := range targets {
		if strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	return n, nil
}

// ProcsCPU returns the CPU time (user + system) used so far by every live
// process whose command name is one of comms.
func ProcsCPU(comms ...string) time.Duration {
	fs, err := procFS()
	if err != nil {
		return 0
	}
	procs, err := fs.AllProcs()
	if err != nil {
		return 0
	}
	var secs float64
	for _, p := range procs {
		if st, err := p.Stat(); err == nil && slices.Contains(comms, st.Comm) {
			secs += st.CPUTime()
		}
	}
	return seconds(secs)
}

// Mem is a process's memory use, in KiB.
type Mem struct {
	Pid     int   `json:"pid"`
	RSS     int64 `json:"rss_kib"`
	PSS     int64 `json:"pss_kib"`
	PSSAnon int64 `json:"pss_anon_kib"`
	PSSFile int64 `json:"pss_file_kib"`
}

// ReadMem reads /proc/<pid>/smaps_rollup. Its Rss is the sum over all
// mappings, the same as VmRSS in /proc/<pid>/status; Pss divides each
// shared page by the number of processes mapping it. procfs's
// ProcSMapsRollup has no Pss_Anon and Pss_File, which the memory report
// splits PSS into, so this file is parsed here.
func ReadMem(pid int) (Mem, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return Mem{}, err
	}
	defer f.Close()
	m, err := parseKiB(f)
	if err != nil {
		return Mem{}, err
	}
	out := Mem{Pid: pid, RSS: m["Rss"], PSS: m["Pss"], PSSAnon: m["Pss_Anon"], PSSFile: m["Pss_File"]}
	if out.RSS == 0 {
		return Mem{}, fmt.Errorf("/proc/%d/smaps_rollup: no Rss", pid)
	}
	return out, nil
}

// ReadVmRSS returns VmRSS from /proc/<pid>/status, in KiB.
func ReadVmRSS(pid int) (int64, error) {
	p, err := proc(pid)
	if err != nil {
		return 0, err
	}
	st, err := p.NewStatus()
	if err != nil {
		return 0, err
	}
	if st.VmRSS == 0 {
		return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
	}
	return int64(st.VmRSS / 1024), nil
}

// parseKiB reads "Key:   123 kB" lines into a map; other lines are skipped.
func parseKiB(r io.Reader) (map[string]int64, error) {
	out := map[string]int64{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			continue
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		out[k] = n
	}
	return out, sc.Err()
}
