package pluginproc

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// sysProcAttr puts the plugin in a process group of its own (so the host can
// kill it and whatever it started in one go) and has the kernel kill it when
// the host dies.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// exitWatch notices the exit of a process through a pidfd, which becomes
// readable when the process terminates, waiting in the runtime poller (epoll)
// rather than in a thread of its own or a polling loop.
type exitWatch struct{ f *os.File }

// newExitWatch opens a pidfd for proc. It returns nil when it cannot (an old
// kernel) or when proc has already been reaped; the caller then relies on
// go-plugin's exit notice alone.
//
// The pidfd needs a file description of its own, opened with PIDFD_NONBLOCK
// for the poller: the pidfd exec.Cmd can hand out (SysProcAttr.PidFD) shares
// its description with the one os.Process waits on, and making that
// non-blocking makes cmd.Wait fail with EAGAIN. Opening by pid could, in
// theory, catch a recycled pid; proc.Signal(0), which goes through
// os.Process's own pidfd, proves that proc was not reaped before the open,
// so the pid was still proc's.
func newExitWatch(proc *os.Process) *exitWatch {
	fd, err := unix.PidfdOpen(proc.Pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return nil
	}
	if proc.Signal(syscall.Signal(0)) != nil {
		unix.Close(fd)
		return nil
	}
	return &exitWatch{f: os.NewFile(uintptr(fd), "pidfd")}
}

// wait returns once the process has terminated (it may not be reaped yet),
// or at once if the pidfd cannot be waited on.
func (w *exitWatch) wait() {
	if w == nil {
		return
	}
	rc, err := w.f.SyscallConn()
	if err != nil {
		return
	}
	// Read calls the function again each time the poller reports the fd
	// readable; a pidfd cannot be read(2), so ask poll(2) without blocking.
	_ = rc.Read(func(fd uintptr) bool {
		for {
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			n, err := unix.Poll(fds, 0)
			if err == unix.EINTR {
				continue
			}
			return err != nil || n > 0
		}
	})
}

func (w *exitWatch) close() {
	if w != nil {
		w.f.Close()
	}
}

// killGroup sends SIGKILL to the process group pgid. Callers make sure the
// group's leader has not been reaped yet, or only just (the pid cannot have
// been recycled in between).
func killGroup(pgid int) {
	if pgid > 0 {
		_ = unix.Kill(-pgid, unix.SIGKILL)
	}
}
