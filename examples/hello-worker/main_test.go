package main

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/dynworkers/dynworkers/sdk"
)

// testEnv is a minimal sdk.Env for running the class in-process.
type testEnv struct{ logger hclog.Logger }

func (e testEnv) WorkerName() string     { return "test" }
func (e testEnv) ClassName() string      { return "hello" }
func (e testEnv) SystemID() string       { return "test" }
func (e testEnv) HostName() string       { return "localhost" }
func (e testEnv) Logger() hclog.Logger   { return e.logger }
func (e testEnv) Exit(error)             { panic("Exit is not expected here") }
func (e testEnv) Children() sdk.Children { return sdk.NoChildren() }

func TestHelloGreets(t *testing.T) {
	w, err := Class.NewWorker([]byte(`{"name":"tests","interval":"10ms"}`))
	if err != nil {
		t.Fatal(err)
	}
	h := w.(*Hello)
	if h.cfg.Greeting != "hello" || h.cfg.Name != "tests" || h.cfg.Interval != 10*time.Millisecond {
		t.Fatalf("decoded config = %+v", h.cfg)
	}
	if err := w.Start(context.Background(), testEnv{hclog.NewNullLogger()}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, _ := h.Status(context.Background())
		if st["greetings"].(int) >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no greetings after 10s: %v", st)
		}
		time.Sleep(5 * time.Millisecond) // polling with a deadline
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestHelloRejectsBadConfig(t *testing.T) {
	if _, err := Class.NewWorker([]byte(`{"interval":"soon"}`)); !errors.Is(err, sdk.ErrInvalidConfig) {
		t.Fatalf("err = %v, want ErrInvalidConfig", err)
	}
	w, err := Class.NewWorker([]byte(`{"interval":"-1s"}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(context.Background(), testEnv{hclog.NewNullLogger()}); !errors.Is(err, sdk.ErrInvalidConfig) {
		t.Fatalf("Start err = %v, want ErrInvalidConfig", err)
	}
}
