// Package worklog keeps the recent log of each worker: the last lines its
// plugin processes logged (through the SDK or on stderr), across restarts
// of the worker, with a marker line where an instance started or ended, and
// lets followers wait for new lines. Optionally each worker's log is also
// written to a file of its own, rotated by size.
//
// The lines reach it already scrubbed of the worker's sensitive values
// (pluginproc's stderr sink scrubs every line before anything else sees
// it); this package stores what it is given.
//
// # Bounds
//
// Each worker's log keeps its last Options.Lines lines (host.log_lines,
// DefaultLines), and at most Options.Bytes bytes of their text
// (DefaultBytes, 1 MiB), whichever bound is reached first: the oldest lines
// go first. A line longer than the byte bound is cut to it. So 1,000
// workers logging long lines keep at most about 1 GiB of text (about
// 100 MB with lines of 100 bytes), and a worker that logs faster than it is
// read only turns its own log over. Followers are not buffered: a follower
// (Wait) that reads more slowly than the log turns over gets the lines
// still kept and a count of those it missed (api.LogsResult.Skipped).
//
// # Seq and removal
//
// The lines of a worker's log are numbered from 1 (api.LogLine.Seq) across
// the restarts of the worker. A worker removed from the host (Store.Remove:
// stopped, removed by a reload, a hybrid's child stopped, a cluster worker
// moved away) keeps its log readable among the MaxRemoved most recently
// removed ones (at most MaxRemoved times the byte bound more: 100 MiB by
// default). A worker of the same name that starts again continues that
// log: its lines are added after the old worker's, with a "start" marker
// (not "restart") where the new worker's first instance begins, and Seq
// goes on counting, so that a follower of the name carries on with the new
// worker. (A hybrid's children are removed and started again with each
// instance of their owner; their last lines before the owner's crash are
// what an operator wants to read then. The optional file of a name is
// appended to likewise.) A log pushed out of the removed ones is dropped:
// its followers get ErrRemoved, and a later worker of the name starts a new
// log from Seq 1.
//
// # Files
//
// With Options.Files.Dir set, each line is also written to
// Dir/<worker name>.log (created 0600; Dir is created 0700 if missing) as
// text: "<time, RFC 3339 UTC with milliseconds> [LEVEL] text" for a line
// logged through the SDK, "<time> text" for a plain stderr line and
// "<time> --- text ---" for a marker. The file is rotated by size with
// lumberjack (gopkg.in/natefinch/lumberjack.v2): at Files.MaxBytes (rounded
// up to whole MiB, lumberjack's unit) it is renamed to
// <worker name>-<UTC time>.log and a new one begins; Files.Backups rotated
// files are kept. A worker name starting with "." or holding "%" is
// written with those characters %-escaped ("%2E", "%25"), so that no log
// file is hidden and the mapping stays one to one (names cannot hold "/").
// A write that fails is logged (once, until a write succeeds again) and the
// line is still kept in memory. lumberjack starts one goroutine per file,
// which it never ends: the store keeps one file writer per worker name for
// its life, so a name that comes back reuses its writer.
package worklog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/go-hclog"
	"gopkg.in/natefinch/lumberjack.v2"

	"github.com/dynworkers/dynworkers/host/internal/api"
)

// DefaultLines is how many lines a worker's log keeps when Options.Lines
// is 0 (host.log_lines).
const DefaultLines = 1000

// MaxLines bounds Options.Lines.
const MaxLines = 1_000_000

// DefaultBytes bounds the text a worker's log keeps when Options.Bytes is
// 0.
const DefaultBytes = 1 << 20

// MaxRemoved is how many logs of removed workers a Store keeps readable.
const MaxRemoved = 100

// Defaults of Files' zero fields.
const (
	DefaultFileMaxBytes = 10 << 20
	DefaultFileBackups  = 5
)

// The markers of api.LogLine.Marker.
const (
	MarkerStart   = "start"
	MarkerRestart = "restart"
	MarkerExit    = "exit"
)

// ErrRemoved is returned by Wait on a log the store dropped: its worker
// was removed and too many others were removed since (see MaxRemoved).
var ErrRemoved = errors.New("the worker's log is no longer kept (it was removed from the host)")

// Options configures a Store.
type Options struct {
	// Lines is how many lines each worker's log keeps (0: DefaultLines).
	Lines int
	// Bytes bounds the text each worker's log keeps (0: DefaultBytes).
	Bytes int
	// Files, if Files.Dir is set, also writes each worker's log to
	// Dir/<worker name>.log, rotated by size.
	Files Files
	// Logger receives the errors of writing the files (nil: discarded).
	Logger hclog.Logger
}

// Files configures the optional per-worker log files.
type Files struct {
	Dir string
	// MaxBytes is the size at which a file is rotated; Backups how many
	// rotated files are kept. Zero values mean DefaultFileMaxBytes and
	// DefaultFileBackups; MaxBytes is rounded up to whole MiB.
	MaxBytes int64
	Backups  int
}

// Store holds the log of every worker of a host, by the worker's global
// name. Safe for concurrent use.
type Store struct {
	lines, bytes int
	files        Files
	logger       hclog.Logger

	mu      sync.Mutex
	closed  bool
	logs    map[string]*Log // the workers of the host
	removed []*Log          // removed ones, the most recently removed last
	writers map[string]*lumberjack.Logger
}

// NewStore returns an empty Store. With o.Files.Dir set it creates the
// directory (0700) if it is missing.
func NewStore(o Options) (*Store, error) {
	switch {
	case o.Lines < 0 || o.Lines > MaxLines:
		return nil, fmt.Errorf("worker log lines %d: must be from 1 to %d (0 for the default, %d)", o.Lines, MaxLines, DefaultLines)
	case o.Bytes < 0:
		return nil, fmt.Errorf("worker log bytes %d: must not be negative", o.Bytes)
	case o.Files.MaxBytes < 0:
		return nil, fmt.Errorf("worker log files: max size %d: must not be negative", o.Files.MaxBytes)
	case o.Files.Backups < 0:
		return nil, fmt.Errorf("worker log files: backups %d: must not be negative", o.Files.Backups)
	}
	s := &Store{lines: o.Lines, bytes: o.Bytes, files: o.Files, logger: o.Logger,
		logs: map[string]*Log{}, writers: map[string]*lumberjack.Logger{}}
	if s.lines == 0 {
		s.lines = DefaultLines
	}
	if s.bytes == 0 {
		s.bytes = DefaultBytes
	}
	if s.files.MaxBytes == 0 {
		s.files.MaxBytes = DefaultFileMaxBytes
	}
	if s.files.Backups == 0 {
		s.files.Backups = DefaultFileBackups
	}
	if s.logger == nil {
		s.logger = hclog.NewNullLogger()
	}
	if dir := s.files.Dir; dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("worker log files: creating the directory: %w", err)
		}
		if st, err := os.Stat(dir); err != nil {
			return nil, fmt.Errorf("worker log files: %w", err)
		} else if !st.IsDir() {
			return nil, fmt.Errorf("worker log files: %s is not a directory", dir)
		}
	}
	return s, nil
}

// FileName is the name of worker name's log file in Files.Dir: the name
// with a leading "." and every "%" %-escaped, and ".log".
func FileName(name string) string {
	name = strings.ReplaceAll(name, "%", "%25")
	if strings.HasPrefix(name, ".") {
		name = "%2E" + name[1:]
	}
	return name + ".log"
}

// Log returns worker name's log, creating it if there is none. The log of
// a removed worker (see Remove) is the name's log again: the new worker's
// lines continue it.
func (s *Store) Log(name string) *Log {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.logs[name]; l != nil {
		return l
	}
	for i, l := range s.removed {
		if l.name == name {
			s.removed = append(s.removed[:i], s.removed[i+1:]...)
			s.logs[name] = l
			l.mu.Lock()
			l.instances = 0 // a new worker: its first instance is a "start"
			l.mu.Unlock()
			return l
		}
	}
	l := &Log{name: name, max: s.lines, maxBytes: s.bytes, logger: s.logger}
	if s.files.Dir != "" && !s.closed {
		w := s.writers[name]
		if w == nil {
			w = &lumberjack.Logger{
				Filename:   filepath.Join(s.files.Dir, FileName(name)),
				MaxSize:    int((s.files.MaxBytes + 1<<20 - 1) >> 20),
				MaxBackups: s.files.Backups,
			}
			s.writers[name] = w
		}
		l.file = w
	}
	s.logs[name] = l
	return l
}

// Lookup returns worker name's log, if the store has one (also for a
// worker removed lately: see Remove).
func (s *Store) Lookup(name string) (*Log, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.logs[name]; l != nil {
		return l, true
	}
	for _, l := range s.removed {
		if l.name == name {
			return l, true
		}
	}
	return nil, false
}

// Remove marks worker name as removed from the host: its log is kept for
// a while (among the most recently removed ones) so that it can still be
// read, and dropped when the name is reused or too many were removed since.
//
// (A name reused while its log is kept continues that log: see the
// package documentation.)
func (s *Store) Remove(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.logs[name]
	if l == nil {
		return
	}
	delete(s.logs, name)
	s.removed = append(s.removed, l)
	if len(s.removed) > MaxRemoved {
		old := s.removed[0]
		s.removed = append(s.removed[:0], s.removed[1:]...)
		old.drop()
	}
}

// Len returns how many logs the store keeps: of the host's workers, and of
// removed ones.
func (s *Store) Len() (live, removed int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.logs), len(s.removed)
}

// Close closes the log files; lines added later are kept in memory only.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	for _, l := range s.logs {
		l.detachFile()
	}
	for _, l := range s.removed {
		l.detachFile()
	}
	var errs []error
	for name, w := range s.writers {
		if err := w.Close(); err != nil {
			errs = append(errs, fmt.Errorf("closing the log file of %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// Log is one worker's log.
type Log struct {
	name     string
	max      int // lines
	maxBytes int
	logger   hclog.Logger

	mu sync.Mutex
	// buf is a ring of the kept lines: n of them from head on, grown up
	// to max as lines come.
	buf     []api.LogLine
	head, n int
	bytes   int    // of the kept lines' text
	seq     uint64 // the last line's
	// instances counts the instances of the worker that started (Started)
	// since the log was made or its name reused.
	instances int
	// wake is closed by the next Add; nil while no one waits.
	wake    chan struct{}
	dropped bool
	file    *lumberjack.Logger // nil: no file
	failing bool               // the last write to the file failed
}

// Add appends a line; it sets line.Seq, and line.Time when it is zero.
func (l *Log) Add(line api.LogLine) {
	if line.Time.IsZero() {
		line.Time = time.Now()
	}
	if len(line.Text) > l.maxBytes {
		line.Text = cutUTF8(line.Text, l.maxBytes)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	line.Seq = l.seq
	l.push(line)
	for l.n > 1 && l.bytes > l.maxBytes {
		l.evict()
	}
	l.write(line)
	if l.wake != nil {
		close(l.wake)
		l.wake = nil
	}
}

// Started adds the marker of an instance of the worker that starts serving
// it in process pid, dated at (zero: now): MarkerStart for the first
// instance of the worker, MarkerRestart for the later ones.
func (l *Log) Started(pid int, at time.Time) {
	l.mu.Lock()
	l.instances++
	first := l.instances == 1
	l.mu.Unlock()
	if first {
		l.Add(api.LogLine{Time: at, PID: pid, Marker: MarkerStart, Text: fmt.Sprintf("started, pid %d", pid)})
	} else {
		l.Add(api.LogLine{Time: at, PID: pid, Marker: MarkerRestart, Text: fmt.Sprintf("restarted, pid %d", pid)})
	}
}

// Exited adds the MarkerExit marker of process pid, saying how it ended
// (such as "exited: killed by SIGKILL" or "stopped").
func (l *Log) Exited(pid int, how string) {
	l.Add(api.LogLine{PID: pid, Marker: MarkerExit, Text: how})
}

// push appends line to the ring, evicting the oldest line when it holds
// max lines.
func (l *Log) push(line api.LogLine) {
	if l.n == l.max {
		l.evict()
	}
	if l.n == len(l.buf) {
		grown := make([]api.LogLine, min(max(2*len(l.buf), 16), l.max))
		for i := range l.n {
			grown[i] = l.buf[(l.head+i)%len(l.buf)]
		}
		l.buf, l.head = grown, 0
	}
	l.buf[(l.head+l.n)%len(l.buf)] = line
	l.n++
	l.bytes += len(line.Text)
}

// evict drops the oldest kept line.
func (l *Log) evict() {
	l.bytes -= len(l.buf[l.head].Text)
	l.buf[l.head] = api.LogLine{}
	l.head = (l.head + 1) % len(l.buf)
	l.n--
}

// at returns the i-th kept line, oldest first.
func (l *Log) at(i int) api.LogLine { return l.buf[(l.head+i)%len(l.buf)] }

// write writes line to the log's file, if it has one.
func (l *Log) write(line api.LogLine) {
	if l.file == nil {
		return
	}
	_, err := l.file.Write([]byte(FormatLine(line) + "\n"))
	switch {
	case err != nil && !l.failing:
		l.failing = true
		l.logger.Error("writing a worker's log file failed; its lines are kept in memory only until a write succeeds",
			"worker", l.name, "file", l.file.Filename, "error", err)
	case err == nil && l.failing:
		l.failing = false
		l.logger.Info("writing a worker's log file works again", "worker", l.name, "file", l.file.Filename)
	}
}

func (l *Log) detachFile() {
	l.mu.Lock()
	l.file = nil
	l.mu.Unlock()
}

// drop marks the log as dropped from its store and wakes its followers.
func (l *Log) drop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.dropped = true
	l.file = nil
	if l.wake != nil {
		close(l.wake)
		l.wake = nil
	}
}

// FormatLine is the text form of a line, as the log files hold it:
// "<time> [LEVEL] text" for a line logged through the SDK, "<time> text"
// for a plain one, "<time> --- text ---" for a marker; the time in UTC,
// RFC 3339 with milliseconds. Newlines in the text are written as "\n".
func FormatLine(line api.LogLine) string {
	var b strings.Builder
	b.WriteString(line.Time.UTC().Format("2006-01-02T15:04:05.000Z07:00"))
	b.WriteByte(' ')
	text := strings.ReplaceAll(line.Text, "\n", `\n`)
	switch {
	case line.Marker != "":
		b.WriteString("--- " + text + " ---")
	case line.Level != "":
		b.WriteString("[" + strings.ToUpper(line.Level) + "] " + text)
	default:
		b.WriteString(text)
	}
	return b.String()
}

// Query selects lines of a log.
type Query struct {
	Lines int       // at most this many of the last lines; 0: all kept
	Since time.Time // zero: no limit
	After uint64    // only lines with a greater Seq
}

// Lines returns the kept lines q selects, oldest first, as a LogsResult
// (Worker left for the caller). Next is the Seq of the log's last line.
// Skipped counts the lines after q.After that are no longer kept (0 when
// q.After is 0). An After beyond the log's last line (the follower of a
// log that was dropped and started anew) counts as 0.
func (l *Log) Lines(q Query) api.LogsResult {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.linesLocked(q)
}

func (l *Log) linesLocked(q Query) api.LogsResult {
	res := api.LogsResult{Lines: []api.LogLine{}, Next: l.seq}
	after := q.After
	if after > l.seq {
		after = 0
	}
	if l.n == 0 {
		return res
	}
	first := l.seq - uint64(l.n) + 1 // the first kept line's Seq
	from := 0
	switch {
	case after >= first:
		from = int(after - first + 1)
	case after > 0 && first > after+1:
		res.Skipped = first - after - 1
	}
	for i := from; i < l.n; i++ {
		line := l.at(i)
		if !q.Since.IsZero() && line.Time.Before(q.Since) {
			continue
		}
		res.Lines = append(res.Lines, line)
	}
	if q.Lines > 0 && len(res.Lines) > q.Lines {
		res.Lines = append([]api.LogLine{}, res.Lines[len(res.Lines)-q.Lines:]...)
	}
	return res
}

// Wait blocks until the log has lines after seq after, or ctx is done,
// and returns them (ctx's error when it is done first). As with Lines, an
// after beyond the log's last line counts as 0, and Skipped counts the
// lines after it no longer kept. A log dropped from its store (see
// MaxRemoved) returns ErrRemoved.
func (l *Log) Wait(ctx context.Context, after uint64) (api.LogsResult, error) {
	for {
		l.mu.Lock()
		if l.dropped {
			l.mu.Unlock()
			return api.LogsResult{Lines: []api.LogLine{}}, ErrRemoved
		}
		a := after
		if a > l.seq {
			a = 0
		}
		if l.seq > a {
			res := l.linesLocked(Query{After: a})
			l.mu.Unlock()
			return res, nil
		}
		if l.wake == nil {
			l.wake = make(chan struct{})
		}
		wake := l.wake
		next := l.seq
		l.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return api.LogsResult{Lines: []api.LogLine{}, Next: next}, ctx.Err()
		}
	}
}

// cutUTF8 cuts s to at most n bytes, not inside a character.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// FormatFields formats the fields of a line logged through the SDK as
// " key=value" pairs, as the host's own log shows them: a value with a
// space, a quote, "=" or a control character, or an empty one, is quoted;
// a JSON object or array is written as JSON.
func FormatFields(args []any) string {
	var b strings.Builder
	for i := 0; i+1 < len(args); i += 2 {
		b.WriteByte(' ')
		b.WriteString(fmt.Sprint(args[i]))
		b.WriteByte('=')
		b.WriteString(fieldValue(args[i+1]))
	}
	return b.String()
}

func fieldValue(v any) string {
	var s string
	switch x := v.(type) {
	case string:
		s = x
	case nil:
		return "<nil>"
	case map[string]any, []any:
		// As JSON, which delimits itself.
		if b, err := json.Marshal(x); err == nil {
			return string(b)
		}
		s = fmt.Sprint(x)
	default:
		s = fmt.Sprint(x)
	}
	if s == "" || strings.ContainsFunc(s, func(r rune) bool {
		return r == ' ' || r == '"' || r == '=' || r < 0x20 || r == 0x7f
	}) {
		return strconv.Quote(s)
	}
	return s
}
