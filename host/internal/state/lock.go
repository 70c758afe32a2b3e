package state

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// LockFileName is the lock file in the state directory. A host holds an
// exclusive flock on it while its Store is open, so that two hosts never
// share one state directory (each would overwrite the other's acknowledged
// starts). It holds the holder's pid, machine name and host name, for the
// error the second host gets.
const LockFileName = "lock"

// ErrLocked is wrapped by the error of Open when another Store (another
// host process, or another Open in this one) holds the state directory.
var ErrLocked = errors.New("state_dir is in use by another host")

// lockDir takes the exclusive lock of dir and writes holder's description
// into the lock file. The lock lasts until the returned file is closed (or
// the process ends: the kernel releases a flock with its last descriptor).
func lockDir(dir, holder string) (*os.File, error) {
	path := filepath.Join(dir, LockFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening the lock file %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		b, _ := io.ReadAll(io.LimitReader(f, 1024))
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			who := strings.Join(strings.Fields(string(b)), " ")
			if who == "" {
				who = "a holder that has not written its name yet"
			}
			return nil, fmt.Errorf("%w: %s is locked by %s; two hosts must not share a state_dir: give each its own (host.state_dir), or stop the other one first", ErrLocked, path, who)
		}
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	machine, _ := os.Hostname()
	info := fmt.Sprintf("pid=%d machine=%s", os.Getpid(), machine)
	if holder != "" {
		info += " host=" + holder
	}
	info += " since=" + time.Now().UTC().Format(time.RFC3339) + "\n"
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(info), 0)
		_ = f.Sync()
	}
	return f, nil
}
