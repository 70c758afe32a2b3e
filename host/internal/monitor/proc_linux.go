//go:build linux

package monitor

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Sampler reads ProcStats from /proc with buffers that it keeps between
// reads, so that sampling every worker every few seconds allocates next to
// nothing. A Sampler is not safe for concurrent use: give each sampling
// goroutine its own. The zero value is ready to use.
type Sampler struct {
	stat  []byte // contents of /proc/<pid>/stat
	dents []byte // getdents64 records of /proc/<pid>/fd
	path  []byte // scratch for building paths

	listFDs bool // count descriptors by listing even where stat would do
}

// NewSampler returns a Sampler with its buffers allocated.
func NewSampler() *Sampler {
	return &Sampler{stat: make([]byte, 1024), path: make([]byte, 0, 32)}
}

var samplers = sync.Pool{New: func() any { return NewSampler() }}

// ReadProc reads the statistics of process pid. A process that does not
// exist, or exits while it is read, gives an error wrapping os.ErrNotExist.
// Callers that sample often should keep a Sampler instead.
func ReadProc(pid int) (ProcStats, error) {
	s := samplers.Get().(*Sampler)
	st, err := s.Read(pid)
	samplers.Put(s)
	return st, err
}

// Read reads the statistics of process pid: /proc/<pid>/stat for state,
// CPU time, threads, start time and resident pages, and the number of
// entries of /proc/<pid>/fd for the open descriptors. Since Linux 6.2 a
// stat of that directory gives the number as its size, so a read is one
// open, one read, one close and one stat; older kernels list the
// directory instead (one more open, normally one getdents, no stat of any
// entry). A process that does not exist, or exits while it is read, gives
// an error wrapping os.ErrNotExist.
func (s *Sampler) Read(pid int) (ProcStats, error) {
	if pid <= 0 {
		return ProcStats{}, fmt.Errorf("reading process %d: invalid pid: %w", pid, os.ErrNotExist)
	}
	if s.stat == nil {
		s.stat = make([]byte, 1024)
	}
	var err error
	s.stat, err = readAll(s.procPath(pid, "/stat"), s.stat)
	if err != nil {
		return ProcStats{}, procErr(pid, "stat", err)
	}
	f, err := parseStat(s.stat)
	if err != nil {
		return ProcStats{}, fmt.Errorf("reading process %d: /proc/%d/stat: %w", pid, pid, err)
	}
	fds, err := s.countFDs(pid)
	if err != nil {
		return ProcStats{}, procErr(pid, "fd", err)
	}
	st := ProcStats{
		Pid:        pid,
		State:      f.state,
		RSSBytes:   f.rssPages * uint64(os.Getpagesize()),
		CPUSeconds: float64(f.utime+f.stime) / float64(clockTicks),
		FDs:        fds,
		Threads:    int(f.threads),
	}
	if bt := bootTime(); !bt.IsZero() {
		secs, rest := f.starttime/clockTicks, f.starttime%clockTicks
		st.StartTime = bt.Add(time.Duration(secs)*time.Second + time.Duration(rest)*time.Second/time.Duration(clockTicks))
	}
	return st, nil
}

// procPath returns /proc/<pid><suffix>, built in s.path.
func (s *Sampler) procPath(pid int, suffix string) string {
	p := append(s.path[:0], "/proc/"...)
	p = strconv.AppendInt(p, int64(pid), 10)
	p = append(p, suffix...)
	s.path = p
	return string(p)
}

// procErr wraps err from reading /proc/<pid>/<file>. ENOENT already wraps
// os.ErrNotExist; ESRCH, which a read gives when the process exits between
// the open and the read, is made to as well.
func procErr(pid int, file string, err error) error {
	if errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("reading process %d: /proc/%d/%s: %w (%w)", pid, pid, file, os.ErrNotExist, err)
	}
	return fmt.Errorf("reading process %d: /proc/%d/%s: %w", pid, pid, file, err)
}

// readAll reads the file at path into buf, growing it if needed, and
// returns the filled part. A /proc/<pid> file such as stat is generated
// whole on the first read, so a read that does not fill buf has returned
// everything: the normal case costs one open, one read and one close.
func readAll(path string, buf []byte) ([]byte, error) {
	fd, err := openRetry(path, unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		return buf[:0], err
	}
	defer unix.Close(fd)
	buf = buf[:cap(buf)]
	n := 0
	for {
		if n == len(buf) {
			buf = append(buf, make([]byte, len(buf)+1)...)
			buf = buf[:cap(buf)]
		}
		m, err := unix.Read(fd, buf[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return buf[:0], err
		}
		n += m
		if m == 0 || n < len(buf) {
			return buf[:n], nil
		}
	}
}

func openRetry(path string, flags int) (int, error) {
	for {
		fd, err := unix.Open(path, flags, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// dirent64 layout (linux_dirent64): d_ino u64, d_off s64, d_reclen u16,
// d_type u8, then the NUL-terminated name.
const (
	direntReclenOff = 16
	direntNameOff   = 19
	// maxDirent is more than the largest record getdents64 can return (a
	// 255-byte name, padded), so a buffer left with at least this much room
	// has been given every remaining entry.
	maxDirent = 512
)

// fdCountInSize reports whether a stat of /proc/<pid>/fd gives the number
// of open descriptors as its size, as it does since Linux 6.2 (before, the
// size is 0). This process always has some open, so its own directory
// tells.
var fdCountInSize = sync.OnceValue(func() bool {
	var st unix.Stat_t
	return unix.Stat("/proc/self/fd", &st) == nil && st.Size > 0
})

// countFDs returns the number of pid's open descriptors: the size of
// /proc/<pid>/fd where the kernel gives it, the number of its entries
// otherwise.
func (s *Sampler) countFDs(pid int) (int, error) {
	if s.listFDs || !fdCountInSize() {
		return s.listFDEntries(pid)
	}
	var st unix.Stat_t
	for {
		err := unix.Stat(s.procPath(pid, "/fd"), &st)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, err
		}
		return int(st.Size), nil
	}
}

// listFDEntries counts the entries of /proc/<pid>/fd other than "." and
// "..".
func (s *Sampler) listFDEntries(pid int) (int, error) {
	fd, err := openRetry(s.procPath(pid, "/fd"), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	if len(s.dents) < 2*maxDirent {
		s.dents = make([]byte, 8192) // hundreds of entries a call
	}
	count := 0
	for {
		n, err := unix.Getdents(fd, s.dents)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, err
		}
		if n == 0 {
			break
		}
		for off := 0; off+direntNameOff < n; {
			reclen := int(binary.NativeEndian.Uint16(s.dents[off+direntReclenOff:]))
			if reclen == 0 || off+reclen > n {
				return 0, errors.New("malformed getdents64 record")
			}
			if name := s.dents[off+direntNameOff : off+reclen]; !isDotEntry(name) {
				count++
			}
			off += reclen
		}
		// The kernel fills the buffer until the next entry does not fit:
		// room for one more means the directory is exhausted, which saves
		// the extra getdents that would return 0. Pids' fd names are at
		// most ten digits, far below maxDirent.
		if len(s.dents)-n >= maxDirent {
			break
		}
	}
	if pid == os.Getpid() {
		count-- // the descriptor this count was made with
	}
	return count, nil
}

// isDotEntry reports whether the NUL-padded name is "." or "..".
func isDotEntry(name []byte) bool {
	if i := bytes.IndexByte(name, 0); i >= 0 {
		name = name[:i]
	}
	return len(name) == 1 && name[0] == '.' || len(name) == 2 && name[0] == '.' && name[1] == '.'
}

// statFields are the fields of /proc/<pid>/stat that Read uses.
type statFields struct {
	state     byte
	utime     uint64 // field 14, clock ticks
	stime     uint64 // field 15, clock ticks
	threads   uint64 // field 20
	starttime uint64 // field 22, clock ticks after boot
	rssPages  uint64 // field 24
}

// parseStat parses /proc/<pid>/stat without allocating. The second field
// is the command name in parentheses, and it may hold spaces and
// parentheses of its own (any program can name itself "a) b"): the fields
// after it start after the last ')' of the line, which no later field can
// contain.
func parseStat(b []byte) (statFields, error) {
	var f statFields
	rp := bytes.LastIndexByte(b, ')')
	if rp < 0 || rp+2 >= len(b) || b[rp+1] != ' ' {
		return f, errors.New("malformed stat: no command name")
	}
	const last = 24
	field := 3 // the state, the first field after the command name
	for j := rp + 2; field <= last && j < len(b); field++ {
		start := j
		for j < len(b) && b[j] != ' ' && b[j] != '\n' {
			j++
		}
		tok := b[start:j]
		j++ // past the separator
		var dst *uint64
		switch field {
		case 3:
			if len(tok) != 1 {
				return f, fmt.Errorf("malformed stat: state %q", tok)
			}
			f.state = tok[0]
			continue
		case 14:
			dst = &f.utime
		case 15:
			dst = &f.stime
		case 20:
			dst = &f.threads
		case 22:
			dst = &f.starttime
		case 24:
			dst = &f.rssPages
		default:
			continue
		}
		v, ok := parseUint(tok)
		if !ok {
			return f, fmt.Errorf("malformed stat: field %d is %q", field, tok)
		}
		*dst = v
	}
	if field <= last {
		return f, fmt.Errorf("malformed stat: %d fields, want at least %d", field-1, last)
	}
	return f, nil
}

// parseUint parses a non-empty decimal without allocating.
func parseUint(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if v > (1<<64-1-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	return v, true
}

// clockTicks is USER_HZ, the unit of the times in /proc/<pid>/stat. C
// programs ask sysconf(_SC_CLK_TCK), which needs cgo; glibc answers it from
// the AT_CLKTCK entry of the auxiliary vector, and so does this, through
// x/sys/unix. The kernel has fixed USER_HZ at 100 on every architecture Go
// runs Linux on, so 100 is the fallback.
var clockTicks = func() uint64 {
	const atClkTck = 17 // AT_CLKTCK in <elf.h>
	if auxv, err := unix.Auxv(); err == nil {
		for _, kv := range auxv {
			if kv[0] == atClkTck && kv[1] > 0 {
				return uint64(kv[1])
			}
		}
	}
	return 100
}()

// bootTime returns the boot time from the btime line of /proc/stat, read
// once. The kernel derives btime from the clock and the uptime, so it may
// differ by a second between reads; reading it once keeps the StartTime of
// a process the same from one sample to the next.
var bootTime = sync.OnceValue(func() time.Time {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return time.Time{}
	}
	const key = "\nbtime "
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return time.Time{}
	}
	line := b[i+len(key):]
	if k := bytes.IndexByte(line, '\n'); k >= 0 {
		line = line[:k]
	}
	v, ok := parseUint(line)
	if !ok {
		return time.Time{}
	}
	return time.Unix(int64(v), 0)
})
