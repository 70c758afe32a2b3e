//go:build unix && !linux

package pluginproc

import (
	"os"
	"syscall"
)

// sysProcAttr puts the plugin in a process group of its own. Outside Linux
// there is neither Pdeathsig nor pidfd; the SDK's parent watchdog ends
// orphaned plugins.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// exitWatch is not available outside Linux: exits are noticed through
// go-plugin alone.
type exitWatch struct{}

func newExitWatch(*os.Process) *exitWatch { return nil }
func (*exitWatch) wait()                  {}
func (*exitWatch) close()                 {}

func killGroup(pgid int) {
	if pgid > 0 {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
}
