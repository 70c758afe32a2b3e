package pluginproc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dynworkers/dynworkers/sdk"
)

// fakeChildHost is a ChildHost that records the calls it gets and keeps its
// children in memory.
type fakeChildHost struct {
	mu       sync.Mutex
	reqs     []ChildRequest
	stops    []string
	children []ChildInfo
	// startErr, if set, decides the error of a StartChild.
	startErr func(ChildRequest) error
	// stopErr, if set, is the error of every StopChild.
	stopErr error
	// hang, if set, makes every call block until it is closed, whatever
	// its ctx says; entered is signalled when a call begins.
	hang    chan struct{}
	entered chan struct{}
	// ctxErr receives the ctx error of calls that waited for their ctx
	// (listWaits).
	listWaits bool
	ctxErr    chan error
}

func (f *fakeChildHost) block(ctx context.Context) {
	if f.entered != nil {
		select {
		case f.entered <- struct{}{}:
		default:
		}
	}
	if f.hang != nil {
		<-f.hang
	}
}

func (f *fakeChildHost) StartChild(ctx context.Context, req ChildRequest) (ChildInfo, string, error) {
	f.block(ctx)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reqs = append(f.reqs, req)
	if f.startErr != nil {
		if err := f.startErr(req); err != nil {
			return ChildInfo{}, "", err
		}
	}
	ci := ChildInfo{Name: req.Name, Class: req.Class, State: "running", Pid: 1000 + len(f.reqs), Restarts: len(f.reqs) - 1}
	f.children = append(f.children, ci)
	return ci, ChildStarted, nil
}

func (f *fakeChildHost) StopChild(ctx context.Context, name string) error {
	f.block(ctx)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stops = append(f.stops, name)
	if f.stopErr != nil {
		return f.stopErr
	}
	i := slices.IndexFunc(f.children, func(ci ChildInfo) bool { return ci.Name == name })
	if i < 0 {
		return fmt.Errorf("%w: %q", ErrChildNotFound, name)
	}
	f.children = slices.Delete(f.children, i, i+1)
	return nil
}

func (f *fakeChildHost) ListChildren(ctx context.Context) ([]ChildInfo, error) {
	f.block(ctx)
	if f.listWaits {
		<-ctx.Done()
		f.ctxErr <- ctx.Err()
		return nil, ctx.Err()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.children), nil
}

func hybridPath() string { return filepath.Join(pluginDir, "hybrid") }

// hybridOptions returns Options for a worker of the hybrid test plugin.
func hybridOptions(t *testing.T, cfg map[string]any, ch ChildHost) Options {
	t.Helper()
	o := chaosOptions(t, cfg)
	o.Path = hybridPath()
	o.Checksum = sha(t, o.Path)
	o.Class = "hybrid"
	o.ChildHost = ch
	return o
}

// hybridStatus is the hybrid test plugin's Status.
type hybridStatus struct {
	Started    []sdk.ChildInfo `json:"started"`
	Errors     []string        `json:"errors"`
	ErrorKinds []string        `json:"error_kinds"`
	Stopped    []string        `json:"stopped"`
	Children   []sdk.ChildInfo `json:"children"`
	ListError  string          `json:"list_error"`
	Pid        int             `json:"pid"`
}

func statusOf(t *testing.T, p *Process) hybridStatus {
	t.Helper()
	raw, err := p.Status(context.Background())
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	var st hybridStatus
	if err := json.Unmarshal(raw, &st); err != nil {
		t.Fatalf("Status %s: %v", raw, err)
	}
	return st
}

func TestHostServiceRoundTrip(t *testing.T) {
	launchLog(t)
	fake := &fakeChildHost{}
	p := start(t, hybridOptions(t, map[string]any{
		"class":   "chaos",
		"count":   2,
		"config":  map[string]any{"mode": "run", "delay": "1s"},
		"restart": "transient",
		"stop":    "2",
	}, fake))

	fake.mu.Lock()
	reqs := slices.Clone(fake.reqs)
	stops := slices.Clone(fake.stops)
	fake.mu.Unlock()
	if len(reqs) != 2 {
		t.Fatalf("the ChildHost got %d StartChild calls, want 2: %+v", len(reqs), reqs)
	}
	for i, r := range reqs {
		want := ChildRequest{Name: fmt.Sprint(i + 1), Class: "chaos", ConfigJSON: []byte(`{"delay":"1s","mode":"run"}`), Restart: "transient"}
		if r.Name != want.Name || r.Class != want.Class || string(r.ConfigJSON) != string(want.ConfigJSON) || r.Restart != want.Restart {
			t.Errorf("StartChild %d got %+v (config %s), want %+v (config %s)", i, r, r.ConfigJSON, want, want.ConfigJSON)
		}
	}
	if !slices.Equal(stops, []string{"2"}) {
		t.Errorf("StopChild calls %v, want [2]", stops)
	}

	st := statusOf(t, p)
	if len(st.Errors) != 0 {
		t.Fatalf("the worker got errors: %v", st.Errors)
	}
	want := []sdk.ChildInfo{
		{Name: "1", Class: "chaos", State: "running", Pid: 1001, Restarts: 0, Outcome: sdk.ChildStarted},
		{Name: "2", Class: "chaos", State: "running", Pid: 1002, Restarts: 1, Outcome: sdk.ChildStarted},
	}
	if !slices.Equal(st.Started, want) {
		t.Errorf("the worker got %+v, want %+v", st.Started, want)
	}
	if !slices.Equal(st.Stopped, []string{"2"}) {
		t.Errorf("the worker stopped %v", st.Stopped)
	}
	if st.ListError != "" || len(st.Children) != 1 || st.Children[0].Name != "1" || st.Children[0].Pid != 1001 {
		t.Errorf("ListChildren = %+v, error %q", st.Children, st.ListError)
	}
}

func TestHostServiceErrors(t *testing.T) {
	fake := &fakeChildHost{
		startErr: func(r ChildRequest) error {
			switch r.Name {
			case "1":
				return fmt.Errorf("%w: unknown class %q", ErrInvalidChild, r.Class)
			case "2":
				return fmt.Errorf("child config: %w: attribute \"mode\": want a string", sdk.ErrInvalidConfig)
			case "3":
				return status.Error(codes.AlreadyExists, `worker name "h.3" is taken by a worker of the config`)
			case "4":
				return errors.New("the tree is shutting down")
			}
			return nil
		},
		stopErr: fmt.Errorf("%w: worker %q has no child %q", ErrChildNotFound, "h", "9"),
	}
	p := start(t, hybridOptions(t, map[string]any{"class": "nope", "count": 4, "stop": "9"}, fake))
	st := statusOf(t, p)
	wantErrs := []struct{ kind, text string }{
		{"invalid_config", `StartChild "1": invalid child: unknown class "nope" (InvalidArgument)`},
		{"invalid_config", `StartChild "2": child config: invalid config: attribute "mode": want a string (InvalidArgument)`},
		{"exists", `StartChild "3": worker name "h.3" is taken by a worker of the config (AlreadyExists)`},
		{"other", `StartChild "4": the tree is shutting down (Unknown)`},
		{"not_found", `StopChild "9": no such child: worker "h" has no child "9" (NotFound)`},
	}
	if len(st.Errors) != len(wantErrs) || len(st.ErrorKinds) != len(wantErrs) {
		t.Fatalf("the worker got errors %q (kinds %v), want %d", st.Errors, st.ErrorKinds, len(wantErrs))
	}
	for i, w := range wantErrs {
		if st.Errors[i] != w.text || st.ErrorKinds[i] != w.kind {
			t.Errorf("error %d = %q (%s), want %q (%s)", i, st.Errors[i], st.ErrorKinds[i], w.text, w.kind)
		}
	}
}

// A hybrid whose Start fails because the host says its child is invalid
// fails for good, like a worker with an invalid config.
func TestHostServiceInvalidChildFailsStart(t *testing.T) {
	pids := launchLog(t)
	fake := &fakeChildHost{startErr: func(r ChildRequest) error {
		return fmt.Errorf("%w: unknown class %q", ErrInvalidChild, r.Class)
	}}
	_, err := Start(context.Background(), hybridOptions(t, map[string]any{"class": "nope", "count": 1, "fail": true}, fake))
	if !IsPermanent(err) || !errors.Is(err, sdk.ErrInvalidConfig) || !strings.Contains(err.Error(), `unknown class "nope"`) {
		t.Errorf("Start = %v (permanent %v), want a permanent error naming the class", err, IsPermanent(err))
	}
	fake.startErr = func(ChildRequest) error { return errors.New("no capacity") }
	_, err = Start(context.Background(), hybridOptions(t, map[string]any{"class": "c", "count": 1, "fail": true}, fake))
	if err == nil || IsPermanent(err) || !strings.Contains(err.Error(), "no capacity") {
		t.Errorf("Start = %v (permanent %v), want a transient error", err, IsPermanent(err))
	}
	for _, pid := range pids() {
		assertGone(t, pid)
	}
}

func TestHostServiceWithoutChildHost(t *testing.T) {
	o := hybridOptions(t, map[string]any{"count": 1, "stop": "1"}, nil)
	p := start(t, o)
	st := statusOf(t, p)
	wantErrs := []string{
		`StartChild "1": worker "` + o.WorkerName + `" may not start child workers: the host does not run children for it (FailedPrecondition)`,
		`may not stop child workers`,
	}
	if len(st.Errors) != 2 || st.Errors[0] != wantErrs[0] || !strings.Contains(st.Errors[1], wantErrs[1]) {
		t.Errorf("errors = %q, want %q", st.Errors, wantErrs)
	}
	if !strings.Contains(st.ListError, "may not list child workers") {
		t.Errorf("ListChildren error = %q", st.ListError)
	}
}

func TestHostCallTimeout(t *testing.T) {
	fake := &fakeChildHost{hang: make(chan struct{})}
	defer close(fake.hang) // lets the hung calls end
	o := hybridOptions(t, map[string]any{"count": 1}, fake)
	o.HostCallTimeout = 300 * time.Millisecond
	begin := time.Now()
	p := start(t, o)
	if d := time.Since(begin); d > 10*time.Second {
		t.Errorf("Start took %s with a ChildHost that never answers", d)
	}
	st := statusOf(t, p)
	if len(st.Errors) != 1 || st.ErrorKinds[0] != "deadline" || !strings.Contains(st.Errors[0], "the host did not answer StartChild within 300ms") {
		t.Errorf("errors %q (kinds %v), want the host's deadline", st.Errors, st.ErrorKinds)
	}
	if !strings.Contains(st.ListError, "the host did not answer ListChildren within 300ms") {
		t.Errorf("ListChildren error = %q", st.ListError)
	}
}

// A call under way when the process ends has its ctx cancelled.
func TestHostCallCancelledWhenProcessEnds(t *testing.T) {
	fake := &fakeChildHost{listWaits: true, entered: make(chan struct{}, 1), ctxErr: make(chan error, 1)}
	p := start(t, hybridOptions(t, map[string]any{}, fake))
	go p.Status(context.Background()) // calls ListChildren
	select {
	case <-fake.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("ListChildren was not called")
	}
	p.Kill("test")
	waitDone(t, p, 10*time.Second)
	select {
	case err := <-fake.ctxErr:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("the call's ctx ended with %v, want Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the ChildHost call's ctx was not cancelled when the process ended")
	}
}

// A worker started in a warm spare, launched before its ChildHost was
// known, reaches it like any other.
func TestHostServiceInSpare(t *testing.T) {
	launchLog(t)
	s, _ := newSpares(t, 1)
	o := hybridOptions(t, map[string]any{}, nil)
	sp := prime(t, s, o)
	fake := &fakeChildHost{}
	o = hybridOptions(t, map[string]any{"class": "chaos", "count": 1}, fake)
	o.Spares = s
	// Time has to pass, not an event: go-plugin's broker forgets a
	// connection's info on a real 5 s timer that tells nobody it fired.
	time.Sleep(6 * time.Second)
	p := start(t, o)
	if p != sp {
		t.Fatalf("Start launched pid %d, want the spare %d", p.Pid(), sp.Pid())
	}
	st := statusOf(t, p)
	if len(st.Errors) != 0 || len(st.Started) != 1 || st.Started[0].Pid != 1001 {
		t.Errorf("status %+v", st)
	}
	if len(st.Children) != 1 || st.ListError != "" {
		t.Errorf("ListChildren = %+v, error %q", st.Children, st.ListError)
	}
}

// The connection to the Host service outlives go-plugin's 5 s window for
// brokered connections: a call long after Start works.
func TestHostServiceLongAfterStart(t *testing.T) {
	if testing.Short() {
		t.Skip("waits 6s")
	}
	fake := &fakeChildHost{children: []ChildInfo{{Name: "a", Class: "chaos", State: "running", Pid: 7}}}
	p := start(t, hybridOptions(t, map[string]any{}, fake))
	time.Sleep(6 * time.Second) // past go-plugin's 5 s timer, as above
	st := statusOf(t, p)
	if st.ListError != "" || len(st.Children) != 1 || st.Children[0].Pid != 7 {
		t.Errorf("ListChildren 6s after Start = %+v, error %q", st.Children, st.ListError)
	}
	// And a worker whose process is SIGKILLed leaves no Host service
	// behind (its socket file is removed; TestMain checks $TMPDIR).
	if err := syscall.Kill(p.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitDone(t, p, 10*time.Second)
}

func TestChildStatus(t *testing.T) {
	tests := []struct {
		err  error
		code codes.Code
	}{
		{fmt.Errorf("x: %w", ErrChildNotFound), codes.NotFound},
		{fmt.Errorf("x: %w", ErrChildExists), codes.AlreadyExists},
		{fmt.Errorf("x: %w", ErrInvalidChild), codes.InvalidArgument},
		{sdk.InvalidConfig("port"), codes.InvalidArgument},
		{fmt.Errorf("wrapped: %w", status.Error(codes.ResourceExhausted, "too many children")), codes.ResourceExhausted},
		{fmt.Errorf("x: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
		{context.Canceled, codes.Canceled},
		{errors.New("other"), codes.Unknown},
	}
	for _, tt := range tests {
		got := ChildStatus(tt.err)
		s, _ := status.FromError(got)
		if s.Code() != tt.code || !strings.Contains(s.Message(), strings.TrimPrefix(tt.err.Error(), "rpc error: code = ResourceExhausted desc = ")) {
			t.Errorf("ChildStatus(%v) = %v, want code %s and the error's text", tt.err, got, tt.code)
		}
	}
	if ChildStatus(nil) != nil {
		t.Error("ChildStatus(nil) != nil")
	}
}
