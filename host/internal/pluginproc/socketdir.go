package pluginproc

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin/runner"
)

// socketDirPrefix starts the name of the host's socket directory
// ("dynworkers-<host pid>-*" in os.TempDir()); the host's pid follows, so
// that CleanStaleSocketDirs can tell the directory of a host that died from
// those of hosts still running.
const socketDirPrefix = "dynworkers-"

// legacySocketDirPrefix starts the per-process socket directories of hosts
// before the per-host directory ("dynworkers-plugin-<host pid>-*"); a host
// still sweeps those its predecessors left.
const legacySocketDirPrefix = "dynworkers-plugin-"

// hostSockets is the host's socket directory: one per host process, mode
// 0700, holding every unix socket of every plugin process, both sides
// (go-plugin's UnixSocketConfig.TempDir). Each process gets a directory of
// its own in it (go-plugin's "plugin-dir*", PLUGIN_UNIX_SOCKET_DIR for the
// plugin), where the plugin's socket and the host's GRPCBroker socket of
// that process live; it is removed once the process is gone. The host's
// directory exists while some process uses it: it is created by the first
// launch and removed when the last process is gone, so a host that exits
// cleanly leaves nothing in $TMPDIR; the directory of a host that was
// SIGKILLed is removed by the next host that starts (CleanStaleSocketDirs).
var hostSockets socketDirs

type socketDirs struct {
	mu    sync.Mutex
	dir   string // "" while no process uses it
	users int
}

// acquire returns the host's socket directory, creating it if need be, and
// counts one more user; release it once the process is gone.
func (s *socketDirs) acquire() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dir == "" {
		dir, err := makeHostSocketDir()
		if err != nil {
			return "", err
		}
		s.dir = dir
	}
	s.users++
	return s.dir, nil
}

// maxSocketPath is the longest path a unix socket may have on Linux
// (sun_path is 108 bytes, the last one a NUL).
const maxSocketPath = 107

// socketPathTail is the longest part of a socket's path below the host's
// socket directory: go-plugin's os.MkdirTemp "plugin-dir" and os.CreateTemp
// "plugin" names each end in up to 10 digits.
const socketPathTail = len("/plugin-dir4294967295/plugin4294967295")

// makeHostSocketDir makes the host's socket directory,
// "dynworkers-<pid>-<6 random letters or digits>" in os.TempDir(), mode
// 0700. The suffix is short because a unix socket's path is (see
// maxSocketPath): a $TMPDIR too long for the sockets below it is an error
// that says so, rather than a plugin that cannot listen.
func makeHostSocketDir() (string, error) {
	const letters = "abcdefghijklmnopqrstuvwxyz0123456789"
	base := os.TempDir()
	for range 100 {
		var b [6]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", fmt.Errorf("creating the host's socket directory: %w", err)
		}
		for i := range b {
			b[i] = letters[int(b[i])%len(letters)]
		}
		dir := filepath.Join(base, fmt.Sprintf("%s%d-%s", socketDirPrefix, os.Getpid(), b[:]))
		if n := len(dir) + socketPathTail; n > maxSocketPath {
			return "", fmt.Errorf("the host's socket directory %s is too long: the unix sockets in it would have paths of up to %d bytes, over the limit of %d; set TMPDIR to a shorter directory (at most %d bytes)", dir, n, maxSocketPath, len(base)-(n-maxSocketPath))
		}
		err := os.Mkdir(dir, 0o700)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("creating the host's socket directory: %w", err)
		}
		return dir, nil
	}
	return "", fmt.Errorf("creating the host's socket directory in %s: 100 names taken", base)
}

// release counts one user less; the last one removes the directory.
func (s *socketDirs) release(logger hclog.Logger) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users--
	if s.users > 0 {
		return
	}
	s.users = 0
	if s.dir != "" {
		if err := os.RemoveAll(s.dir); err != nil && logger != nil {
			logger.Warn("removing the host's socket directory", "dir", s.dir, "error", err)
		}
		s.dir = ""
	}
}

// SocketDir returns the host's socket directory, or "" when no plugin
// process runs (the directory then does not exist).
func SocketDir() string {
	hostSockets.mu.Lock()
	defer hostSockets.mu.Unlock()
	return hostSockets.dir
}

// CleanStaleSocketDirs removes the socket directories left in os.TempDir()
// by hosts that are no longer running (killed with SIGKILL, say, before
// they could remove them) and returns how many it removed: the per-host
// directories ("dynworkers-<pid>-*") and the per-process ones of earlier
// versions ("dynworkers-plugin-<pid>-*"). Only directories of this user are
// touched; those of running hosts are left alone.
func CleanStaleSocketDirs() int {
	n := 0
	for _, prefix := range []string{legacySocketDirPrefix, socketDirPrefix} {
		dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), prefix+"*"))
		for _, dir := range dirs {
			rest := strings.TrimPrefix(filepath.Base(dir), prefix)
			pidText, _, ok := strings.Cut(rest, "-")
			pid, err := strconv.Atoi(pidText)
			if !ok || err != nil || pid <= 0 || pid == os.Getpid() {
				continue // not a socket directory (e.g. dynworkers-plugin-* under socketDirPrefix)
			}
			fi, err := os.Lstat(dir)
			if err != nil || !fi.IsDir() {
				continue
			}
			if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != os.Getuid() {
				continue // another user's
			}
			if err := syscall.Kill(pid, 0); err == nil || errors.Is(err, syscall.EPERM) {
				continue // that host (or a process reusing its pid) runs
			}
			if os.RemoveAll(dir) == nil {
				n++
			}
		}
	}
	return n
}

// cmdRunner is go-plugin's runner for a plain child process (its own
// cmdrunner.CmdRunner is internal to go-plugin): launch passes it as
// ClientConfig.RunnerFunc, the only way to have go-plugin put the host's
// side of the sockets (the GRPCBroker's) in UnixSocketConfig.TempDir too.
type cmdRunner struct {
	cmd    *exec.Cmd
	stdout io.ReadCloser
	stderr io.ReadCloser
	pid    atomic.Int64
}

var _ runner.Runner = (*cmdRunner)(nil)

func newCmdRunner(cmd *exec.Cmd) (*cmdRunner, error) {
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	return &cmdRunner{cmd: cmd, stdout: stdout, stderr: stderr}, nil
}

func (r *cmdRunner) Start(context.Context) error {
	if err := r.cmd.Start(); err != nil {
		return err
	}
	r.pid.Store(int64(r.cmd.Process.Pid))
	return nil
}

func (r *cmdRunner) Wait(context.Context) error { return r.cmd.Wait() }

func (r *cmdRunner) Kill(context.Context) error {
	if r.cmd.Process == nil {
		return nil
	}
	if err := r.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	return nil
}

func (r *cmdRunner) Stdout() io.ReadCloser           { return r.stdout }
func (r *cmdRunner) Stderr() io.ReadCloser           { return r.stderr }
func (r *cmdRunner) Name() string                    { return r.cmd.Path }
func (r *cmdRunner) Diagnose(context.Context) string { return "" }

// ID is the pid, "" before the process started (go-plugin's Kill then has
// nothing to do).
func (r *cmdRunner) ID() string {
	if pid := r.pid.Load(); pid != 0 {
		return strconv.FormatInt(pid, 10)
	}
	return ""
}

func (r *cmdRunner) PluginToHost(network, addr string) (string, string, error) {
	return network, addr, nil
}

func (r *cmdRunner) HostToPlugin(network, addr string) (string, string, error) {
	return network, addr, nil
}
