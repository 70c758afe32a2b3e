package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/api"
	"github.com/dynworkers/dynworkers/host/internal/control"
	"github.com/dynworkers/dynworkers/host/internal/httpapi"
	"github.com/dynworkers/dynworkers/host/internal/worklog"
)

// fakeLogHost is a control.Host that keeps the log of worker "w" in a
// real worklog.Log (other names are not found), for a real Dispatcher in
// front of it.
type fakeLogHost struct {
	control.Host
	log *worklog.Log
}

func newFakeLogHost(lines ...api.LogLine) *fakeLogHost {
	store, err := worklog.NewStore(worklog.Options{})
	if err != nil {
		panic(err)
	}
	h := &fakeLogHost{log: store.Log("w")}
	for _, l := range lines {
		h.add(l)
	}
	return h
}

func (h *fakeLogHost) add(l api.LogLine) { h.log.Add(l) }

func (h *fakeLogHost) Logs(_ context.Context, q control.LogsQuery) (api.LogsResult, error) {
	if q.Name != "w" {
		return api.LogsResult{}, control.Errorf(control.CodeNotFound, "no worker %q", q.Name)
	}
	res := h.log.Lines(worklog.Query{Lines: q.Lines, Since: q.Since, After: q.After})
	res.Worker = q.Name
	return res, nil
}

func (h *fakeLogHost) WaitLogs(ctx context.Context, name string, seq uint64) (api.LogsResult, error) {
	res, err := h.log.Wait(ctx, seq)
	res.Worker = name
	return res, err
}

// syncBuffer is a bytes.Buffer a command may write while a test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitOutput waits until buf holds s, failing the test after 30s.
func waitOutput(t *testing.T, buf *syncBuffer, s string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(buf.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("the output lacks %q after 30s:\n%s", s, buf.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var t0 = time.Date(2026, 12, 3, 16, 40, 1, 123456789, time.FixedZone("CET", 3600))

func sampleLog() *fakeLogHost {
	return newFakeLogHost(
		api.LogLine{Time: t0, Marker: "start", Text: "started, pid 123", PID: 123},
		api.LogLine{Time: t0.Add(time.Second), Level: "info", Text: "hello world greeting=hi", PID: 123},
		api.LogLine{Time: t0.Add(2 * time.Second), Text: "plain stderr \x1b[31mred\x1b[0m\tend", PID: 123},
		api.LogLine{Time: t0.Add(3 * time.Second), Level: "error", Text: "boom", PID: 123},
	)
}

// logs prints one line per log line: UTC time with milliseconds, the
// level padded (none for a plain stderr line), the text with control
// characters escaped, markers set apart; -json prints the api.LogLine
// objects.
func TestLogsOutput(t *testing.T) {
	url := apiServer(t, control.NewDispatcher(sampleLog(), nil), "")
	stdout, stderr, rc := runCLI(t, "logs", "w", "-http", url)
	want := "" +
		"2026-12-03T15:40:01.123Z --- started, pid 123 ---\n" +
		"2026-12-03T15:40:02.123Z INFO  hello world greeting=hi\n" +
		"2026-12-03T15:40:03.123Z       plain stderr \\x1b[31mred\\x1b[0m\tend\n" +
		"2026-12-03T15:40:04.123Z ERROR boom\n"
	if rc != 0 || stdout != want {
		t.Fatalf("rc %d\nstdout:\n%s\nwant:\n%s\nstderr:\n%s", rc, stdout, want, stderr)
	}
	stdout, _, rc = runCLI(t, "logs", "-n", "2", "-json", "-http", url, "w")
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if rc != 0 || len(lines) != 2 {
		t.Fatalf("-json -n 2: rc %d\n%s", rc, stdout)
	}
	var l api.LogLine
	if err := json.Unmarshal([]byte(lines[1]), &l); err != nil || l.Seq != 4 || l.Level != "error" || l.Text != "boom" || !l.Time.Equal(t0.Add(3*time.Second)) {
		t.Errorf("-json line %q: %+v %v", lines[1], l, err)
	}
}

// -n, -since and the name reach the host as the logs request; bad flags
// are usage errors, host errors exit 1.
func TestLogsRequestAndErrors(t *testing.T) {
	d := &fakeDoer{reply: func(r *control.Request) control.Reply {
		return control.Reply{OK: true, Result: api.LogsResult{Worker: r.WorkerName, Lines: []api.LogLine{}}}
	}}
	url := apiServer(t, d, "")
	if _, stderr, rc := runCLI(t, "logs", "SMPP for acct/1", "-n", "5", "-since", "10m", "-http", url); rc != 0 {
		t.Fatalf("rc %d: %s", rc, stderr)
	}
	want := control.Request{Operation: control.OpLogs, WorkerName: "SMPP for acct/1", Lines: 5, Since: "10m"}
	if reqs := d.requests(); len(reqs) != 1 || reqs[0].Operation != want.Operation || reqs[0].WorkerName != want.WorkerName ||
		reqs[0].Lines != 5 || reqs[0].Since != "10m" || reqs[0].After != 0 {
		t.Errorf("requests %+v, want %+v", reqs, want)
	}
	for _, args := range [][]string{{"logs"}, {"logs", "w", "-n", "0"}, {"logs", "w", "-n", "100001"}, {"logs", "a", "b"}} {
		if _, stderr, rc := runCLI(t, append(args, "-http", url)...); rc != 2 {
			t.Errorf("%q: rc %d, want 2\n%s", args, rc, stderr)
		}
	}
	real := apiServer(t, control.NewDispatcher(sampleLog(), nil), "")
	_, stderr, rc := runCLI(t, "logs", "nope", "-http", real)
	if rc != 1 || !strings.Contains(stderr, `not_found: no worker "nope"`) {
		t.Errorf("unknown worker: rc %d\n%s", rc, stderr)
	}
	_, stderr, rc = runCLI(t, "logs", "w", "-since", "yesterday", "-f", "-http", real)
	if rc != 1 || !strings.Contains(stderr, "invalid_config") || !strings.Contains(stderr, "since") {
		t.Errorf("bad -since with -f: rc %d\n%s", rc, stderr)
	}
	_, stderr, rc = runCLI(t, "logs", "w", "-f", "-http", "http://127.0.0.1:1")
	if rc != 3 || !strings.Contains(stderr, "connection refused") {
		t.Errorf("no host: rc %d\n%s", rc, stderr)
	}
}

// logs -f over HTTP prints the last lines, then each new line as it
// comes; when the host goes away it says so and exits 3.
func TestLogsFollowHTTP(t *testing.T) {
	h := sampleLog()
	s := httpapi.New(httpapi.Options{Addr: "127.0.0.1:0", Doer: control.NewDispatcher(h, nil)})
	ctx, stopServer := context.WithCancel(context.Background())
	defer stopServer()
	served := make(chan error, 1)
	go func() { served <- s.ListenAndServe(ctx) }()
	<-s.Listening()

	var stdout, stderr syncBuffer
	var rc atomic.Int32
	rc.Store(-1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		rc.Store(int32(Main([]string{"logs", "-f", "-n", "2", "-http", "http://" + s.Addr(), "w"}, &stdout, &stderr)))
	}()
	waitOutput(t, &stdout, "ERROR boom")
	if strings.Contains(stdout.String(), "hello world") {
		t.Errorf("-n 2 printed more than 2 lines:\n%s", stdout.String())
	}
	h.add(api.LogLine{Level: "warn", Text: "a line after the follow began"})
	waitOutput(t, &stdout, "WARN  a line after the follow began")
	h.add(api.LogLine{Marker: "restart", Text: "restarted, pid 124", PID: 124})
	h.add(api.LogLine{Level: "info", Text: "the new instance"})
	waitOutput(t, &stdout, "--- restarted, pid 124 ---")
	waitOutput(t, &stdout, "INFO  the new instance")

	stopServer()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("logs -f did not end when the host went away")
	}
	if rc.Load() != 3 || !strings.Contains(stderr.String(), "the host closed the stream") {
		t.Errorf("rc %d, stderr:\n%s", rc.Load(), stderr.String())
	}
	if err := <-served; err != nil {
		t.Errorf("the server: %v", err)
	}
}

// Over AMQP, logs prints the last lines, and -f asks for the lines after
// the last one printed every half second.
func TestLogsAMQP(t *testing.T) {
	url := brokerURL(t)
	sys := "clitest-" + randomID()[:8]
	h := sampleLog()
	d := control.NewDispatcher(h, nil)
	var mute atomic.Bool
	got := fakeAMQPHost(t, url, []string{sys + ".h1"}, func(r control.Request) *control.Reply {
		if mute.Load() {
			return nil
		}
		rep := d.Do(context.Background(), &r)
		return &rep
	})
	var afters sync.Map
	go func() {
		for m := range got {
			afters.Store(m.body.After, true)
		}
	}()
	stdout, stderr, rc := runCLI(t, "logs", "w", "-n", "1", "-amqp", url, "-host", "h1", "-system-id", sys)
	if rc != 0 || stdout != "2026-12-03T15:40:04.123Z ERROR boom\n" {
		t.Fatalf("rc %d\nstdout:\n%s\nstderr:\n%s", rc, stdout, stderr)
	}

	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- Main([]string{"logs", "-f", "w", "-amqp", url, "-host", "h1", "-system-id", sys, "-timeout", "2s"}, &out, &errb)
	}()
	waitOutput(t, &out, "ERROR boom")
	h.add(api.LogLine{Level: "info", Text: "polled in"})
	waitOutput(t, &out, "INFO  polled in")
	if _, ok := afters.Load(uint64(4)); !ok {
		t.Errorf("no poll asked for the lines after 4")
	}
	if n := strings.Count(out.String(), "ERROR boom"); n != 1 {
		t.Errorf("a line printed %d times:\n%s", n, out.String())
	}
	mute.Store(true)
	select {
	case rc := <-done:
		if rc != 3 || !strings.Contains(errb.String(), "no reply") && !strings.Contains(errb.String(), "within") {
			t.Errorf("a host that stops answering: rc %d\n%s", rc, errb.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("logs -f over AMQP did not end when the host stopped answering")
	}
}
