package web_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/host/internal/httpapi"
	"github.com/dynworkers/dynworkers/host/internal/web"
	"github.com/dynworkers/dynworkers/host/internal/worklog"
)

// logPaneHost is a control.Host with one running worker, "greeter", whose
// log, a real worklog.Log, a test writes (add); it backs the real HTTP API
// and dashboard.
type logPaneHost struct {
	control.Host
	log     *worklog.Log
	waiting atomic.Int32 // WaitLogs calls in progress: open streams
}

func newLogPaneHost(t *testing.T) *logPaneHost {
	store, err := worklog.NewStore(worklog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return &logPaneHost{log: store.Log("greeter")}
}

func (h *logPaneHost) add(l api.LogLine) { h.log.Add(l) }

func (h *logPaneHost) Status(context.Context) (api.Status, error) {
	return api.Status{SystemID: "test", Host: "fake-host", Workers: []api.Worker{
		{Name: "greeter", Supervisor: "root", Class: "chaos", State: "running", Pid: 4242, Source: "hcl"}},
		Supervisors: []api.Supervisor{{Path: "root", State: "running"}}}, nil
}

func (h *logPaneHost) Classes(context.Context) (api.ClassList, error) {
	return api.ClassList{Classes: []api.Class{}}, nil
}

func (h *logPaneHost) Logs(_ context.Context, q control.LogsQuery) (api.LogsResult, error) {
	if q.Name != "greeter" {
		return api.LogsResult{}, control.Errorf(control.CodeNotFound, "no worker %q", q.Name)
	}
	res := h.log.Lines(worklog.Query{Lines: q.Lines, Since: q.Since, After: q.After})
	res.Worker = q.Name
	return res, nil
}

func (h *logPaneHost) WaitLogs(ctx context.Context, name string, seq uint64) (api.LogsResult, error) {
	h.waiting.Add(1)
	defer h.waiting.Add(-1)
	res, err := h.log.Wait(ctx, seq)
	res.Worker = name
	return res, err
}

// JavaScript for the log pane.
const (
	// jsLogRows lists the pane's rows as "marker|level|text" (the text
	// without its time).
	jsLogRows = `() => document.getElementById("logpane").hidden ? null :
		[...document.querySelectorAll("#log-lines .log-line")].map((r) => [r.dataset.marker || "",
			(r.querySelector(".log-level") || {}).textContent || "", (r.querySelector(".log-text") || r).textContent].join("|"))`
	jsHasLogRow = `(want) => (` + jsLogRows + `)()?.some((r) => r.includes(want))`
	// jsHasLogRowWith: a row that holds each of wants.
	jsHasLogRowWith = `(...wants) => (` + jsLogRows + `)()?.some((r) => wants.every((w) => r.includes(w)))`
)

// ownDirs gives Chromium a profile directory and a TMPDIR (where it puts
// its org.chromium.Chromium.* singleton directory) of the test's own, so
// that it leaves nothing in /tmp.
func ownDirs(t *testing.T) []chromedp.ExecAllocatorOption {
	return []chromedp.ExecAllocatorOption{chromedp.UserDataDir(t.TempDir()), chromedp.Env("TMPDIR=" + t.TempDir())}
}

// openLogPane clicks a worker's logs button and waits for the pane to say
// it follows the log.
func openLogPane(b *browser, name string) {
	b.t.Helper()
	b.do("clicking logs", chromedp.Evaluate[chromedp.Void](`(`+rowOf+`)(`+string(mustJSON(name))+`).querySelector("button.logs").click()`))
	waitFor[bool](b, "the log pane follows the log", `() => !document.getElementById("logpane").hidden &&
		document.getElementById("log-state").textContent === "(following live)"`)
	if got := eval[string](b, `() => document.getElementById("log-worker").textContent`); got != name {
		b.t.Errorf("the pane is titled %q, want %q", got, name)
	}
}

// The dashboard's log pane, against the real HTTP API and dashboard in
// front of a host whose log the test writes: the pane shows the last
// lines, follows new ones without reload, shows markers apart and hostile
// text as text, keeps the reader's place when scrolled up, and closing it
// ends the stream.
func TestLogPaneInChromium(t *testing.T) {
	exe := chromium(t)
	h := newLogPaneHost(t)
	h.add(api.LogLine{Marker: "start", Text: "started, pid 4242", PID: 4242})
	h.add(api.LogLine{Level: "info", Text: "chaos worker starting mode=run", PID: 4242})
	h.add(api.LogLine{Text: `<img src=x onerror="document.title='pwned'"> plain stderr`, PID: 4242})
	srv := httptest.NewServer(httpapi.New(httpapi.Options{Doer: control.NewDispatcher(h, nil), UI: web.Handler()}).Handler())
	t.Cleanup(srv.Close)
	t.Cleanup(srv.CloseClientConnections) // an open stream would hold Close (runs first)

	b := newBrowser(t, exe, ownDirs(t)...)
	b.do("opening the dashboard", chromedp.Navigate(srv.URL+"/"))
	waitFor[bool](b, "the page lists greeter", jsRowsRunning, []string{"greeter"})
	openLogPane(b, "greeter")
	rows := waitFor[[]string](b, "the pane shows the last lines", `() => { const r = (`+jsLogRows+`)(); return r && r.length === 3 && r; }`)
	want := []string{"start||— started, pid 4242 —", "|INFO|chaos worker starting mode=run", `||<img src=x onerror="document.title='pwned'"> plain stderr`}
	if strings.Join(rows, "\n") != strings.Join(want, "\n") {
		t.Errorf("rows:\n%s\nwant:\n%s", strings.Join(rows, "\n"), strings.Join(want, "\n"))
	}
	if n := eval[int](b, `() => document.querySelectorAll("#log-lines img").length`); n != 0 {
		t.Errorf("a log line became %d img elements", n)
	}

	// Lines logged after the pane opened appear without reload; a marker
	// is set apart.
	h.add(api.LogLine{Marker: "exit", Text: "exited: killed by SIGKILL", PID: 4242})
	h.add(api.LogLine{Marker: "restart", Text: "restarted, pid 4243", PID: 4243})
	h.add(api.LogLine{Level: "warn", Text: "the new instance", PID: 4243})
	waitFor[bool](b, "the new lines appear", jsHasLogRow, "WARN|the new instance")
	if cls := eval[string](b, `() => document.querySelector('#log-lines [data-marker="restart"]').className`); !strings.Contains(cls, "log-marker") {
		t.Errorf("the restart marker's class %q", cls)
	}
	if c := eval[string](b, `() => getComputedStyle(document.querySelector('#log-lines [data-marker="restart"]')).color`); c == eval[string](b, `() => getComputedStyle(document.querySelector('#log-lines .lvl-warn .log-text')).color`) {
		t.Errorf("a marker looks like a log line (color %s)", c)
	}

	// Auto-scroll: the pane follows the bottom, unless the reader scrolled up.
	for i := range 60 {
		h.add(api.LogLine{Level: "info", Text: fmt.Sprintf("line %d", i)})
	}
	waitFor[bool](b, "the pane scrolled to the last line", `() => { const b = document.getElementById("log-lines");
		return (`+jsHasLogRow+`)("line 59") && b.scrollHeight > b.clientHeight && b.scrollHeight - b.scrollTop - b.clientHeight < 8; }`)
	b.do("scrolling up", chromedp.Evaluate[chromedp.Void](`document.getElementById("log-lines").scrollTop = 0`))
	h.add(api.LogLine{Level: "info", Text: "while scrolled up"})
	waitFor[bool](b, "the line comes", jsHasLogRow, "while scrolled up")
	if top := eval[int](b, `() => document.getElementById("log-lines").scrollTop`); top != 0 {
		t.Errorf("the pane scrolled to %d while the reader was at the top", top)
	}

	// Closing the pane aborts the fetch: the host's follow ends.
	if n := h.waiting.Load(); n != 1 {
		t.Errorf("%d streams wait on the log, want 1", n)
	}
	b.do("closing the pane", chromedp.Click(chromedp.ID("log-close")))
	deadline := time.Now().Add(waitTimeout)
	for h.waiting.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the stream still waits on the log after the pane closed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !eval[bool](b, `() => document.getElementById("logpane").hidden`) {
		t.Error("the pane is still shown")
	}
}

// The log pane follows a real worker of a real host: it shows the
// worker's lines, and after a kill -9 of the worker's process the restart
// marker and the new instance's lines appear without reload.
func TestLogPaneFollowsARealWorker(t *testing.T) {
	exe := chromium(t)
	h := startHost(t, "", `
supervisor "root" {
  worker "greeter" {
    class = "chaos"
  }
}
`)
	pid := h.waitStarted("greeter")["greeter"]
	b := newBrowser(t, exe, ownDirs(t)...)
	b.do("opening the dashboard", chromedp.Navigate(h.dashboardURL()))
	waitFor[bool](b, "the page lists greeter", jsRowsRunning, []string{"greeter"})
	openLogPane(b, "greeter")
	waitFor[bool](b, "the pane shows the worker's start", jsHasLogRowWith, "|INFO|chaos worker starting", fmt.Sprintf("pid=%d", pid))

	h.mu.Lock()
	changed := h.changed
	h.mu.Unlock()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	case <-time.After(waitTimeout):
		t.Fatal("greeter was not restarted")
	}
	newPid := h.waitStarted("greeter")["greeter"]
	if newPid == pid {
		t.Fatalf("greeter still has pid %d", pid)
	}
	waitFor[bool](b, "the pane shows the restart marker", jsHasLogRow, fmt.Sprintf("restart||— restarted, pid %d —", newPid))
	waitFor[bool](b, "the pane shows the new instance's lines", jsHasLogRowWith, "|INFO|chaos worker starting", fmt.Sprintf("pid=%d", newPid))
}
