package pluginproc

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/scrub"
	"github.com/dynworkers/dynworkers/host/internal/worklog"
)

// Defaults of LogLimit's zero fields.
const (
	// DefaultLogBytesPerSecond is the rate of a plugin's log output the
	// host re-logs; the bucket holds logBurstSeconds of it.
	DefaultLogBytesPerSecond = 256 << 10
	// DefaultLogLinesPerSecond is the same for lines.
	DefaultLogLinesPerSecond = 1000
	// DefaultLogLineMax is the longest line re-logged; the rest of a longer
	// line is cut.
	DefaultLogLineMax = 16 << 10
	// logBurstSeconds is how many seconds of its rates a plugin may log at
	// once after a quiet spell.
	logBurstSeconds = 4
	// logSummaryEvery spaces the lines that count what was dropped.
	logSummaryEvery = 2 * time.Second
)

// LogLimit bounds how much of a plugin's log output (its stderr, hclog
// lines or plain) the host re-logs in its own log. It does not bound the
// worker's log (Options.Log): every line goes there, the lines this limit
// drops included, since that log is bounded by itself (a ring of the last
// lines, and rotated files; see package worklog). Each process has its
// own bucket: up to logBurstSeconds (4) seconds' worth of both rates at
// once, refilled at the rates. A line over the limit is dropped (it still reaches the stderr tail
// of ExitError), and the drops are counted in one line every 2 s while they
// last, and when the process ends. Zero fields take the defaults; a
// negative rate means unlimited.
type LogLimit struct {
	BytesPerSecond int
	LinesPerSecond int
	// LineMax is the longest line kept, in bytes; the rest of a longer line
	// is cut (and a line cut short is logged as plain text).
	LineMax int
}

func (l LogLimit) withDefaults() LogLimit {
	if l.BytesPerSecond == 0 {
		l.BytesPerSecond = DefaultLogBytesPerSecond
	}
	if l.LinesPerSecond == 0 {
		l.LinesPerSecond = DefaultLogLinesPerSecond
	}
	if l.LineMax <= 0 {
		l.LineMax = DefaultLogLineMax
	}
	return l
}

// stderrSink is the io.Writer go-plugin copies a plugin's stderr to, line by
// line (it re-adds the newlines). It is where the plugin's output enters
// the host: it cuts long lines, scrubs the worker's sensitive values,
// keeps the scrubbed lines in the stderr tail, and re-logs the lines that
// pass the rate limit under the worker's logger, as go-plugin would (hclog
// JSON keeps its level and fields; plain lines get a level from a
// "[LEVEL]" prefix, error from a panic on, else debug). go-plugin's own
// re-logging is switched off (pluginClientLogger), so nothing of the
// plugin is logged before it is scrubbed.
//
// Every line, scrubbed, also goes to the worker's log (begin), whatever
// the rate limit: hclog lines with their level and their message and
// fields as text, other lines as they are (cut as above), with a marker
// where the process began serving the worker and where it ended (end).
type stderrSink struct {
	tail *stderrTail
	out  hclog.Logger // follows a warm spare's retarget
	// scrubber is the worker's; nil until a spare is taken.
	scrubber atomic.Pointer[scrub.Scrubber]
	now      func() time.Time

	mu      sync.Mutex
	limit   LogLimit
	partial []byte
	cut     int // bytes cut from the current line
	inPanic bool
	// the buckets, in bytes and lines, and when they were last refilled
	bytes, lines float64
	refilled     time.Time
	// what was dropped since the last summary, and when that was
	droppedLines, droppedBytes int
	summarized                 time.Time

	// The worker's log (nil: none) and the process's pid, set by begin.
	// Until then the lines are kept in early (see keepEarly); end's
	// marker waits for begin too.
	begun      bool
	wlog       *worklog.Log
	pid        int
	early      []api.LogLine
	earlyBytes int
	ended      bool
	endText    string
}

// Bounds of the lines a sink keeps before it is begun: a process launched
// for a worker writes few lines before its handshake, and a warm spare's
// are thrown away when it is taken.
const (
	earlyLinesMax = 100
	earlyBytesMax = 64 << 10
)

func newStderrSink(tail *stderrTail, out hclog.Logger, s *scrub.Scrubber, limit LogLimit) *stderrSink {
	k := &stderrSink{tail: tail, out: out, now: time.Now}
	k.scrubber.Store(s)
	k.setLimit(limit)
	return k
}

// assign gives the sink the worker's scrubber and limit (a warm spare gets
// them when it is taken).
func (k *stderrSink) assign(s *scrub.Scrubber, limit LogLimit) {
	k.scrubber.Store(s)
	k.setLimit(limit)
}

// begin makes the sink send the lines of process pid to the worker's log
// l (nil: none) from now on, after a start marker (Log.Started). The lines
// it kept until now go there too, after the marker, if keepEarly (a
// process launched for the worker), or nowhere (a warm spare, whose lines
// before it was taken are not the worker's). If the process has ended
// already, its exit marker follows.
func (k *stderrSink) begin(l *worklog.Log, pid int, keepEarly bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.begun {
		return
	}
	k.begun, k.wlog, k.pid = true, l, pid
	early := k.early
	k.early, k.earlyBytes = nil, 0
	if l == nil {
		return
	}
	var at time.Time
	if keepEarly && len(early) > 0 {
		at = early[0].Time // the marker comes first, also in time
	}
	l.Started(pid, at)
	if keepEarly {
		for _, line := range early {
			line.PID = pid
			l.Add(line)
		}
	}
	if k.ended {
		l.Exited(pid, k.endText)
	}
}

// end adds the exit marker saying how the process ended (once, after
// flush: the marker follows the process's last line).
func (k *stderrSink) end(how string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.ended {
		return
	}
	k.ended, k.endText = true, how
	if k.wlog != nil {
		k.wlog.Exited(k.pid, how)
	}
}

// keep sends a scrubbed line to the worker's log, or keeps it until begin.
func (k *stderrSink) keep(level, text string) {
	line := api.LogLine{Level: level, Text: text}
	if k.begun {
		if k.wlog != nil {
			line.PID = k.pid
			k.wlog.Add(line)
		}
		return
	}
	line.Time = k.now()
	k.early = append(k.early, line)
	k.earlyBytes += len(text)
	for len(k.early) > 1 && (len(k.early) > earlyLinesMax || k.earlyBytes > earlyBytesMax) {
		k.earlyBytes -= len(k.early[0].Text)
		k.early[0] = api.LogLine{}
		k.early = k.early[1:]
	}
}

func (k *stderrSink) setLimit(limit LogLimit) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.limit = limit.withDefaults()
	k.bytes = float64(k.limit.BytesPerSecond * logBurstSeconds)
	k.lines = float64(k.limit.LinesPerSecond * logBurstSeconds)
	k.refilled = k.now()
}

func (k *stderrSink) Write(b []byte) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := len(b)
	for len(b) > 0 {
		i := strings.IndexByte(string(b), '\n')
		chunk := b
		if i >= 0 {
			chunk = b[:i]
		}
		if room := k.limit.LineMax - len(k.partial); len(chunk) > room {
			k.partial = append(k.partial, chunk[:max(room, 0)]...)
			k.cut += len(chunk) - max(room, 0)
		} else {
			k.partial = append(k.partial, chunk...)
		}
		if i < 0 {
			break
		}
		k.line(k.partial, k.cut)
		k.partial, k.cut = k.partial[:0], 0
		b = b[i+1:]
	}
	k.summarizeLocked(false)
	return n, nil
}

// flush handles an unfinished last line and counts the last drops; call
// it once the plugin's stderr is closed.
func (k *stderrSink) flush() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.partial) > 0 || k.cut > 0 {
		k.line(k.partial, k.cut)
		k.partial, k.cut = k.partial[:0], 0
	}
	k.summarizeLocked(true)
}

// line handles one line of stderr, cut bytes shorter than the plugin wrote.
func (k *stderrSink) line(raw []byte, cut int) {
	s := k.scrubber.Load()
	text := string(raw)
	var clean string
	if cut > 0 {
		clean = s.TrimPartial(text) + fmt.Sprintf(" [... %d bytes cut]", cut)
	} else {
		clean = s.String(text)
	}
	tailLine := clean
	if cut == 0 && !s.Empty() && strings.HasPrefix(text, "{") && strings.Contains(text, `"@level":"error"`) {
		// An error line may become an exit error's summary (tailSummary):
		// scrub it as fields, so that a short value that is a whole field
		// is replaced too.
		if entry, ok := decodeJSONObject(raw); ok {
			if b, err := json.Marshal(s.Value(entry)); err == nil {
				tailLine = string(b)
			}
		}
	}
	if len(tailLine) > tailLineMax {
		k.tail.add(s.TrimPartial(tailLine[:tailLineMax]))
	} else {
		k.tail.add(tailLine)
	}
	// Every line goes to the worker's log, before the rate limit.
	var (
		lvl     hclog.Level
		msg     string
		args    []any
		isHCLog bool
	)
	if cut == 0 && strings.HasPrefix(text, "{") {
		lvl, msg, args, isHCLog = parseHCLogJSON(raw)
	}
	if isHCLog && lvl != hclog.NoLevel {
		// Without the plugin's timestamp: the line has its own time.
		fields := args
		if n := len(fields); n >= 2 && fields[n-2] == "timestamp" {
			fields = fields[:n-2]
		}
		// Scrubbed as the host's log scrubs them, and the text once more
		// as a whole.
		k.keep(lvl.String(), s.String(s.String(msg)+worklog.FormatFields(s.Args(fields))))
	} else {
		k.keep("", clean)
	}
	if !k.allow(len(raw) + cut) {
		return
	}
	if strings.HasPrefix(text, "panic: ") || strings.HasPrefix(text, "fatal error: ") {
		k.inPanic = true
	}
	if isHCLog {
		if lvl == hclog.NoLevel {
			k.out.Debug(clean) // JSON but not hclog's: as is
			return
		}
		if lvl < k.out.GetLevel() {
			return
		}
		k.out.Log(lvl, s.String(msg), s.Args(args)...)
		return
	}
	switch {
	case strings.HasPrefix(text, "[TRACE]"):
		k.out.Trace(clean)
	case strings.HasPrefix(text, "[DEBUG]"):
		k.out.Debug(clean)
	case strings.HasPrefix(text, "[INFO]"):
		k.out.Info(clean)
	case strings.HasPrefix(text, "[WARN]"):
		k.out.Warn(clean)
	case strings.HasPrefix(text, "[ERROR]"), k.inPanic:
		k.out.Error(clean)
	default:
		k.out.Debug(clean)
	}
}

// allow takes n bytes and a line from the buckets, or counts them as
// dropped.
func (k *stderrSink) allow(n int) bool {
	l := k.limit
	now := k.now()
	if el := now.Sub(k.refilled).Seconds(); el > 0 {
		k.bytes = min(k.bytes+el*float64(l.BytesPerSecond), float64(l.BytesPerSecond*logBurstSeconds))
		k.lines = min(k.lines+el*float64(l.LinesPerSecond), float64(l.LinesPerSecond*logBurstSeconds))
		k.refilled = now
	}
	okBytes := l.BytesPerSecond < 0 || k.bytes >= float64(n)
	okLines := l.LinesPerSecond < 0 || k.lines >= 1
	if okBytes && okLines {
		if l.BytesPerSecond >= 0 {
			k.bytes -= float64(n)
		}
		if l.LinesPerSecond >= 0 {
			k.lines--
		}
		return true
	}
	if k.droppedLines == 0 && k.summarized.IsZero() {
		k.summarized = now // the first drop starts the interval
	}
	k.droppedLines++
	k.droppedBytes += n
	return false
}

// summarizeLocked logs how much was dropped, once per logSummaryEvery (or
// now, if final).
func (k *stderrSink) summarizeLocked(final bool) {
	if k.droppedLines == 0 {
		return
	}
	now := k.now()
	if !final && now.Sub(k.summarized) < logSummaryEvery {
		return
	}
	k.out.Warn(fmt.Sprintf("dropped %d lines (%d bytes) of the plugin's log over the log rate limit", k.droppedLines, k.droppedBytes),
		"limit_bytes_per_second", k.limit.BytesPerSecond, "limit_lines_per_second", k.limit.LinesPerSecond)
	k.droppedLines, k.droppedBytes = 0, 0
	k.summarized = now
}

// parseHCLogJSON decodes a line hclog wrote in JSON: its level (NoLevel
// when the line is JSON without hclog's @level), message and fields
// (sorted by name, with the plugin's "timestamp" last, as go-plugin
// re-logs them).
func parseHCLogJSON(line []byte) (hclog.Level, string, []any, bool) {
	raw, ok := decodeJSONObject(line)
	if !ok {
		return hclog.NoLevel, "", nil, false
	}
	lvlText, _ := raw["@level"].(string)
	msg, _ := raw["@message"].(string)
	ts, _ := raw["@timestamp"].(string)
	for _, k := range []string{"@level", "@message", "@timestamp"} {
		delete(raw, k)
	}
	lvl := hclog.LevelFromString(lvlText)
	args := make([]any, 0, 2*len(raw)+2)
	for _, key := range slices.Sorted(maps.Keys(raw)) {
		args = append(args, key, raw[key])
	}
	if ts != "" {
		if t, err := time.Parse("2006-01-02T15:04:05.000000Z07:00", ts); err == nil {
			args = append(args, "timestamp", t.Format(hclog.TimeFormat))
		}
	}
	return lvl, msg, args, true
}

// decodeJSONObject decodes a line of JSON (an object, or null) keeping its
// numbers as json.Number, the text the plugin wrote: a pid stays 1003307
// rather than float64's 1.003307e+06 when it is logged again, and an
// integer past 2^53 stays exact. It refuses what json.Unmarshal refuses,
// trailing data included.
func decodeJSONObject(line []byte) (map[string]any, bool) {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	var m map[string]any
	if dec.Decode(&m) != nil {
		return nil, false
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, false
	}
	return m, true
}

// pluginClientLogger is the logger go-plugin's client gets: the launch's
// logger, except that the sub-logger go-plugin re-logs the plugin's stderr
// under (Named with the binary's base name) is switched off, so that
// go-plugin neither parses nor logs the plugin's output: the stderrSink does,
// scrubbed and rate-limited.
type pluginClientLogger struct {
	hclog.Logger
	stderrName string
}

var offLogger = hclog.New(&hclog.LoggerOptions{Level: hclog.Off, Output: io.Discard})

func (l pluginClientLogger) Named(name string) hclog.Logger {
	if name == l.stderrName {
		return offLogger
	}
	return l.Logger.Named(name)
}
