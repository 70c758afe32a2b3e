//go:build unix && !linux

package pluginproc

import (
	"io/fs"
	"syscall"
)

// statID is the fileID of a stat result (without the ctime, whose field
// differs between systems).
func statID(fi fs.FileInfo) fileID {
	id := fileID{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.dev, id.ino = uint64(st.Dev), uint64(st.Ino)
	}
	return id
}

// checkExecAllowed is a no-op outside Linux: a noexec filesystem makes
// every launch fail with a permission error naming the copy.
func checkExecAllowed(string) error { return nil }
