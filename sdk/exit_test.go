package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/internal/wire/proto"
)

// exitCodes records the codes a test server's exit is called with.
type exitCodes chan int

func (c exitCodes) exit(code int) { c <- code }

func (c exitCodes) wait(t *testing.T) int {
	t.Helper()
	select {
	case code := <-c:
		return code
	case <-time.After(15 * time.Second):
		t.Fatal("the process did not exit")
		return 0
	}
}

// Exit called by a handler stops the consumers (the handler's own message
// is requeued, the ones before it stay acked and reach the host first),
// flushes, calls Worker.Stop and exits with status 1 for an error.
func TestExitFromHandler(t *testing.T) {
	host := newFakeBusHost()
	codes := make(exitCodes, 2)
	_, srv := startClass(t, childClass, host, codes.exit)
	w := srv.running().(*echoWorker)
	env := w.env
	returned := make(chan struct{})
	if err := env.Consume("q", func(ctx context.Context, m Message) error {
		if string(m.Body) == "bye" {
			env.Exit(errors.New("done for"))
			close(returned) // never: Exit does not return
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	s := host.stream(t)
	s.deliver(t, 1, "x", false)
	s.deliver(t, 2, "bye", false)
	if code := codes.wait(t); code != 1 {
		t.Errorf("exit status %d, want 1", code)
	}
	select {
	case <-returned:
		t.Error("Exit returned")
	default:
	}
	if !w.stopped.Load() {
		t.Error("Exit did not call the worker's Stop")
	}
	s.waitGone(t)
	ev := host.events()
	ack := slices.Index(ev, fmt.Sprintf("ack %d/1", s.id))
	if ack < 0 || ack > slices.Index(ev, fmt.Sprintf("end %d", s.id)) {
		t.Errorf("the first message was not acked before the stream ended: %v", ev)
	}
	for _, e := range ev {
		if strings.Contains(e, fmt.Sprintf("%d/2", s.id)) {
			t.Errorf("the message whose handler exited was settled (%q); it must be requeued", e)
		}
	}
	if err := env.Consume("q2", func(context.Context, Message) error { return nil }); !errors.Is(err, ErrConsumerStopped) {
		t.Errorf("Consume after Exit = %v", err)
	}
}

// runFn is the function of runClass's workers; tests set it before they
// start one.
var (
	runMu sync.Mutex
	runFn func(ctx context.Context, env *Env) error
)

var runClass = Class{
	Name: "runner",
	New: Construct(func(struct{}) (Worker, error) {
		runMu.Lock()
		fn := runFn
		runMu.Unlock()
		return Run(fn), nil
	}),
}

func setRunFn(fn func(ctx context.Context, env *Env) error) {
	runMu.Lock()
	runFn = fn
	runMu.Unlock()
}

// A Run function that returns by itself ends the worker as Exit does: a
// nil result is a normal exit, after what it published was flushed.
func TestRunReturnExits(t *testing.T) {
	host := newFakeBusHost()
	quit := make(chan struct{})
	setRunFn(func(ctx context.Context, env *Env) error {
		if err := env.Consume("q", func(ctx context.Context, m Message) error {
			return env.Publish(ctx, "out", m.Body, nil) // deferred to the ack
		}); err != nil {
			return err
		}
		<-quit
		return nil
	})
	codes := make(exitCodes, 2)
	startClass(t, runClass, host, codes.exit)
	s := host.stream(t)
	s.deliver(t, 1, "x", false)
	if g := host.nextSettled(t); g != fmt.Sprintf("ack %d/1", s.id) {
		t.Errorf("settled %q", g)
	}
	close(quit)
	if code := codes.wait(t); code != 0 {
		t.Errorf("exit status %d, want 0", code)
	}
	s.waitGone(t)
	if ev := host.events(); !slices.ContainsFunc(ev, func(e string) bool { return strings.HasPrefix(e, "pub out") }) {
		t.Errorf("the handler's publish did not reach the host: %v", ev)
	}

	// An error is an abnormal exit.
	setRunFn(func(ctx context.Context, env *Env) error { return errors.New("lost the link") })
	codes = make(exitCodes, 2)
	startClass(t, runClass, nil, codes.exit)
	if code := codes.wait(t); code != 1 {
		t.Errorf("exit status %d, want 1", code)
	}
}

// Stop cancels the Run function's context and waits for it; the process
// does not exit by itself.
func TestRunStop(t *testing.T) {
	running := make(chan struct{})
	setRunFn(func(ctx context.Context, env *Env) error {
		close(running)
		<-ctx.Done()
		return ctx.Err()
	})
	codes := make(exitCodes, 2)
	wc, _ := startClass(t, runClass, nil, codes.exit)
	<-running
	if _, err := wc.Stop(ctx(t), &proto.StopRequest{TimeoutMs: 5000}); err != nil {
		t.Fatalf("Stop = %v", err)
	}
	select {
	case code := <-codes:
		t.Errorf("the process exited (%d) after a Stop", code)
	case <-time.After(200 * time.Millisecond): // nothing should happen; a short look is enough
	}

	// A function that ignores its context holds Stop only until Stop's
	// deadline.
	release := make(chan struct{})
	defer close(release)
	w := Run(func(ctx context.Context, env *Env) error { <-release; return nil })
	if err := w.Start(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := w.Stop(sctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Stop of a stuck function = %v", err)
	}
	// A function's own error after Stop is Stop's.
	w = Run(func(ctx context.Context, env *Env) error { <-ctx.Done(); return errors.New("unclean") })
	_ = w.Start(context.Background(), nil)
	if err := w.Stop(ctx(t)); err == nil || err.Error() != "unclean" {
		t.Errorf("Stop = %v, want the function's error", err)
	}
}

// The logger writes the JSON lines the host parses: hclog's keys, its
// level names, its timestamp format; below the level nothing.
func TestLoggerLines(t *testing.T) {
	var buf bytes.Buffer
	l := newLogger(&buf, parseLevel("DEBUG")).With("worker", "w1")
	l.Debug("d")
	l.Log(context.Background(), levelTrace, "not shown")
	l.Info("hello", "n", 3, "err", errors.New("boom"))
	l.WithGroup("g").Warn("w", "k", "v")
	l.Error("e")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d lines:\n%s", len(lines), buf.String())
	}
	want := []struct{ level, msg string }{{"debug", "d"}, {"info", "hello"}, {"warn", "w"}, {"error", "e"}}
	for i, line := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		if m["@level"] != want[i].level || m["@message"] != want[i].msg || m["worker"] != "w1" {
			t.Errorf("line %q, want level %s message %s worker w1", line, want[i].level, want[i].msg)
		}
		ts, _ := m["@timestamp"].(string)
		if _, err := time.Parse(timestampFormat, ts); err != nil {
			t.Errorf("line %q: timestamp: %v", line, err)
		}
		if _, ok := m["time"]; ok {
			t.Errorf("line %q has slog's own keys", line)
		}
	}
	if !strings.Contains(lines[1], `"n":3`) || !strings.Contains(lines[1], `"err":"boom"`) {
		t.Errorf("attributes: %s", lines[1])
	}
	for in, want := range map[string]string{"trace": "trace", "Debug": "debug", "info": "info", "warn": "warn", "ERROR": "error", "": "info", "loud": "info"} {
		if got := levelName(parseLevel(in)); got != want {
			t.Errorf("level %q: %s, want %s", in, got, want)
		}
	}
}
