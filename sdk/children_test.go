package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dynworkers/dynworkers/internal/wire"
	"github.com/dynworkers/dynworkers/internal/wire/proto"
)

// fakeHost is a Host service that records what it is asked and answers
// with err when set.
type fakeHost struct {
	proto.UnimplementedHostServer

	mu       sync.Mutex
	starts   []*proto.StartChildRequest
	stops    []string
	children []*proto.ChildInfo
	err      error
}

func (h *fakeHost) StartChild(_ context.Context, req *proto.StartChildRequest) (*proto.StartChildResponse, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.starts = append(h.starts, req)
	if h.err != nil {
		return nil, h.err
	}
	ci := &proto.ChildInfo{Name: req.Name, Class: req.Class + ".canonical", State: "running", Pid: 4242, Restarts: 1}
	h.children = append(h.children, ci)
	return &proto.StartChildResponse{Child: ci, Outcome: "started"}, nil
}

func (h *fakeHost) StopChild(_ context.Context, req *proto.StopChildRequest) (*proto.StopChildResponse, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stops = append(h.stops, req.Name)
	if h.err != nil {
		return nil, h.err
	}
	return &proto.StopChildResponse{}, nil
}

func (h *fakeHost) ListChildren(context.Context, *proto.ListChildrenRequest) (*proto.ListChildrenResponse, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err != nil {
		return nil, h.err
	}
	return &proto.ListChildrenResponse{Children: h.children}, nil
}

func (h *fakeHost) setErr(err error) {
	h.mu.Lock()
	h.err = err
	h.mu.Unlock()
}

// brokerPlugin is wire.GRPCWorkerPlugin that also hands the host side's broker
// to the test, as pluginproc gets it from go-plugin.
type brokerPlugin struct {
	wire.GRPCWorkerPlugin
	broker chan *plugin.GRPCBroker
}

func (p *brokerPlugin) GRPCClient(ctx context.Context, b *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	p.broker <- b
	return p.GRPCWorkerPlugin.GRPCClient(ctx, b, c)
}

var childClass = Class{
	Name: "hybrid",
	New: Construct(func(struct{}) (Worker, error) {
		return &echoWorker{cfg: echoConfig{Prefix: "hybrid"}}, nil
	}),
}

// startWithHost starts a worker of childClass over real gRPC, with the host
// side serving host on a brokered connection (as pluginproc does) unless
// host is nil, and returns the worker's Env.
func startWithHost(t *testing.T, host proto.HostServer) *Env {
	t.Helper()
	env, _, _ := startWithHostServer(t, host)
	return env
}

// startWithHostServer is startWithHost that also returns the worker's
// client and server.
func startWithHostServer(t *testing.T, host proto.HostServer) (*Env, proto.WorkerClient, *server) {
	t.Helper()
	wc, srv := startClass(t, childClass, host, nil)
	return srv.running().(*echoWorker).env, wc, srv
}

// startClass starts a worker of class over real gRPC, with the host side
// serving host on a brokered connection unless host is nil; srv.exit is
// exit if not nil.
func startClass(t *testing.T, class Class, host proto.HostServer, exit func(int)) (proto.WorkerClient, *server) {
	t.Helper()
	srv := newServer([]Class{class}, discardLogger())
	if exit != nil {
		srv.exit = exit
	}
	bp := &brokerPlugin{GRPCWorkerPlugin: wire.GRPCWorkerPlugin{Impl: srv}, broker: make(chan *plugin.GRPCBroker, 2)}
	client, _ := plugin.TestPluginGRPCConn(t, false, map[string]plugin.Plugin{wire.PluginName: bp})
	t.Cleanup(func() { client.Close() })
	raw, err := client.Dispense(wire.PluginName)
	if err != nil {
		t.Fatal(err)
	}
	wc := raw.(proto.WorkerClient)
	broker := <-bp.broker
	var id uint32
	if host != nil {
		id = broker.NextId()
		ln, err := broker.Accept(id)
		if err != nil {
			t.Fatal(err)
		}
		gs := grpc.NewServer()
		proto.RegisterHostServer(gs, host)
		go gs.Serve(ln)
		t.Cleanup(gs.Stop)
	}
	if _, err := wc.Start(ctx(t), &proto.StartRequest{WorkerName: "h1", Class: class.Name, ConfigJson: []byte(`{}`), HostBrokerId: id}); err != nil {
		t.Fatal(err)
	}
	return wc, srv
}

func TestChildrenRoundTrip(t *testing.T) {
	host := &fakeHost{}
	env := startWithHost(t, host)
	info, err := env.Children().StartChild(ctx(t), ChildSpec{
		Name:    "1",
		Class:   "echo",
		Config:  map[string]any{"prefix": "> ", "port": "2773"},
		Restart: "transient",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := ChildInfo{Name: "1", Class: "echo.canonical", State: "running", Pid: 4242, Restarts: 1, Outcome: ChildStarted}
	if info != want {
		t.Errorf("StartChild = %+v, want %+v", info, want)
	}
	host.mu.Lock()
	req := host.starts[0]
	host.mu.Unlock()
	if req.Name != "1" || req.Class != "echo" || req.Restart != "transient" || string(req.ConfigJson) != `{"port":"2773","prefix":"\u003e "}` {
		t.Errorf("the host got %v", req)
	}
	list, err := env.Children().ListChildren(ctx(t))
	if err != nil || len(list) != 1 || list[0].Name != "1" || list[0].Outcome != "" {
		t.Errorf("ListChildren = %+v, %v", list, err)
	}
	if err := env.Children().StopChild(ctx(t), "1"); err != nil {
		t.Errorf("StopChild: %v", err)
	}
	host.mu.Lock()
	defer host.mu.Unlock()
	if len(host.stops) != 1 || host.stops[0] != "1" {
		t.Errorf("the host got stops %v", host.stops)
	}
}

func TestChildConfigEncodings(t *testing.T) {
	host := &fakeHost{}
	env := startWithHost(t, host)
	type cfg struct {
		Interval string `json:"interval"`
	}
	tests := []struct {
		name   string
		config any
		want   string
	}{
		{"nil", nil, `{}`},
		{"raw", json.RawMessage(`{"a":1}`), `{"a":1}`},
		{"bytes", []byte(`{"b":"x"}`), `{"b":"x"}`},
		{"struct", cfg{Interval: "1h"}, `{"interval":"1h"}`},
	}
	for i, tt := range tests {
		if _, err := env.Children().StartChild(ctx(t), ChildSpec{Name: tt.name, Class: "c", Config: tt.config}); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		host.mu.Lock()
		got := string(host.starts[i].ConfigJson)
		host.mu.Unlock()
		if got != tt.want {
			t.Errorf("%s: the host got config %s, want %s", tt.name, got, tt.want)
		}
	}
	for _, bad := range []any{[]byte(`[1]`), "text", json.RawMessage(`{`), []int{1}, make(chan int)} {
		_, err := env.Children().StartChild(ctx(t), ChildSpec{Name: "bad", Class: "c", Config: bad})
		if !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("config %#v: err = %v, want ErrInvalidConfig", bad, err)
		}
	}
	host.mu.Lock()
	defer host.mu.Unlock()
	if len(host.starts) != len(tests) {
		t.Errorf("the host got %d starts, want %d: invalid configs must not reach it", len(host.starts), len(tests))
	}
}

func TestChildrenHostErrors(t *testing.T) {
	host := &fakeHost{}
	env := startWithHost(t, host)
	tests := []struct {
		code codes.Code
		msg  string
		is   error
	}{
		{codes.InvalidArgument, `unknown class "nope" (known: echo, other)`, ErrInvalidConfig},
		{codes.NotFound, `worker "h1" has no child "9"`, ErrChildNotFound},
		{codes.AlreadyExists, `worker name "h1.1" is taken`, ErrChildExists},
		{codes.Unimplemented, `method StartChild not implemented`, ErrNoHostService},
		{codes.DeadlineExceeded, `no answer within 1m0s`, context.DeadlineExceeded},
		{codes.Unavailable, `the host is shutting down`, ErrUnavailable},
		{codes.FailedPrecondition, `worker "h1" may not start child workers`, nil},
	}
	for _, tt := range tests {
		host.setErr(status.Error(tt.code, tt.msg))
		_, err := env.Children().StartChild(ctx(t), ChildSpec{Name: "1", Class: "nope"})
		var he *HostError
		if !errors.As(err, &he) || he.code != tt.code || he.Message != tt.msg || he.Call != "StartChild" || he.Name != "1" {
			t.Errorf("%s: StartChild error = %#v", tt.code, err)
			continue
		}
		if want := `StartChild "1": ` + tt.msg + " (" + tt.code.String() + ")"; err.Error() != want {
			t.Errorf("error text = %q, want %q", err, want)
		}
		if tt.is != nil && !errors.Is(err, tt.is) {
			t.Errorf("%s: errors.Is(%v, %v) = false", tt.code, err, tt.is)
		}
		for _, other := range []error{ErrInvalidConfig, ErrChildNotFound, ErrChildExists, ErrNoHostService, ErrUnavailable} {
			if other != tt.is && errors.Is(err, other) {
				t.Errorf("%s: error also matches %v", tt.code, other)
			}
		}
	}
	host.setErr(status.Error(codes.NotFound, `no child "x"`))
	if err := env.Children().StopChild(ctx(t), "x"); !errors.Is(err, ErrChildNotFound) || !strings.Contains(err.Error(), `no child "x"`) {
		t.Errorf("StopChild = %v", err)
	}
	if _, err := env.Children().ListChildren(ctx(t)); !errors.Is(err, ErrChildNotFound) {
		t.Errorf("ListChildren = %v", err)
	}
}

func TestChildrenWithoutHostService(t *testing.T) {
	env := startWithHost(t, nil)
	c := env.Children()
	if _, err := c.StartChild(ctx(t), ChildSpec{Name: "1", Class: "echo"}); !errors.Is(err, ErrNoHostService) || !strings.Contains(err.Error(), "the host offers no Host service") {
		t.Errorf("StartChild = %v, want ErrNoHostService", err)
	}
	if err := c.StopChild(ctx(t), "1"); !errors.Is(err, ErrNoHostService) {
		t.Errorf("StopChild = %v", err)
	}
	if _, err := c.ListChildren(ctx(t)); !errors.Is(err, ErrNoHostService) {
		t.Errorf("ListChildren = %v", err)
	}
}

// go-plugin's broker forgets the host's connection info 5 s after it
// arrived; a worker that first uses Children later must still reach it.
func TestChildrenUsedLongAfterStart(t *testing.T) {
	if testing.Short() {
		t.Skip("waits 6s")
	}
	t.Parallel()
	host := &fakeHost{}
	env := startWithHost(t, host)
	// Time has to pass here, not an event: go-plugin's timer runs on the
	// real clock and tells nobody when it fires.
	time.Sleep(6 * time.Second)
	if _, err := env.Children().ListChildren(ctx(t)); err != nil {
		t.Fatalf("ListChildren 6s after Start: %v", err)
	}
}

func TestChildrenCallerDeadline(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	env := startWithHost(t, &blockingHost{block: block})
	c, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := env.Children().ListChildren(c)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("ListChildren = %v, want the caller's deadline", err)
	}
}

type blockingHost struct {
	proto.UnimplementedHostServer
	block chan struct{}
}

func (h *blockingHost) ListChildren(ctx context.Context, _ *proto.ListChildrenRequest) (*proto.ListChildrenResponse, error) {
	select {
	case <-h.block:
	case <-ctx.Done():
	}
	return nil, status.Error(codes.DeadlineExceeded, "late")
}

// A Host service the plugin cannot reach is ErrUnavailable for the calls.
func TestUnreachableHostIsUnavailable(t *testing.T) {
	c := hostChildren{h: dialHost(nil, 7, discardLogger())}
	if _, err := c.ListChildren(ctx(t)); !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNoHostService) {
		t.Errorf("ListChildren = %v, want ErrUnavailable", err)
	}
}
