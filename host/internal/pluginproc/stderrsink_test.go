package pluginproc

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/dynworkers/dynworkers/host/internal/scrub"
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
