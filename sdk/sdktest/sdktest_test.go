package sdktest_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dynworkers/dynworkers/sdk"
	"github.com/dynworkers/dynworkers/sdk/sdktest"
)

type relayConfig struct {
	From   string `config:"from,required"`
	To     string `config:"to,required"`
	Shout  bool   `config:"shout" default:"false"`
	Broken bool   `config:"broken" default:"false"`
}

// relay republishes what it consumes, and says how many it relayed.
type relay struct {
	cfg      relayConfig
	env      *sdk.Env
	blocking chan struct{} // receives when a "block" message's handler begins
}

func (r *relay) Start(ctx context.Context, env *sdk.Env) error {
	r.env = env
	if r.cfg.Broken {
		return errors.New("cannot start")
	}
	env.Logger().Info("relay starting", "from", r.cfg.From)
	return env.Consume(r.cfg.From, r.handle, sdk.WithPrefetch(5))
}

func (r *relay) handle(ctx context.Context, m sdk.Message) error {
	body := string(m.Body)
	switch body {
	case "bad":
		return sdk.Drop(errors.New("bad body"))
	case "later":
		return errors.New("not now")
	case "block":
		r.blocking <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	}
	if r.cfg.Shout {
		body = strings.ToUpper(body)
	}
	if err := r.env.Publish(ctx, r.cfg.To, []byte(body), map[string]string{"via": "relay"}); err != nil {
		return err
	}
	return r.env.Metric("relayed", 1, sdk.AggSum)
}

func (r *relay) Stop(context.Context) error { return nil }

func (r *relay) Status(context.Context) (map[string]any, error) {
	return map[string]any{"from": r.cfg.From, "n": 3}, nil
}

var relayClass = sdk.Class{
	Name: "relay",
	New: sdk.Construct(func(cfg relayConfig) (sdk.Worker, error) {
		return &relay{cfg: cfg, blocking: make(chan struct{}, 1)}, nil
	}),
}

func TestRunRecordsAndDelivers(t *testing.T) {
	w := sdktest.Run(t, relayClass, map[string]any{"from": "a.in", "to": "a.out", "shout": true}, sdktest.WorkerName("r1"))
	if w.Env.SDK().WorkerName() != "r1" || w.Env.SDK().ClassName() != "relay" {
		t.Errorf("env %q %q", w.Env.SDK().WorkerName(), w.Env.SDK().ClassName())
	}
	if got := w.Env.Consumers(); len(got) != 1 || got[0].Queue != "a.in" || !slices.Equal(got[0].Bindings, []string{"a.in"}) || got[0].Prefetch != 5 {
		t.Errorf("consumers %+v", got)
	}
	out, err := w.Env.Deliver("a.in", []byte("hi"))
	if out != sdk.OutcomeAck || err != nil {
		t.Errorf("Deliver = %v, %v", out, err)
	}
	if out, err := w.Env.Deliver("a.in", []byte("bad")); out != sdk.OutcomeDrop || err == nil {
		t.Errorf("Deliver(bad) = %v, %v", out, err)
	}
	if out, _ := w.Env.Deliver("a.in", []byte("later")); out != sdk.OutcomeRequeue {
		t.Errorf("Deliver(later) = %v", out)
	}
	p := w.Env.WaitPublished("a.out", 1)
	if string(p[0].Body) != "HI" || p[0].Headers["via"] != "relay" {
		t.Errorf("published %+v", p)
	}
	if m := w.Env.Metrics(); len(m) != 1 || m[0].Name != "relayed" || m[0].Value != 1 || !slices.Equal(m[0].Aggregators, []string{"sum"}) {
		t.Errorf("metrics %+v", m)
	}
	if l := w.Env.WaitLog("relay starting"); l.Args["from"] != "a.in" || l.Args["r1"] != nil {
		t.Errorf("log %v", l)
	}
	if st := w.Status(context.Background()); st["from"] != "a.in" || st["n"] != float64(3) {
		t.Errorf("status %v", st)
	}
	if err := w.Health(context.Background()); err != nil {
		t.Error(err)
	}
}

func TestEnvAppliesTheHostsRules(t *testing.T) {
	env := sdktest.NewEnv(t)
	ctx := context.Background()
	if err := env.SDK().Publish(ctx, "vumi.control.x", nil, nil); !errors.Is(err, sdk.ErrReservedName) {
		t.Errorf("Publish reserved = %v", err)
	}
	if err := env.SDK().Consume("", func(context.Context, sdk.Message) error { return nil }); !errors.Is(err, sdk.ErrInvalidName) {
		t.Errorf("Consume empty = %v", err)
	}
	if err := env.SDK().Consume("q", func(context.Context, sdk.Message) error { return nil }, sdk.WithPrefetch(0)); !errors.Is(err, sdk.ErrInvalidConfig) {
		t.Errorf("Consume prefetch 0 = %v", err)
	}
	if err := env.SDK().Metric("m", 1, "median"); !errors.Is(err, sdk.ErrInvalidMetric) {
		t.Errorf("Metric = %v", err)
	}
	if len(env.Published()) != 0 || len(env.Metrics()) != 0 || len(env.Consumers()) != 0 {
		t.Error("refused calls were recorded")
	}
	nobus := sdktest.NewEnv(t, sdktest.WithoutBus())
	if err := nobus.SDK().Publish(ctx, "k", nil, nil); !errors.Is(err, sdk.ErrNoBus) {
		t.Errorf("Publish without bus = %v", err)
	}
	if err := nobus.SDK().Metric("m", 1); !errors.Is(err, sdk.ErrNoMetrics) {
		t.Errorf("Metric without bus = %v", err)
	}
	failing := sdktest.NewEnv(t, sdktest.OnPublish(func(context.Context, sdktest.Published) error { return errors.New("broker down") }))
	if err := failing.SDK().Publish(ctx, "k", nil, nil); err == nil || len(failing.Published()) != 0 {
		t.Errorf("Publish with a failing OnPublish = %v", err)
	}
}

func TestStartErrors(t *testing.T) {
	if _, err := sdktest.Start(t, relayClass, `{"from":"a"}`); !errors.Is(err, sdk.ErrInvalidConfig) {
		t.Errorf("missing attribute: %v", err)
	}
	if _, err := sdktest.Start(t, relayClass, `[1]`); !errors.Is(err, sdk.ErrInvalidConfig) {
		t.Errorf("not an object: %v", err)
	}
	if _, err := sdktest.Start(t, relayClass, map[string]any{"from": "a", "to": "b", "broken": true}); err == nil || err.Error() != "cannot start" {
		t.Errorf("failing Start: %v", err)
	}
}

// Stop stops the consumers first: a handler under way sees its context end.
func TestStopStopsConsumersFirst(t *testing.T) {
	w := sdktest.Run(t, relayClass, map[string]any{"from": "a.in", "to": "a.out"})
	done := make(chan sdk.Outcome)
	go func() {
		out, _ := w.Env.Deliver("a.in", []byte("block"))
		done <- out
	}()
	select {
	case <-w.Impl.(*relay).blocking:
	case out := <-done:
		t.Fatalf("the blocking message was settled %v before Stop", out)
	case <-time.After(sdktest.WaitTimeout):
		t.Fatal("the handler did not begin")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if out := <-done; out != sdk.OutcomeRequeue {
		t.Errorf("the blocked message was settled %v, want requeue", out)
	}
	if c := w.Env.Consumers(); !c[0].Stopped {
		t.Errorf("consumers %+v", c)
	}
	if out, err := w.Env.Deliver("a.in", []byte("x")); out != sdk.OutcomeRequeue || !errors.Is(err, sdk.ErrConsumerStopped) {
		t.Errorf("Deliver after Stop = %v, %v", out, err)
	}
	if err := w.Env.SDK().Consume("b", func(context.Context, sdk.Message) error { return nil }); !errors.Is(err, sdk.ErrConsumerStopped) {
		t.Errorf("Consume after Stop = %v", err)
	}
}

// Route wires two workers together.
func TestRoute(t *testing.T) {
	second := sdktest.Run(t, relayClass, map[string]any{"from": "b.in", "to": "b.out"})
	first := sdktest.Run(t, relayClass, map[string]any{"from": "a.in", "to": "b.in"}, sdktest.OnPublish(second.Env.Route))
	if out, err := first.Env.Deliver("a.in", []byte("hop")); out != sdk.OutcomeAck || err != nil {
		t.Fatalf("Deliver = %v, %v", out, err)
	}
	if p := second.Env.WaitPublished("b.out", 1); string(p[0].Body) != "hop" {
		t.Errorf("published %+v", p)
	}
}

func TestChildrenAndExit(t *testing.T) {
	env := sdktest.NewEnv(t)
	ctx := context.Background()
	c := env.SDK().Children()
	info, err := c.StartChild(ctx, sdk.ChildSpec{Name: "1", Class: "hello", Config: map[string]string{"a": "b"}})
	if err != nil || info.Outcome != sdk.ChildStarted || info.State != "running" {
		t.Fatalf("StartChild = %+v, %v", info, err)
	}
	if info, _ := c.StartChild(ctx, sdk.ChildSpec{Name: "1", Class: "hello", Config: []byte(`{"a":"b"}`)}); info.Outcome != sdk.ChildUnchanged {
		t.Errorf("same spec: %+v", info)
	}
	if info, _ := c.StartChild(ctx, sdk.ChildSpec{Name: "1", Class: "hello", Restart: "transient"}); info.Outcome != sdk.ChildReplaced {
		t.Errorf("other spec: %+v", info)
	}
	if err := c.StopChild(ctx, "2"); !errors.Is(err, sdk.ErrChildNotFound) {
		t.Errorf("StopChild(2) = %v", err)
	}
	list, _ := c.ListChildren(ctx)
	if len(list) != 1 || list[0].Name != "1" {
		t.Errorf("list %+v", list)
	}
	env.FakeChildren().Fail(func(call sdktest.ChildCall) error {
		if call.Op == "start" {
			return sdk.InvalidConfig("unknown class")
		}
		return nil
	})
	if _, err := c.StartChild(ctx, sdk.ChildSpec{Name: "2", Class: "nope"}); !errors.Is(err, sdk.ErrInvalidConfig) {
		t.Errorf("failing StartChild = %v", err)
	}
	if n := len(env.FakeChildren().Calls()); n != 6 {
		t.Errorf("%d calls recorded", n)
	}

	go env.SDK().Exit(errors.New("done for"))
	select {
	case <-env.Exited():
	case <-time.After(5 * time.Second):
		t.Fatal("Exit did not close Exited")
	}
	if err, ok := env.ExitErr(); !ok || err.Error() != "done for" {
		t.Errorf("ExitErr = %v, %v", err, ok)
	}
}

// A worker of sdk.Run whose function returns ends as in a plugin process:
// consumers stopped, Stop called, the error recorded. A handler may call
// Exit: Deliver returns, the message is requeued.
func TestExitStopsTheWorker(t *testing.T) {
	quit := make(chan error)
	class := sdk.Class{Name: "quitter", New: sdk.Construct(func(struct{}) (sdk.Worker, error) {
		return sdk.Run(func(ctx context.Context, env *sdk.Env) error {
			if err := env.Consume("q", func(ctx context.Context, m sdk.Message) error {
				if string(m.Body) == "exit" {
					env.Exit(errors.New("asked to"))
				}
				return nil
			}); err != nil {
				return err
			}
			select {
			case err := <-quit:
				return err
			case <-ctx.Done():
				return nil
			}
		}), nil
	})}
	w := sdktest.Run(t, class, nil)
	sdktest.Eventually(t, 10*time.Second, func() bool { return len(w.Env.Consumers()) == 1 }, "no consumer")
	quit <- errors.New("link lost")
	select {
	case <-w.Env.Exited():
	case <-time.After(10 * time.Second):
		t.Fatal("the worker did not exit")
	}
	if err, ok := w.Env.ExitErr(); !ok || err == nil || err.Error() != "link lost" {
		t.Errorf("ExitErr = %v, %v", err, ok)
	}
	if c := w.Env.Consumers(); !c[0].Stopped {
		t.Errorf("consumers after the exit: %+v", c)
	}

	w = sdktest.Run(t, class, nil)
	sdktest.Eventually(t, 10*time.Second, func() bool { return len(w.Env.Consumers()) == 1 }, "no consumer")
	if out, err := w.Env.Deliver("q", []byte("exit")); out != sdk.OutcomeRequeue || err == nil {
		t.Errorf("Deliver of a message whose handler exits = %v, %v", out, err)
	}
	select {
	case <-w.Env.Exited():
	case <-time.After(10 * time.Second):
		t.Fatal("the worker did not exit")
	}
	if err, _ := w.Env.ExitErr(); err == nil || err.Error() != "asked to" {
		t.Errorf("ExitErr = %v", err)
	}
}
