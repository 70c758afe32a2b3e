package pluginproc

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/dynworkers/dynworkers/host/internal/contain"
)

// ErrBinaryChanged is wrapped by the error of a Start whose plugin binary no
// longer has the checksum the catalog recorded: it was replaced after it was
// described. Rescanning the plugin directory fixes it.
var ErrBinaryChanged = errors.New("plugin binary changed since it was described")

// ErrKilledAtStop is wrapped by the error of a Stop that killed the
// process because it had not stopped by the deadline: the process is gone,
// as a stop wants, but not by its own doing.
var ErrKilledAtStop = errors.New("killed at the stop deadline")

// ErrTooLarge is wrapped by the error of a Start whose request was over
// the plugin's gRPC message limit (4 MiB): its config is too large.
var ErrTooLarge = errors.New("the request is too large for the plugin")

// IsTooLarge reports whether err wraps ErrTooLarge.
func IsTooLarge(err error) bool { return errors.Is(err, ErrTooLarge) }

// ExitError tells why a plugin process ended when it did not end normally.
type ExitError struct {
	// Code is the exit status, or -1 if the process was killed by a signal.
	Code int
	// Signal is the name of the signal that killed the process, e.g.
	// "SIGKILL"; empty if it exited.
	Signal string
	// Reason says why the host killed the process, e.g. "health check
	// failed 3 times in a row (...)"; empty if the host did not kill it.
	Reason string
	// StderrTail holds the last lines the plugin wrote to stderr (about 20;
	// a panic message is kept with the lines that follow it).
	StderrTail string
	// OOM is set when the process ended because it reached its memory
	// limit: the kernel's OOM killer ended it (its cgroup counted the
	// kill), or, where the limit is an rlimit, an allocation failed and
	// the Go runtime died of it. MemoryLimit is that limit in bytes.
	OOM         bool
	MemoryLimit int64
}

// ExitOOMKilled is the exit reason of a process killed for reaching its
// memory limit: ExitError.ExitReason, the reason of its worker_exited
// event and the last_exit_reason of its status.
const ExitOOMKilled = "oom_killed"

// ExitReason classifies the exit for events and status: ExitOOMKilled, or
// "" for every other exit (the error's text says how it ended).
func (e *ExitError) ExitReason() string {
	if e != nil && e.OOM {
		return ExitOOMKilled
	}
	return ""
}

// markOOM marks e as an OOM kill when the process's group counted one and
// the process died of SIGKILL that the host did not send, or when its
// memory limit is an rlimit and the Go runtime said it ran out of memory.
// (A Go runtime whose mmap fails does not always say so: Go 1.26's garbage
// collector was seen to crash with SIGSEGV instead, an exit that then shows
// as a plain exit status 2. Only the cgroup limit is reliably oom_killed.)
func (e *ExitError) markOOM(oomKills int, g *contain.Group) {
	if e == nil || e.Reason != "" {
		return
	}
	byKernel := oomKills > 0 && e.Signal == "SIGKILL"
	byRlimit := g.MemoryByRlimit() && e.Signal == "" &&
		(strings.Contains(e.StderrTail, "runtime: out of memory") || strings.Contains(e.StderrTail, "cannot allocate memory"))
	if byKernel || byRlimit {
		e.OOM = true
		e.MemoryLimit = g.Limits().Memory
	}
}

// Error is one short line: the exit status or signal, the host's reason if
// it killed the process, and the panic message or last error the plugin
// logged, e.g. "exit status 2: panic: boom".
func (e *ExitError) Error() string {
	var b strings.Builder
	if e.OOM {
		b.WriteString(ExitOOMKilled)
		if e.MemoryLimit > 0 {
			fmt.Fprintf(&b, " (memory limit %s reached)", contain.FormatBytes(e.MemoryLimit))
		}
		b.WriteString(": ")
	}
	if e.Reason != "" {
		b.WriteString(e.Reason)
		b.WriteString(": ")
	}
	switch {
	case e.Signal != "":
		b.WriteString("killed by " + e.Signal)
	case e.Code < 0:
		b.WriteString("exit status unknown")
	default:
		fmt.Fprintf(&b, "exit status %d", e.Code)
	}
	if s := tailSummary(e.StderrTail, e.Signal == ""); s != "" {
		b.WriteString(": ")
		b.WriteString(s)
	}
	return b.String()
}

// newExitError describes how a process ended; nil when it exited with status
// 0 and the host did not kill it.
func newExitError(st *os.ProcessState, reason string, tail *stderrTail) *ExitError {
	e := &ExitError{Code: -1, Reason: reason, StderrTail: tail.String()}
	if st == nil {
		return e
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		e.Signal = unix.SignalName(ws.Signal())
		if e.Signal == "" {
			e.Signal = ws.Signal().String()
		}
		return e
	}
	e.Code = st.ExitCode()
	if e.Code == 0 && reason == "" {
		return nil
	}
	return e
}

// exitMarker is the text of the exit marker of the process, which has
// ended (see exitMarkerText), scrubbed.
func (p *Process) exitMarker() string {
	p.mu.Lock()
	text := exitMarkerText(p.final, p.stopRequested)
	p.mu.Unlock()
	return p.scrub(text)
}

// exitMarkerText says how a process ended, for the exit marker of the
// worker's log: "stopped" after a Stop (with how it went wrong, if it
// did), else "exited with status N[: summary]" or "exited: <how>" (killed
// by a signal, or by the host for a reason), as ExitError says it.
func exitMarkerText(final *ExitError, stopped bool) string {
	switch {
	case stopped && final == nil:
		return "stopped"
	case stopped:
		return "stopped: " + final.Error()
	case final == nil:
		return "exited with status 0"
	}
	msg := final.Error()
	if rest, ok := strings.CutPrefix(msg, "exit status "); ok {
		return "exited with status " + rest
	}
	return "exited: " + msg
}

// StartError is the error of a Start that failed.
type StartError struct {
	// Permanent is true when retrying cannot help: the plugin rejected the
	// config (gRPC InvalidArgument, sdk.ErrInvalidConfig), the request was
	// over the plugin's gRPC message limit (ResourceExhausted), the binary
	// no longer matches its checksum (ErrBinaryChanged) or is not trusted
	// (ErrUntrusted), or the options were unusable.
	Permanent bool
	Err       error
}

func (e *StartError) Error() string { return e.Err.Error() }
func (e *StartError) Unwrap() error { return e.Err }

// IsPermanent reports whether err is, or wraps, a permanent StartError.
func IsPermanent(err error) bool {
	var se *StartError
	return errors.As(err, &se) && se.Permanent
}

const (
	tailLines   = 20
	tailLineMax = 1024 // bytes kept of one line
)

// stderrTail is the io.Writer go-plugin copies the plugin's stderr to. It
// keeps the last tailLines lines; once a panic line arrives it keeps that
// line and drops further lines rather than let the stack trace push the
// panic message out.
type stderrTail struct {
	mu      sync.Mutex
	partial []byte
	lines   []string
	pinned  int // index in lines of the first panic line, -1 if none
}

func newStderrTail() *stderrTail { return &stderrTail{pinned: -1} }

func (t *stderrTail) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(b)
	for len(b) > 0 {
		i := strings.IndexByte(string(b), '\n')
		if i < 0 {
			t.partial = appendCapped(t.partial, b)
			break
		}
		t.partial = appendCapped(t.partial, b[:i])
		t.push(string(t.partial))
		t.partial = t.partial[:0]
		b = b[i+1:]
	}
	return n, nil
}

// add keeps one whole line (the logSink has cut and scrubbed it).
func (t *stderrTail) add(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.push(line)
}

func appendCapped(dst, src []byte) []byte {
	if room := tailLineMax - len(dst); len(src) > room {
		src = src[:max(room, 0)]
	}
	return append(dst, src...)
}

func (t *stderrTail) push(line string) {
	if len(t.lines) == tailLines {
		if t.pinned == 0 {
			return
		}
		copy(t.lines, t.lines[1:])
		t.lines = t.lines[:len(t.lines)-1]
		if t.pinned > 0 {
			t.pinned--
		}
	}
	if t.pinned < 0 && isPanicLine(line) {
		t.pinned = len(t.lines)
	}
	t.lines = append(t.lines, line)
}

// String returns the kept lines, including an unfinished last line.
func (t *stderrTail) String() string {
	if t == nil {
		return ""
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := t.lines
	if len(t.partial) > 0 {
		lines = append(lines[:len(lines):len(lines)], string(t.partial))
	}
	return strings.Join(lines, "\n")
}

func isPanicLine(l string) bool {
	return strings.HasPrefix(l, "panic: ") || strings.HasPrefix(l, "fatal error: ")
}

// tailSummary picks the line of a stderr tail that best says why a process
// ended: a Go panic message, else the last error the plugin logged with
// hclog (JSON), else, if plain, the last line that is not JSON (such as the
// sdk's complaint about invalid classes before it exits 1), else nothing.
func tailSummary(tail string, plain bool) string {
	if tail == "" {
		return ""
	}
	lines := strings.Split(tail, "\n")
	for _, l := range lines {
		if isPanicLine(l) {
			return l
		}
	}
	for i := len(lines) - 1; i >= 0; i-- {
		if msg, ok := hclogError(lines[i]); ok {
			return truncate(msg, 300)
		}
	}
	if plain {
		for i := len(lines) - 1; i >= 0; i-- {
			if l := strings.TrimSpace(lines[i]); l != "" && !strings.HasPrefix(l, "{") {
				return truncate(l, 300)
			}
		}
	}
	return ""
}

// hclogError returns the message of an error-level hclog JSON line, with
// its "error" value if it has one.
func hclogError(line string) (string, bool) {
	if !strings.HasPrefix(line, "{") {
		return "", false
	}
	entry, ok := decodeJSONObject([]byte(line))
	if !ok {
		return "", false
	}
	if lvl, _ := entry["@level"].(string); lvl != "error" {
		return "", false
	}
	msg, _ := entry["@message"].(string)
	if e, ok := entry["error"]; ok {
		msg = fmt.Sprintf("%s: %v", msg, e)
	}
	return msg, msg != ""
}
