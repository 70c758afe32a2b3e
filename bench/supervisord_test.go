package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/internal/wire"
)

const (
	// supervisordCrashes is how many times the supervisord benchmark kills
	// its program: supervisord takes up to a second per restart, so fewer
	// than the host's 200.
	supervisordCrashes = 20
	supervisordWarmup  = 2
	// supervisordPrograms is the number of programs of its start, stop and
	// memory runs, as many as the host's start-up target has workers.
	supervisordPrograms = 100
	// supervisordRuns is how many measured start+stop runs of the 100
	// programs there are (after one unmeasured run); each takes several
	// seconds.
	supervisordRuns = 3
	// supervisordTimeout bounds every wait on supervisord.
	supervisordTimeout = 2 * time.Minute
)

// findSupervisord returns the paths of supervisord and supervisorctl and
// how they were found. When they are missing and the harness runs as root
// it installs Debian's package `supervisor` with apt-get (non-interactive);
// otherwise it returns why it cannot run them.
func findSupervisord() (daemon, ctl, how string, err error) {
	look := func() (string, string, error) {
		d, err := exec.LookPath("supervisord")
		if err != nil {
			return "", "", err
		}
		c, err := exec.LookPath("supervisorctl")
		return d, c, err
	}
	if d, c, err := look(); err == nil {
		return d, c, "found on PATH", nil
	}
	if os.Geteuid() != 0 {
		return "", "", "", errors.New("supervisord is not installed and the harness is not root, so it cannot install it (apt-get install supervisor)")
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return "", "", "", errors.New("supervisord is not installed and there is no apt-get to install it with")
	}
	install := func() ([]byte, error) {
		cmd := exec.Command("apt-get", "install", "-y", "--no-install-recommends", "supervisor")
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		return cmd.CombinedOutput()
	}
	out, err := install()
	if err != nil {
		// The package lists may be missing or stale: update once and retry.
		if upd, uerr := exec.Command("apt-get", "update").CombinedOutput(); uerr != nil {
			return "", "", "", fmt.Errorf("apt-get update failed: %v: %s", uerr, lastLines(upd, 3))
		}
		if out, err = install(); err != nil {
			return "", "", "", fmt.Errorf("apt-get install supervisor failed: %v: %s", err, lastLines(out, 3))
		}
	}
	d, c, err := look()
	if err != nil {
		return "", "", "", fmt.Errorf("apt-get installed supervisor, but %v", err)
	}
	return d, c, "installed by the harness with `apt-get install supervisor`", nil
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], " / ")
}

// supervisordVersion is `supervisord --version`.
func supervisordVersion(daemon string) string {
	out, err := exec.Command(daemon, "--version").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

// supervisor is one supervisord process of the harness, with a config,
// socket and log of its own in a private directory.
type supervisor struct {
	t       *testing.T
	ctl     string
	conf    string
	log     string
	cmd     *exec.Cmd
	started time.Time // just before exec
	exited  chan struct{}
	waitErr error
}

// supervisordConfig writes a config running n programs of the plugin
// binary, run standalone: go-plugin's magic cookie in the environment
// makes it serve (print its handshake line, listen on a unix socket) and
// idle with no host connected. startsecs=0: a program counts as RUNNING as
// soon as it was spawned. Its output is read and dropped (NONE), the
// lightest choice for supervisord.
func supervisordConfig(dir, plugin string, names []string, autostart bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[unix_http_server]\nfile=%s\n\n", filepath.Join(dir, "s.sock"))
	fmt.Fprintf(&b, "[supervisord]\nlogfile=%s\npidfile=%s\nchildlogdir=%s\nnodaemon=true\nloglevel=info\nminfds=1024\n\n",
		filepath.Join(dir, "supervisord.log"), filepath.Join(dir, "supervisord.pid"), dir)
	b.WriteString("[rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n")
	fmt.Fprintf(&b, "[supervisorctl]\nserverurl=unix://%s\n\n", filepath.Join(dir, "s.sock"))
	for _, n := range names {
		fmt.Fprintf(&b, "[program:%s]\ncommand=%s\nautostart=%t\nautorestart=true\nstartsecs=0\nstartretries=1000000\n", n, plugin, autostart)
		fmt.Fprintf(&b, "environment=%s=\"%s\",PLUGIN_PROTOCOL_VERSIONS=\"%d\",PLUGIN_UNIX_SOCKET_DIR=\"%s\",TMPDIR=\"%s\"\n",
			wire.Handshake.MagicCookieKey, wire.Handshake.MagicCookieValue, wire.Handshake.ProtocolVersion, dir, dir)
		b.WriteString("stdout_logfile=NONE\nstderr_logfile=NONE\nstopsignal=TERM\nstopwaitsecs=10\n\n")
	}
	return b.String()
}

// startSupervisord writes the config to a private, short directory (the
// unix socket's path is at most 107 bytes) and execs supervisord in the
// foreground. Its log is in UTC (TZ), so its timestamps can be compared
// with the harness's clock.
func startSupervisord(t *testing.T, daemon, ctl, plugin string, names []string, autostart bool) *supervisor {
	t.Helper()
	dir, err := os.MkdirTemp("", "dwsv")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := &supervisor{t: t, ctl: ctl, conf: filepath.Join(dir, "supervisord.conf"), log: filepath.Join(dir, "supervisord.log"), exited: make(chan struct{})}
	if err := os.WriteFile(s.conf, []byte(supervisordConfig(dir, plugin, names, autostart)), 0o600); err != nil {
		t.Fatal(err)
	}
	s.cmd = exec.Command(daemon, "-c", s.conf)
	s.cmd.Env = append(os.Environ(), "TZ=UTC")
	s.cmd.Dir = dir
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var out tailBuffer
	out.max = 16 << 10
	s.cmd.Stdout, s.cmd.Stderr = &out, &out
	s.started = time.Now()
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-s.exited:
			return
		default:
		}
		// Left running by a failed test: kill it and its programs.
		procs := ChildrenOf(s.cmd.Process.Pid)
		_ = s.cmd.Process.Kill()
		<-s.exited
		for _, p := range procs {
			_ = syscall.Kill(p.Pid, syscall.SIGKILL)
		}
		if t.Failed() {
			log, _ := os.ReadFile(s.log)
			t.Logf("supervisord output:\n%s\nlog (tail):\n%s", out.String(), lastLines(log, 30))
		}
	})
	return s
}

// svLine matches a line of supervisord's log: its timestamp (millisecond
// resolution, UTC here) and message.
var svLine = regexp.MustCompile(`^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+ (.*)$`)

// svEvent is one line of supervisord's log.
type svEvent struct {
	at  time.Time
	msg string
}

// events returns supervisord's log so far, decoded.
func (s *supervisor) events() []svEvent {
	b, err := os.ReadFile(s.log)
	if err != nil {
		return nil
	}
	var out []svEvent
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		m := svLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		at, err := time.ParseInLocation("2006-01-02 15:04:05,000", m[1], time.UTC)
		if err != nil {
			continue
		}
		out = append(out, svEvent{at: at, msg: m[2]})
	}
	return out
}

// running matches the line supervisord logs when a program enters RUNNING.
var running = regexp.MustCompile(`^success: (\S+) entered RUNNING state`)

// waitRunning waits until supervisord's log has at least n lines saying a
// program entered RUNNING, reading the log file every 5 ms (which does not
// wake supervisord up, as a request on its socket would), and returns the
// n-th such line's time.
func (s *supervisor) waitRunning(n int) time.Time {
	s.t.Helper()
	deadline := time.Now().Add(supervisordTimeout)
	for time.Now().Before(deadline) {
		k := 0
		for _, ev := range s.events() {
			if running.MatchString(ev.msg) {
				k++
				if k == n {
					return ev.at
				}
			}
		}
		select {
		case <-s.exited:
			s.t.Fatalf("supervisord exited: %v", s.waitErr)
		case <-time.After(5 * time.Millisecond):
		}
	}
	s.t.Fatalf("supervisord's log does not show %d programs entering RUNNING within %v", n, supervisordTimeout)
	return time.Time{}
}

// svProgram is a program in `supervisorctl status`.
type svProgram struct {
	name, state string
	pid         int
}

var statusLine = regexp.MustCompile(`^(\S+)\s+(\S+)\s+(?:pid (\d+),)?`)

// status runs `supervisorctl status`. It is used for checks only, never
// while something is timed: each call is a request that wakes supervisord.
func (s *supervisor) status() map[string]svProgram {
	s.t.Helper()
	out, err := exec.Command(s.ctl, "-c", s.conf, "status").Output()
	// supervisorctl status exits 3 when a program is not running.
	var ee *exec.ExitError
	if err != nil && !(errors.As(err, &ee) && len(out) > 0) {
		s.t.Fatalf("supervisorctl status: %v: %s", err, out)
	}
	progs := map[string]svProgram{}
	for _, line := range strings.Split(string(out), "\n") {
		m := statusLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		pid, _ := strconv.Atoi(m[3])
		progs[m[1]] = svProgram{name: m[1], state: m[2], pid: pid}
	}
	return progs
}

// allRunning checks that every one of names is RUNNING as a live child of
// supervisord running the plugin, and returns their processes.
func (s *supervisor) allRunning(f *fixture, names []string) []Proc {
	s.t.Helper()
	st := s.status()
	children := map[int]Proc{}
	for _, c := range ChildrenOf(s.cmd.Process.Pid) {
		children[c.Pid] = c
	}
	var out []Proc
	for _, n := range names {
		p, ok := st[n]
		if !ok || p.state != "RUNNING" {
			s.t.Fatalf("program %s is %q, want RUNNING", n, p.state)
		}
		c, ok := children[p.pid]
		if !ok || !f.isPluginProc(p.pid) {
			s.t.Fatalf("program %s: pid %d is not a live child of supervisord running the plugin", n, p.pid)
		}
		out = append(out, c)
	}
	return out
}

// stop sends SIGTERM to supervisord and waits for it to stop its programs
// and exit 0; it returns SIGTERM → exit and checks that none of procs is
// left.
func (s *supervisor) stop(procs []Proc) time.Duration {
	s.t.Helper()
	t0 := time.Now()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		s.t.Fatal(err)
	}
	select {
	case <-s.exited:
	case <-time.After(supervisordTimeout):
		s.t.Fatalf("supervisord did not exit within %v of SIGTERM", supervisordTimeout)
	}
	d := time.Since(t0)
	if s.waitErr != nil {
		s.t.Fatalf("supervisord exited with %v", s.waitErr)
	}
	for _, p := range procs {
		if !p.WaitGone(5 * time.Second) {
			s.t.Errorf("program process %d still alive 5s after supervisord exited", p.Pid)
			_ = syscall.Kill(p.Pid, syscall.SIGKILL)
		}
	}
	// A program that ignored SIGTERM would have been killed after
	// stopwaitsecs; the log says so.
	for _, ev := range s.events() {
		if strings.HasPrefix(ev.msg, "killing ") {
			s.t.Errorf("supervisord had to SIGKILL a program at stop: %s", ev.msg)
		}
	}
	return d
}

func programNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("hello-%03d", i+1)
	}
	return out
}

// TestSupervisord runs the same hello-worker binary under supervisord, on
// the same machine in the same run, and measures what the host is
// compared with: crash (SIGKILL) → RUNNING again, start and stop of 100
// programs, and the memory of each supervised program. supervisord is
// found on PATH or installed (findSupervisord); when it cannot be, the
// report says why and these rows read "not run".
func TestSupervisord(t *testing.T) {
	f := setup(t)
	daemon, ctl, how, err := findSupervisord()
	if err != nil {
		t.Logf("supervisord not run: %v", err)
		record(func(r *Results) { r.Supervisord = &SupervisordResult{NotRun: err.Error()} })
		return
	}
	res := &SupervisordResult{Version: supervisordVersion(daemon), Found: how, Crashes: supervisordCrashes, Warmup: supervisordWarmup,
		Programs: supervisordPrograms}
	t.Logf("supervisord %s (%s)", res.Version, how)

	// Crash → RUNNING again, one program.
	t.Run("crash", func(t *testing.T) {
		s := startSupervisord(t, daemon, ctl, f.plugin, []string{"hello"}, true)
		s.waitRunning(1)
		procs := s.allRunning(f, []string{"hello"})
		var total []time.Duration
		for i := range supervisordWarmup + supervisordCrashes {
			old := procs[0]
			before := len(s.events())
			t0 := time.Now()
			if err := syscall.Kill(old.Pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			at := s.waitRunning(i + 2)
			// The log has millisecond resolution; t0 is truncated alike.
			d := at.Sub(t0.Truncate(time.Millisecond))
			procs = s.allRunning(f, []string{"hello"})
			if procs[0].Pid == old.Pid {
				t.Fatalf("crash %d: the program still has pid %d", i, old.Pid)
			}
			var exited bool
			for _, ev := range s.events()[before:] {
				exited = exited || strings.HasPrefix(ev.msg, "exited: hello (terminated by SIGKILL")
			}
			if !exited {
				t.Fatalf("crash %d: supervisord's log does not show the program killed by SIGKILL", i)
			}
			if i >= supervisordWarmup {
				total = append(total, d)
			}
		}
		res.Restart, res.RestartUS = Summarize(total), Micros(total)
		s.stop(procs)
		t.Logf("kill → RUNNING again: p50 %v p90 %v max %v", res.Restart.P50, res.Restart.P90, res.Restart.Max)
	})
	if t.Failed() {
		return
	}

	// One program, for the memory of supervisord without its programs.
	t.Run("memory-1", func(t *testing.T) {
		s := startSupervisord(t, daemon, ctl, f.plugin, []string{"hello-001"}, true)
		s.waitRunning(1)
		time.Sleep(supervisordSettle) // a fixed idle period, not a synchronisation
		procs := s.allRunning(f, []string{"hello-001"})
		m, err := ReadMem(s.cmd.Process.Pid)
		if err != nil {
			t.Fatal(err)
		}
		res.Mem1 = m
		s.stop(procs)
	})
	if t.Failed() {
		return
	}

	// 100 programs: exec → all RUNNING, memory, SIGTERM → exit.
	t.Run("programs", func(t *testing.T) {
		names := programNames(supervisordPrograms)
		for i := range 1 + supervisordRuns {
			s := startSupervisord(t, daemon, ctl, f.plugin, names, true)
			last := s.waitRunning(len(names))
			start := last.Sub(s.started.Truncate(time.Millisecond))
			procs := s.allRunning(f, names)
			if i == 0 {
				// The warm-up run also measures memory and checks that
				// the programs stay up.
				time.Sleep(supervisordSettle)
				again := s.allRunning(f, names)
				for j := range procs {
					if again[j] != procs[j] {
						t.Fatalf("program %s restarted while idle: pid %d, then %d", names[j], procs[j].Pid, again[j].Pid)
					}
				}
				if res.MemN, err = ReadMem(s.cmd.Process.Pid); err != nil {
					t.Fatal(err)
				}
				for _, p := range procs {
					m, err := ReadMem(p.Pid)
					if err != nil {
						t.Fatal(err)
					}
					res.ProgramPSS = append(res.ProgramPSS, m.PSS)
				}
			}
			stop := s.stop(procs)
			if t.Failed() {
				return
			}
			if i == 0 {
				continue
			}
			t.Logf("run %d: exec → %d RUNNING %v, SIGTERM → exit %v", i, len(names), start, stop)
			res.Start = append(res.Start, start)
			res.Stop = append(res.Stop, stop)
		}
		res.StartUS, res.StopUS = Micros(res.Start), Micros(res.Stop)
	})
	if t.Failed() {
		return
	}
	t.Logf("supervisord: PSS with 1 program %d KiB, with %d %d KiB; program PSS median %d KiB",
		res.Mem1.PSS, supervisordPrograms, res.MemN.PSS, Median(res.ProgramPSS))
	record(func(r *Results) { r.Supervisord = res })
}
