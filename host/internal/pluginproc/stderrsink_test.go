package pluginproc

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/dynworkers/dynworkers/host/internal/scrub"
	"github.com/dynworkers/dynworkers/host/internal/worklog"
)

func newTestSink(limit LogLimit, s *scrub.Scrubber) (*stderrSink, *bytes.Buffer, *time.Time) {
	var buf bytes.Buffer
	out := hclog.New(&hclog.LoggerOptions{Output: &buf, Level: hclog.Debug})
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	k := &stderrSink{tail: newStderrTail(), out: out, now: func() time.Time { return now }}
	k.scrubber.Store(s)
	k.setLimit(limit)
	return k, &buf, &now
}

// write feeds lines as go-plugin does: the line, then its newline.
func write(k *stderrSink, lines ...string) {
	for _, l := range lines {
		k.Write([]byte(l))
		k.Write([]byte("\n"))
	}
}

func TestStderrSinkScrubs(t *testing.T) {
	k, buf, _ := newTestSink(LogLimit{LineMax: 300}, scrub.New("s3cr3t-pw", "42"))
	write(k,
		`{"@level":"warn","@message":"bind with s3cr3t-pw","@timestamp":"2026-01-01T00:00:00.000000Z","pin":"42","url":"x://u:s3cr3t-pw@h"}`,
		`{"@level":"trace","@message":"below the level s3cr3t-pw"}`,
		"plain s3cr3t-pw line",
		"panic: lost s3cr3t-pw",
		`{"@level":"error","@message":"bad pin","error":"42"}`,
		strings.Repeat("a", 295)+" s3cr3t-pw and more",
	)
	k.flush()
	got := buf.String()
	for _, want := range []string{
		`[WARN]  bind with (sensitive): pin="(sensitive)" url="x://u:(sensitive)@h"`,
		"[DEBUG] plain (sensitive) line",
		"[ERROR] panic: lost (sensitive)",
		"[ERROR] " + strings.Repeat("a", 295) + "  [... 14 bytes cut]",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("log lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "s3cr") || strings.Contains(got, "below the level") {
		t.Errorf("log:\n%s", got)
	}
	tail := k.tail.String()
	if strings.Contains(tail, "s3cr") || !strings.Contains(tail, "panic: lost (sensitive)") || !strings.Contains(tail, `"error":"(sensitive)"`) {
		t.Errorf("tail:\n%s", tail)
	}
}

func TestStderrSinkRateLimit(t *testing.T) {
	k, buf, now := newTestSink(LogLimit{BytesPerSecond: 1000, LinesPerSecond: 10}, nil)
	line := strings.Repeat("y", 9) // 9 bytes
	// The burst: 4 s of 10 lines/s = 40 lines; the rest of 100 is dropped.
	for i := range 100 {
		write(k, fmt.Sprintf("%s%03d", line, i))
	}
	if n := strings.Count(buf.String(), line); n != 40 {
		t.Errorf("%d lines kept of a burst of 100, want 40", n)
	}
	if strings.Contains(buf.String(), "dropped") {
		t.Error("a summary before its interval")
	}
	// 2 s later: 20 lines more are allowed, and the drops are counted once.
	*now = now.Add(2 * time.Second)
	for i := range 30 {
		write(k, fmt.Sprintf("%s%03d", line, 100+i))
	}
	got := buf.String()
	if n := strings.Count(got, line); n != 60 {
		t.Errorf("%d lines kept, want 60", n)
	}
	if !strings.Contains(got, "dropped 60 lines (720 bytes) of the plugin's log over the log rate limit") {
		t.Errorf("no summary of the first 60 drops:\n%s", got)
	}
	k.flush()
	if !strings.Contains(buf.String(), "dropped 10 lines (120 bytes)") {
		t.Errorf("flush did not count the last drops:\n%s", buf.String())
	}
	// The tail saw every line, dropped or not.
	if !strings.Contains(k.tail.String(), line+"129") {
		t.Errorf("tail lacks the last line:\n%s", k.tail.String())
	}
}

func TestStderrSinkUnlimited(t *testing.T) {
	k, buf, _ := newTestSink(LogLimit{BytesPerSecond: -1, LinesPerSecond: -1}, nil)
	for i := range 5000 {
		write(k, fmt.Sprintf("line %d", i))
	}
	if n := strings.Count(buf.String(), "line "); n != 5000 {
		t.Errorf("%d lines, want all 5000", n)
	}
}

// logTexts returns the lines of a worker log as "level|marker|text".
func logTexts(l *worklog.Log) []string {
	var out []string
	for _, line := range l.Lines(worklog.Query{}).Lines {
		out = append(out, line.Level+"|"+line.Marker+"|"+line.Text)
	}
	return out
}

func newWorkLog(t *testing.T) *worklog.Log {
	t.Helper()
	s, err := worklog.NewStore(worklog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s.Log("w")
}

func TestStderrSinkFeedsWorkerLog(t *testing.T) {
	// A rate limit of 2 lines: the host's log drops most lines, the
	// worker's log keeps them all.
	k, buf, _ := newTestSink(LogLimit{BytesPerSecond: -1, LinesPerSecond: 1, LineMax: 300}, scrub.New("s3cr3t-pw", "42"))
	l := newWorkLog(t)
	k.begin(l, 77, true)
	write(k,
		`{"@level":"info","@message":"bind with s3cr3t-pw","@timestamp":"2026-01-01T00:00:00.000000Z","pin":"42","url":"x://u:s3cr3t-pw@h","n":3}`,
		`{"@level":"trace","@message":"below the host's level","@timestamp":"2026-01-01T00:00:00.000000Z"}`,
		`{"@level":"error","@message":"bad","error":"two words","obj":{"k":"s3cr3t-pw"}}`,
		`{"not":"hclog"}`,
		"[INFO] plain with a prefix",
		"panic: lost s3cr3t-pw",
		"goroutine 1 [running]:",
		strings.Repeat("a", 295)+" s3cr3t-pw and more",
		`{"@level":"warn","@message":"`+strings.Repeat("b", 300)+`"}`,
	)
	k.flush()
	k.end("exited with status 2: panic: lost (sensitive)")
	want := []string{
		"|start|started, pid 77",
		"info||bind with (sensitive) n=3 pin=(sensitive) url=x://u:(sensitive)@h",
		"trace||below the host's level",
		`error||bad error="two words" obj={"k":"(sensitive)"}`,
		`||{"not":"hclog"}`,
		"||[INFO] plain with a prefix",
		"||panic: lost (sensitive)",
		"||goroutine 1 [running]:",
		"||" + strings.Repeat("a", 295) + "  [... 14 bytes cut]",
		`||{"@level":"warn","@message":"` + strings.Repeat("b", 300-len(`{"@level":"warn","@message":"`)) + " [... 31 bytes cut]",
		"|exit|exited with status 2: panic: lost (sensitive)",
	}
	got := logTexts(l)
	if !slices.Equal(got, want) {
		t.Fatalf("worker log:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, line := range l.Lines(worklog.Query{}).Lines {
		if line.PID != 77 {
			t.Errorf("line %q has pid %d, want 77", line.Text, line.PID)
		}
	}
	if strings.Count(buf.String(), "\n") > 6 {
		t.Errorf("the host's log kept more than its limit:\n%s", buf.String())
	}
}

// Numbers in a plugin's hclog JSON are logged again as the plugin wrote
// them: a seven-digit pid (pid_max is 4194304 on many systems) is not
// turned into float64's 1.003307e+06, nor an id past 2^53 rounded, in the
// host's log, the worker's log or an exit error's summary.
func TestStderrSinkKeepsNumbers(t *testing.T) {
	k, buf, _ := newTestSink(LogLimit{}, scrub.New("s3cr3t-pw", "42"))
	l := newWorkLog(t)
	k.begin(l, 1003307, true)
	write(k,
		`{"@level":"info","@message":"chaos worker starting","@timestamp":"2026-01-01T00:00:00.000000Z","pid":1003307,"id":9007199254740993,"ratio":0.25,"pin":42}`,
		`{"@level":"error","@message":"gone","@timestamp":"2026-01-01T00:00:00.000000Z","error":1003307}`,
		`{"@level":"info","@message":"two objects"} {"x":1}`,
	)
	k.flush()
	got := logTexts(l)
	want := []string{
		"|start|started, pid 1003307",
		"info||chaos worker starting id=9007199254740993 pid=1003307 pin=(sensitive) ratio=0.25",
		"error||gone error=1003307",
		`||{"@level":"info","@message":"two objects"} {"x":1}`,
	}
	if !slices.Equal(got, want) {
		t.Fatalf("worker log:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	host := buf.String()
	for _, w := range []string{"id=9007199254740993", "pid=1003307", "ratio=0.25", `pin="(sensitive)"`, "error=1003307"} {
		if !strings.Contains(host, w) {
			t.Errorf("the host's log lacks %q:\n%s", w, host)
		}
	}
	if strings.Contains(host, "e+06") || strings.Contains(host, "e+15") {
		t.Errorf("the host's log has a number in float64's notation:\n%s", host)
	}
	if msg, ok := hclogError(`{"@level":"error","@message":"gone","error":1003307}`); !ok || msg != "gone: 1003307" {
		t.Errorf("hclogError = %q, %v; want \"gone: 1003307\"", msg, ok)
	}
}

func TestStderrSinkEarlyLines(t *testing.T) {
	t.Run("a launched process's lines before begin come after the marker", func(t *testing.T) {
		k, _, _ := newTestSink(LogLimit{}, nil)
		l := newWorkLog(t)
		write(k, "early 1", "early 2")
		k.begin(l, 5, true)
		write(k, "late")
		want := []string{"|start|started, pid 5", "||early 1", "||early 2", "||late"}
		if got := logTexts(l); !slices.Equal(got, want) {
			t.Fatalf("worker log %q, want %q", got, want)
		}
	})
	t.Run("a spare's lines before it was taken go nowhere", func(t *testing.T) {
		k, _, _ := newTestSink(LogLimit{}, nil)
		l := newWorkLog(t)
		write(k, "spare's line")
		k.begin(l, 6, false)
		write(k, "worker's line")
		want := []string{"|start|started, pid 6", "||worker's line"}
		if got := logTexts(l); !slices.Equal(got, want) {
			t.Fatalf("worker log %q, want %q", got, want)
		}
	})
	t.Run("a process that ended before begin", func(t *testing.T) {
		k, _, _ := newTestSink(LogLimit{}, nil)
		l := newWorkLog(t)
		write(k, "last words")
		k.flush()
		k.end("exited: killed by SIGKILL")
		k.begin(l, 7, true)
		want := []string{"|start|started, pid 7", "||last words", "|exit|exited: killed by SIGKILL"}
		if got := logTexts(l); !slices.Equal(got, want) {
			t.Fatalf("worker log %q, want %q", got, want)
		}
	})
	t.Run("the early lines are bounded", func(t *testing.T) {
		k, _, _ := newTestSink(LogLimit{BytesPerSecond: -1, LinesPerSecond: -1}, nil)
		l := newWorkLog(t)
		for i := range 3 * earlyLinesMax {
			write(k, fmt.Sprintf("early %d", i))
		}
		k.begin(l, 8, true)
		got := logTexts(l)
		if len(got) != earlyLinesMax+1 || got[1] != fmt.Sprintf("||early %d", 2*earlyLinesMax) {
			t.Fatalf("%d lines, the first after the marker %q; want the last %d", len(got), got[1], earlyLinesMax)
		}
	})
	t.Run("no worker log", func(t *testing.T) {
		k, _, _ := newTestSink(LogLimit{}, nil)
		write(k, "early")
		k.begin(nil, 9, true)
		write(k, "late")
		k.flush()
		k.end("stopped")
		if len(k.early) != 0 {
			t.Fatal("a sink without a worker log keeps lines")
		}
	})
}

func TestExitMarkerText(t *testing.T) {
	for _, tc := range []struct {
		final   *ExitError
		stopped bool
		want    string
	}{
		{nil, true, "stopped"},
		{nil, false, "exited with status 0"},
		{&ExitError{Code: -1, Signal: "SIGKILL"}, false, "exited: killed by SIGKILL"},
		{&ExitError{Code: 2, StderrTail: "panic: boom\ngoroutine 1"}, false, "exited with status 2: panic: boom"},
		{&ExitError{Code: -1, Signal: "SIGKILL", Reason: "health check failed 3 times in a row"}, false, "exited: health check failed 3 times in a row: killed by SIGKILL"},
		{&ExitError{Code: -1, Signal: "SIGKILL", Reason: "did not stop within shutdown_timeout (1s)"}, true, "stopped: did not stop within shutdown_timeout (1s): killed by SIGKILL"},
	} {
		if got := exitMarkerText(tc.final, tc.stopped); got != tc.want {
			t.Errorf("exitMarkerText(%+v, %v) = %q, want %q", tc.final, tc.stopped, got, tc.want)
		}
	}
}
