package main

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/sdk"
	"github.com/dynworkers/dynworkers/sdk/sdktest"
)

// A unit test: the class runs in the test's process with a recording Env
// (sdktest.Run), no host and no plugin process.
func TestHelloGreets(t *testing.T) {
	w := sdktest.Run(t, Class, `{"name":"tests","interval":"10ms","publish_to":"greetings"}`)
	h := w.Impl.(*Hello)
	if h.cfg.Greeting != "hello" || h.cfg.Name != "tests" || h.cfg.Interval != 10*time.Millisecond {
		t.Fatalf("decoded config = %+v", h.cfg)
	}
	got := w.Env.WaitPublished("greetings", 2)
	if string(got[0].Body) != "hello, tests!" || got[0].Headers["count"] != "1" || got[1].Headers["count"] != "2" {
		t.Errorf("published %+v", got)
	}
	if m := w.Env.WaitMetric("greetings"); m[0].Value != 1 || m[0].Aggregators[0] != sdk.AggSum {
		t.Errorf("metrics %+v", m)
	}
	w.Env.WaitLog("hello, tests!")
	if st := w.Status(context.Background()); st["greetings"].(float64) < 2 {
		t.Errorf("status %v", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestHelloRejectsBadConfig(t *testing.T) {
	for _, cfg := range []string{
		`{"interval":"soon"}`,              // not a duration: the constructor fails
		`{"interval":"-1s"}`,               // Start fails
		`{"publish_to":"vumi.control.x"}`,  // a routing key of the host's
		`{"greeting":"hi","colour":"red"}`, // no such attribute
	} {
		if _, err := sdktest.Start(t, Class, cfg); !errors.Is(err, sdk.ErrInvalidConfig) {
			t.Errorf("config %s: err = %v, want ErrInvalidConfig", cfg, err)
		}
	}
}

// An acceptance test: the plugin binary runs under a real host (built
// from this module), which the test talks to through its HTTP API.
func TestHelloUnderHost(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the host and the plugin")
	}
	h := sdktest.StartHost(t, sdktest.HostOptions{
		Plugins: []string{sdktest.BuildPlugin(t, ".")},
		Config: `
worker "greeter" {
  class = "examples.hello"
  config {
    name     = "acceptance"
    interval = "100ms"
  }
}`,
	})
	h.WaitLog("hello, acceptance!")
	st := h.Status()
	w, ok := st.Worker("greeter")
	if !ok || w.State != "running" || w.Class != "hello" || w.Pid == 0 {
		t.Errorf("status of greeter: %+v (listed: %v)", w, ok)
	}
	if err := h.Stop(); err != nil {
		t.Errorf("the host exited with %v", err)
	}
}
