package pluginproc

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/hashicorp/go-plugin/runner"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/dynworkers/dynworkers/host/internal/contain"
	"github.com/dynworkers/dynworkers/host/internal/scrub"
	"github.com/dynworkers/dynworkers/internal/wire"
	"github.com/dynworkers/dynworkers/internal/wire/proto"
)

// Phases of a process, for the race between a start deadline and success.
const (
	phaseLaunching int32 = iota // the start deadline still applies
	phaseRunning                // started: the start deadline no longer kills it
	phaseCancelled              // the start deadline (or cancellation) killed it
)

// pluginLogBufferSize is the buffer go-plugin reads a plugin's stderr
// through, per process.
const pluginLogBufferSize = 4 << 10

// launchConfig says what to launch; ctx's deadline bounds the launch.
type launchConfig struct {
	path     string
	checksum []byte // nil: not checked (Describe)
	logger   hclog.Logger
	env      []string
	timeout  string // how the deadline is called in errors, e.g. "start_timeout (30s)"
	// handshake bounds go-plugin's wait for the handshake; zero: the time
	// left until ctx's deadline.
	handshake time.Duration
	// cancel, if set, cancels ctx; it is called once the process is gone.
	cancel context.CancelFunc
	// scrubber scrubs what the plugin says (nil: nothing to scrub, as for
	// Describe and warm spares, which get theirs when taken); logLimit
	// bounds how much of its log is re-logged.
	scrubber *scrub.Scrubber
	logLimit LogLimit
	// name names the process's cgroup (the worker's name, "spare",
	// "describe"); limits are applied to it (see contain.Group).
	name   string
	limits contain.Limits

	// exec, if set, is the store of verified executables the process is
	// run from (see ExecStore); nil hashes the binary at this launch.
	exec *ExecStore
}

// launch starts the plugin binary, completes the go-plugin handshake and
// dispenses the Worker client. If ctx is done before the caller calls
// markRunning, the process is killed (exec.Cmd's Cancel). On error nothing is
// left running: the process is killed and reaped, and its socket directory
// removed, before launch returns.
//
// Each process gets a socket directory of its own in the host's (see
// hostSockets), for the plugin's socket and the host's GRPCBroker socket of
// that process, removed once the process is gone: a plugin removes its
// socket file only when it exits cleanly, so a SIGKILLed one would otherwise
// leave it behind in $TMPDIR.
//
// A binary that CheckBinary does not trust is not run: the error wraps
// ErrUntrusted.
func launch(ctx context.Context, lc launchConfig) (*Process, error) {
	// Before every launch (a describe, a spare, a start), not only when the
	// catalog scans: the directory or the file may have changed since.
	if err := CheckBinary(lc.path); err != nil {
		return nil, err
	}
	// What is executed: with a store, its verified copy of the binary
	// (two stat calls when nothing changed; see ExecStore); without one,
	// the binary itself, hashed here just before the start (go-plugin
	// would check the checksum of its Cmd's path, which it does not have
	// with a RunnerFunc).
	execPath := lc.path
	switch {
	case lc.checksum == nil:
	case lc.exec != nil:
		var err error
		if execPath, err = lc.exec.Exec(lc.path, lc.checksum); err != nil {
			return nil, err
		}
	default:
		secure := &plugin.SecureConfig{Checksum: lc.checksum, Hash: sha256.New()}
		if ok, err := secure.Check(lc.path); err != nil {
			return nil, fmt.Errorf("plugin %s: verifying its checksum: %w", lc.path, err)
		} else if !ok {
			return nil, changedError(lc.path)
		}
	}
	hostDir, err := hostSockets.acquire()
	if err != nil {
		return nil, fmt.Errorf("plugin %s: %w", lc.path, err)
	}
	// The process's own cgroups (contain): the host kills all of them
	// with it, grandchildren that left its process group included.
	group, err := contain.Detect().New(lc.name, lc.limits)
	if err != nil {
		hostSockets.release(lc.logger)
		return nil, fmt.Errorf("plugin %s: %w", lc.path, err)
	}
	p := &Process{
		group:      group,
		cancelExec: lc.cancel,
		path:       lc.path,
		logger:     lc.logger,
		baseLogger: lc.logger,
		tail:       newStderrTail(),
		done:       make(chan struct{}),
		stopping:   make(chan struct{}),
	}
	p.scrubber.Store(lc.scrubber)
	// The plugin's stderr enters the host through the sink, under the
	// logger go-plugin would have used (Named with the binary's name).
	p.sink = newStderrSink(p.tail, lc.logger.Named(filepath.Base(lc.path)), lc.scrubber, lc.logLimit)
	cmd := exec.CommandContext(ctx, execPath)
	// The plugin sees the path the operator gave as its argv[0], whichever
	// file is executed.
	cmd.Args[0] = lc.path
	cmd.SysProcAttr = sysProcAttr()
	// On cgroup v2 the process starts in its cgroup (clone3): nothing it
	// does, from its first instruction on, escapes it.
	fd, placed := group.CgroupFD()
	if placed {
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, fd
	}
	// exec calls Cancel from its own goroutine, which it starts after
	// setting cmd.Process, when ctx is done before the process is reaped.
	cmd.Cancel = func() error {
		if !p.phase.CompareAndSwap(phaseLaunching, phaseCancelled) {
			return os.ErrProcessDone // running: ctx no longer applies
		}
		group.Signal()
		return killProcess(cmd.Process)
	}
	cmd.Env = lc.env[:len(lc.env):len(lc.env)]
	p.cmd = cmd

	handshake := lc.handshake
	if dl, ok := ctx.Deadline(); ok && handshake <= 0 {
		handshake = max(time.Until(dl), time.Millisecond)
	}
	if handshake <= 0 {
		handshake = time.Second
	}
	p.client = plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  wire.Handshake,
		VersionedPlugins: withDoneContext(wire.VersionedPlugins()),
		// With a RunnerFunc, and only then, go-plugin makes the process's
		// socket directory in TempDir and puts both sides' sockets in it
		// (the host's GRPCBroker socket too, else in os.TempDir()). It
		// calls the RunnerFunc from Start, with a spec holding its
		// variables (the handshake's, PLUGIN_UNIX_SOCKET_DIR); later
		// entries win, so they override the host's.
		UnixSocketConfig: &plugin.UnixSocketConfig{TempDir: hostDir},
		RunnerFunc: func(_ hclog.Logger, spec *exec.Cmd, sockDir string) (runner.Runner, error) {
			p.sockDir = sockDir
			cmd.Env = append(cmd.Env, spec.Env...)
			cmd.Stdin = spec.Stdin
			return newCmdRunner(cmd)
		},
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		StartTimeout:     handshake,
		Stderr:           p.sink,
		Logger:           pluginClientLogger{Logger: lc.logger, stderrName: filepath.Base(lc.path)},
		SkipHostEnv:      true, // lc.env has it, so that our variables win
		// Per-process buffers are the host's memory per worker: go-plugin
		// reads stderr through a 64 KiB buffer by default (p.sink joins
		// the pieces of a longer line), and a gRPC connection keeps a
		// 32 KiB write buffer unless it is shared (taken from a pool for
		// each write and given back). A static flow-control window spares
		// every health check's answer a BDP ping and its ack (gRPC's
		// estimate of the bandwidth, useless for the small answers of
		// this connection).
		PluginLogBufferSize: pluginLogBufferSize,
		GRPCDialOptions:     []grpc.DialOption{grpc.WithSharedWriteBuffer(true), grpc.WithInitialWindowSize(64 << 10)},
	})
	if _, err := p.client.Start(); err != nil {
		// go-plugin has killed the process (if it started); Kill waits
		// until it is reaped and go-plugin's goroutines are done.
		if cmd.Process != nil {
			_ = killProcess(cmd.Process)
		}
		p.client.Kill()
		p.releaseGroup()
		p.removeSocketDir()
		if p.sockDir == "" { // go-plugin failed before making it
			hostSockets.release(lc.logger)
		}
		return nil, p.handshakeError(ctx, err, lc)
	}
	p.pid = cmd.Process.Pid
	p.watch = newExitWatch(cmd.Process)
	// The plugin does not fork before its handshake (sdk.Serve), so
	// moving it into its cgroup v1 directories, and setting its rlimits,
	// now leaves nothing of it outside.
	group.Started(p.pid, placed)
	if err := group.Attach(p.pid); err != nil {
		_ = killProcess(cmd.Process)
		p.client.Kill()
		p.watch.close()
		p.releaseGroup()
		p.removeSocketDir()
		return nil, fmt.Errorf("plugin %s: applying its limits (%s): %w", lc.path, lc.limits, err)
	}

	d, err := p.dispense()
	if err != nil {
		_ = killProcess(cmd.Process)
		p.client.Kill()
		p.watch.close()
		p.releaseGroup()
		p.removeSocketDir()
		if ctx.Err() != nil {
			return nil, deadlineError(ctx, lc, "connecting to it")
		}
		return nil, fmt.Errorf("plugin %s: connecting to it: %w", lc.path, err)
	}
	go p.watchExit(d.done)
	return p, nil
}

// dispensed is what the plugins wrapped by withDoneContext dispense.
type dispensed struct {
	client any
	// broker is go-plugin's broker of the process's connection, on which
	// the host serves its Host service.
	broker *plugin.GRPCBroker
	// done is go-plugin's context for the process: cancelled once the
	// process has exited and cmd.Wait has returned.
	done context.Context
}

// doneCapture wraps a plugin so that dispensing it also returns the context
// go-plugin passes to GRPCClient, which "will be canceled by go-plugin in the
// event of the plugin process exiting" (plugin.GRPCPlugin). go-plugin cancels
// it after cmd.Wait returned and after marking the client exited, so once it
// is done reading cmd.ProcessState is race-free.
type doneCapture struct {
	plugin.NetRPCUnsupportedPlugin
	plugin.GRPCPlugin
}

func (d doneCapture) GRPCClient(ctx context.Context, b *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	raw, err := d.GRPCPlugin.GRPCClient(ctx, b, c)
	if err != nil {
		return nil, err
	}
	return &dispensed{client: raw, broker: b, done: ctx}, nil
}

func withDoneContext(sets map[int]plugin.PluginSet) map[int]plugin.PluginSet {
	out := make(map[int]plugin.PluginSet, len(sets))
	for v, set := range sets {
		out[v] = plugin.PluginSet{}
		for name, pl := range set {
			if gp, ok := pl.(plugin.GRPCPlugin); ok {
				out[v][name] = doneCapture{GRPCPlugin: gp}
			} else {
				out[v][name] = pl
			}
		}
	}
	return out
}

func (p *Process) dispense() (*dispensed, error) {
	rpc, err := p.client.Client()
	if err != nil {
		return nil, err
	}
	raw, err := rpc.Dispense(wire.PluginName)
	if err != nil {
		return nil, err
	}
	d, ok := raw.(*dispensed)
	if !ok {
		return nil, fmt.Errorf("dispensed %T, want a gRPC plugin", raw)
	}
	w, ok := d.client.(proto.WorkerClient)
	if !ok {
		return nil, fmt.Errorf("dispensed %T, want a proto.WorkerClient", d.client)
	}
	p.worker = w
	p.broker = d.broker
	return d, nil
}

// markRunning ends the launch phase: from now on the launch context no
// longer kills the process. It returns false if that context already did.
func (p *Process) markRunning() bool {
	return p.phase.CompareAndSwap(phaseLaunching, phaseRunning)
}

// watchExit waits for the process to end, then records how it ended and
// closes done. It is the only goroutine that closes done.
func (p *Process) watchExit(goPluginDone context.Context) {
	if p.watch != nil {
		p.watch.wait()
		// The leader has terminated but go-plugin reaps it only once its
		// stdout and stderr are closed: kill what it left in its group,
		// which may hold them open. (Unless go-plugin has reaped it
		// already, and the group might be gone.)
		if goPluginDone.Err() == nil {
			killGroup(p.pid)
		}
		// And what left the group (setsid) but not its cgroup.
		p.group.SignalOthers(p.pid)
	}
	<-goPluginDone.Done()
	// go-plugin has read the plugin's stderr to its end.
	p.sink.flush()
	// Nothing the worker started outlives it: kill what is left in its
	// cgroup and wait until it is empty; then read whether the kernel's
	// OOM killer ended it, and remove the cgroup.
	if err := p.group.Drain(); err != nil {
		p.baseLogger.Error("killing the processes the plugin left", "error", err)
	}
	oomKills := p.group.OOMKills()
	p.group.Remove()
	// End the Host service's calls under way: their worker is gone.
	p.stopHost()
	// Release go-plugin's connection and goroutines; with the process gone
	// this returns at once.
	p.killMu.Lock()
	p.client.Kill()
	p.killMu.Unlock()
	p.watch.close()
	p.removeSocketDir()
	if p.cancelExec != nil {
		p.cancelExec() // cmd.Wait has returned: this kills nothing
	}

	p.mu.Lock()
	// cmd.ProcessState was set by cmd.Wait before goPluginDone was
	// cancelled (and before client.Kill's wait group let go).
	p.final = newExitError(p.cmd.ProcessState, p.killReason, p.tail)
	p.final.markOOM(oomKills, p.group)
	p.mu.Unlock()
	p.sink.end(p.exitMarker())
	close(p.done)
}

// releaseGroup kills whatever is left in the process's cgroups and removes
// them: for a launch that failed.
func (p *Process) releaseGroup() {
	if err := p.group.Drain(); err != nil {
		p.baseLogger.Error("killing the processes the plugin left", "error", err)
	}
	p.group.Remove()
}

// removeSocketDir removes the process's socket directory, with whatever
// socket file the plugin (or the host's broker) left in it, and releases
// the host's. Call it once the process is gone.
func (p *Process) removeSocketDir() {
	if p.sockDir != "" {
		if err := os.RemoveAll(p.sockDir); err != nil {
			p.baseLogger.Warn("removing the plugin's socket directory", "dir", p.sockDir, "error", err)
		}
		hostSockets.release(p.baseLogger)
	}
}

// signalKill sends SIGKILL to the process and its process group, unless
// the process is known to be gone.
func (p *Process) signalKill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = killProcess(p.cmd.Process)
	p.group.Signal()
}

// killProcess kills proc and its process group. os.Process signals through
// its own pidfd and knows when the process has been reaped, so the group is
// signalled only while its leader's pid is still ours.
func killProcess(proc *os.Process) error {
	if err := proc.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	killGroup(proc.Pid)
	return nil
}

// handshakeError turns an error of client.Start into one that names the
// binary and says what went wrong in words an operator can act on.
func (p *Process) handshakeError(ctx context.Context, err error, lc launchConfig) error {
	path := lc.path
	if errors.Is(err, plugin.ErrChecksumsDoNotMatch) {
		return fmt.Errorf("plugin %s: %w (its sha256 no longer matches the one recorded by the catalog); rescan the plugin directory", path, ErrBinaryChanged)
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		switch {
		case errors.Is(pe.Err, fs.ErrPermission):
			return fmt.Errorf("plugin %s cannot be executed: %w (is it executable?)", path, pe.Err)
		case errors.Is(pe.Err, syscall.ENOEXEC):
			return fmt.Errorf("plugin %s cannot be executed: %w (not a program for this system)", path, pe.Err)
		}
		return fmt.Errorf("plugin %s cannot be executed: %w", path, pe.Err)
	}
	if ctx.Err() != nil {
		return deadlineError(ctx, lc, "waiting for the go-plugin handshake")
	}
	msg := err.Error()
	exited := func() error {
		e := newExitError(p.cmd.ProcessState, "", p.tail)
		if e == nil {
			return fmt.Errorf("plugin %s exited with status 0 before the go-plugin handshake (not a dynworkers plugin?)", path)
		}
		return fmt.Errorf("plugin %s exited before the go-plugin handshake: %w", path, e)
	}
	switch {
	case strings.HasPrefix(msg, "Unrecognized remote plugin message: "):
		line, _, _ := strings.Cut(strings.TrimPrefix(msg, "Unrecognized remote plugin message: "), "\n")
		if line == "" {
			return exited()
		}
		return fmt.Errorf("plugin %s printed %q to stdout instead of the go-plugin handshake: it is not a dynworkers plugin, or it writes to stdout before sdk.Serve", path, scrubTruncate(lc.scrubber, line, 200))
	case strings.Contains(msg, "plugin exited before we could connect"):
		return exited()
	case strings.Contains(msg, "timeout while waiting for plugin to start"):
		return fmt.Errorf("plugin %s: no go-plugin handshake within %s", path, lc.timeout)
	}
	return fmt.Errorf("plugin %s: %w", path, err)
}

// deadlineError is the error for a launch whose ctx ended during what.
func deadlineError(ctx context.Context, lc launchConfig, what string) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("plugin %s: %s exceeded while %s: %w", lc.path, lc.timeout, what, context.DeadlineExceeded)
	}
	return fmt.Errorf("plugin %s: cancelled while %s: %w", lc.path, what, context.Cause(ctx))
}

// rpcMessage is the plugin's message of a gRPC error, scrubbed.
func (p *Process) rpcMessage(err error) string {
	return p.scrub(rpcMessage(err))
}

// scrub scrubs a text that came from the plugin of the worker's sensitive
// values.
func (p *Process) scrub(s string) string {
	return p.scrubber.Load().String(s)
}

// rpcMessage is the plugin's message of a gRPC error; scrub it
// (Process.rpcMessage) before it is shown.
func rpcMessage(err error) string {
	if s, ok := status.FromError(err); ok {
		return s.Message()
	}
	return err.Error()
}

// scrubTruncate scrubs s and cuts it to n bytes (with "..."), a cut
// value's beginning included.
func scrubTruncate(sc *scrub.Scrubber, s string, n int) string {
	if len(s) <= n {
		return sc.String(s)
	}
	return sc.TrimPartial(s[:n]) + "..."
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
