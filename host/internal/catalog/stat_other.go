//go:build unix && !linux

package catalog

import (
	"fmt"
	"os"
	"syscall"
)

// statLine is a file's size, mtime, mode, owner and inode, for
// ListingSignature (the ctime is Linux's field name only).
func statLine(fi os.FileInfo) string {
	s := fmt.Sprintf("%d\x00%d\x00%o", fi.Size(), fi.ModTime().UnixNano(), fi.Mode())
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s += fmt.Sprintf("\x00%d:%d\x00%d", st.Uid, st.Gid, st.Ino)
	}
	return s
}

// dirLine is a directory's mode, owner and inode, for ListingSignature:
// not its mtime, which every file created in it (a temporary one too)
// changes.
func dirLine(fi os.FileInfo) string {
	s := fmt.Sprintf("%o", fi.Mode())
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s += fmt.Sprintf("\x00%d:%d\x00%d", st.Uid, st.Gid, st.Ino)
	}
	return s
}
