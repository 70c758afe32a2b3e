package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dynworkers/dynworkers/internal/wire"
	"github.com/dynworkers/dynworkers/internal/wire/proto"
)

type echoConfig struct {
	Prefix string `config:"prefix,required" help:"put before every reply"`
	Secret string `config:"secret,sensitive"`
}

type echoWorker struct {
	cfg     echoConfig
	env     *Env
	stopped atomic.Bool
	healthy atomic.Bool
}

func (w *echoWorker) Start(_ context.Context, env *Env) error {
	if w.cfg.Prefix == "fail" {
		return errors.New("upstream unavailable")
	}
	w.env = env
	w.healthy.Store(true)
	return nil
}

func (w *echoWorker) Stop(context.Context) error { w.stopped.Store(true); return nil }

func (w *echoWorker) Health(context.Context) error {
	if !w.healthy.Load() {
		return errors.New("wedged")
	}
	return nil
}

func (w *echoWorker) Status(context.Context) (map[string]any, error) {
	return map[string]any{"prefix": w.cfg.Prefix, "worker": w.env.WorkerName()}, nil
}

var echoClass = Class{
	Name:        "echo",
	Aliases:     []string{"vumi.echo"},
	Description: "echoes",
	Version:     "2.0.0",
	New: Construct(func(cfg echoConfig) (Worker, error) {
		return &echoWorker{cfg: cfg}, nil
	}),
}

// dial serves the classes over a real gRPC connection in-process, as
// go-plugin does in a plugin process, and returns the host's client.
func dial(t *testing.T, classes ...Class) (proto.WorkerClient, *server) {
	t.Helper()
	srv := newServer(classes, discardLogger())
	client, _ := plugin.TestPluginGRPCConn(t, false, map[string]plugin.Plugin{wire.PluginName: &wire.GRPCWorkerPlugin{Impl: srv}})
	t.Cleanup(func() { client.Close() })
	raw, err := client.Dispense(wire.PluginName)
	if err != nil {
		t.Fatal(err)
	}
	return raw.(proto.WorkerClient), srv
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestDescribeOverGRPC(t *testing.T) {
	wc, _ := dial(t, echoClass)
	resp, err := wc.Describe(ctx(t), &proto.DescribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp.SdkVersion != Version || len(resp.Classes) != 1 {
		t.Fatalf("describe = %v", resp)
	}
	c := resp.Classes[0]
	if c.Name != "echo" || c.Aliases[0] != "vumi.echo" || c.Version != "2.0.0" || len(c.Schema) != 2 {
		t.Fatalf("class = %v", c)
	}
	if a := c.Schema[0]; a.Name != "prefix" || a.Type != "string" || !a.Required || a.Description != "put before every reply" {
		t.Errorf("prefix attribute = %v", a)
	}
	if a := c.Schema[1]; !a.Sensitive {
		t.Errorf("secret attribute = %v, want sensitive", a)
	}
}

func TestWorkerLifecycleOverGRPC(t *testing.T) {
	wc, srv := dial(t, echoClass)
	if h, err := wc.Health(ctx(t), &proto.HealthRequest{}); err != nil || h.Healthy {
		t.Fatalf("health before start = %v, %v; want unhealthy", h, err)
	}
	_, err := wc.Start(ctx(t), &proto.StartRequest{WorkerName: "e1", Class: "vumi.echo", ConfigJson: []byte(`{"prefix":"> ","secret":"s3"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wc.Start(ctx(t), &proto.StartRequest{WorkerName: "e2", Class: "echo", ConfigJson: []byte(`{"prefix":"x"}`)}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("second Start = %v, want FailedPrecondition: one process runs one worker", err)
	}
	w := srv.running().(*echoWorker)
	if w.env.ClassName() != "echo" || w.env.WorkerName() != "e1" || w.cfg.Secret != "s3" {
		t.Errorf("worker got class %q name %q config %+v", w.env.ClassName(), w.env.WorkerName(), w.cfg)
	}
	if h, err := wc.Health(ctx(t), &proto.HealthRequest{}); err != nil || !h.Healthy {
		t.Fatalf("health = %v, %v", h, err)
	}
	w.healthy.Store(false)
	if h, _ := wc.Health(ctx(t), &proto.HealthRequest{}); h.Healthy || h.Message != "wedged" {
		t.Errorf("health of a wedged worker = %v", h)
	}
	st, err := wc.Status(ctx(t), &proto.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var details map[string]any
	if err := json.Unmarshal(st.DetailsJson, &details); err != nil || details["prefix"] != "> " {
		t.Errorf("status = %s, %v", st.DetailsJson, err)
	}
	if _, err := wc.Stop(ctx(t), &proto.StopRequest{TimeoutMs: 1000}); err != nil || !w.stopped.Load() {
		t.Errorf("stop = %v, stopped %v", err, w.stopped.Load())
	}
}

func TestStartErrorsOverGRPC(t *testing.T) {
	tests := []struct {
		name, class, config string
		code                codes.Code
		want                string
	}{
		{"unknown class", "nope", `{}`, codes.NotFound, `class "nope" is not offered`},
		{"missing required", "echo", `{}`, codes.InvalidArgument, `attribute "prefix" is required`},
		{"unknown attribute", "echo", `{"prefix":"x","prefx":1}`, codes.InvalidArgument, `unsupported attribute "prefx"`},
		{"start error", "echo", `{"prefix":"fail"}`, codes.Unknown, "upstream unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wc, _ := dial(t, echoClass)
			_, err := wc.Start(ctx(t), &proto.StartRequest{WorkerName: "w", Class: tt.class, ConfigJson: []byte(tt.config)})
			if status.Code(err) != tt.code || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Start = %v, want code %s and %q", err, tt.code, tt.want)
			}
		})
	}
}

func TestValidateClasses(t *testing.T) {
	dup := echoClass
	dup.Name = "other"
	dup.Aliases = []string{"echo"}
	bad := Class{Name: "bad name!", New: Construct(func(struct{ C chan int }) (Worker, error) { return nil, nil })}
	err := validateClasses([]Class{echoClass, dup, bad})
	for _, want := range []string{`name "echo" is claimed by classes "echo" and "other"`, `class name "bad name!"`, "unsupported config field type chan int"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("validateClasses = %v, want it to mention %q", err, want)
		}
	}
	if err := validateClasses(nil); err == nil {
		t.Error("no classes: want an error")
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
