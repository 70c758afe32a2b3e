// Command chaos is a test-only worker plugin whose workers misbehave on
// request, so the host's process handling can be tested against real plugin
// processes. It offers one class, "chaos"; the worker's config picks the
// misbehaviour (see config).
//
// Some misbehaviour has to happen before the host could send any config (the
// catalog launches a binary just to call Describe), so it is chosen by the
// binary's file name instead: tests copy the built binary under a name that
// contains
//
//	stdout  print a line to stdout before the go-plugin handshake
//	crash   panic before serving
//	hang    block forever before serving
//
// Mode "ignore_stop" makes the worker's Stop block for ever: the process then
// runs until it is killed. It ignores SIGTERM, SIGINT, SIGHUP and SIGPIPE,
// and keeps running when go-plugin's server is shut down (sdk.Serve returns
// then), so a test can tell that the host killed it.
//
// Mode "orphan" starts a child process (this binary again, with CHAOS_CHILD=1,
// which just blocks) that inherits the plugin's stderr, then exits after
// delay with status 1: the child keeps go-plugin's stderr pipe open, as a
// leaked helper process of a real plugin would.
//
// Mode "oom" allocates memory (and touches it) after delay, 8 MiB at a time,
// until it is killed: a worker over its memory limit.
//
// Mode "fork_bomb" starts processes (this binary again, with CHAOS_CHILD=1,
// which just blocks) as fast as it can, for ever: it keeps trying after a
// fork fails. Status reports "spawned" and "fork_errors".
//
// Mode "setsid_child" starts a child (this binary again, with CHAOS_CHILD=1)
// in a session of its own (setsid), which leaves the plugin's process group,
// with stdio on /dev/null, and reports its pid in Status as "grandchild_pid".
//
// When the environment variable CHAOS_LAUNCH_LOG names a file, every process
// appends "<pid> <file name>" to it as its first action, so a test can count
// launches and find the pids of processes it never got a handle on.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dynworkers/dynworkers/sdk"
)

// EnvLaunchLog names the file each process appends its pid and name to.
const EnvLaunchLog = "CHAOS_LAUNCH_LOG"

// config selects the worker's misbehaviour.
type config struct {
	Mode      string        `config:"mode" default:"run" help:"run, panic, exit, exit_clean, ignore_stop, hang_health, slow_start, start_error, orphan, oom, fork_bomb or setsid_child"`
	Delay     time.Duration `config:"delay" default:"0s" help:"how long to wait before misbehaving"`
	Code      int           `config:"code" default:"1" help:"exit code for mode exit"`
	Permanent bool          `config:"permanent" default:"false" help:"start_error: fail with an invalid-config error"`
	Message   string        `config:"message" default:"boom" help:"panic and error message"`
	// HangStatus makes Status never answer, whatever the mode.
	HangStatus bool `config:"hang_status" default:"false" help:"Status never answers"`
	// UnhealthyFor makes Health fail for that long after Start, whatever
	// the mode, with Message as its reason.
	UnhealthyFor time.Duration `config:"unhealthy_for" default:"0s" help:"how long Health fails after Start"`
}

// ignoringStop is set once a worker in mode ignore_stop is in its Stop.
var ignoringStop atomic.Bool

var modes = []string{"run", "panic", "exit", "exit_clean", "ignore_stop", "hang_health", "slow_start", "start_error", "orphan", "oom", "fork_bomb", "setsid_child"}

func main() {
	name := filepath.Base(os.Args[0])
	if path := os.Getenv(EnvLaunchLog); path != "" {
		if f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644); err == nil {
			fmt.Fprintf(f, "%d %s\n", os.Getpid(), name)
			f.Close()
		}
	}
	switch {
	case os.Getenv("CHAOS_CHILD") == "1":
		select {}
	case strings.Contains(name, "stdout"):
		fmt.Println("chaos: hello on stdout, which breaks the handshake")
	case strings.Contains(name, "crash"):
		panic("chaos: crashing before serving, as my file name asks")
	case strings.Contains(name, "hang"):
		select {}
	}
	sdk.Serve(sdk.Class{
		Name:        "chaos",
		Description: "A worker that misbehaves on request (tests only).",
		Version:     "1.0.0",
		New: sdk.Construct(func(cfg config) (sdk.Worker, error) {
			for _, m := range modes {
				if cfg.Mode == m {
					return &worker{cfg: cfg}, nil
				}
			}
			return nil, sdk.InvalidConfig("mode %q is not one of %s", cfg.Mode, strings.Join(modes, ", "))
		}),
	})
	// sdk.Serve returns once the host has shut go-plugin's server down. A
	// worker still in a Stop it ignores keeps its process running.
	if ignoringStop.Load() {
		select {}
	}
}

type worker struct {
	cfg          config
	started      time.Time
	healthChecks atomic.Int64 // health checks answered, shown by Status

	mu  sync.Mutex
	env *sdk.Env
	// grandchild is the pid of the setsid_child's child.
	grandchild int
	// spawned and forkErrors count the fork_bomb's children and failures.
	spawned, forkErrors atomic.Int64
}

// memory holds what mode oom allocated, so that it stays in use.
var memory [][]byte

var (
	_ sdk.Worker         = (*worker)(nil)
	_ sdk.HealthChecker  = (*worker)(nil)
	_ sdk.StatusReporter = (*worker)(nil)
)

func (w *worker) Start(ctx context.Context, env *sdk.Env) error {
	w.mu.Lock()
	w.env = env
	w.started = time.Now()
	w.mu.Unlock()
	log := env.Logger()
	log.Info("chaos worker starting", "mode", w.cfg.Mode, "delay", w.cfg.Delay.String(), "pid", os.Getpid())
	later := func(f func()) {
		go func() {
			time.Sleep(w.cfg.Delay)
			f()
		}()
	}
	switch w.cfg.Mode {
	case "panic":
		later(func() { panic("chaos: " + w.cfg.Message) })
	case "exit":
		later(func() {
			log.Error("chaos: exiting as asked", "code", w.cfg.Code)
			os.Exit(w.cfg.Code)
		})
	case "exit_clean":
		later(func() { env.Exit(nil) })
	case "orphan":
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		child := exec.Command(exe)
		child.Env = append(os.Environ(), "CHAOS_CHILD=1")
		child.Stderr = os.NewFile(2, "stderr") // the host's pipe; go-plugin replaced os.Stderr
		if err := child.Start(); err != nil {
			return err
		}
		log.Info("started a child that holds stderr", "child_pid", child.Process.Pid)
		later(func() { os.Exit(1) })
	case "oom":
		later(func() {
			for {
				b := make([]byte, 8<<20)
				for i := 0; i < len(b); i += 4096 {
					b[i] = 1
				}
				memory = append(memory, b)
			}
		})
	case "fork_bomb":
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		later(func() {
			for {
				child := exec.Command(exe)
				child.Env = append(os.Environ(), "CHAOS_CHILD=1")
				if err := child.Start(); err != nil {
					w.forkErrors.Add(1)
					time.Sleep(time.Millisecond)
					continue
				}
				w.spawned.Add(1)
				go child.Wait()
			}
		})
	case "setsid_child":
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		child := exec.Command(exe)
		child.Env = append(os.Environ(), "CHAOS_CHILD=1")
		child.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := child.Start(); err != nil {
			return err
		}
		w.mu.Lock()
		w.grandchild = child.Process.Pid
		w.mu.Unlock()
		log.Info("started a child in a session of its own", "child_pid", child.Process.Pid)
	case "slow_start":
		time.Sleep(w.cfg.Delay) // deliberately ignores ctx
	case "start_error":
		if w.cfg.Permanent {
			return sdk.InvalidConfig("chaos: %s", w.cfg.Message)
		}
		return errors.New("chaos: " + w.cfg.Message)
	}
	return nil
}

func (w *worker) Stop(ctx context.Context) error {
	w.mu.Lock()
	env := w.env
	w.mu.Unlock()
	if w.cfg.Mode == "ignore_stop" {
		signal.Ignore(syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGPIPE)
		ignoringStop.Store(true)
		env.Logger().Info("chaos worker ignoring stop")
		select {}
	}
	env.Logger().Info("chaos worker stopping")
	return nil
}

func (w *worker) Health(ctx context.Context) error {
	w.mu.Lock()
	started := w.started
	w.mu.Unlock()
	if w.cfg.Mode == "hang_health" && time.Since(started) >= w.cfg.Delay {
		select {} // never answers, whatever the deadline says
	}
	w.healthChecks.Add(1)
	if time.Since(started) < w.cfg.UnhealthyFor {
		return errors.New(w.cfg.Message)
	}
	return nil
}

func (w *worker) Status(ctx context.Context) (map[string]any, error) {
	if w.cfg.HangStatus {
		select {} // never answers, whatever the deadline says
	}
	st := map[string]any{"mode": w.cfg.Mode, "pid": os.Getpid(), "health_checks": w.healthChecks.Load()}
	w.mu.Lock()
	if w.grandchild != 0 {
		st["grandchild_pid"] = w.grandchild
	}
	w.mu.Unlock()
	if w.cfg.Mode == "fork_bomb" {
		st["spawned"], st["fork_errors"] = w.spawned.Load(), w.forkErrors.Load()
	}
	return st, nil
}
