package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/host/internal/worklog"
)

// logHost is a control.Host with a LogsHost: worker "w" has a log, a real
// worklog.Log, that keeps its last keep lines (the default when 0); other
// names are not found.
type logHost struct {
	control.Host
	log     *worklog.Log
	waiting atomic.Int32 // WaitLogs calls in progress
}

func newLogHost(keep int, texts ...string) *logHost {
	store, err := worklog.NewStore(worklog.Options{Lines: keep})
	if err != nil {
		panic(err)
	}
	h := &logHost{log: store.Log("w")}
	for _, t := range texts {
		h.add(t)
	}
	return h
}

func (h *logHost) add(text string) {
	h.log.Add(api.LogLine{Level: "info", Text: text, PID: 42})
}

func (h *logHost) Logs(_ context.Context, q control.LogsQuery) (api.LogsResult, error) {
	if q.Name != "w" {
		return api.LogsResult{}, control.Errorf(control.CodeNotFound, "no log of worker %q", q.Name)
	}
	res := h.log.Lines(worklog.Query{Lines: q.Lines, Since: q.Since, After: q.After})
	res.Worker = q.Name
	return res, nil
}

func (h *logHost) WaitLogs(ctx context.Context, name string, seq uint64) (api.LogsResult, error) {
	h.waiting.Add(1)
	defer h.waiting.Add(-1)
	res, err := h.log.Wait(ctx, seq)
	res.Worker = name
	return res, err
}

// streamItem is one line of a follow stream: a log line, a skipped count,
// an error, or a blank keep-alive line (blank).
type streamItem struct {
	api.LogLine
	Skipped uint64         `json:"skipped"`
	Error   *control.Error `json:"error"`
	blank   bool
}

// follow opens a follow stream on the server at addr and returns its
// response and a channel of its lines (closed at its end).
func follow(t *testing.T, ctx context.Context, addr, query string) (*http.Response, <-chan streamItem) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/v1/workers/w/logs?follow=1"+query, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	items := make(chan streamItem, 100)
	go func() {
		defer close(items)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			var it streamItem
			if strings.TrimSpace(sc.Text()) == "" {
				it.blank = true
			} else if err := json.Unmarshal(sc.Bytes(), &it); err != nil {
				t.Errorf("stream line %q: %v", sc.Text(), err)
				return
			}
			items <- it
		}
	}()
	return resp, items
}

// next returns the next non-blank item of a stream, failing the test if
// none comes within testTimeout; blanks counts the blank lines skipped.
func next(t *testing.T, items <-chan streamItem, blanks *int) streamItem {
	t.Helper()
	deadline := time.After(testTimeout)
	for {
		select {
		case it, ok := <-items:
			if !ok {
				t.Fatal("the stream ended")
			}
			if it.blank {
				if blanks != nil {
					*blanks++
				}
				continue
			}
			return it
		case <-deadline:
			t.Fatal("no line within the test timeout")
		}
	}
}

// GET /v1/workers/{name}/logs is the logs operation: its query is passed
// on, a value of the wrong form is malformed naming it, and the Doer's
// errors come back with their status.
func TestLogsRoute(t *testing.T) {
	h := newLogHost(0, "one", "two", "three")
	s := New(Options{Doer: control.NewDispatcher(h, nil)})
	w, rep := serve(t, s, "GET", "/v1/workers/w/logs?lines=2", "")
	if w.Code != 200 || !rep.OK {
		t.Fatalf("logs: %d %s", w.Code, w.Body)
	}
	var res api.LogsResult
	b, _ := json.Marshal(rep.Result)
	if err := json.Unmarshal(b, &res); err != nil || res.Worker != "w" || len(res.Lines) != 2 || res.Lines[0].Text != "two" || res.Next != 3 {
		t.Errorf("result %s", b)
	}
	w, rep = serve(t, s, "GET", "/v1/workers/w/logs?after=2", "")
	if b, _ := json.Marshal(rep.Result); w.Code != 200 || !strings.Contains(string(b), `"text":"three"`) || strings.Contains(string(b), `"two"`) {
		t.Errorf("after=2: %d %s", w.Code, w.Body)
	}
	for _, tc := range []struct {
		query  string
		status int
		field  string
	}{
		{"lines=ten", 400, "lines"},
		{"after=-1", 400, "after"},
		{"follow=yes", 400, "follow"},
		{"lines=-3", 422, "lines"},
		{"since=yesterday", 422, "since"},
	} {
		w, rep := serve(t, s, "GET", "/v1/workers/w/logs?"+tc.query, "")
		if w.Code != tc.status || rep.Error == nil || len(rep.Error.Details) == 0 || rep.Error.Details[0].Attribute != tc.field {
			t.Errorf("%s: %d %s, want %d naming %s", tc.query, w.Code, w.Body, tc.status, tc.field)
		}
	}
	if w, _ := serve(t, s, "GET", "/v1/workers/nope/logs", ""); w.Code != 404 {
		t.Errorf("unknown worker: %d %s", w.Code, w.Body)
	}
	if w, _ := serve(t, s, "POST", "/v1/workers/w/logs", ""); w.Code != 405 {
		t.Errorf("POST: %d %s", w.Code, w.Body)
	}
	// A Doer that cannot follow answers follow=1 with a conflict.
	if w, rep := serve(t, New(Options{Doer: &fakeDoer{}}), "GET", "/v1/workers/w/logs?follow=1", ""); w.Code != 409 || rep.Error.Code != control.CodeConflict {
		t.Errorf("follow without a LogFollower: %d %s", w.Code, w.Body)
	}
}

// The follow stream: the selected lines, then each new line as it comes,
// blank keep-alive lines while the log is silent, past the connection's
// read deadlines; an error is a plain reply before any stream starts.
func TestLogsFollowStream(t *testing.T) {
	h := newLogHost(0, "one", "two", "three")
	s := New(Options{Addr: "127.0.0.1:0", Doer: control.NewDispatcher(h, nil), Timeouts: small, LogKeepAlive: 100 * time.Millisecond})
	stop := started(t, s)
	defer stop()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp, items := follow(t, ctx, s.Addr(), "&lines=2")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != NDJSONType {
		t.Fatalf("follow: %s, Content-Type %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	blanks := 0
	for _, want := range []string{"two", "three"} {
		if it := next(t, items, &blanks); it.Text != want {
			t.Fatalf("line %+v, want %q", it, want)
		}
	}
	// Silent for longer than the read deadlines (small: 300ms + 300ms):
	// keep-alives come, and the stream is still there.
	deadline := time.Now().Add(testTimeout)
	for blanks < 8 {
		select {
		case it, ok := <-items:
			if !ok {
				t.Fatalf("the stream ended after %d keep-alives", blanks)
			}
			if !it.blank {
				t.Fatalf("unexpected line %+v", it)
			}
			blanks++
		case <-time.After(time.Until(deadline)):
			t.Fatalf("%d keep-alives within %s", blanks, testTimeout)
		}
	}
	h.add("four")
	if it := next(t, items, nil); it.Text != "four" || it.Seq != 4 || it.Level != "info" || it.PID != 42 {
		t.Errorf("new line %+v", it)
	}
	h.add("five")
	h.add("six")
	if a, b := next(t, items, nil), next(t, items, nil); a.Text != "five" || b.Text != "six" {
		t.Errorf("new lines %q %q", a.Text, b.Text)
	}

	// Errors come before any stream, as JSON replies.
	for path, want := range map[string]int{
		"/v1/workers/nope/logs?follow=1":           404,
		"/v1/workers/w/logs?follow=1&lines=200000": 422,
	} {
		r, err := http.Get("http://" + s.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		var rep control.Reply
		_ = json.NewDecoder(r.Body).Decode(&rep)
		r.Body.Close()
		if r.StatusCode != want || r.Header.Get("Content-Type") != "application/json" || rep.Error == nil {
			t.Errorf("%s: %s %q %+v", path, r.Status, r.Header.Get("Content-Type"), rep)
		}
	}

	// The client going away ends the stream and its wait.
	cancel()
	waitFor(t, "the follower to stop waiting", func() bool { return h.waiting.Load() == 0 })
}

// A follower that asks after lines no longer kept is told how many it
// missed, before the lines that are.
func TestLogsFollowSkipped(t *testing.T) {
	h := newLogHost(3, "1", "2", "3", "4", "5", "6")
	s := New(Options{Addr: "127.0.0.1:0", Doer: control.NewDispatcher(h, nil)})
	stop := started(t, s)
	defer stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, items := follow(t, ctx, s.Addr(), "&after=1")
	if it := next(t, items, nil); it.Skipped != 2 {
		t.Fatalf("first item %+v, want skipped 2", it)
	}
	if it := next(t, items, nil); it.Text != "4" {
		t.Errorf("first line %+v, want 4", it)
	}
}

// Shutting the server down ends the open streams at once: Shutdown does
// not wait 5s for them, and reports no request cut off.
func TestLogsFollowEndsAtShutdown(t *testing.T) {
	h := newLogHost(0, "one")
	s := New(Options{Addr: "127.0.0.1:0", Doer: control.NewDispatcher(h, nil)})
	stop := started(t, s)
	_, items := follow(t, context.Background(), s.Addr(), "")
	if it := next(t, items, nil); it.Text != "one" {
		t.Fatalf("line %+v", it)
	}
	start := time.Now()
	if err := stop(); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if d := time.Since(start); d >= shutdownTimeout {
		t.Errorf("shutdown took %s with a stream open", d)
	}
	select {
	case _, ok := <-items:
		for ok {
			_, ok = <-items
		}
	case <-time.After(testTimeout):
		t.Fatal("the stream did not end at shutdown")
	}
}

// At most MaxLogStreams streams are open at once; one more is answered
// 503 with a clear error, and a closed stream frees its place.
func TestLogsFollowLimit(t *testing.T) {
	h := newLogHost(0, "one")
	s := New(Options{Addr: "127.0.0.1:0", Doer: control.NewDispatcher(h, nil), MaxLogStreams: 1})
	stop := started(t, s)
	defer stop()
	ctx, cancel := context.WithCancel(context.Background())
	_, items := follow(t, ctx, s.Addr(), "")
	next(t, items, nil)
	r, err := http.Get("http://" + s.Addr() + "/v1/workers/w/logs?follow=1")
	if err != nil {
		t.Fatal(err)
	}
	var rep control.Reply
	_ = json.NewDecoder(r.Body).Decode(&rep)
	r.Body.Close()
	if r.StatusCode != 503 || r.Header.Get("Retry-After") == "" || rep.Error == nil || !strings.Contains(rep.Error.Message, "too many log streams") {
		t.Errorf("second stream: %s %+v", r.Status, rep.Error)
	}
	// Without follow, logs still answers.
	if r, err := http.Get("http://" + s.Addr() + "/v1/workers/w/logs"); err != nil || r.StatusCode != 200 {
		t.Errorf("logs while a stream is open: %v %v", r, err)
	} else {
		r.Body.Close()
	}
	cancel()
	waitFor(t, "the stream's place to be freed", func() bool { return len(s.logStreams) == 0 })
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	_, items = follow(t, ctx2, s.Addr(), "")
	if it := next(t, items, nil); it.Text != "one" {
		t.Errorf("a new stream after the first ended: %+v", it)
	}
}

// waitFor polls cond until it holds, failing the test after testTimeout.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(fmt.Sprintf("timed out waiting for %s", what))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
