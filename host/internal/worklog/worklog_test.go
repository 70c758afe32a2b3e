package worklog

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/api"
)

func newStore(t *testing.T, o Options) *Store {
	t.Helper()
	s, err := NewStore(o)
	if err != nil {
		t.Fatalf("NewStore: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func addN(l *Log, from, to int) {
	for i := from; i <= to; i++ {
		l.Add(api.LogLine{Text: fmt.Sprintf("line %d", i)})
	}
}

func texts(lines []api.LogLine) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = l.Text
	}
	return out
}

func seqs(lines []api.LogLine) []uint64 {
	out := make([]uint64, len(lines))
	for i, l := range lines {
		out[i] = l.Seq
	}
	return out
}

func seqRange(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

func TestNewStoreRejectsBadOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"negative lines", Options{Lines: -1}, "lines -1"},
		{"too many lines", Options{Lines: MaxLines + 1}, "lines 1000001"},
		{"negative bytes", Options{Bytes: -5}, "bytes -5"},
		{"negative max size", Options{Files: Files{Dir: t.TempDir(), MaxBytes: -1}}, "max size -1"},
		{"negative backups", Options{Files: Files{Dir: t.TempDir(), Backups: -2}}, "backups -2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewStore(tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewStore(%+v) = %v, %v; want an error with %q", tc.o, s, err, tc.want)
			}
		})
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewStore(Options{Files: Files{Dir: file}}); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("NewStore with a file as Dir: %v, want a 'not a directory' error", err)
	}
}

func TestRingBounds(t *testing.T) {
	for _, tc := range []struct {
		name      string
		lines     int
		add       int
		wantFirst uint64
	}{
		{"fewer than the bound", 10, 7, 1},
		{"exactly the bound", 10, 10, 1},
		{"one more", 10, 11, 2},
		{"many times the bound", 10, 105, 96},
		{"one line", 1, 5, 5},
		{"default bound", 0, DefaultLines + 250, 251},
		{"past the ring's first growth", 40, 17, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newStore(t, Options{Lines: tc.lines}).Log("w")
			addN(l, 1, tc.add)
			res := l.Lines(Query{})
			want := seqRange(tc.wantFirst, uint64(tc.add))
			if !slices.Equal(seqs(res.Lines), want) {
				t.Fatalf("kept seqs %v, want %v", seqs(res.Lines), want)
			}
			for _, line := range res.Lines {
				if line.Text != fmt.Sprintf("line %d", line.Seq) {
					t.Fatalf("line %d has text %q", line.Seq, line.Text)
				}
			}
			if res.Next != uint64(tc.add) || res.Skipped != 0 {
				t.Fatalf("Next %d Skipped %d, want %d and 0", res.Next, res.Skipped, tc.add)
			}
		})
	}
}

func TestByteBound(t *testing.T) {
	for _, tc := range []struct {
		name     string
		bytes    int
		textLen  int
		add      int
		wantKept int
		wantLen  int // of each kept line's text
	}{
		{"lines fit", 1000, 10, 50, 50, 10},
		{"bytes bind before lines", 1000, 100, 50, 10, 100},
		{"just over", 1000, 101, 50, 9, 101},
		{"a line longer than the bound is cut and kept alone", 64, 500, 3, 1, 64},
		{"default bound", 0, 16 << 10, 200, DefaultBytes / (16 << 10), 16 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newStore(t, Options{Lines: 100, Bytes: tc.bytes}).Log("w")
			for range tc.add {
				l.Add(api.LogLine{Text: strings.Repeat("x", tc.textLen)})
			}
			res := l.Lines(Query{})
			if len(res.Lines) != tc.wantKept {
				t.Fatalf("kept %d lines, want %d", len(res.Lines), tc.wantKept)
			}
			if got := res.Lines[len(res.Lines)-1].Seq; got != uint64(tc.add) {
				t.Fatalf("last kept seq %d, want %d", got, tc.add)
			}
			total := 0
			for _, line := range res.Lines {
				if len(line.Text) != tc.wantLen {
					t.Fatalf("a kept line is %d bytes, want %d", len(line.Text), tc.wantLen)
				}
				total += len(line.Text)
			}
			bound := tc.bytes
			if bound == 0 {
				bound = DefaultBytes
			}
			if total > bound {
				t.Fatalf("kept %d bytes of text, over the bound %d", total, bound)
			}
		})
	}
}

func TestCutKeepsUTF8(t *testing.T) {
	l := newStore(t, Options{Bytes: 5}).Log("w")
	l.Add(api.LogLine{Text: "abcdé"}) // é is 2 bytes: 6 in all
	got := l.Lines(Query{}).Lines[0].Text
	if got != "abcd" {
		t.Fatalf("cut text %q, want %q", got, "abcd")
	}
}

func TestQuery(t *testing.T) {
	base := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	l := newStore(t, Options{Lines: 10}).Log("w")
	for i := 1; i <= 15; i++ { // keeps 6..15, line i at base+i s
		l.Add(api.LogLine{Time: base.Add(time.Duration(i) * time.Second), Text: fmt.Sprintf("line %d", i)})
	}
	for _, tc := range []struct {
		name        string
		q           Query
		want        []uint64
		wantSkipped uint64
	}{
		{"all kept", Query{}, seqRange(6, 15), 0},
		{"last 3", Query{Lines: 3}, seqRange(13, 15), 0},
		{"more than kept", Query{Lines: 50}, seqRange(6, 15), 0},
		{"after a kept line", Query{After: 11}, seqRange(12, 15), 0},
		{"after the last", Query{After: 15}, nil, 0},
		{"after, with lines no longer kept", Query{After: 2}, seqRange(6, 15), 3},
		{"after the line before the first kept", Query{After: 5}, seqRange(6, 15), 0},
		{"after, last 2", Query{After: 2, Lines: 2}, seqRange(14, 15), 3},
		{"after beyond the log counts as 0", Query{After: 99}, seqRange(6, 15), 0},
		{"since", Query{Since: base.Add(12 * time.Second)}, seqRange(12, 15), 0},
		{"since before all", Query{Since: base}, seqRange(6, 15), 0},
		{"since after all", Query{Since: base.Add(time.Hour)}, nil, 0},
		{"since and lines", Query{Since: base.Add(8 * time.Second), Lines: 2}, seqRange(14, 15), 0},
		{"since and after", Query{Since: base.Add(8 * time.Second), After: 12}, seqRange(13, 15), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := l.Lines(tc.q)
			if !slices.Equal(seqs(res.Lines), tc.want) {
				t.Fatalf("seqs %v, want %v", seqs(res.Lines), tc.want)
			}
			if res.Lines == nil {
				t.Fatal("Lines is nil, want an empty slice (JSON [])")
			}
			if res.Next != 15 || res.Skipped != tc.wantSkipped {
				t.Fatalf("Next %d Skipped %d, want 15 and %d", res.Next, res.Skipped, tc.wantSkipped)
			}
		})
	}
	empty := newStore(t, Options{}).Log("e").Lines(Query{After: 3})
	if empty.Next != 0 || len(empty.Lines) != 0 || empty.Lines == nil {
		t.Fatalf("an empty log's Lines = %+v", empty)
	}
}

func TestAddSetsSeqAndTime(t *testing.T) {
	l := newStore(t, Options{}).Log("w")
	before := time.Now()
	l.Add(api.LogLine{Text: "a", Seq: 77})
	at := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	l.Add(api.LogLine{Text: "b", Time: at, Level: "info", PID: 12})
	got := l.Lines(Query{}).Lines
	if got[0].Seq != 1 || got[1].Seq != 2 {
		t.Fatalf("seqs %d %d, want 1 2 (Add sets them)", got[0].Seq, got[1].Seq)
	}
	if got[0].Time.Before(before) || time.Since(got[0].Time) > time.Minute {
		t.Fatalf("a zero time became %v, want now", got[0].Time)
	}
	if !got[1].Time.Equal(at) || got[1].Level != "info" || got[1].PID != 12 {
		t.Fatalf("second line %+v, want its time, level and pid kept", got[1])
	}
}

func TestMarkers(t *testing.T) {
	s := newStore(t, Options{})
	l := s.Log("w")
	l.Started(10, time.Time{})
	l.Add(api.LogLine{Text: "hello", PID: 10})
	l.Exited(10, "exited: killed by SIGKILL")
	l.Started(11, time.Time{})
	got := l.Lines(Query{}).Lines
	want := []api.LogLine{
		{Seq: 1, PID: 10, Marker: MarkerStart, Text: "started, pid 10"},
		{Seq: 2, PID: 10, Text: "hello"},
		{Seq: 3, PID: 10, Marker: MarkerExit, Text: "exited: killed by SIGKILL"},
		{Seq: 4, PID: 11, Marker: MarkerRestart, Text: "restarted, pid 11"},
	}
	for i := range want {
		got[i].Time = time.Time{}
		if got[i] != want[i] {
			t.Fatalf("line %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestWait(t *testing.T) {
	t.Run("returns at once when there are lines after", func(t *testing.T) {
		l := newStore(t, Options{}).Log("w")
		addN(l, 1, 3)
		res, err := l.Wait(context.Background(), 1)
		if err != nil || !slices.Equal(seqs(res.Lines), []uint64{2, 3}) || res.Next != 3 {
			t.Fatalf("Wait = %+v, %v; want lines 2, 3", res, err)
		}
	})
	t.Run("wakes on Add, every waiter", func(t *testing.T) {
		l := newStore(t, Options{}).Log("w")
		addN(l, 1, 2)
		const waiters = 5
		results := make(chan api.LogsResult, waiters)
		var wg sync.WaitGroup
		for range waiters {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := l.Wait(context.Background(), 2)
				if err != nil {
					t.Errorf("Wait: %v", err)
				}
				results <- res
			}()
		}
		waitWaiting(t, l)
		l.Add(api.LogLine{Text: "line 3"})
		wg.Wait()
		close(results)
		for res := range results {
			if !slices.Equal(texts(res.Lines), []string{"line 3"}) || res.Next != 3 {
				t.Fatalf("a waiter got %+v, want line 3", res)
			}
		}
	})
	t.Run("ctx cancel", func(t *testing.T) {
		l := newStore(t, Options{}).Log("w")
		addN(l, 1, 4)
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() {
			res, err := l.Wait(ctx, 4)
			if len(res.Lines) != 0 || res.Next != 4 {
				t.Errorf("a cancelled Wait returned %+v", res)
			}
			errc <- err
		}()
		waitWaiting(t, l)
		cancel()
		select {
		case err := <-errc:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Wait returned %v, want context.Canceled", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Wait did not return after its ctx was cancelled")
		}
	})
	t.Run("deadline", func(t *testing.T) {
		l := newStore(t, Options{}).Log("w")
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		if _, err := l.Wait(ctx, 0); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Wait on an empty log = %v, want DeadlineExceeded", err)
		}
	})
	t.Run("a slow follower sees Skipped", func(t *testing.T) {
		l := newStore(t, Options{Lines: 5}).Log("w")
		addN(l, 1, 3)
		res, _ := l.Wait(context.Background(), 0)
		next := res.Next // 3
		addN(l, 4, 20)   // keeps 16..20
		res, err := l.Wait(context.Background(), next)
		if err != nil || !slices.Equal(seqs(res.Lines), seqRange(16, 20)) || res.Skipped != 12 {
			t.Fatalf("Wait after 3 = %+v, %v; want 16..20 with 12 skipped", res, err)
		}
	})
	t.Run("after beyond the log counts as 0", func(t *testing.T) {
		l := newStore(t, Options{}).Log("w")
		addN(l, 1, 2)
		res, err := l.Wait(context.Background(), 500)
		if err != nil || !slices.Equal(seqs(res.Lines), []uint64{1, 2}) {
			t.Fatalf("Wait(500) = %+v, %v; want lines 1, 2", res, err)
		}
	})
}

// waitWaiting waits until a follower waits on l (its wake channel is made).
func waitWaiting(t *testing.T, l *Log) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		l.mu.Lock()
		waiting := l.wake != nil
		l.mu.Unlock()
		if waiting {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no follower waits on the log")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestRemoveAndReuse(t *testing.T) {
	s := newStore(t, Options{})
	a := s.Log("a")
	if s.Log("a") != a {
		t.Fatal("Log returned another log for the same name")
	}
	if _, ok := s.Lookup("nobody"); ok {
		t.Fatal("Lookup found a log of a name never used")
	}
	a.Started(1, time.Time{})
	addN(a, 1, 3)
	s.Remove("a")
	if live, removed := s.Len(); live != 0 || removed != 1 {
		t.Fatalf("Len = %d, %d; want 0, 1", live, removed)
	}
	got, ok := s.Lookup("a")
	if !ok || got != a || len(got.Lines(Query{}).Lines) != 4 {
		t.Fatalf("the removed worker's log is not readable: %v %v", got, ok)
	}
	s.Remove("a") // again: no change
	s.Remove("never")

	// A follower of the removed worker's log carries on with the next
	// worker of the name.
	res := make(chan api.LogsResult, 1)
	go func() {
		r, err := a.Wait(context.Background(), 4)
		if err != nil {
			t.Errorf("Wait: %v", err)
		}
		res <- r
	}()
	waitWaiting(t, a)
	again := s.Log("a")
	if again != a {
		t.Fatal("a reused name got a new log; want the removed one continued")
	}
	again.Started(2, time.Time{})
	r := <-res
	if len(r.Lines) != 1 || r.Lines[0].Marker != MarkerStart || r.Lines[0].Seq != 5 || r.Lines[0].Text != "started, pid 2" {
		t.Fatalf("the follower got %+v, want the new worker's start marker, seq 5", r)
	}
	if live, removed := s.Len(); live != 1 || removed != 0 {
		t.Fatalf("Len = %d, %d; want 1, 0", live, removed)
	}
}

func TestRemovedBound(t *testing.T) {
	s := newStore(t, Options{})
	first := s.Log("w0")
	addN(first, 1, 2)
	s.Remove("w0")
	errc := make(chan error, 1)
	go func() {
		_, err := first.Wait(context.Background(), 2)
		errc <- err
	}()
	waitWaiting(t, first)
	for i := range MaxRemoved {
		name := fmt.Sprintf("w%d", i+1)
		s.Log(name).Add(api.LogLine{Text: "x"})
		s.Remove(name)
	}
	if live, removed := s.Len(); live != 0 || removed != MaxRemoved {
		t.Fatalf("Len = %d, %d; want 0, %d", live, removed, MaxRemoved)
	}
	if _, ok := s.Lookup("w0"); ok {
		t.Fatal("the oldest removed log is still kept")
	}
	if _, ok := s.Lookup("w1"); !ok {
		t.Fatal("a recently removed log is gone")
	}
	select {
	case err := <-errc:
		if !errors.Is(err, ErrRemoved) {
			t.Fatalf("the follower of a dropped log got %v, want ErrRemoved", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the follower of a dropped log still waits")
	}
	if _, err := first.Wait(context.Background(), 0); !errors.Is(err, ErrRemoved) {
		t.Fatalf("Wait on a dropped log = %v, want ErrRemoved", err)
	}
	// The name comes back with a new log, from Seq 1.
	l := s.Log("w0")
	if l == first {
		t.Fatal("a dropped log came back")
	}
	l.Add(api.LogLine{Text: "new"})
	if res := l.Lines(Query{}); len(res.Lines) != 1 || res.Lines[0].Seq != 1 {
		t.Fatalf("the new log of w0 = %+v, want one line of seq 1", res)
	}
}

func TestConcurrentAddAndRead(t *testing.T) {
	s := newStore(t, Options{Lines: 50, Files: Files{Dir: t.TempDir()}})
	l := s.Log("w")
	const writers, each = 4, 500
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				l.Add(api.LogLine{Text: fmt.Sprintf("w%d %d", w, i)})
			}
		}()
	}
	ctx, cancel := context.WithCancel(context.Background())
	followed := make(chan uint64, 1)
	go func() {
		var after, seen uint64
		for {
			res, err := l.Wait(ctx, after)
			if err != nil {
				followed <- seen
				return
			}
			for _, line := range res.Lines {
				if line.Seq <= after {
					t.Errorf("the follower got seq %d after %d", line.Seq, after)
				}
				after = line.Seq
			}
			seen += uint64(len(res.Lines)) + res.Skipped
			after = max(after, res.Next)
		}
	}()
	wg.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for l.Lines(Query{}).Next != writers*each && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	res := l.Lines(Query{})
	if res.Next != writers*each || len(res.Lines) != 50 {
		t.Fatalf("after %d adds: Next %d, %d lines kept", writers*each, res.Next, len(res.Lines))
	}
	// The follower has read (or skipped) everything once it waits again.
	waitWaiting(t, l)
	cancel()
	if seen := <-followed; seen > writers*each {
		t.Fatalf("the follower counted %d lines of %d", seen, writers*each)
	}
}

func TestFileLines(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "logs")
	s := newStore(t, Options{Files: Files{Dir: dir}})
	at := time.Date(2026, 12, 3, 16, 31, 43, 123456789, time.FixedZone("X", 3600))
	l := s.Log("owner.child")
	l.Started(123, at)
	l.Add(api.LogLine{Time: at, Level: "info", Text: "hello who=world"})
	l.Add(api.LogLine{Time: at, Text: "panic: boom\nmore"})
	l.Add(api.LogLine{Time: at, Marker: MarkerRestart, Text: "restarted, pid 124"})
	want := []string{
		"2026-12-03T15:31:43.123Z --- started, pid 123 ---",
		"2026-12-03T15:31:43.123Z [INFO] hello who=world",
		`2026-12-03T15:31:43.123Z panic: boom\nmore`,
		"2026-12-03T15:31:43.123Z --- restarted, pid 124 ---",
	}
	file := filepath.Join(dir, "owner.child.log")
	if got := readLines(t, file); !slices.Equal(got, want) {
		t.Fatalf("file lines\n%q\nwant\n%q", got, want)
	}
	for path, mode := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, file: 0o600} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode() != mode {
			t.Errorf("%s has mode %v, want %v", path, st.Mode(), mode)
		}
	}
	// After Close, lines are kept in memory only.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	l.Add(api.LogLine{Time: at, Text: "after close"})
	if got := readLines(t, file); len(got) != len(want) {
		t.Fatalf("a line added after Close reached the file: %q", got)
	}
	if res := l.Lines(Query{}); res.Lines[len(res.Lines)-1].Text != "after close" {
		t.Fatal("a line added after Close is not kept")
	}
}

func TestFileNames(t *testing.T) {
	for name, want := range map[string]string{
		"greeter":     "greeter.log",
		"owner.child": "owner.child.log",
		".hidden":     "%2Ehidden.log",
		"50%":         "50%25.log",
		"%2Ehidden":   "%252Ehidden.log",
		"with space":  "with space.log",
	} {
		if got := FileName(name); got != want {
			t.Errorf("FileName(%q) = %q, want %q", name, got, want)
		}
	}
	dir := t.TempDir()
	s := newStore(t, Options{Files: Files{Dir: dir}})
	s.Log(".hidden").Add(api.LogLine{Text: "x"})
	if _, err := os.Stat(filepath.Join(dir, "%2Ehidden.log")); err != nil {
		t.Fatalf("the log file of .hidden: %v", err)
	}
}

func TestFileRotation(t *testing.T) {
	dir := t.TempDir()
	// lumberjack rotates by whole MiB: 1 byte is rounded up to 1 MiB.
	s := newStore(t, Options{Lines: 10, Files: Files{Dir: dir, MaxBytes: 1, Backups: 2}})
	l := s.Log("w")
	line := strings.Repeat("y", 1000)
	// About 4.2 MiB: four rotations, of which 2 backups are kept.
	for i := range 4400 {
		l.Add(api.LogLine{Text: fmt.Sprintf("%05d %s", i, line)})
	}
	var backups []string
	deadline := time.Now().Add(10 * time.Second)
	for {
		backups, _ = filepath.Glob(filepath.Join(dir, "w-*.log"))
		if len(backups) == 2 || time.Now().After(deadline) {
			break // lumberjack removes old backups in the background
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(backups) != 2 {
		t.Fatalf("backups %v, want 2", backups)
	}
	for _, f := range append(backups, filepath.Join(dir, "w.log")) {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() > 1<<20 {
			t.Errorf("%s is %d bytes, over the 1 MiB rotation size", f, st.Size())
		}
		if st.Mode() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, st.Mode())
		}
	}
	cur := readLines(t, filepath.Join(dir, "w.log"))
	if last := cur[len(cur)-1]; !strings.Contains(last, " 04399 ") {
		t.Fatalf("the current file's last line is %.60q, want line 4399", last)
	}
	// The memory bound is independent of the files.
	if n := len(l.Lines(Query{}).Lines); n != 10 {
		t.Fatalf("kept %d lines in memory, want 10", n)
	}
}

func TestFileWriteFailureKeepsLines(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, Options{Files: Files{Dir: dir}})
	// A directory where the file should be: every write fails.
	if err := os.Mkdir(filepath.Join(dir, "w.log"), 0o700); err != nil {
		t.Fatal(err)
	}
	l := s.Log("w")
	l.Add(api.LogLine{Text: "still kept"})
	if res := l.Lines(Query{}); len(res.Lines) != 1 || res.Lines[0].Text != "still kept" {
		t.Fatalf("a line whose file write failed: %+v", res)
	}
}

func TestFormatFields(t *testing.T) {
	for _, tc := range []struct {
		args []any
		want string
	}{
		{nil, ""},
		{[]any{"a", "b"}, " a=b"},
		{[]any{"n", 3.5, "ok", true}, " n=3.5 ok=true"},
		{[]any{"s", "two words", "e", ""}, ` s="two words" e=""`},
		{[]any{"q", `say "hi"`, "eq", "a=b", "nl", "a\nb"}, ` q="say \"hi\"" eq="a=b" nl="a\nb"`},
		{[]any{"m", map[string]any{"k": "v"}, "l", []any{1.0, "x"}}, ` m={"k":"v"} l=[1,"x"]`},
		{[]any{"nil", nil}, " nil=<nil>"},
		{[]any{"odd"}, ""},
	} {
		if got := FormatFields(tc.args); got != tc.want {
			t.Errorf("FormatFields(%v) = %q, want %q", tc.args, got, tc.want)
		}
	}
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
