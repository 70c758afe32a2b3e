package sdk

import (
	"os"

	"golang.org/x/sys/unix"
)

// waitParentExit watches the process pid (the host) through a pidfd and
// calls gone once it has exited, from a goroutine that sleeps in Go's
// netpoller meanwhile (no thread, no timer). It reports false when the
// kernel has no pidfd_open (before Linux 5.3) or pid is not our parent any
// more; the caller then polls.
func waitParentExit(pid int, gone func()) bool {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return false
	}
	// The pid may have been reused between the caller's check and the
	// open: the pidfd is the host's only if the host is still our parent.
	if os.Getppid() != pid {
		unix.Close(fd)
		return false
	}
	f := os.NewFile(uintptr(fd), "host-pidfd")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return false
	}
	go func() {
		defer f.Close()
		// A pidfd becomes readable when its process exits. RawConn.Read
		// parks the goroutine in the netpoller until then: the first call
		// of the function asks to wait, the next one (after readiness)
		// ends the read. An error (the poller refused the fd) falls back
		// to polling.
		waited := false
		err := rc.Read(func(uintptr) bool {
			if waited {
				return true
			}
			waited = true
			return false
		})
		if err == nil {
			gone() // exits: the host is gone, so we were reparented
		}
		// The poller refused the fd, or (which the kernel's order of
		// reparenting before notifying the pidfd rules out) the parent
		// has not changed: poll.
		pollParent(gone)
	}()
	return true
}
