package pluginproc

import (
	"fmt"
	"io/fs"
	"syscall"

	"golang.org/x/sys/unix"
)

// statID is the fileID of a stat result.
func statID(fi fs.FileInfo) fileID {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	}
	return fileID{dev: st.Dev, ino: st.Ino, size: st.Size,
		mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano()}
}

// checkExecAllowed fails if dir's filesystem is mounted noexec: the
// copies in it could not be executed, and every launch would fail.
func checkExecAllowed(dir string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("exec directory %s: %w", dir, err)
	}
	if st.Flags&unix.ST_NOEXEC != 0 {
		return fmt.Errorf("exec directory %s is on a filesystem mounted noexec, so the host cannot run the verified copies of plugin binaries from it; set host.exec_dir to a directory on a filesystem that allows executing files (or remount this one without noexec)", dir)
	}
	return nil
}
