package benchmarks

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ProcStat is what the harness reads from /proc/<pid>/stat.
type ProcStat struct {
	Comm      string // the command name, without the parentheses
	State     byte   // R, S, D, Z, ...
	PPid      int    // parent pid
	UTime     uint64 // user CPU time, in clock ticks
	STime     uint64 // system CPU time, in clock ticks
	StartTime uint64 // in clock ticks since boot; tells a recycled pid apart
}

// ReadStat reads /proc/<pid>/stat.
func ReadStat(pid int) (ProcStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ProcStat{}, err
	}
	return parseStat(b)
}

func parseStat(b []byte) (ProcStat, error) {
	// The command name, field 2, is in parentheses and may hold spaces and
	// parentheses: the fields after it start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	o := bytes.IndexByte(b, '(')
	if i < 0 || o < 0 || o > i || i+2 >= len(b) {
		return ProcStat{}, errors.New("malformed stat")
	}
	f := strings.Fields(string(b[i+2:]))
	// f[0] is field 3 (state), so field k is f[k-3].
	if len(f) < 20 {
		return ProcStat{}, errors.New("short stat")
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return ProcStat{}, fmt.Errorf("stat ppid: %w", err)
	}
	var ticks [3]uint64 // utime (field 14), stime (15), starttime (22)
	for j, k := range []int{14, 15, 22} {
		if ticks[j], err = strconv.ParseUint(f[k-3], 10, 64); err != nil {
			return ProcStat{}, fmt.Errorf("stat field %d: %w", k, err)
		}
	}
	return ProcStat{Comm: string(b[o+1 : i]), State: f[0][0], PPid: ppid, UTime: ticks[0], STime: ticks[1], StartTime: ticks[2]}, nil
}

// Proc identifies one process across pid reuse.
type Proc struct {
	Pid       int
	StartTime uint64
}

// Identify reads pid's start time, so that Alive and WaitGone can tell it
// from a later process that gets the same pid.
func Identify(pid int) (Proc, error) {
	st, err := ReadStat(pid)
	if err != nil {
		return Proc{}, err
	}
	return Proc{Pid: pid, StartTime: st.StartTime}, nil
}

// Alive reports whether p still runs: its pid exists, is the same process
// and is not a zombie.
func (p Proc) Alive() bool {
	st, err := ReadStat(p.Pid)
	return err == nil && st.StartTime == p.StartTime && st.State != 'Z'
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
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []Proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := ReadStat(pid)
		if err != nil || st.PPid != ppid || st.State == 'Z' {
			continue
		}
		out = append(out, Proc{Pid: pid, StartTime: st.StartTime})
	}
	return out
}

// SocketCount returns how many of pid's open file descriptors are
// sockets. A plugin process that has finished its go-plugin handshake and
// been connected to by the host has two: its listener and the host's gRPC
// connection (its stdio are pipes).
func SocketCount(pid int) (int, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink(dir + "/" + e.Name()); err == nil && strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	return n, nil
}

// ProcsCPU returns the CPU time (user + system) used so far by every live
// process whose command name is one of comms.
func ProcsCPU(comms ...string) time.Duration {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	var ticks uint64
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := ReadStat(pid)
		if err != nil {
			continue
		}
		for _, c := range comms {
			if st.Comm == c {
				ticks += st.UTime + st.STime
				break
			}
		}
	}
	return time.Duration(ticks) * time.Second / clockTicks
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
// shared page by the number of processes mapping it.
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
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	m, err := parseKiB(f)
	if err != nil {
		return 0, err
	}
	v, ok := m["VmRSS"]
	if !ok {
		return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
	}
	return v, nil
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
