package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/host/internal/control"
)

// statusServer is a host whose status changes with every request: the
// Nth answer shows worker "greeter" with N restarts, except the second,
// which comes from something that is not the API (a 502 of a proxy).
type statusServer struct {
	*httptest.Server
	mu      sync.Mutex
	n       int
	waiters map[int]chan struct{}
}

func newStatusServer(t *testing.T) *statusServer {
	s := &statusServer{waiters: map[int]chan struct{}{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.n++
		n := s.n
		if c, ok := s.waiters[n]; ok {
			close(c)
			delete(s.waiters, n)
		}
		s.mu.Unlock()
		if r.URL.Path != "/v1/status" {
			http.NotFound(w, r)
			return
		}
		if n == 2 {
			http.Error(w, "bad gateway", http.StatusBadGateway)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"ok": true, "result": {"system_id": "dev", "host": "h1", "supervisors": [
		  {"name": "root", "path": "root", "strategy": "one_for_one", "intensity": 5, "period": 30, "state": "running"}],
		  "workers": [{"name": "greeter", "supervisor": "root", "class": "hello", "state": "running", "pid": 42, "restarts": %d}]}}`, n)
	}))
	t.Cleanup(s.Close)
	return s
}

// reached returns a channel closed once the server has had n requests.
func (s *statusServer) reached(n int) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := make(chan struct{})
	if s.n >= n {
		close(c)
	} else {
		s.waiters[n] = c
	}
	return c
}

// runWatch runs the watch loop until `until` is closed, then cancels it
// and returns what it printed.
func runWatch(t *testing.T, o *clientOptions, wo watchOptions, until <-chan struct{}) (stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb bytes.Buffer
	done := make(chan int, 1)
	go func() { done <- o.watchStatus(ctx, &out, &errb, wo) }()
	select {
	case <-until:
	case rc := <-done:
		t.Fatalf("watch ended by itself (rc %d):\n%s\n%s", rc, out.String(), errb.String())
	case <-time.After(waitTimeout):
		cancel()
		<-done
		t.Fatalf("the host did not get the requests within %s:\n%s\n%s", waitTimeout, out.String(), errb.String())
	}
	cancel()
	select {
	case rc := <-done:
		if rc != exitOK {
			t.Errorf("watch returned %d once cancelled", rc)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("watch did not stop within %s of being cancelled", waitTimeout)
	}
	return out.String(), errb.String()
}

func restartsOf(t *testing.T, frame string) string {
	t.Helper()
	for _, l := range strings.Split(frame, "\n") {
		if strings.Contains(l, "greeter") {
			f := strings.Fields(l)
			return f[len(f)-3] // …, RESTARTS, RSS, CPU
		}
	}
	t.Errorf("no greeter in the frame:\n%s", frame)
	return ""
}

// On a pipe: frames a blank line apart, each with its footer; a failed
// poll is a frame with the error, and the next one succeeds again.
func TestStatusWatchFrames(t *testing.T) {
	fixClock(t)
	srv := newStatusServer(t)
	o := &clientOptions{cmd: "status", httpURL: srv.URL, timeout: 5 * time.Second}
	stdout, stderr := runWatch(t, o, watchOptions{interval: time.Millisecond}, srv.reached(4))
	if stderr != "" {
		t.Errorf("stderr: %s", stderr)
	}
	if strings.Contains(stdout, "\x1b") {
		t.Errorf("escape sequences on a pipe:\n%q", stdout)
	}
	frames := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n\n")
	if len(frames) < 3 {
		t.Fatalf("%d frames:\n%s", len(frames), stdout)
	}
	const ok = "refreshed 12:00:00 · every 1ms · Ctrl-C to stop"
	if !strings.HasPrefix(frames[0], "host dev/h1 · workers: 1 running\n") || !strings.HasSuffix(frames[0], ok) || restartsOf(t, frames[0]) != "1" {
		t.Errorf("frame 1:\n%s", frames[0])
	}
	if !strings.HasPrefix(frames[1], "error: unexpected answer from "+srv.URL+": HTTP 502 Bad Gateway") ||
		!strings.HasSuffix(frames[1], "refresh failed at 12:00:00 (last success 12:00:00) · every 1ms · Ctrl-C to stop") {
		t.Errorf("frame 2:\n%s", frames[1])
	}
	if !strings.HasSuffix(frames[2], ok) || restartsOf(t, frames[2]) != "3" {
		t.Errorf("frame 3:\n%s", frames[2])
	}
}

// On a terminal: each frame clears the screen and homes the cursor first,
// in colour.
func TestStatusWatchTerminal(t *testing.T) {
	fixClock(t)
	srv := newStatusServer(t)
	o := &clientOptions{cmd: "status", httpURL: srv.URL, timeout: 5 * time.Second}
	stdout, _ := runWatch(t, o, watchOptions{interval: time.Millisecond, terminal: true, color: true}, srv.reached(4))
	frames := strings.Split(stdout, clearScreen)
	if len(frames) < 4 || frames[0] != "" {
		t.Fatalf("frames do not each start with a clear screen:\n%q", stdout)
	}
	frames = frames[1:]
	if !strings.Contains(frames[0], "\x1b[32mrunning\x1b[0m") || !strings.HasSuffix(frames[0], "\x1b[2mrefreshed 12:00:00 · every 1ms · Ctrl-C to stop\x1b[0m\n") {
		t.Errorf("frame 1:\n%q", frames[0])
	}
	if !strings.HasPrefix(frames[1], "\x1b[31merror:\x1b[0m unexpected answer") {
		t.Errorf("frame 2:\n%q", frames[1])
	}
	if strings.Contains(stdout, "\n\n") {
		t.Errorf("blank lines between frames on a terminal:\n%q", stdout)
	}
}

// -watch -json on a pipe: a stream of JSON documents, errors on stderr.
func TestStatusWatchJSON(t *testing.T) {
	srv := newStatusServer(t)
	o := &clientOptions{cmd: "status", httpURL: srv.URL, timeout: 5 * time.Second}
	stdout, stderr := runWatch(t, o, watchOptions{interval: time.Millisecond, json: true}, srv.reached(4))
	dec := json.NewDecoder(strings.NewReader(stdout))
	var restarts []float64
	for {
		var doc struct {
			Workers []struct{ Restarts float64 }
		}
		if err := dec.Decode(&doc); err == io.EOF {
			break
		} else if err != nil || len(doc.Workers) != 1 {
			t.Fatalf("not a stream of status results (%v):\n%s", err, stdout)
		}
		restarts = append(restarts, doc.Workers[0].Restarts)
	}
	if len(restarts) < 2 || restarts[0] != 1 || restarts[1] != 3 {
		t.Errorf("results %v:\n%s", restarts, stdout)
	}
	if !strings.Contains(stderr, "dynworkers status: unexpected answer from "+srv.URL+": HTTP 502") {
		t.Errorf("stderr: %s", stderr)
	}
}

// A host answering with an error is shown in the frame too, and watched
// on.
func TestStatusWatchHostError(t *testing.T) {
	fixClock(t)
	reached := make(chan struct{})
	var once sync.Once
	d := &fakeDoer{}
	d.reply = func(*control.Request) control.Reply {
		if len(d.requests()) >= 2 {
			once.Do(func() { close(reached) })
		}
		return control.Reply{Error: control.Errorf(control.CodeInternal, "disk on fire")}
	}
	o := &clientOptions{cmd: "status", httpURL: apiServer(t, d, ""), timeout: 5 * time.Second}
	stdout, _ := runWatch(t, o, watchOptions{interval: time.Millisecond}, reached)
	if !strings.HasPrefix(stdout, "error: internal: disk on fire\nrefresh failed at 12:00:00 · every 1ms") {
		t.Errorf("stdout:\n%s", stdout)
	}
}

// -watch over AMQP: one request per frame, over one connection and reply
// queue.
func TestStatusWatchAMQP(t *testing.T) {
	url := brokerURL(t)
	sys := "clitest-" + randomID()[:8]
	got := fakeAMQPHost(t, url, []string{sys + ".h1"}, statusOf("h1"))
	o := &clientOptions{cmd: "status", amqpURL: url, host: "h1", systemID: sys, timeout: 5 * time.Second}
	var replyTo []string
	third := make(chan struct{})
	go func() {
		for m := range got {
			replyTo = append(replyTo, m.replyTo)
			if len(replyTo) == 3 {
				close(third)
				return
			}
		}
	}()
	stdout, stderr := runWatch(t, o, watchOptions{interval: time.Millisecond}, third)
	frames := strings.Split(stdout, "\n\n")
	if len(frames) < 2 || !strings.Contains(frames[0], "w-h1") || !strings.Contains(frames[1], "w-h1") || stderr != "" {
		t.Errorf("stdout:\n%s\nstderr:\n%s", stdout, stderr)
	}
	if replyTo[0] == "" || replyTo[1] != replyTo[0] || replyTo[2] != replyTo[0] {
		t.Errorf("reply queues %q: not one session", replyTo)
	}
}

// The real command: SIGINT or SIGTERM ends -watch with exit status 0.
func TestStatusWatchStopsOnSignal(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			srv := newStatusServer(t)
			cmd := exec.Command(os.Args[0], "status", "--watch", "-interval", "100ms", "-http", srv.URL)
			cmd.Env = append(os.Environ(), "DYNWORKERS_CLI_MAIN=1")
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			select {
			case <-srv.reached(3):
			case err := <-exited:
				t.Fatalf("exited early (%v):\n%s\n%s", err, stdout.String(), stderr.String())
			case <-time.After(waitTimeout):
				cmd.Process.Kill()
				t.Fatalf("no third request within %s", waitTimeout)
			}
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-exited:
				if err != nil {
					t.Errorf("exit: %v\nstderr:\n%s", err, stderr.String())
				}
			case <-time.After(waitTimeout):
				cmd.Process.Kill()
				t.Fatalf("still running %s after %s", waitTimeout, sig)
			}
			out := stdout.String()
			if n := strings.Count(out, "Ctrl-C to stop\n"); n < 2 || strings.Contains(out, "\x1b") || !strings.Contains(out, "greeter") {
				t.Errorf("%d frames:\n%s", n, out)
			}
		})
	}
}
