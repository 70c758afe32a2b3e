//go:build linux

package monitor

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/procfs"
	"golang.org/x/sys/unix"
)

// Sampler reads ProcStats from /proc: /proc/<pid>/stat parsed by hand
// and a stat of /proc/<pid>/fd where the kernel gives the descriptor count
// as its size, through github.com/prometheus/procfs otherwise.
// It keeps no state between reads (its buffers are on the stack), so it is
// safe for concurrent use; the type remains so that a caller that
// samples repeatedly holds one place to read through. The zero value is
// ready to use.
type Sampler struct {
	listFDs bool // count descriptors by listing even where stat would do
}

// NewSampler returns a Sampler.
func NewSampler() *Sampler { return &Sampler{} }

// ReadProc reads the statistics of process pid. A process that does not
// exist, or exits while it is read, gives an error wrapping os.ErrNotExist.
func ReadProc(pid int) (ProcStats, error) { return (&Sampler{}).Read(pid) }

// userHZ is USER_HZ, the unit of the times in /proc/<pid>/stat. The kernel
// fixes it at 100 on every architecture Go runs Linux on, and procfs
// assumes the same for ProcStat.CPUTime.
const userHZ = 100

// procFS is /proc, opened once.
var procFS = sync.OnceValues(func() (procfs.FS, error) { return procfs.NewDefaultFS() })

// bootTime returns the btime of /proc/stat, read once. The kernel derives
// btime from the clock and the uptime, so it may differ by a second between
// reads; reading it once keeps the StartTime of a process the same from one
// sample to the next (procfs's ProcStat.StartTime reads it every time, and
// all of /proc/stat with it).
var bootTime = sync.OnceValue(func() time.Time {
	fs, err := procFS()
	if err != nil {
		return time.Time{}
	}
	st, err := fs.Stat()
	if err != nil || st.BootTime == 0 || st.BootTime > math.MaxInt64 {
		return time.Time{}
	}
	return time.Unix(int64(st.BootTime), 0)
})

// Read reads the statistics of process pid: /proc/<pid>/stat for state,
// parent, CPU time, threads, start time and resident pages, and the number
// of open descriptors, which since Linux 6.2 is the size of
// /proc/<pid>/fd and before that the number of its entries. A process
// that does not exist, or exits while it is read, gives an error wrapping
// os.ErrNotExist; a zombie is still read, with State 'Z'.
func (s *Sampler) Read(pid int) (ProcStats, error) {
	if pid <= 0 {
		return ProcStats{}, fmt.Errorf("reading process %d: invalid pid: %w", pid, os.ErrNotExist)
	}
	if s.listFDs || !fdCountInSize() {
		return s.readProcfs(pid)
	}
	// The path /proc/<pid>/stat is built on the stack, and the file read
	// into a buffer there: a read allocates nothing but the stat call's
	// path string.
	var pathBuf [32]byte
	path := strconv.AppendInt(append(pathBuf[:0], "/proc/"...), int64(pid), 10)
	dir := len(path)
	path = append(path, "/stat"...)
	var buf [1024]byte
	n, err := readFile(path, buf[:])
	if err != nil {
		return ProcStats{}, procErr(pid, "stat", err)
	}
	st, ok := parseStat(buf[:n])
	if !ok || st.Pid != pid {
		return ProcStats{}, fmt.Errorf("reading process %d: /proc/%d/stat: malformed: %q", pid, pid, buf[:n])
	}
	var fst unix.Stat_t
	if err := unix.Stat(string(append(path[:dir], "/fd"...)), &fst); err != nil {
		return ProcStats{}, procErr(pid, "fd", err)
	}
	st.FDs = int(fst.Size)
	if st.FDs == 0 {
		// A size of 0 may also be a process with no descriptors, or a
		// zombie: listing tells.
		if st.FDs, err = s.countFDsOf(pid); err != nil {
			return ProcStats{}, err
		}
	}
	return st, nil
}

// readFile reads the file at path (a /proc file, read in one go) into buf
// and returns the length read.
func readFile(path []byte, buf []byte) (int, error) {
	var fd int
	var err error
	for {
		fd, err = unix.Open(string(path), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	n := 0
	for n < len(buf) {
		m, err := unix.Read(fd, buf[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, err
		}
		if m == 0 {
			break
		}
		n += m
	}
	return n, nil
}

// parseStat parses the /proc/<pid>/stat line b: the pid, the command in
// parentheses (which may hold spaces and parentheses itself: the last ")"
// ends it), then fields separated by single spaces, of which it takes the
// state (3), parent (4), user and system time (14, 15), threads (20),
// start time (22) and resident pages (24), fields counted from 1 as in
// proc(5).
func parseStat(b []byte) (ProcStats, bool) {
	open := bytes.IndexByte(b, '(')
	end := bytes.LastIndexByte(b, ')')
	if open < 1 || end < open || end+2 > len(b) {
		return ProcStats{}, false
	}
	pid, ok := parseUint(bytes.TrimSpace(b[:open]))
	if !ok {
		return ProcStats{}, false
	}
	var st ProcStats
	st.Pid = int(pid)
	rest := b[end+2:]
	var utime, stime, start uint64
	for field := 3; field <= 24; field++ {
		i := bytes.IndexByte(rest, ' ')
		var f []byte
		if i < 0 {
			f, rest = bytes.TrimSpace(rest), nil
		} else {
			f, rest = rest[:i], rest[i+1:]
		}
		switch field {
		case 3:
			if len(f) != 1 {
				return ProcStats{}, false
			}
			st.State = f[0]
			continue
		case 4, 14, 15, 20, 22, 24:
		default:
			if i < 0 && field < 24 {
				return ProcStats{}, false
			}
			continue
		}
		v, ok := parseInt(f)
		if !ok {
			return ProcStats{}, false
		}
		switch field {
		case 4:
			st.PPid = int(v)
		case 14:
			utime = uint64(max(v, 0))
		case 15:
			stime = uint64(max(v, 0))
		case 20:
			st.Threads = int(v)
		case 22:
			start = uint64(max(v, 0))
		case 24:
			st.RSSBytes = uint64(max(v, 0)) * uint64(pageSize)
		}
		if i < 0 && field < 24 {
			return ProcStats{}, false
		}
	}
	st.CPUSeconds = float64(utime+stime) / userHZ
	if bt := bootTime(); !bt.IsZero() {
		secs, rest := start/userHZ, start%userHZ
		st.StartTime = bt.Add(time.Duration(secs)*time.Second + time.Duration(rest)*time.Second/userHZ)
	}
	return st, true
}

var pageSize = os.Getpagesize()

// parseInt parses a decimal integer with an optional minus sign.
func parseInt(b []byte) (int64, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	v, ok := parseUint(b)
	if !ok || v > math.MaxInt64 {
		return 0, false
	}
	if neg {
		return -int64(v), true
	}
	return int64(v), true
}

// parseUint parses a decimal number.
func parseUint(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
	}
	return v, true
}

// countFDsOf counts the descriptors of pid by listing them.
func (s *Sampler) countFDsOf(pid int) (int, error) {
	p, err := proc(pid)
	if err != nil {
		return 0, err
	}
	n, err := s.countFDs(p)
	if err != nil {
		return 0, procErr(pid, "fd", err)
	}
	return n, nil
}

// readProcfs is Read through procfs, where the descriptors are counted by
// listing them (before Linux 6.2, or when the Sampler is told to).
func (s *Sampler) readProcfs(pid int) (ProcStats, error) {
	p, err := proc(pid)
	if err != nil {
		return ProcStats{}, err
	}
	stat, err := p.Stat()
	if err != nil {
		return ProcStats{}, procErr(pid, "stat", err)
	}
	st, err := fromStat(stat)
	if err != nil {
		return ProcStats{}, err
	}
	if st.FDs, err = s.countFDs(p); err != nil {
		return ProcStats{}, procErr(pid, "fd", err)
	}
	return st, nil
}

func proc(pid int) (procfs.Proc, error) {
	fs, err := procFS()
	if err != nil {
		return procfs.Proc{}, fmt.Errorf("reading process %d: opening /proc: %w", pid, err)
	}
	p, err := fs.Proc(pid)
	if err != nil {
		return procfs.Proc{}, procErr(pid, "", err)
	}
	return p, nil
}

// fromStat converts procfs's reading of /proc/<pid>/stat; FDs is left 0.
func fromStat(stat procfs.ProcStat) (ProcStats, error) {
	if len(stat.State) != 1 {
		return ProcStats{}, fmt.Errorf("reading process %d: /proc/%d/stat: malformed state %q", stat.PID, stat.PID, stat.State)
	}
	st := ProcStats{
		Pid:        stat.PID,
		PPid:       stat.PPID,
		State:      stat.State[0],
		RSSBytes:   uint64(max(stat.ResidentMemory(), 0)),
		CPUSeconds: stat.CPUTime(),
		Threads:    stat.NumThreads,
	}
	if bt := bootTime(); !bt.IsZero() {
		secs, rest := stat.Starttime/userHZ, stat.Starttime%userHZ
		st.StartTime = bt.Add(time.Duration(secs)*time.Second + time.Duration(rest)*time.Second/userHZ)
	}
	return st, nil
}

// countFDs returns the number of p's open descriptors. procfs takes the
// size of /proc/<pid>/fd where the kernel gives it and lists the directory
// otherwise; listFDs forces the listing, to measure and test it on a
// recent kernel.
func (s *Sampler) countFDs(p procfs.Proc) (int, error) {
	listed := s.listFDs || !fdCountInSize()
	var n int
	var err error
	if s.listFDs {
		var fds []uintptr
		fds, err = p.FileDescriptors()
		n = len(fds)
	} else {
		n, err = p.FileDescriptorsLen()
	}
	if err != nil {
		return 0, err
	}
	if listed && p.PID == os.Getpid() && n > 0 {
		n-- // the descriptor the listing was made with
	}
	return n, nil
}

// fdCountInSize reports whether a stat of /proc/<pid>/fd gives the number
// of open descriptors as its size, as it does since Linux 6.2 (before, the
// size is 0). This process always has some open, so its own directory
// tells.
var fdCountInSize = sync.OnceValue(func() bool {
	st, err := os.Stat("/proc/self/fd")
	return err == nil && st.Size() > 0
})

// procErr wraps err from reading /proc/<pid>/<file>. ENOENT already wraps
// os.ErrNotExist; ESRCH, which a read gives when the process exits between
// the open and the read, is made to as well.
func procErr(pid int, file string, err error) error {
	path := fmt.Sprintf("/proc/%d", pid)
	if file != "" {
		path += "/" + file
	}
	if errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("reading process %d: %s: %w (%w)", pid, path, os.ErrNotExist, err)
	}
	return fmt.Errorf("reading process %d: %s: %w", pid, path, err)
}

// Children returns the statistics of the processes whose parent is ppid,
// zombies left out, in no particular order. Only their stat files are read
// until the parent matches, so that a scan of every process costs one read
// each; a process that exits during the scan is left out.
func Children(ppid int) ([]ProcStats, error) {
	fs, err := procFS()
	if err != nil {
		return nil, fmt.Errorf("listing the children of %d: opening /proc: %w", ppid, err)
	}
	all, err := fs.AllProcs()
	if err != nil {
		return nil, fmt.Errorf("listing the children of %d: %w", ppid, err)
	}
	var s Sampler
	var out []ProcStats
	for _, p := range all {
		stat, err := p.Stat()
		if err != nil || stat.PPID != ppid || stat.State == "Z" {
			continue
		}
		st, err := s.Read(p.PID)
		if err != nil || st.PPid != ppid || st.State == 'Z' { // exited or reparented meanwhile
			continue
		}
		out = append(out, st)
	}
	return out, nil
}
