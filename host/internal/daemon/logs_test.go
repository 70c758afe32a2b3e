package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/config"
	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/host/internal/supervise"
	"github.com/dynworkers/dynworkers/host/internal/worklog"
)

// allLogs returns every kept line of worker name's log.
func allLogs(t *testing.T, h *harness, name string) api.LogsResult {
	t.Helper()
	res, err := h.d.Logs(context.Background(), control.LogsQuery{Name: name, Lines: worklog.MaxLines})
	if err != nil {
		t.Fatalf("Logs(%s): %v", name, err)
	}
	if res.Worker != name {
		t.Fatalf("Logs(%s) answered for worker %q", name, res.Worker)
	}
	return res
}

// waitLogLine follows worker name's log (WaitLogs) until a line matches,
// and returns the whole kept log then.
func waitLogLine(t *testing.T, h *harness, name, what string, match func(api.LogLine) bool) []api.LogLine {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	var after uint64
	for {
		res, err := h.d.WaitLogs(ctx, name, after)
		if err != nil {
			t.Fatalf("no %s in %s's log within %s: %v; the log:\n%s", what, name, waitTimeout, err, formatLines(allLogs(t, h, name).Lines))
		}
		for _, line := range res.Lines {
			if match(line) {
				return allLogs(t, h, name).Lines
			}
		}
		after = res.Next
	}
}

func formatLines(lines []api.LogLine) string {
	var b strings.Builder
	for _, l := range lines {
		fmt.Fprintf(&b, "%4d pid=%-7d %s\n", l.Seq, l.PID, worklog.FormatLine(l))
	}
	return b.String()
}

func indexOf(lines []api.LogLine, match func(api.LogLine) bool) int {
	for i, l := range lines {
		if match(l) {
			return i
		}
	}
	return -1
}

// A worker's SDK lines (with their levels) and plain stderr lines are in
// its log; its sensitive value is in none of them, in no line of its log
// file, and nowhere in the host's own log; a panic with the value leaves
// its scrubbed message and stack in the log.
func TestWorkerLogsLevelsAndRedaction(t *testing.T) {
	h := startLeakyHost(t, "  log_files {\n    dir = \"worker-logs\"\n  }\n",
		fmt.Sprintf(`worker "talker" {
  class = "leaky"
  config {
    secret = %s
    pin = "42"
  }
}
worker "crasher" {
  class = "leaky"
  restart = "temporary"
  config {
    secret = %s
    crash_after = "300ms"
  }
}
`, hclString(leakySecret), hclString(leakySecret)))
	lines := waitLogLine(t, h, "talker", "plain stderr line", func(l api.LogLine) bool {
		return strings.HasPrefix(l.Text, "plain stderr line with")
	})
	talker := h.waitStarted("talker")
	text := formatLines(lines)
	for _, want := range []struct{ level, prefix string }{
		{"info", "connecting with password (sensitive) password=(sensitive) pin=(sensitive) url=amqp://user:(sensitive)@broker/"},
		{"warn", "quoted "},
		{"", "plain stderr line with (sensitive)"},
	} {
		if indexOf(lines, func(l api.LogLine) bool { return l.Level == want.level && strings.HasPrefix(l.Text, want.prefix) }) < 0 {
			t.Errorf("talker's log has no line of level %q starting %q:\n%s", want.level, want.prefix, text)
		}
	}
	if lines[0].Marker != worklog.MarkerStart || lines[0].PID != talker {
		t.Errorf("talker's log does not begin with the start marker of pid %d:\n%s", talker, text)
	}
	assertNoSecret(t, "talker's log", text)

	// The crasher panics with the value: scrubbed, with its stack.
	lines = waitLogLine(t, h, "crasher", "exit marker", func(l api.LogLine) bool { return l.Marker == worklog.MarkerExit })
	text = formatLines(lines)
	panicAt := indexOf(lines, func(l api.LogLine) bool { return strings.HasPrefix(l.Text, "panic: connection lost (password") })
	stackAt := indexOf(lines, func(l api.LogLine) bool { return strings.HasPrefix(l.Text, "goroutine ") })
	exitAt := indexOf(lines, func(l api.LogLine) bool { return l.Marker == worklog.MarkerExit })
	if panicAt < 0 || stackAt < panicAt || exitAt < stackAt || !strings.Contains(lines[panicAt].Text, "(sensitive)") {
		t.Errorf("crasher's log lacks its scrubbed panic, then its stack, then the exit marker:\n%s", text)
	}
	if !strings.HasPrefix(lines[exitAt].Text, "exited with status 2: panic: connection lost") {
		t.Errorf("crasher's exit marker is %q", lines[exitAt].Text)
	}
	if e := indexOf(lines, func(l api.LogLine) bool {
		return l.Level == "error" && strings.HasPrefix(l.Text, "giving up error=")
	}); e < 0 {
		t.Errorf("crasher's log lacks its error line:\n%s", text)
	}
	assertNoSecret(t, "crasher's log", text)

	// The supervisor has seen the crash (a stop racing it would report
	// the crash as the stop's error).
	h.waitEvent("crasher exited", func(ev supervise.Event) bool {
		e, ok := ev.(supervise.ChildExited)
		return ok && e.Child == "crasher"
	})
	h.stop() // the files are complete and closed
	for _, name := range []string{"talker", "crasher"} {
		path := filepath.Join(h.dir, "worker-logs", name+".log")
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		file := string(b)
		if !strings.Contains(file, "(sensitive)") || !strings.Contains(file, "--- started, pid ") {
			t.Errorf("%s lacks the worker's lines:\n%s", path, file)
		}
		assertNoSecret(t, path, file)
		st, err := os.Stat(path)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, %v; want 0600", path, st.Mode(), err)
		}
	}
	if st, err := os.Stat(filepath.Join(h.dir, "worker-logs")); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("worker-logs: %v, %v; want a directory of mode 0700", st, err)
	}
	if !strings.Contains(h.logs.String(), "connecting with password (sensitive)") {
		t.Error("the host's own log lacks the talker's line")
	}
	assertNoSecret(t, "the host's own log", h.logs.String())
}

// kill -9 of a worker's process: its log holds the old instance's lines,
// an exit marker, a restart marker with the new pid, then the new
// instance's lines; a follower that began before the kill gets all of
// them.
func TestWorkerLogsFollowAcrossKill(t *testing.T) {
	h := startHost(t, `worker "greeter" {
  class = "chaos"
}
`)
	oldPid := h.waitStarted("greeter")
	isStartLine := func(pid int) func(api.LogLine) bool {
		return func(l api.LogLine) bool {
			return l.PID == pid && l.Level == "info" && strings.HasPrefix(l.Text, "chaos worker starting")
		}
	}
	lines := waitLogLine(t, h, "greeter", "first start line", isStartLine(oldPid))
	next := lines[len(lines)-1].Seq

	type followed struct {
		lines []api.LogLine
		err   error
	}
	done := make(chan followed, 1)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	go func() {
		var got []api.LogLine
		after := next
		for {
			res, err := h.d.WaitLogs(ctx, "greeter", after)
			if err != nil {
				done <- followed{got, err}
				return
			}
			if res.Skipped > 0 {
				done <- followed{got, fmt.Errorf("the follower skipped %d lines", res.Skipped)}
				return
			}
			got = append(got, res.Lines...)
			after = res.Next
			for _, l := range res.Lines {
				if l.PID != oldPid && l.Level == "info" && strings.HasPrefix(l.Text, "chaos worker starting") {
					done <- followed{got, nil}
					return
				}
			}
		}
	}()
	if err := syscall.Kill(oldPid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	newPid := h.waitStarted("greeter")
	f := <-done
	if f.err != nil {
		t.Fatalf("following greeter: %v; it got:\n%s", f.err, formatLines(f.lines))
	}
	check := func(where string, lines []api.LogLine) {
		t.Helper()
		text := formatLines(lines)
		exitAt := indexOf(lines, func(l api.LogLine) bool {
			return l.Marker == worklog.MarkerExit && l.PID == oldPid && l.Text == "exited: killed by SIGKILL"
		})
		restartAt := indexOf(lines, func(l api.LogLine) bool {
			return l.Marker == worklog.MarkerRestart && l.PID == newPid && l.Text == fmt.Sprintf("restarted, pid %d", newPid)
		})
		newAt := indexOf(lines, isStartLine(newPid))
		if exitAt < 0 || restartAt < exitAt || newAt < restartAt {
			t.Fatalf("%s: want the exit marker of pid %d, the restart marker of pid %d, then its start line:\n%s", where, oldPid, newPid, text)
		}
		for _, l := range lines[:exitAt] {
			if l.PID != oldPid {
				t.Errorf("%s: a line of pid %d before the old instance's exit marker: %+v", where, l.PID, l)
			}
		}
		for _, l := range lines[restartAt:] {
			if l.PID != newPid {
				t.Errorf("%s: a line of pid %d after the restart marker: %+v", where, l.PID, l)
			}
		}
	}
	check("the follower", f.lines)
	all := allLogs(t, h, "greeter").Lines
	if i := indexOf(all, isStartLine(oldPid)); i < 0 || all[0].Marker != worklog.MarkerStart || all[0].PID != oldPid {
		t.Fatalf("the log lost the old instance's lines:\n%s", formatLines(all))
	}
	check("Logs", all)
}

// A worker that panics: its panic line and its stack are in its log after
// it crashed.
func TestWorkerLogsKeepPanic(t *testing.T) {
	h := startHost(t, `worker "doomed" {
  class = "chaos"
  restart = "temporary"
  config {
    mode = "panic"
    delay = "200ms"
    message = "kaboom"
  }
}
`)
	lines := waitLogLine(t, h, "doomed", "exit marker", func(l api.LogLine) bool { return l.Marker == worklog.MarkerExit })
	text := formatLines(lines)
	panicAt := indexOf(lines, func(l api.LogLine) bool { return l.Text == "panic: chaos: kaboom" && l.Level == "" })
	stackAt := indexOf(lines, func(l api.LogLine) bool { return strings.HasPrefix(l.Text, "goroutine ") })
	exitAt := indexOf(lines, func(l api.LogLine) bool { return l.Marker == worklog.MarkerExit })
	if panicAt < 0 || stackAt < panicAt || exitAt < stackAt {
		t.Fatalf("doomed's log lacks its panic line, then its stack, then the exit marker:\n%s", text)
	}
	if got := lines[exitAt].Text; got != "exited with status 2: panic: chaos: kaboom" {
		t.Errorf("exit marker %q", got)
	}
	// Still there once the worker has failed for good.
	h.waitEvent("doomed failed", func(ev supervise.Event) bool {
		e, ok := ev.(supervise.ChildExited)
		return ok && e.Child == "doomed"
	})
	if n := len(allLogs(t, h, "doomed").Lines); n < exitAt+1 {
		t.Errorf("the log shrank to %d lines after the worker ended", n)
	}
}

// host.log_lines bounds the ring: a worker that logs more keeps exactly
// the last log_lines lines.
func TestWorkerLogsLineBound(t *testing.T) {
	const keep = 40
	h := startLeakyHost(t, fmt.Sprintf("  log_lines = %d\n", keep), `worker "spammer" {
  class = "leaky"
  restart = "temporary"
  config {
    secret = "irrelevant-secret"
    spam_bytes = 50000
    spam_line_len = 100
  }
}
`)
	waitLogLine(t, h, "spammer", "spam done", func(l api.LogLine) bool { return strings.HasPrefix(l.Text, "spam done") })
	res := allLogs(t, h, "spammer")
	if len(res.Lines) != keep {
		t.Fatalf("kept %d lines, want %d:\n%s", len(res.Lines), keep, formatLines(res.Lines))
	}
	if res.Next < 500 {
		t.Fatalf("Next = %d: the worker logged fewer than 500 lines", res.Next)
	}
	for i, l := range res.Lines {
		if want := res.Next - keep + 1 + uint64(i); l.Seq != want {
			t.Fatalf("line %d has seq %d, want %d (the last %d lines)", i, l.Seq, want, keep)
		}
	}
	// A follower that was far behind is told what it missed.
	late, err := h.d.WaitLogs(context.Background(), "spammer", 3)
	if err != nil || late.Skipped != res.Next-keep-3 || len(late.Lines) != keep {
		t.Errorf("a follower after seq 3: %d lines, %d skipped, %v; want %d lines, %d skipped", len(late.Lines), late.Skipped, err, keep, res.Next-keep-3)
	}
	// Asking for fewer lines gives the last ones.
	few, err := h.d.Logs(context.Background(), control.LogsQuery{Name: "spammer", Lines: 5})
	if err != nil || len(few.Lines) != 5 || few.Lines[4].Seq != res.Next {
		t.Errorf("Logs of 5 lines = %+v, %v", few, err)
	}
}

// A stopped worker's log stays readable; a worker of the same name started
// later continues it with a start marker; names the host has no log of are
// not found, naming the worker.
func TestWorkerLogsAfterStop(t *testing.T) {
	h := startHost(t, "")
	ctx := context.Background()
	spec := control.WorkerSpec{Name: "dyn", Class: "chaos", Config: json.RawMessage(`{}`)}
	if _, err := h.d.StartWorker(ctx, spec); err != nil {
		t.Fatal(err)
	}
	first := h.waitStarted("dyn")
	waitLogLine(t, h, "dyn", "start line", func(l api.LogLine) bool { return strings.HasPrefix(l.Text, "chaos worker starting") })
	if err := h.d.StopWorker(ctx, "dyn"); err != nil {
		t.Fatal(err)
	}
	lines := allLogs(t, h, "dyn").Lines
	if last := lines[len(lines)-1]; last.Marker != worklog.MarkerExit || last.Text != "stopped" || last.PID != first {
		t.Fatalf("the stopped worker's log ends with %+v, want its exit marker \"stopped\"", last)
	}
	if n := h.d.Sizes()["worker_logs"]; n != 0 {
		t.Errorf("worker_logs = %d after the only worker stopped, want 0", n)
	}
	if _, err := h.d.StartWorker(ctx, spec); err != nil {
		t.Fatal(err)
	}
	second := h.waitStarted("dyn")
	lines = waitLogLine(t, h, "dyn", "second start line", func(l api.LogLine) bool {
		return l.PID == second && strings.HasPrefix(l.Text, "chaos worker starting")
	})
	stopAt := indexOf(lines, func(l api.LogLine) bool { return l.Marker == worklog.MarkerExit && l.PID == first })
	startAt := indexOf(lines, func(l api.LogLine) bool { return l.Marker == worklog.MarkerStart && l.PID == second })
	if stopAt < 0 || startAt != stopAt+1 {
		t.Fatalf("want the first worker's lines, its exit marker, then the new worker's start marker:\n%s", formatLines(lines))
	}

	for _, name := range []string{"nobody", ""} {
		_, err := h.d.Logs(ctx, control.LogsQuery{Name: name, Lines: 10})
		var ce *control.Error
		if !errors.As(err, &ce) || ce.Code != control.CodeNotFound || !strings.Contains(ce.Message, fmt.Sprintf("%q", name)) {
			t.Errorf("Logs(%q) = %v; want not_found naming it", name, err)
		}
		if _, err := h.d.WaitLogs(ctx, name, 0); !errors.As(err, &ce) || ce.Code != control.CodeNotFound {
			t.Errorf("WaitLogs(%q) = %v; want not_found", name, err)
		}
	}
	// An after beyond the log's end is a follower of an older log of the
	// name: it gets the lines from the start, at once.
	wctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	next := allLogs(t, h, "dyn").Next
	if res, err := h.d.WaitLogs(wctx, "dyn", next+1000); err != nil || len(res.Lines) == 0 || res.Lines[0].Seq != 1 {
		t.Errorf("WaitLogs after the end = %d lines, %v; want the log from its start", len(res.Lines), err)
	}
}

// log_lines and log_files are host settings: a reload reports their
// changes as ignored until the host restarts.
func TestWorkerLogSettingsNeedRestart(t *testing.T) {
	a := &config.Config{Host: config.HostConfig{LogLines: 1000}}
	for _, b := range []*config.Config{
		{Host: config.HostConfig{LogLines: 50}},
		{Host: config.HostConfig{LogLines: 1000, LogFiles: &config.LogFilesConfig{Dir: "/x", MaxSize: 1 << 20, Backups: 1}}},
	} {
		got := ignoredChanges(a, b)
		if len(got) != 1 || got[0] != "host" {
			t.Errorf("ignoredChanges(%+v) = %v, want [host]", b.Host, got)
		}
	}
}

// A hybrid's child has a log of its own under its global name; when its
// owner crashes, the child is stopped and removed, and the owner's next
// instance starts it again: its log keeps the old child's lines and goes
// on with the new child's, after a start marker.
func TestWorkerLogsOfHybridChild(t *testing.T) {
	h := startPoolHost(t, `
worker "pool-b" {
  class = "dynworkers.pool"
  config {
    class = "chaos"
    size  = 1
  }
}
`)
	pool := h.waitStarted("pool-b")
	child := h.waitStarted("pool-b.1")
	waitLogLine(t, h, "pool-b.1", "the child's start line", func(l api.LogLine) bool {
		return l.PID == child && strings.HasPrefix(l.Text, "chaos worker starting")
	})
	if err := syscall.Kill(pool, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	h.waitStarted("pool-b")
	newChild := h.waitStarted("pool-b.1")
	lines := waitLogLine(t, h, "pool-b.1", "the new child's start line", func(l api.LogLine) bool {
		return l.PID == newChild && strings.HasPrefix(l.Text, "chaos worker starting")
	})
	text := formatLines(lines)
	oldAt := indexOf(lines, func(l api.LogLine) bool { return l.PID == child && strings.HasPrefix(l.Text, "chaos worker starting") })
	exitAt := indexOf(lines, func(l api.LogLine) bool { return l.Marker == worklog.MarkerExit && l.PID == child })
	startAt := indexOf(lines, func(l api.LogLine) bool { return l.Marker == worklog.MarkerStart && l.PID == newChild })
	if oldAt < 0 || exitAt < oldAt || startAt < exitAt {
		t.Fatalf("want the old child's lines, its exit marker, then the new child's start marker:\n%s", text)
	}
	// The pool's own log is another one.
	for _, l := range allLogs(t, h, "pool-b").Lines {
		if l.PID == child || l.PID == newChild {
			t.Fatalf("a child's line in its owner's log: %+v", l)
		}
	}
}

// A cluster worker's log is on the host that runs it: the other host's
// not_found says which host that is (from its cluster cache). Once the
// worker is stopped (a removal), its host still has its log.
func TestWorkerLogsOfClusterWorker(t *testing.T) {
	h1, h2 := twoZoneHosts(t)
	ctx := context.Background()
	r, err := h2.d.StartWorker(ctx, control.WorkerSpec{Name: "cw", Class: "chaos", Cluster: true, Constraints: map[string]string{"zone": "a"}})
	if err != nil || r.Host != "h1" {
		t.Fatalf("start = %+v, %v; want cw on h1", r, err)
	}
	waitLogLine(t, h1, "cw", "start line", func(l api.LogLine) bool {
		return l.PID == r.Pid && strings.HasPrefix(l.Text, "chaos worker starting")
	})
	var msg string
	waitFor(t, "h2 naming h1 for cw's log", waitTimeout, func() bool {
		_, err := h2.d.Logs(ctx, control.LogsQuery{Name: "cw", Lines: 10})
		var ce *control.Error
		if !errors.As(err, &ce) || ce.Code != control.CodeNotFound {
			t.Fatalf("h2's Logs(cw) = %v, want not_found", err)
		}
		msg = ce.Message
		return strings.Contains(msg, `runs on host "h1"`)
	})
	if !strings.Contains(msg, `worker "cw"`) {
		t.Errorf("h2's not_found does not name the worker: %s", msg)
	}
	if err := h2.d.StopWorker(ctx, "cw"); err != nil {
		t.Fatal(err)
	}
	lines := allLogs(t, h1, "cw").Lines
	if last := lines[len(lines)-1]; last.Marker != worklog.MarkerExit || last.PID != r.Pid {
		t.Errorf("h1's log of the stopped cw ends with %+v, want its exit marker", last)
	}
	if n := h1.d.Sizes()["worker_logs"]; n != 0 {
		t.Errorf("h1 keeps %d live worker logs after cw stopped, want 0", n)
	}
}
