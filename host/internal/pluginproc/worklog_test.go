package pluginproc

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/worklog"
)

// waitLogLine waits until the worker log has a line that match accepts,
// and returns the log's lines then.
func waitLogLine(t *testing.T, l *worklog.Log, what string, match func(api.LogLine) bool) []api.LogLine {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var after uint64
	for {
		all := l.Lines(worklog.Query{}).Lines
		for _, line := range all {
			if line.Seq > after && match(line) {
				return all
			}
		}
		if len(all) > 0 {
			after = all[len(all)-1].Seq
		}
		if _, err := l.Wait(ctx, after); err != nil {
			t.Fatalf("the worker log has no %s within 20s: %v; it has:\n%s", what, err, formatLog(all))
		}
	}
}

func formatLog(lines []api.LogLine) string {
	var b strings.Builder
	for _, l := range lines {
		fmt.Fprintf(&b, "%d pid=%d %s\n", l.Seq, l.PID, worklog.FormatLine(l))
	}
	return b.String()
}

// TestWorkerLogAcrossRestart: a worker's log holds its lines with a start
// marker; after a SIGKILL an exit marker; the next instance, taken from a
// warm spare, a restart marker with its pid and its own lines (and none
// the spare wrote before it was taken).
func TestWorkerLogAcrossRestart(t *testing.T) {
	launchLog(t)
	store, err := worklog.NewStore(worklog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	l := store.Log("w")
	s, _ := newSpares(t, 1)
	o := chaosOptions(t, map[string]any{})
	o.Spares = s
	o.Log = l
	p := start(t, o)
	lines := waitLogLine(t, l, "start line", func(line api.LogLine) bool {
		return strings.Contains(line.Text, "chaos worker starting")
	})
	if first := lines[0]; first.Marker != worklog.MarkerStart || first.PID != p.Pid() || first.Text != fmt.Sprintf("started, pid %d", p.Pid()) {
		t.Fatalf("the first line is %+v, want the start marker of pid %d", first, p.Pid())
	}
	for _, line := range lines[1:] {
		if strings.Contains(line.Text, "chaos worker starting") && (line.Level != "info" || line.PID != p.Pid()) {
			t.Errorf("the SDK line %+v lacks level info or pid %d", line, p.Pid())
		}
	}
	if err := syscall.Kill(p.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitDone(t, p, 10*time.Second)
	lines = l.Lines(worklog.Query{}).Lines
	if last := lines[len(lines)-1]; last.Marker != worklog.MarkerExit || last.Text != "exited: killed by SIGKILL" || last.PID != p.Pid() {
		t.Fatalf("the last line after the kill is %+v, want the exit marker", last)
	}
	exitSeq := lines[len(lines)-1].Seq

	sp := idleSpares(t, s, o, 1)[0]
	p2 := start(t, o)
	if p2 != sp {
		t.Fatalf("the restart did not take the spare %d (pid %d)", sp.Pid(), p2.Pid())
	}
	lines = waitLogLine(t, l, "restarted instance's start line", func(line api.LogLine) bool {
		return line.PID == p2.Pid() && strings.Contains(line.Text, "chaos worker starting")
	})
	var after []api.LogLine
	for _, line := range lines {
		if line.Seq > exitSeq {
			after = append(after, line)
		}
	}
	if m := after[0]; m.Marker != worklog.MarkerRestart || m.PID != p2.Pid() || m.Text != fmt.Sprintf("restarted, pid %d", p2.Pid()) {
		t.Fatalf("the line after the exit marker is %+v, want the restart marker of pid %d:\n%s", m, p2.Pid(), formatLog(lines))
	}
	for _, line := range after {
		if line.PID != p2.Pid() {
			t.Errorf("a line of another process after the restart marker: %+v", line)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p2.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	lines = l.Lines(worklog.Query{}).Lines
	if last := lines[len(lines)-1]; last.Marker != worklog.MarkerExit || last.Text != "stopped" {
		t.Fatalf("the last line after Stop is %+v, want the exit marker \"stopped\"", last)
	}
}

// TestWorkerLogKeepsPanic: a panic's message and stack are in the worker
// log, before the exit marker that sums the exit up.
func TestWorkerLogKeepsPanic(t *testing.T) {
	store, err := worklog.NewStore(worklog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	l := store.Log("w")
	o := chaosOptions(t, map[string]any{"mode": "panic", "delay": "300ms", "message": "boom"})
	o.Log = l
	p := start(t, o)
	waitDone(t, p, 10*time.Second)
	lines := l.Lines(worklog.Query{}).Lines
	text := formatLog(lines)
	panicAt, stackAt := -1, -1
	for i, line := range lines {
		if line.Text == "panic: chaos: boom" && panicAt < 0 {
			panicAt = i
		}
		if strings.HasPrefix(line.Text, "goroutine ") && stackAt < 0 {
			stackAt = i
		}
	}
	if panicAt < 0 || stackAt < panicAt || lines[panicAt].Level != "" {
		t.Fatalf("no plain panic line followed by its stack:\n%s", text)
	}
	last := lines[len(lines)-1]
	if last.Marker != worklog.MarkerExit || last.Text != "exited with status 2: panic: chaos: boom" {
		t.Fatalf("the last line is %+v, want the exit marker with the panic:\n%s", last, text)
	}
}
